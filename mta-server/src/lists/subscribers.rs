//! Subscribers: subscribing (with the confirmation mail of double opt-in), the signed
//! links' subscriber, unsubscribing and its count.

use std::collections::BTreeMap;

use backend_server::store::{Fields, StoreError};
use bitmail_proto::v1 as pb;
use tonic::Status;
use tracing::{info, warn};

use super::mail;
use super::model::{self, Given, List, Problems, Subscriber};
use super::token::{Claims, Kind};
use super::{Lists, wire};
use bitmail_runtime::time::now_ms;

/// At most one confirmation mail per address and list this often.
const CONFIRM_EVERY_MS: u64 = 10 * 60 * 1000;

impl Lists {
    pub(super) async fn is_suppressed(&self, email: &str, tenant: &str) -> bool {
        let (spool, email, tenant) = (self.spool.clone(), email.to_owned(), tenant.to_owned());
        let found = tokio::task::spawn_blocking(move || {
            spool.suppressed_blocking([email.as_str()], &tenant, now_ms()).map(|h| h.is_some())
        })
        .await;
        matches!(found, Ok(Ok(true)))
    }

    pub(super) async fn subscribe(
        &self,
        caller_is_tenant: bool,
        list: &List,
        r: &pb::SubscribeRequest,
    ) -> Result<pb::SubscribeResponse, Status> {
        let attributes: BTreeMap<String, String> = r.attributes.clone().into_iter().collect();
        let mut p = Problems::default();
        let given = Given { email: &r.email, name: &r.name, language: &r.language, attributes: &attributes };
        let (email, language, attributes) = given.check(list, &mut p);
        if r.confirmed && !caller_is_tenant {
            p.add("confirmed", "only the tenant's own key may subscribe someone as confirmed");
        }
        p.finish()?;
        let now = now_ms();
        let confirmed_now = r.confirmed || !list.double_opt_in;
        let fresh = Subscriber {
            tenant: list.tenant.clone(),
            list: list.id.clone(),
            email: email.clone(),
            name: r.name.trim().to_owned(),
            language,
            attributes,
            state: if confirmed_now { "confirmed" } else { "unconfirmed" }.into(),
            created_ms: now,
            confirmed_ms: if confirmed_now { now } else { 0 },
            ..Default::default()
        };
        let mut sub = match self.store.create(&model::subscriber_key(&list.id, &email), fresh.fields()).await {
            Ok(doc) => Subscriber { id: doc.id, version: doc.version, ..fresh.clone() },
            Err(StoreError::AlreadyExists { id }) => {
                let doc = self.store.get(&id).await?;
                let old =
                    Subscriber::from_doc(&doc).ok_or_else(|| Status::internal("a subscriber could not be read"))?;
                if old.state == "unsubscribed" || (old.state == "unconfirmed" && confirmed_now) {
                    // Back again (or now vouched for): a new consent, with what was given.
                    let again = Subscriber {
                        id: old.id.clone(),
                        confirm_sent_ms: old.confirm_sent_ms,
                        created_ms: old.created_ms,
                        ..fresh.clone()
                    };
                    let doc = self.store.update(&old.id, again.fields(), vec![], Some(doc.version)).await?;
                    Subscriber { version: doc.version, ..again }
                } else {
                    old
                }
            }
            Err(e) => return Err(e.into()),
        };
        let mut sent = false;
        if sub.state == "unconfirmed" && now.saturating_sub(sub.confirm_sent_ms) >= CONFIRM_EVERY_MS {
            if self.is_suppressed(&sub.email, &list.tenant).await {
                info!(list = %list.id, "no confirmation mail: the address is suppressed");
            } else {
                let url = self.public_url()?.to_owned();
                // Counted before it is sent: a crash after this sends none rather than two.
                let doc = self
                    .store
                    .update(&sub.id, Fields::from([("confirm_sent_ms".into(), now.to_string())]), vec![], None)
                    .await?;
                sub.version = doc.version;
                sub.confirm_sent_ms = now;
                let token = self
                    .signer()
                    .await?
                    .sign(&Claims { kind: Kind::Confirm, subscriber: sub.id.clone(), campaign: None }, now / 1000);
                let request = mail::confirmation(list, &sub, &format!("{url}/lists/confirm/{token}"))?;
                let tenant = self.tenant(&list.tenant).await?;
                match self.mta.submit_as(&tenant, "lists:confirmation", request, None, None).await {
                    Ok(_) => sent = true,
                    Err(e) => warn!(list = %list.id, error = %e.message(), "the confirmation mail was refused"),
                }
            }
        }
        Ok(pb::SubscribeResponse { subscriber: Some(wire::subscriber(&sub)), confirmation_sent: sent })
    }

    /// The subscriber a token names, with its list.
    pub(super) async fn by_token(&self, token: &str, kind: Kind) -> Result<(Claims, Subscriber, List), Status> {
        let claims =
            self.signer().await?.verify(token, now_ms() / 1000).map_err(|e| Status::unauthenticated(e.to_string()))?;
        if claims.kind != kind {
            return Err(Status::unauthenticated("this link is not valid here"));
        }
        let sub = self
            .doc(&claims.subscriber)
            .await?
            .and_then(|d| Subscriber::from_doc(&d))
            .ok_or_else(|| Status::not_found("this subscription no longer exists"))?;
        let list = self.list(&sub.tenant, &sub.list).await?;
        Ok((claims, sub, list))
    }

    pub(super) async fn set(&self, sub: &Subscriber, fields: Fields) -> Result<Subscriber, Status> {
        let doc = self.store.update(&sub.id, fields, vec![], None).await?;
        Subscriber::from_doc(&doc).ok_or_else(|| Status::internal("a subscriber could not be read back"))
    }

    /// Unsubscribes `sub` (idempotent), for `reason`; counted for `campaign` when given.
    pub(super) async fn unsubscribe(
        &self,
        sub: &Subscriber,
        reason: &str,
        campaign: Option<&str>,
    ) -> Result<Subscriber, Status> {
        if sub.state == "unsubscribed" {
            return Ok(sub.clone());
        }
        let now = now_ms().to_string();
        let fields = Fields::from([
            ("state".into(), "unsubscribed".into()),
            ("unsubscribed_ms".into(), now),
            ("reason".into(), reason.into()),
        ]);
        let done = self.set(sub, fields).await?;
        info!(list = %sub.list, subscriber = %sub.id, reason, "unsubscribed");
        if let Some(campaign) = campaign {
            self.count_unsubscribed(campaign).await;
        }
        Ok(done)
    }

    pub(super) async fn count_unsubscribed(&self, campaign: &str) {
        for _ in 0..10 {
            let Ok(doc) = self.store.get(campaign).await else { return };
            let n: u64 = doc.fields.get("unsubscribed").and_then(|v| v.parse().ok()).unwrap_or(0);
            let fields = Fields::from([("unsubscribed".into(), (n + 1).to_string())]);
            match self.store.update(campaign, fields, vec![], Some(doc.version)).await {
                Err(StoreError::VersionMismatch { .. }) => continue,
                _ => return,
            }
        }
    }
}
