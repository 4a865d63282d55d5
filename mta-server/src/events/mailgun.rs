//! Mailgun's event webhooks: `{"signature": {timestamp, token, signature},
//! "event-data": {...}}`, signed with HMAC-SHA256 keyed by the webhook signing key (not
//! the API key) over `timestamp` followed directly by `token`, as lowercase hex.
//!
//! Events: `accepted`, `delivered`, `failed` (severity `permanent`: bounced; `temporary`:
//! deferred, Mailgun keeps trying), `rejected` (dropped), `complained`, `opened`,
//! `clicked`, `unsubscribed`. BitMail's id is `user-variables.bitmail_id`. The check is
//! constant-time; a token used again for another event is a replay (401).

use bitmail_proto::v1::EventKind;
use serde_json::Value;

use super::{Batch, Event, EventDetails, secs_to_ms};
use crate::webhook::MailgunSigningKey;
use crate::webhook::Refused;

pub struct Verifier {
    key: MailgunSigningKey,
}

impl Verifier {
    pub fn new(signing_key: &str) -> Self {
        Verifier { key: MailgunSigningKey::new(signing_key) }
    }

    /// The key, which also signs Mailgun's inbound route forwards.
    pub(crate) fn signing_key(&self) -> &MailgunSigningKey {
        &self.key
    }

    pub fn receive(&self, provider: &str, body: &[u8], now_ms: u64) -> Result<Batch, Refused> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| Refused::Malformed(format!("not a JSON object: {e}")))?;
        let signature = value.get("signature").ok_or_else(|| Refused::Unauthorized("`signature` is missing".into()))?;
        let field = |name: &str| {
            signature
                .get(name)
                .and_then(|v| v.as_str().map(str::to_owned).or_else(|| v.as_u64().map(|n| n.to_string())))
                .ok_or_else(|| Refused::Unauthorized(format!("`signature.{name}` is missing")))
        };
        let (timestamp, token, hex) = (field("timestamp")?, field("token")?, field("signature")?);
        self.key.verify(&timestamp, &token, &hex, now_ms)?;

        let data = value.get("event-data").ok_or_else(|| Refused::Malformed("`event-data` is missing".into()))?;
        let event = normalize(provider, data);
        let event_id = data.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok(Batch { events: event.into_iter().collect(), nonce: Some((format!("{provider}:{token}"), event_id)) })
    }
}

fn normalize(provider: &str, e: &Value) -> Option<Event> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    let message_id = e.pointer("/user-variables/bitmail_id")?.as_str()?.to_owned();
    let permanent = e.get("severity").and_then(Value::as_str) == Some("permanent");
    let kind = match e.get("event")?.as_str()? {
        "accepted" => EventKind::Accepted,
        "delivered" => EventKind::Delivered,
        "failed" if permanent => EventKind::Bounced,
        // A temporary failure: Mailgun keeps trying.
        "failed" => EventKind::Deferred,
        "rejected" => EventKind::Dropped,
        "complained" => EventKind::Complained,
        "opened" => EventKind::Opened,
        "clicked" => EventKind::Clicked,
        "unsubscribed" => EventKind::Unsubscribed,
        _ => return None,
    };
    let detail = [
        text(e.pointer("/delivery-status/description")),
        text(e.pointer("/delivery-status/message")),
        text(e.get("reason")),
        text(e.get("url")),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join("; ");
    Some(Event {
        message_id,
        record: EventDetails {
            kind: kind as i32,
            recipient: text(e.get("recipient")).to_ascii_lowercase(),
            at_ms: e.get("timestamp").map_or(0, secs_to_ms),
            provider: provider.to_owned(),
            event_id: text(e.get("id")),
            detail,
            permanent: kind == EventKind::Bounced && permanent,
        },
    })
}
