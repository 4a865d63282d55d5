//! The bad-input corpus: over 200 requests that are wrong in one way each, sent to every
//! surface a caller can reach (gRPC `Mta` and `Admin`, the webmail's JSON API, the
//! SendGrid- and Mailgun-shaped APIs, the inbound webhooks, SMTP submission, the
//! mailing lists' pages and API), each
//! answered with the exact clear error listed here, and nothing changed: no mail reaches
//! the provider, no mail document, tenant or key is stored, and a good message still goes
//! through afterwards.
//!
//! The expected answers are the tables in each surface's file, as `(case, answer)`. When a
//! message is reworded, the failure prints the whole table as it now is, to review.

mod app_apis;
mod grpc;
mod list_pages;
mod smtp;
mod webmail;

use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::prelude::*;
use bitmail_proto::v1 as pb;
use bitmail_proto::v1::admin_client::AdminClient;
use bitmail_runtime::config::Secret;
use bitmail_runtime::grpc::{Bearer, WithKey};
use bitmail_tests::sendgrid::FakeSendGrid;

use crate::common::{self, Cluster, Session, sendgrid};

/// SendGrid Inbound Parse's basic-auth password in this deployment.
pub(crate) const INBOUND_PASSWORD: &str = "corpus-inbound-password";

pub(crate) struct Corpus {
    pub(crate) cluster: Cluster,
    pub(crate) fake: FakeSendGrid,
    /// A `send` and `read` key of the default tenant.
    pub(crate) key: String,
    pub(crate) ada: Session,
}

impl Corpus {
    async fn start() -> Corpus {
        let fake = FakeSendGrid::start(common::KEY).await.unwrap();
        let mut provider = sendgrid("sendgrid", &fake, Duration::from_secs(5));
        if let mta_server::config::ProviderConfig::Sendgrid(c) = &mut provider {
            let webhook_key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
            c.webhook_public_key = Some(BASE64_STANDARD.encode(webhook_key.public_key().as_der().unwrap().as_ref()));
            c.inbound_password = Some(Secret::new(INBOUND_PASSWORD));
        }
        let cluster = Cluster::start_with(vec![provider], true, |c| {
            c.lists.public_url = "https://edge.test".into();
            c.smtp.local = Some(mta_server::config::LocalSubmission {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                tenant: "default".into(),
            });
        })
        .await;
        let ada = Session::new(&cluster, "ada").await;
        let mut corpus = Corpus { cluster, fake, key: String::new(), ada };
        let request = pb::CreateKeyRequest {
            tenant: "default".into(),
            name: "corpus".into(),
            scopes: vec!["send".into(), "read".into()],
            expires_at_unix_ms: 0,
        };
        corpus.key = corpus.admin().create_key(request).await.unwrap().into_inner().secret;
        corpus
    }

    pub(crate) fn admin(&self) -> AdminClient<WithKey> {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", self.cluster.mta)).unwrap().connect_lazy();
        AdminClient::with_interceptor(channel, Bearer::new(Some(&self.cluster.admin_key)).unwrap())
    }

    /// What is stored that a bad request could have added: mail documents, tenants, keys.
    async fn footprint(&self) -> (usize, Vec<String>, usize) {
        let mut store = self.cluster.store_client().await;
        let request = pb::LookupRequest {
            subset: [("kind".to_owned(), "mail".to_owned())].into(),
            limit: 1000,
            page_token: String::new(),
            newest_first: false,
        };
        let mut stream = store.lookup(request).await.unwrap().into_inner();
        let mut mails = 0;
        while let Some(item) = stream.message().await.unwrap() {
            mails += usize::from(matches!(item.item, Some(pb::lookup_response::Item::Document(_))));
        }
        let mut admin = self.admin();
        let tenants = admin.list_tenants(pb::ListTenantsRequest::default()).await.unwrap().into_inner().tenants;
        let keys = admin.list_keys(pb::ListKeysRequest::default()).await.unwrap().into_inner().keys.len();
        (mails, tenants.iter().map(|t| format!("{}:{}:{:?}", t.id, t.version, t.domains)).collect(), keys)
    }
}

impl Corpus {
    /// Compares a surface's answers with its table; on a difference, prints the table as
    /// it is now. The corpus key's prefix, different each run, reads `bmk_KEY`.
    pub(crate) fn check(&self, surface: &str, got: &[(String, String)], expected: &[(&str, &str)]) {
        let prefix = &self.key[..16];
        let got: Vec<(String, String)> = got.iter().map(|(c, a)| (c.clone(), a.replace(prefix, "bmk_KEY"))).collect();
        compare(surface, &got, expected);
    }
}

fn compare(surface: &str, got: &[(String, String)], expected: &[(&str, &str)]) {
    let wrong: Vec<String> = got
        .iter()
        .zip(expected.iter().map(Some).chain(std::iter::repeat(None)))
        .filter(|((case, answer), want)| want.is_none_or(|(c, a)| c != case || a != answer))
        .map(|((case, answer), want)| format!("{case}: got {answer:?}, expected {want:?}"))
        .collect();
    if !wrong.is_empty() || got.len() != expected.len() {
        let table: String = got.iter().map(|(c, a)| format!("    ({c:?}, {a:?}),\n")).collect();
        panic!(
            "{surface}: {} of {} answers differ ({} expected):\n{}\nthe answers now:\n{table}",
            wrong.len(),
            got.len(),
            expected.len(),
            wrong.join("\n")
        );
    }
}

#[tokio::test]
async fn every_surface_refuses_bad_input_clearly_and_changes_nothing() {
    let corpus = Corpus::start().await;
    let before = corpus.footprint().await;
    let mut total = 0;
    total += grpc::submit(&corpus).await;
    total += grpc::admin(&corpus).await;
    total += webmail::api(&corpus).await;
    total += app_apis::sendgrid(&corpus).await;
    total += app_apis::mailgun(&corpus).await;
    total += app_apis::webhooks(&corpus).await;
    total += smtp::local(&corpus).await;
    total += list_pages::lists(&corpus).await;
    assert!(total >= 200, "the corpus has {total} cases");

    assert_eq!(corpus.footprint().await, before, "a bad request stored something");
    assert!(corpus.fake.received().is_empty(), "a bad request reached the provider");
    // Still working: a good message goes through.
    let (status, answer) = corpus
        .ada
        .send(serde_json::json!({ "to": "bob@example.net", "subject": "After the corpus", "text": "still here" }))
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{answer}");
    corpus.fake.wait_for(1, Duration::from_secs(10)).await;
}
