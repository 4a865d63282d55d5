//! Delivery events from the providers' webhooks: verified exactly as each provider signs
//! them, then normalized to one model and matched to BitMail's
//! message id, which every provider carries back (SendGrid `custom_args`, Mailgun `v:`
//! variables, SES's `bitmail_id` email tag). Amazon SES's events come as Amazon SNS
//! notifications: [`sns`] verifies those, [`ses`] reads the events in them.
//!
//! Nothing is stored unless the signature verifies and the timestamp is within
//! [`MAX_SKEW`] of now. Events are deduplicated by the provider's event id (a
//! provider delivering a webhook twice stores it once); a Mailgun token used again for
//! another event is a replay and refused. Which request goes to which verifier is
//! [`crate::webhook`]'s choice.
//!
//! Answers: a bad or missing signature, or a stale timestamp, is 401; a signed body that
//! does not parse is 400. The spool stores each event with its message's status
//! (`GetMessage` shows them); a provider's event id is remembered 3 days.

pub mod mailgun;
pub mod sendgrid;
pub mod ses;
pub mod sns;

use bitmail_proto::v1::EventKind;

use crate::spool::record::EventRecord;
pub use crate::webhook::request::Refused;
pub use crate::webhook::signature::MAX_SKEW;

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

/// Seconds (possibly fractional, as Mailgun sends) to milliseconds.
pub(crate) fn secs_to_ms(v: &serde_json::Value) -> u64 {
    v.as_f64().map_or(0, |s| (s * 1000.0).max(0.0) as u64)
}
