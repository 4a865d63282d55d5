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

use bitmail_proto::v1::EventKind;

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
    /// A single-use value of the signature (Mailgun's token) with the event id it
    /// signed: seen before with another event, the webhook is a replay.
    pub nonce: Option<(String, String)>,
}

/// Why a webhook was refused; each maps to the HTTP status the provider gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("signature: {0}")]
    Unauthorized(String),
    #[error("malformed: {0}")]
    Malformed(String),
    /// Verification could not be done now (an SNS signing certificate could not be
    /// fetched); the provider should retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl Refused {
    pub fn http_status(&self) -> u32 {
        match self {
            Refused::Unauthorized(_) => 401,
            Refused::Malformed(_) => 400,
            Refused::Unavailable(_) => 503,
        }
    }
}

/// How one provider's webhooks are verified and read.
pub enum Webhook {
    SendGrid(sendgrid::Verifier),
    Mailgun(mailgun::Verifier),
}

impl Webhook {
    /// Verifies and parses one webhook request. `provider` is the configured name,
    /// recorded with each event.
    pub fn receive(
        &self,
        provider: &str,
        headers: &[(String, String)],
        body: &[u8],
        now_ms: u64,
    ) -> Result<Batch, Refused> {
        match self {
            Webhook::SendGrid(v) => v.receive(provider, headers, body, now_ms),
            Webhook::Mailgun(v) => v.receive(provider, body, now_ms),
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
