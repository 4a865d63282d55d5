//! Delivery events from the providers' webhooks: verified exactly as each provider signs
//! them (../shared/PROVIDERS.md), then normalized to one model and matched to BitMail's
//! message id, which every provider carries back (SendGrid `custom_args`, Mailgun `v:`
//! variables, SES's `bitmail_id` email tag). Amazon SES's events come as Amazon SNS
//! notifications: [`sns`] verifies those, [`ses`] reads the events in them.
//!
//! Nothing is stored unless the signature verifies and the timestamp is within
//! [`MAX_SKEW`] of now. Events are deduplicated by the provider's event id (a
//! provider delivering a webhook twice stores it once); a Mailgun token used again for
//! another event is a replay and refused.

pub mod mailgun;
pub mod sendgrid;
pub mod ses;
pub mod sns;

use std::time::Duration;

use bitmail_proto::v1::{EventKind, WebhookKind};
use bitmail_runtime::config::Secret;

use crate::spool::record::EventRecord;

/// How far a webhook's signed timestamp may be from now.
pub const MAX_SKEW: Duration = Duration::from_secs(600);

/// A normalized event for one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// BitMail's id of the message the event is about.
    pub message_id: String,
    pub record: EventRecord,
}

impl Event {
    pub fn kind(&self) -> EventKind {
        EventKind::try_from(self.record.kind).unwrap_or(EventKind::Unspecified)
    }

    /// Whether the recipient must not be sent to again: a hard bounce or a complaint.
    pub fn suppresses(&self) -> bool {
        match self.kind() {
            EventKind::Bounced => self.record.permanent,
            EventKind::Complained => true,
            _ => false,
        }
    }
}

/// What one verified webhook carried.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub events: Vec<Event>,
    /// A single-use value of the signature (Mailgun's token, scoped by the provider's
    /// name: `mailgun:TOKEN`) with the event id it signed: seen before with another
    /// event, the webhook is a replay.
    pub nonce: Option<(String, String)>,
}

/// Why a webhook was refused; each maps to the HTTP status the provider gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("signature: {0}")]
    Unauthorized(String),
    /// Signed, but not for this server (an SNS topic not in the allow-list).
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("too large: {0}")]
    TooLarge(String),
    /// This provider has no such webhook configured.
    #[error("{0}")]
    NotConfigured(String),
    /// Could not be checked now (a signing certificate that could not be fetched): the
    /// provider should deliver again later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl Refused {
    pub fn http_status(&self) -> u32 {
        match self {
            Refused::Unauthorized(_) => 401,
            Refused::Forbidden(_) => 403,
            Refused::Malformed(_) => 400,
            Refused::TooLarge(_) => 413,
            Refused::NotConfigured(_) => 404,
            Refused::Unavailable(_) => 503,
        }
    }
}

/// What one verified webhook request carried.
#[derive(Debug)]
pub enum Received {
    /// Delivery events.
    Events(Batch),
    /// One received message. `nonce`: as in [`Batch::nonce`]. `unknown_recipients_status`:
    /// the answer that refuses mail for nobody here, as this provider understands it.
    Mail { mail: Box<bitmail_proto::v1::InboundMail>, nonce: Option<(String, String)>, unknown_recipients_status: u32 },
    /// Nothing to store (an SNS subscription confirmed, an unsubscription, a
    /// notification BitMail does not use); said why.
    Nothing(String),
}

/// How one provider's webhooks are verified and read.
pub enum Webhook {
    SendGrid {
        events: Option<sendgrid::Verifier>,
        inbound_password: Option<Secret>,
    },
    Mailgun(mailgun::Verifier),
    /// Amazon SES, whose events and received mail both come through SNS.
    Ses(sns::Verifier),
}

impl Webhook {
    /// Verifies and parses one webhook request of `kind`. `provider` is the configured
    /// name, recorded with each event.
    pub async fn receive(
        &self,
        provider: &str,
        kind: WebhookKind,
        headers: &[(String, String)],
        body: &[u8],
        now_ms: u64,
    ) -> Result<Received, Refused> {
        match (self, kind) {
            (Webhook::SendGrid { events: Some(v), .. }, WebhookKind::Events) => {
                v.receive(provider, headers, body, now_ms).map(Received::Events)
            }
            (Webhook::SendGrid { events: None, .. }, WebhookKind::Events) => Err(Refused::NotConfigured(format!(
                "provider {provider:?} has no webhook_public_key: its Event Webhook is not taken"
            ))),
            (Webhook::SendGrid { inbound_password: Some(password), .. }, WebhookKind::Inbound) => {
                crate::inbound::sendgrid::check_basic_auth(headers, password.expose())?;
                let mail = crate::inbound::sendgrid::parse(headers, body, now_ms)?;
                // SendGrid retries any answer but 2xx for days: mail for nobody here is
                // taken and dropped.
                Ok(Received::Mail { mail: Box::new(mail), nonce: None, unknown_recipients_status: 200 })
            }
            (Webhook::SendGrid { inbound_password: None, .. }, WebhookKind::Inbound) => Err(Refused::NotConfigured(
                format!("provider {provider:?} has no inbound_password: its Inbound Parse is not taken"),
            )),
            (Webhook::Mailgun(v), WebhookKind::Events) => v.receive(provider, body, now_ms).map(Received::Events),
            (Webhook::Mailgun(v), WebhookKind::Inbound) => {
                let (mail, token) = crate::inbound::mailgun::parse(v, headers, body, now_ms)?;
                // The token signs one message: used again for another, it is a replay.
                let signed = if mail.message_id.is_empty() { &mail.dedupe_key } else { &mail.message_id };
                let nonce = Some((format!("{provider}:{token}"), format!("inbound:{signed}")));
                // 406: Mailgun takes the refusal and does not retry.
                Ok(Received::Mail { mail: Box::new(mail), nonce, unknown_recipients_status: 406 })
            }
            (Webhook::Ses(v), _) => receive_sns(v, provider, body, now_ms).await,
        }
    }
}

/// An SNS message for an SES provider: a subscription to confirm, SES events, or mail.
async fn receive_sns(v: &sns::Verifier, provider: &str, body: &[u8], now_ms: u64) -> Result<Received, Refused> {
    let message = v.verify(body, now_ms).await?;
    match message.kind {
        sns::SnsKind::SubscriptionConfirmation => {
            v.confirm(&message).await.map_err(Refused::Unavailable)?;
            Ok(Received::Nothing(format!("subscription to {} confirmed", message.topic_arn)))
        }
        sns::SnsKind::UnsubscribeConfirmation => {
            Ok(Received::Nothing(format!("unsubscribed from {}; not confirmed", message.topic_arn)))
        }
        sns::SnsKind::Notification => {
            let content: serde_json::Value = serde_json::from_str(&message.message)
                .map_err(|e| Refused::Malformed(format!("the SNS Message is not SES JSON: {e}")))?;
            if content.get("notificationType").and_then(serde_json::Value::as_str) == Some("Received") {
                let mail = crate::inbound::ses::parse(&content, now_ms)?;
                // SNS retries any answer but 2xx: mail for nobody here is taken and dropped.
                return Ok(Received::Mail { mail: Box::new(mail), nonce: None, unknown_recipients_status: 200 });
            }
            let events = ses::events(provider, &message)?;
            Ok(Received::Events(Batch { events, nonce: None }))
        }
    }
}

/// The value of header `name` (case-insensitive), if present once.
pub(crate) fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
}

/// Checks a signed timestamp (seconds since the epoch) against now.
pub(crate) fn fresh(timestamp_secs: &str, now_ms: u64) -> Result<(), Refused> {
    let secs: u64 = timestamp_secs
        .trim()
        .parse()
        .map_err(|_| Refused::Unauthorized(format!("timestamp {timestamp_secs:?} is not a number of seconds")))?;
    let skew = (secs.saturating_mul(1000)).abs_diff(now_ms);
    if skew > MAX_SKEW.as_millis() as u64 {
        return Err(Refused::Unauthorized(format!(
            "timestamp is {} s from now; at most {} s are allowed",
            skew / 1000,
            MAX_SKEW.as_secs()
        )));
    }
    Ok(())
}

/// Seconds (possibly fractional, as Mailgun sends) to milliseconds.
pub(crate) fn secs_to_ms(v: &serde_json::Value) -> u64 {
    v.as_f64().map_or(0, |s| (s * 1000.0).max(0.0) as u64)
}
