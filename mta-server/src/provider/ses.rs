//! Amazon SES v2 (`SendEmail`, `POST /v2/email/outbound-emails`) through aws-sdk-sesv2.
//!
//! The SDK client is built directly from config (a pinned `BehaviorVersion`, the region,
//! static credentials, an optional `endpoint_url` for emulators and tests): no
//! `aws-config`, no environment lookups, no credential chain.
//!
//! - `content.rs`: SES `Simple` content when it can express the message, `Raw` MIME
//!   (built by lettre) otherwise. BitMail's id rides as the `EmailTags` entry
//!   `bitmail_id` (SES events carry it back in `mail.tags`) and the `X-BitMail-Id` header.
//! - `classify.rs`: every answer of the SDK as one [`Outcome`], and the per-call log of
//!   the SDK's own tries that tells "never sent" from "sent, no answer".
//!
//! Time budget: the SDK retries throttling, 5xx and connection failures on its own, up to
//! `max_attempts` tries. The configured `timeout` is the SDK's *operation* timeout, so
//! every try and every back-off between them fit inside one BitMail attempt's budget.

mod classify;
mod content;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::config::timeout::TimeoutConfig;
use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region};
use bitmail_runtime::config::Secret;

use super::{Outcome, Provider, RefusalScope};
use crate::message::Message;

pub use classify::classify_answer;
pub use content::{Built, Content, ID_HEADER, ID_TAG, build_content, is_tag_value};

/// SES takes at most this many recipients (to + cc + bcc) in one `SendEmail` call.
pub const MAX_RECIPIENTS_PER_CALL: usize = 50;

/// SES's limit on one message, attachments included, once MIME-encoded (40 MB).
pub const MAX_MESSAGE_BYTES: usize = 40 * 1024 * 1024;

/// How one SES account and region is reached.
#[derive(Debug, Clone)]
pub struct SesSettings {
    pub name: String,
    /// `us-east-1`, `eu-west-1`, ...
    pub region: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    /// For temporary credentials (STS).
    pub session_token: Option<Secret>,
    /// Another endpoint than `https://email.{region}.amazonaws.com` (emulators, tests).
    pub endpoint_url: Option<String>,
    /// SES configuration set whose event destinations receive this provider's events.
    pub configuration_set: Option<String>,
    pub connect_timeout: Duration,
    /// The whole attempt, the SDK's own retries and back-offs included.
    pub timeout: Duration,
    /// Tries the SDK makes within one attempt (1 = no SDK retries).
    pub max_attempts: u32,
}

/// The Amazon SES v2 provider.
pub struct Ses {
    name: String,
    client: aws_sdk_sesv2::Client,
    configuration_set: Option<String>,
}

impl Ses {
    pub fn new(settings: SesSettings) -> Self {
        let credentials = Credentials::new(
            settings.access_key_id.expose(),
            settings.secret_access_key.expose(),
            settings.session_token.as_ref().map(|t| t.expose().to_owned()),
            None,
            "bitmail-config",
        );
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(settings.connect_timeout)
            .operation_timeout(settings.timeout)
            .build();
        let mut config = aws_sdk_sesv2::Config::builder()
            // Pinned rather than `latest()`: a newer SDK must not change retries or
            // timeouts underneath the fail-over budget.
            .behavior_version(BehaviorVersion::v2026_01_12())
            .region(Region::new(settings.region))
            .credentials_provider(credentials)
            .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1)))
            .timeout_config(timeouts);
        if let Some(url) = settings.endpoint_url {
            config = config.endpoint_url(url);
        }
        Self {
            name: settings.name,
            client: aws_sdk_sesv2::Client::from_conf(config.build()),
            configuration_set: settings.configuration_set,
        }
    }
}

#[async_trait::async_trait]
impl Provider for Ses {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, message: &Message) -> Outcome {
        let recipients = message.recipients().count();
        if recipients > MAX_RECIPIENTS_PER_CALL {
            return Outcome::ProviderRefused {
                detail: format!(
                    "{recipients} recipients: SES takes at most {MAX_RECIPIENTS_PER_CALL} (to, cc and bcc together) \
                     per message, and this message is not split"
                ),
                scope: RefusalScope::Message,
            };
        }
        let built = match build_content(message) {
            Ok(built) => built,
            Err(detail) => return Outcome::MessageRejected { detail: format!("cannot build the message: {detail}") },
        };
        if built.size > MAX_MESSAGE_BYTES {
            return Outcome::ProviderRefused {
                detail: format!("the message is {} bytes encoded; SES takes at most {MAX_MESSAGE_BYTES}", built.size),
                scope: RefusalScope::Message,
            };
        }
        let log = Arc::new(classify::AttemptLog::default());
        let result = self
            .client
            .send_email()
            .from_email_address(built.from)
            .destination(built.destination)
            .set_reply_to_addresses(built.reply_to)
            .content(built.content)
            .set_email_tags(Some(built.tags))
            .set_configuration_set_name(self.configuration_set.clone())
            .customize()
            .interceptor(classify::Watch(log.clone()))
            .send()
            .await;
        let outcome = match result {
            Ok(output) => Outcome::Accepted { provider_message_id: output.message_id.unwrap_or_default() },
            Err(e) => classify::classify_error(&e, &log),
        };
        classify::with_earlier_tries(outcome, &log)
    }
}
