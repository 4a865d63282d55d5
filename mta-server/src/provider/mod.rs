//! Sending providers and what their answers mean.
//!
//! Each provider module turns a [`Message`] into that provider's API call and classifies
//! every possible answer into one [`Outcome`], next to the code that knows the answers.
//! The delivery workers act on the class only (DESIGN.md, "Outcomes and fail-over").

pub mod mailgun;
pub mod sendgrid;
pub mod ses;
pub mod smtp;

use std::time::Duration;

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
