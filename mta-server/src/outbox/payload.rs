//! What a webhook receives: a JSON body of events, and its signature.
//!
//! BitMail's shape: `{"webhook_id": "...", "events": [{"id", "message_id", "event",
//! "source", "recipient", "timestamp_ms", "detail", "permanent", "metadata"}]}`. `id`
//! (`<message id>.<log sequence>`) is unique: the key to deduplicate.
//!
//! SendGrid's Event Webhook shape, for code written for it: a JSON array of
//! `{"email", "timestamp" (seconds), "event", "sg_event_id", "sg_message_id",
//! "bitmail_id", "reason", "type"}` with the message's metadata as top-level keys, as
//! SendGrid puts `custom_args`. Named as SendGrid names them: `processed` (BitMail's
//! `queued`), `dropped` (BitMail's `failed`), and the providers' events `delivered`,
//! `deferred`, `bounce` (with `type` bounce or blocked), `spamreport`, `open`, `click`,
//! `unsubscribe`. BitMail's `sent` and a provider's `accepted` have no counterpart there
//! and are left out.

use aws_lc_rs::hmac;
use serde_json::{Map, Value, json};

use crate::spool::record::LoggedEvent;

/// One log entry with its sequence number.
pub type Entry = (u64, LoggedEvent);

/// The body's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `{"webhook_id", "events": [...]}`, see [`body`].
    Bitmail,
    /// A JSON array shaped as SendGrid's Event Webhook, for code written for it.
    Sendgrid,
}

impl WebhookFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "bitmail" => Some(WebhookFormat::Bitmail),
            "sendgrid" => Some(WebhookFormat::Sendgrid),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Bitmail => "bitmail",
            WebhookFormat::Sendgrid => "sendgrid",
        }
    }
}

/// The body for `format`, and `None` when no entry has a counterpart in that shape.
pub fn body(format: WebhookFormat, webhook_id: &str, entries: &[Entry]) -> Option<Vec<u8>> {
    let value = match format {
        WebhookFormat::Bitmail => {
            let events: Vec<Value> = entries.iter().map(bitmail_event).collect();
            json!({ "webhook_id": webhook_id, "events": events })
        }
        WebhookFormat::Sendgrid => {
            let events: Vec<Value> = entries.iter().filter_map(sendgrid_event).collect();
            if events.is_empty() {
                return None;
            }
            Value::Array(events)
        }
    };
    Some(value.to_string().into_bytes())
}

fn event_id((seq, e): &Entry) -> String {
    format!("{}.{seq}", e.message_id)
}

fn bitmail_event(entry: &Entry) -> Value {
    let e = &entry.1;
    json!({
        "id": event_id(entry), "message_id": e.message_id, "event": e.event, "source": e.source,
        "recipient": e.recipient, "timestamp_ms": e.at_ms, "detail": e.detail, "permanent": e.permanent,
        "metadata": e.metadata,
    })
}

fn sendgrid_event(entry: &Entry) -> Option<Value> {
    let e = &entry.1;
    let (event, kind) = match (e.source.as_str(), e.event.as_str()) {
        ("bitmail", "queued") => ("processed", None),
        ("bitmail", "failed") => ("dropped", None),
        (_, "sent") => return None,
        (_, "bounced") => ("bounce", Some(if e.permanent { "bounce" } else { "blocked" })),
        (_, "complained") => ("spamreport", None),
        (_, "opened") => ("open", None),
        (_, "clicked") => ("click", None),
        (_, "unsubscribed") => ("unsubscribe", None),
        (_, "accepted") => return None,
        (_, other) => (other, None),
    };
    let mut object: Map<String, Value> =
        e.metadata.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    object.insert("email".into(), json!(e.recipient));
    object.insert("timestamp".into(), json!(e.at_ms / 1000));
    object.insert("event".into(), json!(event));
    object.insert("sg_event_id".into(), json!(event_id(entry)));
    object.insert("sg_message_id".into(), json!(e.message_id));
    object.insert("bitmail_id".into(), json!(e.message_id));
    if !e.detail.is_empty() {
        object.insert("reason".into(), json!(e.detail));
    }
    if let Some(kind) = kind {
        object.insert("type".into(), json!(kind));
    }
    Some(Value::Object(object))
}

const ECDSA: &aws_lc_rs::signature::EcdsaSigningAlgorithm = &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING;

/// A new ECDSA P-256 key for a SendGrid-shaped webhook, PKCS#8 DER in base64.
pub fn new_ecdsa_key() -> String {
    use base64::Engine as _;
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(ECDSA, &aws_lc_rs::rand::SystemRandom::new())
        .expect("the system's random source works");
    base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
}

/// The key pair of [`new_ecdsa_key`]'s text.
pub fn ecdsa_key(pkcs8_base64: &str) -> Option<aws_lc_rs::signature::EcdsaKeyPair> {
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD.decode(pkcs8_base64).ok()?;
    aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(ECDSA, &der).ok()
}

/// SendGrid's Event Webhook signature: base64 of the DER ECDSA P-256 / SHA-256
/// signature of the timestamp's digits followed directly by the body (for header
/// `X-Twilio-Email-Event-Webhook-Signature`, beside `-Timestamp`).
pub fn sendgrid_signature(pkcs8_base64: &str, timestamp_secs: u64, body: &[u8]) -> Option<String> {
    use base64::Engine as _;
    let key = ecdsa_key(pkcs8_base64)?;
    let mut signed = timestamp_secs.to_string().into_bytes();
    signed.extend_from_slice(body);
    let signature = key.sign(&aws_lc_rs::rand::SystemRandom::new(), &signed).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(signature.as_ref()))
}

/// `t=<secs>,v1=<hex HMAC-SHA256(secret, "<secs>." + body)>`.
pub fn signature(secret: &str, timestamp_secs: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{timestamp_secs}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = hmac::sign(&key, &signed);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp_secs},v1={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, event: &str, source: &str) -> Entry {
        let e = LoggedEvent {
            tenant: "acme".into(),
            message_id: "m1".into(),
            event: event.into(),
            source: source.into(),
            recipient: "bob@example.net".into(),
            at_ms: 1_800_000_000_123,
            metadata: [("order".to_owned(), "42".to_owned())].into(),
            ..Default::default()
        };
        (seq, e)
    }

    #[test]
    fn bitmail_bodies_name_each_event_uniquely_with_the_metadata() {
        let body = body(WebhookFormat::Bitmail, "w1", &[entry(7, "queued", "bitmail")]).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["webhook_id"], "w1");
        assert_eq!(
            (v["events"][0]["id"].as_str(), v["events"][0]["metadata"]["order"].as_str()),
            (Some("m1.7"), Some("42"))
        );
    }

    #[test]
    fn sendgrid_bodies_use_sendgrids_names_and_custom_args_at_the_top() {
        let entries = [entry(1, "queued", "bitmail"), entry(2, "sent", "sendgrid"), entry(3, "bounced", "sendgrid")];
        let v: Value = serde_json::from_slice(&body(WebhookFormat::Sendgrid, "w1", &entries).unwrap()).unwrap();
        let events: Vec<&str> = v.as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(events, ["processed", "bounce"]);
        assert_eq!((v[0]["order"].as_str(), v[0]["timestamp"].as_u64()), (Some("42"), Some(1_800_000_000)));
        assert_eq!((v[1]["type"].as_str(), v[1]["sg_event_id"].as_str()), (Some("blocked"), Some("m1.3")));
        assert_eq!(body(WebhookFormat::Sendgrid, "w1", &[entry(2, "sent", "sendgrid")]), None);
    }

    #[test]
    fn the_sendgrid_signature_verifies_with_the_public_key_over_timestamp_and_body() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, KeyPair, UnparsedPublicKey};
        use base64::Engine as _;
        let key = new_ecdsa_key();
        let b64 = base64::engine::general_purpose::STANDARD;
        let signature = b64.decode(sendgrid_signature(&key, 1_800_000_000, b"[]").unwrap()).unwrap();
        let public = ecdsa_key(&key).unwrap().public_key().as_der().unwrap();
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public.as_ref().to_vec());
        // The public key is DER SubjectPublicKeyInfo; aws-lc-rs takes it as such.
        assert!(public.verify(b"1800000000[]", &signature).is_ok());
        assert!(public.verify(b"1800000001[]", &signature).is_err());
        assert_eq!(sendgrid_signature("not a key", 1, b""), None);
    }

    #[test]
    fn the_signature_is_an_hmac_of_the_timestamp_and_the_body() {
        let s = signature("whsec_x", 1_800_000_000, b"{}");
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"whsec_x");
        let hex = s.strip_prefix("t=1800000000,v1=").unwrap();
        let tag: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        assert!(hmac::verify(&key, b"1800000000.{}", &tag).is_ok());
    }
}
