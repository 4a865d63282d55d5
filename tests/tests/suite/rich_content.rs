//! Attachments, inline images, tags and metadata reach each HTTP provider in that
//! provider's own fields, and bad ones are refused at submission naming the field.

use crate::common;

use std::time::Duration;

use base64::prelude::*;
use bitmail_proto::v1 as pb;
use bitmail_tests::mailgun::FakeMailgun;
use bitmail_tests::sendgrid::FakeSendGrid;
use common::{Cluster, mailgun, sendgrid, settled};
use serde_json::json;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n fake image";

fn rich() -> pb::SubmitRequest {
    pb::SubmitRequest {
        from: "ada@bitmail.test".into(),
        to: vec!["bob@example.net".into()],
        subject: "Quarterly report".into(),
        text: "Report attached.".into(),
        html: "<p><img src=\"cid:logo\"> Report attached.</p>".into(),
        attachments: vec![
            pb::Attachment {
                filename: "report.pdf".into(),
                content_type: "application/pdf".into(),
                content: b"%PDF-1.7 fake".to_vec(),
                content_id: String::new(),
            },
            pb::Attachment {
                filename: "logo.png".into(),
                content_type: "image/png".into(),
                content: PNG.to_vec(),
                content_id: "logo".into(),
            },
        ],
        tags: vec!["reports".into(), "q4".into()],
        metadata: [("tenant".to_owned(), "acme".to_owned())].into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn sendgrid_gets_attachments_inline_images_categories_and_custom_args() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))], false).await;
    let mut mta = cluster.mta_client().await;
    let id = mta.submit(rich()).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");

    let body = &fake.received()[0].body;
    assert_eq!(
        body["attachments"],
        json!([
            {"content": BASE64_STANDARD.encode(b"%PDF-1.7 fake"), "filename": "report.pdf", "type": "application/pdf", "disposition": "attachment"},
            {"content": BASE64_STANDARD.encode(PNG), "filename": "logo.png", "type": "image/png", "disposition": "inline", "content_id": "logo"},
        ])
    );
    assert_eq!(body["categories"], json!(["reports", "q4"]));
    assert_eq!(body["custom_args"], json!({"bitmail_id": id, "tenant": "acme"}));
}

#[tokio::test]
async fn mailgun_gets_files_tags_and_variables() {
    let fake = FakeMailgun::start(common::KEY).await.unwrap();
    let cluster = Cluster::start(vec![mailgun("mailgun", &fake, Duration::from_secs(5))], false).await;
    let mut mta = cluster.mta_client().await;
    let id = mta.submit(rich()).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");

    let m = &fake.received()[0];
    let files: Vec<(&str, &str, &str, &[u8])> =
        m.files.iter().map(|f| (f.field.as_str(), f.filename.as_str(), f.content_type.as_str(), &f.data[..])).collect();
    assert_eq!(
        files,
        [
            ("attachment", "report.pdf", "application/pdf", &b"%PDF-1.7 fake"[..]),
            // Mailgun's inline parts are named by the content id the HTML refers to.
            ("inline", "logo", "image/png", PNG),
        ]
    );
    assert_eq!(m.all("o:tag"), ["reports", "q4"]);
    assert_eq!(m.field("v:tenant"), Some("acme"));
    assert_eq!(m.field("v:bitmail_id"), Some(id.as_str()));
}

#[tokio::test]
async fn bad_attachments_tags_and_metadata_are_refused_and_nothing_is_sent() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))], false).await;
    let mut mta = cluster.mta_client().await;
    let mut cases = Vec::new();
    let mut r = rich();
    r.attachments[0].filename = "../../etc/passwd".into();
    cases.push((r, "attachments[0].filename"));
    let mut r = rich();
    r.attachments[1].content_type = "image".into();
    cases.push((r, "attachments[1].content_type"));
    let mut r = rich();
    r.attachments[0].content_id = "logo".into();
    cases.push((r, "attachments[1].content_id"));
    let mut r = rich();
    r.tags.push("has space".into());
    cases.push((r, "tags[2]"));
    let mut r = rich();
    r.metadata.insert("bitmail_id".into(), "forged".into());
    cases.push((r, "metadata[\"bitmail_id\"]"));
    for (request, field) in cases {
        let e = mta.submit(request).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with(&format!("{field}: ")), "{field}: {}", e.message());
    }
    let providers = mta.list_providers(pb::ListProvidersRequest {}).await.unwrap().into_inner();
    assert_eq!(providers.backlog, 0);
    assert_eq!(fake.requests(), 0);
}
