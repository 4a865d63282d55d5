//! Sending providers and what their answers mean.
//!
//! Each provider module turns a [`Message`] into that provider's API call and classifies
//! every possible answer into one [`Outcome`], next to the code that knows the answers.
//! [`from_config`] builds any of them from its `[[providers]]` entry.
//!
//! The delivery round acts on the class only:
//! - accepted: sent; the provider's id is recorded;
//! - transient (connection refused, 429, 5xx): the next provider now; counts as a failure;
//! - provider-refused, scope [`RefusalScope::Provider`] (bad credentials, account paused,
//!   401/403, a 404 from a wrong base URL or domain): the next provider now; the provider
//!   is set aside at once for `refused_cool_down`;
//! - provider-refused, scope [`RefusalScope::Message`] (413, too large for this
//!   provider): the next provider now; health unchanged;
//! - message-rejected (400: the message itself is at fault): failed with the provider's
//!   words, no other provider is tried; a healthy answer;
//! - ambiguous (the request went out, no answer): per `delivery.ambiguous`.
//!
//! `classify_failure` and `classify_transport_error` hold this mapping for the HTTP API
//! providers. A provider that takes a limited number of recipients per call (an SMTP
//! relay's `max_recipients_per_call`, SES's 50) sends through `in_batches`, each call
//! with the whole header and its own envelope; a call failing after others were
//! accepted is [`Outcome::PartlyAccepted`], and the round stores the reached recipients
//! (`sent_to`) so that no later attempt, at any provider, sends to them again.

mod from_config;
pub mod mailgun;
pub(crate) mod metered;
pub(crate) mod mime;
pub mod sendgrid;
pub mod ses;
pub mod smtp;

use std::time::Duration;

pub use from_config::{BuildError, from_config};
pub use mailgun::Mailgun;
pub use sendgrid::SendGrid;
pub use ses::Ses;
pub use smtp::Smtp;

use crate::message::Message;

/// How one provider call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider took the message; it carries the provider's own id for it.
    Accepted { provider_message_id: String },
    /// Nothing was accepted and trying again (here later, or elsewhere now) may work:
    /// connection refused, timeout before sending, 429, 5xx.
    Transient { detail: String, retry_after: Option<Duration> },
    /// This provider will not take mail now (bad credentials, unverified sender, account
    /// paused), or not this message (too large for it). Another provider may.
    ProviderRefused { detail: String, scope: RefusalScope },
    /// The message itself is at fault and every provider would refuse it: do not retry.
    MessageRejected { detail: String },
    /// The request was sent and no answer came: the provider may have accepted it.
    Ambiguous { detail: String },
    /// The provider takes a limited number of recipients per call: the first calls
    /// were accepted for `sent_to` (lowercased addresses), then a call ended as `then`.
    /// Later attempts must leave `sent_to` out.
    PartlyAccepted { sent_to: Vec<String>, provider_message_id: String, then: Box<Outcome> },
}

/// What a [`Outcome::ProviderRefused`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalScope {
    /// The provider refuses everything until an operator acts (credentials, account).
    Provider,
    /// Only this message (for example over this provider's size limit).
    Message,
}

impl Outcome {
    pub fn class(&self) -> OutcomeClass {
        match self {
            Outcome::Accepted { .. } => OutcomeClass::Accepted,
            Outcome::Transient { .. } => OutcomeClass::Transient,
            Outcome::ProviderRefused { .. } => OutcomeClass::ProviderRefused,
            Outcome::MessageRejected { .. } => OutcomeClass::MessageRejected,
            Outcome::Ambiguous { .. } => OutcomeClass::Ambiguous,
            Outcome::PartlyAccepted { then, .. } => then.class(),
        }
    }

    /// What the provider said, when it did not accept.
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Accepted { .. } => "",
            Outcome::Transient { detail, .. }
            | Outcome::ProviderRefused { detail, .. }
            | Outcome::MessageRejected { detail }
            | Outcome::Ambiguous { detail } => detail,
            Outcome::PartlyAccepted { then, .. } => then.detail(),
        }
    }
}

/// The class of an [`Outcome`], without its data: what schedulers learn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeClass {
    Accepted,
    Transient,
    ProviderRefused,
    MessageRejected,
    Ambiguous,
}

/// A sending provider. Held as `Arc<dyn Provider>` and called concurrently.
///
/// `send` makes one attempt (it does not retry on its own) within the provider's
/// configured time budget and never panics or errors: every failure is an [`Outcome`].
/// It is cancel-safe in the sense that dropping the future sends nothing further, but a
/// request already written may still have been accepted by the provider.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The operator's name for this provider, unique in the configuration.
    fn name(&self) -> &str;

    /// Hands `message` to the provider once.
    async fn send(&self, message: &Message) -> Outcome;

    /// The largest message the provider documents taking, in bytes as sent
    /// ([`Message::wire_bytes`]); `None` when it documents none (an SMTP relay says so
    /// in its answer).
    fn max_message_bytes(&self) -> Option<usize> {
        None
    }
}

/// Sends `message` in calls of at most `per_call` recipients, one after the other,
/// through `send_batch` (which gets the envelope of one call). All accepted: the
/// provider's ids joined by spaces. A call that fails after others were accepted:
/// [`Outcome::PartlyAccepted`], so that no recipient is sent the message twice.
pub(crate) async fn in_batches<'m, F, Fut>(message: &'m Message, per_call: usize, mut send_batch: F) -> Outcome
where
    F: FnMut(Vec<&'m crate::message::Mailbox>) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let mut sent_to = Vec::new();
    let mut ids = Vec::new();
    for batch in message.envelope_batches(per_call) {
        let emails: Vec<String> = batch.iter().map(|m| m.email.to_ascii_lowercase()).collect();
        match send_batch(batch).await {
            Outcome::Accepted { provider_message_id } => {
                ids.push(provider_message_id);
                sent_to.extend(emails);
            }
            failed if sent_to.is_empty() => return failed,
            failed => {
                return Outcome::PartlyAccepted { sent_to, provider_message_id: ids.join(" "), then: Box::new(failed) };
            }
        }
    }
    Outcome::Accepted { provider_message_id: ids.join(" ") }
}

/// The HTTP client of an HTTP API provider: rustls, a connect timeout, and a budget
/// for the whole call.
pub(crate) fn http_client(connect_timeout: Duration, timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder().connect_timeout(connect_timeout).timeout(timeout).build()
}

/// Classifies an HTTP answer that is not a success by its status, as
/// ../shared/PROVIDERS.md ("Classification") says; `detail` is the provider's own words.
pub(crate) fn classify_failure(status: u16, detail: String, retry_after: Option<Duration>) -> Outcome {
    match status {
        // The provider validated the message and refuses it: every provider would.
        400 => Outcome::MessageRejected { detail },
        401 | 403 => Outcome::ProviderRefused { detail, scope: RefusalScope::Provider },
        413 => Outcome::ProviderRefused { detail, scope: RefusalScope::Message },
        429 => Outcome::Transient { detail, retry_after },
        500..=599 => Outcome::Transient { detail, retry_after: None },
        // Anything else (404 from a wrong base URL or domain, 405, ...) is a setup
        // problem on our side of this provider, not the message's fault.
        _ => Outcome::ProviderRefused { detail, scope: RefusalScope::Provider },
    }
}

/// Classifies a reqwest transport error: before the request went out it is transient;
/// once it may have been sent, it is ambiguous.
pub(crate) fn classify_transport_error(e: &reqwest::Error) -> Outcome {
    if e.is_connect() || e.is_builder() {
        Outcome::Transient { detail: format!("cannot connect: {e}"), retry_after: None }
    } else if e.is_timeout() {
        Outcome::Ambiguous { detail: format!("no answer in time after sending: {e}") }
    } else {
        Outcome::Ambiguous { detail: format!("connection failed during the request: {e}") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Mailbox;

    #[tokio::test]
    async fn batches_report_what_was_delivered_before_a_call_failed() {
        let mut message = crate::scheduler::tests::message();
        let mb = |e: &str| Mailbox { name: None, email: e.into() };
        message.to = vec![mb("a@x.org"), mb("b@x.org"), mb("c@x.org")];
        message.bcc = vec![mb("d@x.org"), mb("B@x.org")];

        let mut calls = Vec::new();
        let all = in_batches(&message, 2, |batch| {
            calls.push(batch.iter().map(|m| m.email.clone()).collect::<Vec<_>>());
            let n = calls.len();
            async move { Outcome::Accepted { provider_message_id: format!("id{n}") } }
        })
        .await;
        assert_eq!(all, Outcome::Accepted { provider_message_id: "id1 id2".into() });
        assert_eq!(calls, [vec!["a@x.org", "b@x.org"], vec!["c@x.org", "d@x.org"]]);

        let mut n = 0;
        let partly = in_batches(&message, 2, |_| {
            n += 1;
            let first = n == 1;
            async move {
                if first {
                    Outcome::Accepted { provider_message_id: "id1".into() }
                } else {
                    Outcome::Transient { detail: "421 try later".into(), retry_after: None }
                }
            }
        })
        .await;
        assert_eq!(partly.class(), OutcomeClass::Transient);
        let Outcome::PartlyAccepted { sent_to, provider_message_id, .. } = partly else { panic!("{partly:?}") };
        assert_eq!((sent_to, provider_message_id.as_str()), (vec!["a@x.org".to_owned(), "b@x.org".into()], "id1"));

        // The next attempt leaves the delivered ones out, whatever their case.
        message.already_sent_to = ["a@x.org".to_owned(), "b@x.org".into()].into();
        let rest: Vec<Vec<&str>> =
            message.envelope_batches(2).iter().map(|b| b.iter().map(|m| m.email.as_str()).collect()).collect();
        assert_eq!(rest, [vec!["c@x.org", "d@x.org"]]);

        // A first call that fails is that failure, nothing more.
        let failed = in_batches(&message, 2, |_| async { Outcome::MessageRejected { detail: "550".into() } }).await;
        assert_eq!(failed, Outcome::MessageRejected { detail: "550".into() });
    }
}
