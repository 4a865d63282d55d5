//! SES's answers as [`Outcome`]s, and the log of the SDK's own tries within one attempt.
//!
//! The error type comes from `x-amzn-ErrorType`:
//! - transient: `TooManyRequestsException`, `ThrottlingException`,
//!   `LimitExceededException`, 5xx, a failed connection (the SDK retries these within
//!   the budget first); "Daily message quota exceeded" carries a one-hour hint
//!   ([`DAILY_QUOTA_SET_ASIDE`]), so the circuit, once open, stays open an hour;
//! - provider-refused: 401/403 signature and credential errors, `SendingPausedException`,
//!   `AccountSuspendedException`, `MailFromDomainNotVerifiedException`,
//!   `NotFoundException` and a `BadRequestException` about the configuration set;
//! - `MessageRejected` is read: an unverified identity (the sender, or in the sandbox a
//!   recipient) or a size complaint is refused for this message only (the provider still
//!   takes other mail); anything else is message-rejected, as is any other
//!   `BadRequestException`;
//! - no answer within the budget after a try went out: ambiguous.
//!
//! The SDK retries on its own, so the error it finally returns describes the last try
//! only. A try that sent the request and got no answer may have been accepted; the
//! [`Watch`] interceptor remembers it, and [`with_earlier_tries`] turns a later failure
//! into an ambiguous outcome.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sesv2::config::interceptors::{BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef};
use aws_sdk_sesv2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sesv2::error::{BoxError, ConnectorError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;

use crate::provider::{Outcome, RefusalScope, classify_failure};

/// How long a provider is set aside after SES says its daily sending quota is used up
/// (once the circuit opens): the quota is a rolling 24-hour window, so capacity comes
/// back gradually and an hourly probe finds it.
pub const DAILY_QUOTA_SET_ASIDE: Duration = Duration::from_secs(3600);

/// Error codes of a request SES could not authenticate or authorize.
const CREDENTIAL_ERRORS: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "AccessDeniedException",
];

/// Classifies an answer SES gave: its error `code` (from `x-amzn-ErrorType`), HTTP
/// `status` and `message`.
pub fn classify_answer(code: Option<&str>, status: u16, message: &str) -> Outcome {
    let code_text = code.unwrap_or("unknown error");
    let detail = format!("SES answered {status} {code_text}: {message}");
    let said = message.to_ascii_lowercase();
    match code.unwrap_or("") {
        "TooManyRequestsException" | "ThrottlingException" | "Throttling" | "LimitExceededException" => {
            let daily = said.contains("daily") && said.contains("quota");
            Outcome::Transient { detail, retry_after: daily.then_some(DAILY_QUOTA_SET_ASIDE) }
        }
        "MailFromDomainNotVerifiedException"
        | "SendingPausedException"
        | "AccountSuspendedException"
        | "NotFoundException" => Outcome::ProviderRefused { detail, scope: RefusalScope::Provider },
        c if CREDENTIAL_ERRORS.contains(&c) => Outcome::ProviderRefused { detail, scope: RefusalScope::Provider },
        "MessageRejected" => {
            if said.contains("not verified") || said.contains("did not have authority") || said.contains("sandbox") {
                // An identity this account has not verified: the sender, or in the
                // sandbox a recipient. Another provider may take this message, and
                // this one still takes the others, so it is not set aside.
                Outcome::ProviderRefused { detail, scope: RefusalScope::Message }
            } else if said.contains("length") || said.contains("too large") || said.contains("size") {
                Outcome::ProviderRefused { detail, scope: RefusalScope::Message }
            } else {
                Outcome::MessageRejected { detail }
            }
        }
        "BadRequestException" if said.contains("configuration set") => {
            Outcome::ProviderRefused { detail, scope: RefusalScope::Provider }
        }
        // An invalid address or a malformed message: every provider would refuse it.
        "BadRequestException" => Outcome::MessageRejected { detail },
        _ if status == 401 || status == 403 => Outcome::ProviderRefused { detail, scope: RefusalScope::Provider },
        _ => classify_failure(status, detail, None),
    }
}

/// Whether a connector error is a failed connection (TCP, TLS, DNS): nothing was sent.
fn connect_failure(e: &ConnectorError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(client) = c.downcast_ref::<hyper_util::client::legacy::Error>() {
            return client.is_connect();
        }
        cause = c.source();
    }
    false
}

/// What one SDK try that ended without an answer means.
fn connector_outcome(e: &ConnectorError) -> Outcome {
    let detail = DisplayErrorContext(e).to_string();
    if connect_failure(e) {
        Outcome::Transient { detail: format!("cannot connect to SES: {detail}"), retry_after: None }
    } else if e.is_user() {
        Outcome::ProviderRefused {
            detail: format!("the SES request is invalid: {detail}"),
            scope: RefusalScope::Provider,
        }
    } else {
        Outcome::Ambiguous { detail: format!("the request went out and SES gave no answer: {detail}") }
    }
}

/// Classifies the SDK's final error.
pub(super) fn classify_error(e: &SdkError<SendEmailError>, log: &AttemptLog) -> Outcome {
    match e {
        SdkError::ServiceError(ctx) => {
            let err = ctx.err();
            classify_answer(err.code(), ctx.raw().status().as_u16(), err.message().unwrap_or(""))
        }
        SdkError::ResponseError(ctx) => {
            let status = ctx.raw().status();
            if status.is_success() {
                Outcome::Ambiguous {
                    detail: format!(
                        "SES answered {} with a body that cannot be read: {}",
                        status.as_u16(),
                        DisplayErrorContext(e)
                    ),
                }
            } else {
                classify_answer(None, status.as_u16(), "an answer that cannot be read")
            }
        }
        SdkError::DispatchFailure(d) => match d.as_connector_error() {
            Some(ce) => connector_outcome(ce),
            None => Outcome::Ambiguous { detail: format!("SES request failed: {}", DisplayErrorContext(e)) },
        },
        SdkError::TimeoutError(_) => {
            if log.transmitting() {
                Outcome::Ambiguous { detail: "no answer from SES within the attempt's time budget".into() }
            } else {
                Outcome::Transient {
                    detail: "the attempt's time budget ran out between the SDK's tries; nothing was accepted".into(),
                    retry_after: None,
                }
            }
        }
        SdkError::ConstructionFailure(_) => Outcome::ProviderRefused {
            detail: format!("cannot build the SES request: {}", DisplayErrorContext(e)),
            scope: RefusalScope::Provider,
        },
        _ => Outcome::Ambiguous { detail: format!("SES request failed: {}", DisplayErrorContext(e)) },
    }
}

/// A failure after an earlier try went out unanswered may hide an accepted message.
pub(super) fn with_earlier_tries(outcome: Outcome, log: &AttemptLog) -> Outcome {
    match (&outcome, log.unanswered()) {
        (Outcome::Transient { detail, .. } | Outcome::ProviderRefused { detail, .. }, Some(earlier)) => {
            Outcome::Ambiguous {
                detail: format!("{detail}; an earlier try in this attempt went out without an answer ({earlier})"),
            }
        }
        _ => outcome,
    }
}

/// The SDK's tries within one `send`.
#[derive(Debug, Default)]
pub(super) struct AttemptLog(Mutex<LogState>);

#[derive(Debug, Default)]
struct LogState {
    /// A try is being transmitted and has not ended.
    transmitting: bool,
    /// A try that sent the request and got no answer, if any.
    unanswered: Option<String>,
}

impl AttemptLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        bitmail_runtime::sync::lock(&self.0)
    }

    fn transmitting(&self) -> bool {
        self.lock().transmitting
    }

    fn unanswered(&self) -> Option<String> {
        self.lock().unanswered.clone()
    }
}

/// The interceptor that fills an [`AttemptLog`]; one per call.
#[derive(Debug)]
pub(super) struct Watch(pub(super) Arc<AttemptLog>);

impl Intercept for Watch {
    fn name(&self) -> &'static str {
        "BitMailAttemptLog"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.lock().transmitting = true;
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let mut state = self.0.lock();
        state.transmitting = false;
        if let Some(Err(e)) = context.output_or_error() {
            let unanswered = match e.as_connector_error() {
                Some(ce) => matches!(connector_outcome(ce), Outcome::Ambiguous { .. })
                    .then(|| DisplayErrorContext(ce).to_string()),
                None => e.is_timeout_error().then(|| "timed out".to_owned()),
            };
            if unanswered.is_some() {
                state.unanswered = unanswered;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(code: &str, status: u16, message: &str) -> Outcome {
        classify_answer(Some(code), status, message)
    }

    #[test]
    fn throttling_is_transient_and_a_daily_quota_sets_aside_for_an_hour() {
        for code in ["TooManyRequestsException", "ThrottlingException", "LimitExceededException"] {
            match class(code, 429, "Maximum sending rate exceeded.") {
                Outcome::Transient { retry_after: None, detail } => assert!(detail.contains(code), "{detail}"),
                other => panic!("{code}: {other:?}"),
            }
        }
        assert_eq!(
            class("TooManyRequestsException", 429, "Daily message quota exceeded."),
            Outcome::Transient {
                detail: "SES answered 429 TooManyRequestsException: Daily message quota exceeded.".into(),
                retry_after: Some(DAILY_QUOTA_SET_ASIDE)
            }
        );
    }

    #[test]
    fn account_and_credential_problems_set_the_provider_aside() {
        for (code, status) in [
            ("SendingPausedException", 400),
            ("AccountSuspendedException", 400),
            ("MailFromDomainNotVerifiedException", 400),
            ("NotFoundException", 404),
            ("UnrecognizedClientException", 403),
            ("InvalidSignatureException", 403),
            ("SomethingNew", 403),
        ] {
            assert!(
                matches!(class(code, status, "no"), Outcome::ProviderRefused { scope: RefusalScope::Provider, .. }),
                "{code}"
            );
        }
    }

    #[test]
    fn message_rejected_is_read() {
        let unverified = "Email address is not verified. The following identities failed the check in region \
                          US-EAST-1: eve@other.test";
        assert!(matches!(
            class("MessageRejected", 400, unverified),
            Outcome::ProviderRefused { scope: RefusalScope::Message, .. }
        ));
        assert!(matches!(
            class("MessageRejected", 400, "Email address not verified eve@other.test"),
            Outcome::ProviderRefused { scope: RefusalScope::Message, .. }
        ));
        assert!(matches!(
            class("MessageRejected", 400, "Message length is more than 41943040 bytes long: 'x'."),
            Outcome::ProviderRefused { scope: RefusalScope::Message, .. }
        ));
        assert!(matches!(class("MessageRejected", 400, "Illegal header 'X'."), Outcome::MessageRejected { .. }));
        assert!(matches!(
            class("BadRequestException", 400, "Missing final '@domain'"),
            Outcome::MessageRejected { .. }
        ));
        assert!(matches!(
            class("BadRequestException", 400, "Configuration set <x> does not exist."),
            Outcome::ProviderRefused { scope: RefusalScope::Provider, .. }
        ));
    }

    #[test]
    fn server_errors_are_transient() {
        assert!(matches!(class("InternalFailure", 500, "oops"), Outcome::Transient { .. }));
        assert!(matches!(classify_answer(None, 503, ""), Outcome::Transient { .. }));
        assert!(matches!(classify_answer(None, 400, "?"), Outcome::MessageRejected { .. }));
    }

    #[test]
    fn a_failure_after_an_unanswered_try_is_ambiguous() {
        let log = AttemptLog::default();
        let transient = Outcome::Transient { detail: "503".into(), retry_after: None };
        assert_eq!(with_earlier_tries(transient.clone(), &log), transient);
        log.lock().unanswered = Some("connection reset".into());
        match with_earlier_tries(transient, &log) {
            Outcome::Ambiguous { detail } => assert!(detail.contains("connection reset"), "{detail}"),
            other => panic!("{other:?}"),
        }
        let rejected = Outcome::MessageRejected { detail: "bad".into() };
        assert_eq!(with_earlier_tries(rejected.clone(), &log), rejected);
    }
}
