//! What the spool stores, encoded with prost: compact, fast, and able to gain fields
//! without a migration (unknown fields are skipped, missing ones take defaults).
//!
//! These are storage records, not the gRPC wire types: the public contract and the
//! on-disk format change for different reasons.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::events::EventDetails;
use crate::message::{Attachment, Mailbox, Message};
use crate::provider::{Outcome, OutcomeClass};

pub fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

pub use bitmail_runtime::time::now_ms;

/// Where a message is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum State {
    Queued = 0,
    Sending = 1,
    Sent = 2,
    Deferred = 3,
    Failed = 4,
}

/// How an attempt ended. `InProgress` is stored before the provider is called; one
/// still there after a restart means the process died during the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AttemptOutcome {
    InProgress = 0,
    Accepted = 1,
    Transient = 2,
    ProviderRefused = 3,
    MessageRejected = 4,
    Ambiguous = 5,
}

impl From<OutcomeClass> for AttemptOutcome {
    fn from(c: OutcomeClass) -> Self {
        match c {
            OutcomeClass::Accepted => AttemptOutcome::Accepted,
            OutcomeClass::Transient => AttemptOutcome::Transient,
            OutcomeClass::ProviderRefused => AttemptOutcome::ProviderRefused,
            OutcomeClass::MessageRejected => AttemptOutcome::MessageRejected,
            OutcomeClass::Ambiguous => AttemptOutcome::Ambiguous,
        }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Attempt {
    #[prost(string, tag = "1")]
    pub provider: String,
    #[prost(uint64, tag = "2")]
    pub started_at_ms: u64,
    #[prost(uint32, tag = "3")]
    pub duration_ms: u32,
    #[prost(enumeration = "AttemptOutcome", tag = "4")]
    pub outcome: i32,
    #[prost(string, tag = "5")]
    pub provider_message_id: String,
    #[prost(string, tag = "6")]
    pub detail: String,
}

/// What is known of one message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(enumeration = "State", tag = "2")]
    pub state: i32,
    /// The provider that accepted it, and its id there.
    #[prost(string, tag = "3")]
    pub provider: String,
    #[prost(string, tag = "4")]
    pub provider_message_id: String,
    /// Why it failed, or the last error while deferred.
    #[prost(string, tag = "5")]
    pub error: String,
    #[prost(uint64, tag = "6")]
    pub submitted_at_ms: u64,
    /// When the next delivery round is due; 0 once sent or failed.
    #[prost(uint64, tag = "7")]
    pub due_ms: u64,
    #[prost(message, repeated, tag = "8")]
    pub attempts: Vec<Attempt>,
    /// An attempt whose answer never came was followed by another attempt.
    #[prost(bool, tag = "9")]
    pub possible_duplicate: bool,
    #[prost(uint32, tag = "10")]
    pub rounds: u32,
    /// Recipients (lowercased) already delivered to by a call of an attempt that
    /// then failed part-way; later attempts leave them out.
    #[prost(string, repeated, tag = "11")]
    pub sent_to: Vec<String>,
    /// What the providers reported after taking it. Only the spool's writer appends
    /// here; a delivery round's update keeps what is stored.
    #[prost(message, repeated, tag = "12")]
    pub events: Vec<EventRecord>,
    /// The tenant the message was sent for; empty in statuses stored before tenants
    /// existed, which belong to the default tenant ([`Status::tenant`]).
    #[prost(string, tag = "13")]
    pub tenant: String,
    /// When the message was scheduled for (`SubmitRequest.not_before_unix_ms`); 0: at
    /// once. Its maximum age counts from then.
    #[prost(uint64, tag = "14")]
    pub not_before_ms: u64,
    /// The message's metadata (SendGrid `custom_args`, Mailgun `v:`), kept after its body
    /// is dropped so that its logged events can name them.
    #[prost(btree_map = "string, string", tag = "15")]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// How far one webhook got, on this node: every event log entry up to `after_seq` was
/// delivered (or given up).
#[derive(Clone, PartialEq, prost::Message)]
pub struct OutboxState {
    #[prost(uint64, tag = "1")]
    pub after_seq: u64,
    /// Failed attempts in a row, and when the first of them was (0: none failing).
    #[prost(uint32, tag = "2")]
    pub failures: u32,
    #[prost(uint64, tag = "3")]
    pub failing_since_ms: u64,
    /// When the next attempt may start.
    #[prost(uint64, tag = "4")]
    pub next_attempt_ms: u64,
    #[prost(uint64, tag = "5")]
    pub last_attempt_ms: u64,
    /// The last answer: an HTTP status, or 0 for none (connection failed, timeout).
    #[prost(uint32, tag = "6")]
    pub last_status: u32,
    #[prost(string, tag = "7")]
    pub last_error: String,
    #[prost(uint64, tag = "8")]
    pub delivered: u64,
    #[prost(uint64, tag = "9")]
    pub dropped: u64,
}

/// One entry of a tenant's event log: a state BitMail reached (`queued`, `sent`,
/// `deferred`, `failed`; source `bitmail`) or a provider's event (`delivered`,
/// `bounced`, ...; source the provider).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LoggedEvent {
    #[prost(string, tag = "1")]
    pub tenant: String,
    #[prost(string, tag = "2")]
    pub message_id: String,
    #[prost(string, tag = "3")]
    pub event: String,
    #[prost(string, tag = "4")]
    pub source: String,
    #[prost(string, tag = "5")]
    pub recipient: String,
    #[prost(uint64, tag = "6")]
    pub at_ms: u64,
    #[prost(string, tag = "7")]
    pub detail: String,
    #[prost(bool, tag = "8")]
    pub permanent: bool,
    #[prost(btree_map = "string, string", tag = "9")]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// When it was stored (`at_ms` is when it happened, by the provider's clock).
    #[prost(uint64, tag = "10")]
    pub logged_ms: u64,
}

/// A delivery event, as stored with its message's status.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EventRecord {
    /// A `bitmail.v1.EventKind` value.
    #[prost(int32, tag = "1")]
    pub kind: i32,
    #[prost(string, tag = "2")]
    pub recipient: String,
    #[prost(uint64, tag = "3")]
    pub at_ms: u64,
    #[prost(string, tag = "4")]
    pub provider: String,
    #[prost(string, tag = "5")]
    pub event_id: String,
    #[prost(string, tag = "6")]
    pub detail: String,
    #[prost(bool, tag = "7")]
    pub permanent: bool,
}

impl From<EventDetails> for EventRecord {
    fn from(e: EventDetails) -> Self {
        EventRecord {
            kind: e.kind,
            recipient: e.recipient,
            at_ms: e.at_ms,
            provider: e.provider,
            event_id: e.event_id,
            detail: e.detail,
            permanent: e.permanent,
        }
    }
}

/// An address Submit refuses as a recipient.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SuppressionRecord {
    #[prost(string, tag = "1")]
    pub reason: String,
    #[prost(string, tag = "2")]
    pub source: String,
    #[prost(uint64, tag = "3")]
    pub created_ms: u64,
    /// 0: never.
    #[prost(uint64, tag = "4")]
    pub expires_ms: u64,
    /// The tenant it is for; empty: every tenant (hard bounces, entries stored before
    /// tenants existed).
    #[prost(string, tag = "5")]
    pub tenant: String,
}

impl SuppressionRecord {
    pub fn active(&self, now_ms: u64) -> bool {
        self.expires_ms == 0 || now_ms < self.expires_ms
    }
}

impl Status {
    pub fn new(id: String, tenant: String, submitted_at_ms: u64) -> Self {
        Status {
            id,
            tenant,
            state: State::Queued as i32,
            submitted_at_ms,
            due_ms: submitted_at_ms,
            ..Default::default()
        }
    }

    /// The tenant the message was sent for.
    pub fn tenant(&self) -> &str {
        if self.tenant.is_empty() { crate::tenant::registry::DEFAULT_TENANT } else { &self.tenant }
    }

    pub fn is_final(&self) -> bool {
        matches!(self.state(), State::Sent | State::Failed)
    }

    /// Sent for good: `provider` took it under `provider_message_id`.
    pub fn sent(&mut self, provider: &str, provider_message_id: String) {
        self.state = State::Sent as i32;
        self.provider = provider.to_owned();
        self.provider_message_id = provider_message_id;
        self.error.clear();
        self.due_ms = 0;
    }

    /// Failed for good, for `error`.
    pub fn fail(&mut self, error: impl Into<String>) {
        self.state = State::Failed as i32;
        self.error = error.into();
        self.due_ms = 0;
    }

    /// Not delivered this round, for `error`; the next round is due at `due_ms`.
    pub fn defer(&mut self, error: String, due_ms: u64) {
        self.state = State::Deferred as i32;
        self.error = error;
        self.due_ms = due_ms;
    }

    /// Back on the schedule, due at `due_ms` (an operator's retry).
    pub fn requeue(&mut self, due_ms: u64) {
        self.state = State::Queued as i32;
        self.error.clear();
        self.due_ms = due_ms;
    }

    /// An attempt at `provider` starts: stored before the provider is called. It follows
    /// an attempt that never got its answer, so this one may duplicate it.
    pub fn start_attempt(&mut self, provider: &str, now_ms: u64) {
        if self.attempts.iter().any(|a| a.outcome() == AttemptOutcome::Ambiguous) {
            self.possible_duplicate = true;
        }
        self.state = State::Sending as i32;
        self.attempts.push(Attempt {
            provider: provider.to_owned(),
            started_at_ms: now_ms,
            outcome: AttemptOutcome::InProgress as i32,
            ..Default::default()
        });
    }

    /// The attempt started last ended as `outcome` after `took`.
    pub fn end_attempt(&mut self, outcome: &Outcome, took: Duration) {
        let Some(attempt) = self.attempts.last_mut() else { return };
        attempt.duration_ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
        attempt.outcome = AttemptOutcome::from(outcome.class()) as i32;
        attempt.detail = outcome.detail().to_owned();
        match outcome {
            Outcome::Accepted { provider_message_id } => attempt.provider_message_id = provider_message_id.clone(),
            Outcome::PartlyAccepted { sent_to, provider_message_id, .. } => {
                attempt.provider_message_id = provider_message_id.clone();
                attempt.detail = format!("accepted for {} recipients, then: {}", sent_to.len(), outcome.detail());
            }
            _ => {}
        }
    }

    /// Attempts left in progress by a process that died during the call may have been
    /// accepted: they count as ambiguous.
    pub fn interrupted_attempts_are_ambiguous(&mut self) {
        for attempt in &mut self.attempts {
            if attempt.outcome() == AttemptOutcome::InProgress {
                attempt.outcome = AttemptOutcome::Ambiguous as i32;
                attempt.detail = "the process stopped during this attempt".into();
            }
        }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MailboxRecord {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, tag = "2")]
    pub email: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderRecord {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// A message body as spooled.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MessageRecord {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub from: Option<MailboxRecord>,
    #[prost(message, repeated, tag = "3")]
    pub to: Vec<MailboxRecord>,
    #[prost(message, repeated, tag = "4")]
    pub cc: Vec<MailboxRecord>,
    #[prost(message, repeated, tag = "5")]
    pub bcc: Vec<MailboxRecord>,
    #[prost(message, repeated, tag = "6")]
    pub reply_to: Vec<MailboxRecord>,
    #[prost(string, tag = "7")]
    pub subject: String,
    #[prost(string, optional, tag = "8")]
    pub text: Option<String>,
    #[prost(string, optional, tag = "9")]
    pub html: Option<String>,
    #[prost(message, repeated, tag = "10")]
    pub headers: Vec<HeaderRecord>,
    #[prost(uint64, tag = "11")]
    pub submitted_at_ms: u64,
    #[prost(message, repeated, tag = "12")]
    pub attachments: Vec<AttachmentRecord>,
    #[prost(string, repeated, tag = "13")]
    pub tags: Vec<String>,
    #[prost(btree_map = "string, string", tag = "14")]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// The client's own MIME (SMTP submission), sent whole where a provider takes MIME.
    #[prost(bytes = "vec", optional, tag = "15")]
    pub raw: Option<Vec<u8>>,
    /// Submitted again on this node after an ambiguous failure on another
    /// (`SubmitRequest.possible_duplicate`): its status starts flagged.
    #[prost(bool, tag = "16")]
    pub possible_duplicate: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AttachmentRecord {
    #[prost(string, tag = "1")]
    pub filename: String,
    #[prost(string, tag = "2")]
    pub content_type: String,
    #[prost(bytes = "vec", tag = "3")]
    pub content: Vec<u8>,
    #[prost(string, optional, tag = "4")]
    pub content_id: Option<String>,
}

fn mailbox_to(m: &Mailbox) -> MailboxRecord {
    MailboxRecord { name: m.name.clone(), email: m.email.clone() }
}

fn mailbox_from(m: MailboxRecord) -> Mailbox {
    Mailbox { name: m.name, email: m.email }
}

impl From<&Message> for MessageRecord {
    fn from(m: &Message) -> Self {
        let list = |l: &[Mailbox]| l.iter().map(mailbox_to).collect();
        MessageRecord {
            id: m.id.clone(),
            from: Some(mailbox_to(&m.from)),
            to: list(&m.to),
            cc: list(&m.cc),
            bcc: list(&m.bcc),
            reply_to: list(&m.reply_to),
            subject: m.subject.clone(),
            text: m.text.clone(),
            html: m.html.clone(),
            headers: m.headers.iter().map(|(n, v)| HeaderRecord { name: n.clone(), value: v.clone() }).collect(),
            submitted_at_ms: to_ms(m.submitted_at),
            attachments: m
                .attachments
                .iter()
                .map(|a| AttachmentRecord {
                    filename: a.filename.clone(),
                    content_type: a.content_type.clone(),
                    content: a.content.clone(),
                    content_id: a.content_id.clone(),
                })
                .collect(),
            tags: m.tags.clone(),
            metadata: m.metadata.clone(),
            raw: m.raw.as_deref().map(<[u8]>::to_vec),
            possible_duplicate: false,
        }
    }
}

impl From<MessageRecord> for Message {
    fn from(r: MessageRecord) -> Self {
        let list = |l: Vec<MailboxRecord>| l.into_iter().map(mailbox_from).collect();
        Message {
            id: r.id,
            from: r.from.map(mailbox_from).unwrap_or(Mailbox { name: None, email: String::new() }),
            to: list(r.to),
            cc: list(r.cc),
            bcc: list(r.bcc),
            reply_to: list(r.reply_to),
            subject: r.subject,
            text: r.text,
            html: r.html,
            headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            attachments: r
                .attachments
                .into_iter()
                .map(|a| Attachment {
                    filename: a.filename,
                    content_type: a.content_type,
                    content: a.content,
                    content_id: a.content_id,
                })
                .collect(),
            tags: r.tags,
            metadata: r.metadata,
            submitted_at: from_ms(r.submitted_at_ms),
            raw: r.raw.map(std::sync::Arc::from),
            already_sent_to: Default::default(),
        }
    }
}
