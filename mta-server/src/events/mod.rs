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
//! [`crate::receive`]'s choice; what verifiers share is in [`crate::webhook`].
//!
//! Events are values of this module ([`Event`], [`EventDetails`]); the spool converts
//! them to what it stores (`spool::record::EventRecord`), so this module does not import
//! the spool.
//!
//! Answers: a bad or missing signature, or a stale timestamp, is 401; a signed body that
//! does not parse is 400. The spool stores each event with its message's status
//! (`GetMessage` shows them); a provider's event id is remembered 3 days.

pub mod mailgun;
pub mod sendgrid;
pub mod ses;
pub mod sns;

use bitmail_proto::v1::EventKind;

pub use crate::webhook::MAX_SKEW;
pub use crate::webhook::Refused;

/// A normalized event for one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// BitMail's id of the message the event is about.
    pub message_id: String,
    pub record: EventDetails,
}

/// What a provider reported, normalized. The spool stores it with the message's status
/// as it is (`spool::record::EventRecord`, converted on the spool's side).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventDetails {
    /// A `bitmail.v1.EventKind` value.
    pub kind: i32,
    /// Lowercased; empty when the provider named none.
    pub recipient: String,
    pub at_ms: u64,
    /// The configured name of the provider that reported it.
    pub provider: String,
    /// The provider's id of the event, by which a webhook delivered twice is stored once.
    pub event_id: String,
    pub detail: String,
    /// A hard bounce (for [`EventKind::Bounced`]).
    pub permanent: bool,
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
