//! Any SMTP relay as a provider, through lettre: STARTTLS (port 587), implicit TLS (port
//! 465), or plain SMTP for a relay on the same host; optional AUTH; a pool of
//! connections reused across messages.
//!
//! The MIME message comes from `provider::mime`; Bcc recipients are in the envelope only.
//!
//! SMTP replies are classified by code: 4xx transient; 530/534/535/538 (authentication)
//! provider-refused; 552 (too large) refused for this message; other 5xx
//! message-rejected. A timeout is ambiguous (the DATA may have been accepted); a failure
//! to connect or to negotiate TLS is transient or provider-refused.

use std::time::Duration;

use bitmail_runtime::config::Secret;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{PoolConfig, response::Severity};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{Outcome, Provider, RefusalScope};
use crate::message::Message;

/// Configured in the provider's section; kept here under its old path.
pub use crate::config::SmtpSecurity;

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// A PEM certificate to trust besides the system's (a relay with its own CA).
    pub extra_root_pem: Option<Vec<u8>>,
    pub timeout: Duration,
    pub max_connections: u32,
    /// RCPT TO commands per transaction; more recipients take several transactions.
    pub max_recipients_per_call: usize,
}

pub struct Smtp {
    name: String,
    max_recipients_per_call: usize,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

#[derive(Debug, thiserror::Error)]
#[error("SMTP provider setup: {0}")]
pub struct SmtpSetupError(String);

impl Smtp {
    pub fn new(settings: SmtpSettings) -> Result<Self, SmtpSetupError> {
        let setup = |e: lettre::transport::smtp::Error| SmtpSetupError(e.to_string());
        let tls = match settings.security {
            SmtpSecurity::None => Tls::None,
            security => {
                let mut params = TlsParameters::builder(settings.host.clone());
                if let Some(pem) = &settings.extra_root_pem {
                    params = params.add_root_certificate(Certificate::from_pem(pem).map_err(setup)?);
                }
                let params = params.build_rustls().map_err(setup)?;
                if security == SmtpSecurity::Starttls { Tls::Required(params) } else { Tls::Wrapper(params) }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone())
            .port(settings.port)
            .tls(tls)
            .timeout(Some(settings.timeout))
            .pool_config(PoolConfig::new().max_size(settings.max_connections));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Self {
            name: settings.name,
            max_recipients_per_call: settings.max_recipients_per_call,
            transport: builder.build(),
        })
    }
}

/// Whether a TLS handshake failed (an unknown CA, a wrong host name): lettre reports
/// rustls's error as a connection error, so look for it down the chain of causes.
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && inner.is::<rustls::Error>()
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Classifies a failed SMTP exchange.
fn classify(e: &lettre::transport::smtp::Error) -> Outcome {
    let detail = format!("SMTP relay: {e}");
    if let Some(code) = e.status() {
        let n =
            u16::from(code.severity as u8) * 100 + u16::from(code.category as u8) * 10 + u16::from(code.detail as u8);
        return match code.severity {
            Severity::TransientNegativeCompletion => Outcome::Transient { detail, retry_after: None },
            _ if matches!(n, 530 | 534 | 535 | 538) => {
                Outcome::ProviderRefused { detail, scope: RefusalScope::Provider }
            }
            _ if n == 552 => Outcome::ProviderRefused { detail, scope: RefusalScope::Message },
            Severity::PermanentNegativeCompletion => Outcome::MessageRejected { detail },
            _ => Outcome::Ambiguous { detail },
        };
    }
    if e.is_timeout() {
        Outcome::Ambiguous { detail }
    } else if e.is_tls() || tls_failure(e) {
        Outcome::ProviderRefused { detail, scope: RefusalScope::Provider }
    } else {
        // Connection refused or reset, unexpected reply: nothing was accepted.
        Outcome::Transient { detail, retry_after: None }
    }
}

#[async_trait::async_trait]
impl Provider for Smtp {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, message: &Message) -> Outcome {
        let formatted = match super::mime::bytes(message) {
            Ok(m) => m,
            Err(detail) => {
                return Outcome::MessageRejected { detail: format!("cannot build the MIME message: {detail}") };
            }
        };
        let from = message.from.email.parse::<lettre::Address>().ok();
        super::in_batches(message, self.max_recipients_per_call, |batch| {
            let formatted = &formatted;
            let envelope = batch
                .iter()
                .map(|m| m.email.parse::<lettre::Address>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())
                .and_then(|to| Envelope::new(from.clone(), to).map_err(|e| e.to_string()));
            async move {
                let envelope = match envelope {
                    Ok(e) => e,
                    Err(detail) => return Outcome::MessageRejected { detail: format!("envelope: {detail}") },
                };
                match self.transport.send_raw(&envelope, formatted).await {
                    Ok(response) => Outcome::Accepted {
                        // Relays usually say their queue id in the reply ("250 2.0.0 Ok: queued as 4Bx...").
                        provider_message_id: response.message().collect::<Vec<_>>().join(" "),
                    },
                    Err(e) => classify(&e),
                }
            }
        })
        .await
    }
}
