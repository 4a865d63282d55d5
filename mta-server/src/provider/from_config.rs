//! One provider from its `[[providers]]` entry: the config's plain numbers become the
//! settings each provider module takes. The server and the operator's provider check
//! build providers the same way, here.

use std::sync::Arc;
use std::time::Duration;

use super::mailgun::MailgunSettings;
use super::sendgrid::SendGridSettings;
use super::ses::SesSettings;
use super::smtp::{SmtpSettings, SmtpSetupError};
use super::{Mailgun, Provider, SendGrid, Ses, Smtp};
use crate::config::ProviderConfig;

/// Why a provider could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The HTTP client of an HTTP API provider.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// The SMTP transport (TLS parameters, the extra root certificate).
    #[error(transparent)]
    Smtp(#[from] SmtpSetupError),
    /// The SMTP relay's `ca_file` could not be read.
    #[error(transparent)]
    CaFile(#[from] std::io::Error),
}

/// Builds one provider from its configuration.
pub fn from_config(config: &ProviderConfig) -> Result<Arc<dyn Provider>, BuildError> {
    Ok(match config {
        ProviderConfig::Sendgrid(c) => Arc::new(SendGrid::new(SendGridSettings {
            name: c.name.clone(),
            base_url: c.base_url.clone(),
            api_key: c.api_key.clone(),
            sandbox: c.sandbox,
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            timeout: Duration::from_millis(c.timeout_ms),
        })?),
        ProviderConfig::Smtp(c) => Arc::new(Smtp::new(SmtpSettings {
            name: c.name.clone(),
            host: c.host.clone(),
            port: c.port(),
            security: c.security,
            username: c.username.clone(),
            password: c.password.clone(),
            extra_root_pem: c.ca_file.as_ref().map(std::fs::read).transpose()?,
            timeout: Duration::from_millis(c.timeout_ms),
            max_connections: c.max_connections,
            max_recipients_per_call: c.max_recipients_per_call,
        })?),
        ProviderConfig::Ses(c) => Arc::new(Ses::new(SesSettings {
            name: c.name.clone(),
            region: c.region.clone(),
            access_key_id: c.access_key_id.clone(),
            secret_access_key: c.secret_access_key.clone(),
            session_token: c.session_token.clone(),
            endpoint_url: c.endpoint_url.clone(),
            configuration_set: c.configuration_set.clone(),
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            timeout: Duration::from_millis(c.timeout_ms),
            max_attempts: c.max_attempts,
        })),
        ProviderConfig::Mailgun(c) => Arc::new(Mailgun::new(MailgunSettings {
            name: c.name.clone(),
            base_url: c.base_url.clone(),
            domain: c.domain.clone(),
            api_key: c.api_key.clone(),
            test_mode: c.test_mode,
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            timeout: Duration::from_millis(c.timeout_ms),
        })?),
    })
}
