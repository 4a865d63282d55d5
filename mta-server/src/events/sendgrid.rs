//! SendGrid's Event Webhook: a JSON array of events, signed with ECDSA P-256/SHA-256
//! over the bytes of `X-Twilio-Email-Event-Webhook-Timestamp` followed directly by the
//! raw body; the signature (base64 DER) is in `X-Twilio-Email-Event-Webhook-Signature`
//! and the public key (base64 DER SubjectPublicKeyInfo) is in BitMail's config.
//!
//! Events: `processed` (accepted), `delivered`, `deferred`, `bounce` (hard; soft when its
//! `type` is `blocked`), `dropped`, `spamreport`, `open`, `click`, `unsubscribe` and
//! `group_unsubscribe`. BitMail's id is the top-level `bitmail_id` (a custom arg).

use aws_lc_rs::signature::ParsedPublicKey;
use base64::prelude::*;
use bitmail_proto::v1::EventKind;
use serde_json::Value;

use super::{Batch, Event, EventDetails, secs_to_ms};
use crate::webhook::fresh;
use crate::webhook::{Refused, header};

pub const SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";

pub struct Verifier {
    key: ParsedPublicKey,
}

impl Verifier {
    /// From the verification key SendGrid shows (base64 of the DER public key).
    pub fn new(public_key_base64: &str) -> Result<Self, String> {
        Ok(Verifier { key: crate::keys::sendgrid_verification_key(public_key_base64)? })
    }

    pub fn receive(
        &self,
        provider: &str,
        headers: &[(String, String)],
        body: &[u8],
        now_ms: u64,
    ) -> Result<Batch, Refused> {
        let signature = header(headers, SIGNATURE_HEADER)
            .ok_or_else(|| Refused::Unauthorized(format!("{SIGNATURE_HEADER} is missing")))?;
        let timestamp = header(headers, TIMESTAMP_HEADER)
            .ok_or_else(|| Refused::Unauthorized(format!("{TIMESTAMP_HEADER} is missing")))?;
        let signature = BASE64_STANDARD
            .decode(signature)
            .map_err(|_| Refused::Unauthorized(format!("{SIGNATURE_HEADER} is not base64")))?;
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        self.key
            .verify_sig(&signed, &signature)
            .map_err(|_| Refused::Unauthorized("the signature does not match the body".into()))?;
        fresh(timestamp, now_ms)?;

        let events: Vec<Value> =
            serde_json::from_slice(body).map_err(|e| Refused::Malformed(format!("not a JSON array of events: {e}")))?;
        Ok(Batch { events: events.iter().filter_map(|e| normalize(provider, e)).collect(), nonce: None })
    }
}

/// One SendGrid event, when it is about a BitMail message and of a kind BitMail keeps.
fn normalize(provider: &str, e: &Value) -> Option<Event> {
    let text = |key: &str| e.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let message_id = e.get("bitmail_id")?.as_str()?.to_owned();
    let (kind, permanent) = match e.get("event")?.as_str()? {
        "processed" => (EventKind::Accepted, false),
        "delivered" => (EventKind::Delivered, false),
        "deferred" => (EventKind::Deferred, false),
        // `type`: "bounce" is a hard bounce, "blocked" a soft one.
        "bounce" => (EventKind::Bounced, e.get("type").and_then(Value::as_str) != Some("blocked")),
        "dropped" => (EventKind::Dropped, false),
        "spamreport" => (EventKind::Complained, false),
        "open" => (EventKind::Opened, false),
        "click" => (EventKind::Clicked, false),
        "unsubscribe" | "group_unsubscribe" => (EventKind::Unsubscribed, false),
        _ => return None,
    };
    let detail = [text("reason"), text("response"), text("url"), text("status")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Some(Event {
        message_id,
        record: EventDetails {
            kind: kind as i32,
            recipient: text("email").to_ascii_lowercase(),
            at_ms: e.get("timestamp").map_or(0, secs_to_ms),
            provider: provider.to_owned(),
            event_id: text("sg_event_id"),
            detail,
            permanent,
        },
    })
}
