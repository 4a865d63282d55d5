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
//!
//! Recipients: SES takes at most [`MAX_RECIPIENTS_PER_CALL`] (50) per message and counts
//! the To and Cc headers as well as the call's destination. A message over 50 recipients
//! (or one some of whose recipients an earlier attempt reached) goes in several calls of
//! at most `50 - (To + Cc)` envelope recipients each, so a long Bcc list splits; such a
//! message whose To and Cc alone hold 50 is refused for this message (another provider
//! may take it). `max_attempts` defaults to 2.

mod classify;
mod content;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::config::timeout::TimeoutConfig;
use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sesv2::types::Destination;
use bitmail_runtime::config::Secret;

use super::{Outcome, Provider, RefusalScope};
use crate::message::Message;

pub use classify::classify_answer;
pub use content::{Built, Content, ID_HEADER, ID_TAG, build_content, is_tag_value};

/// SES takes at most this many recipients in one `SendEmail` call, counting the To and
/// Cc headers too. A message with more goes in several Raw calls
/// ([`super::in_batches`]), each with the whole headers and a share of the envelope,
/// when its To and Cc leave room; else SES refuses it for this message.
pub const MAX_RECIPIENTS_PER_CALL: usize = 50;

/// SES's limit on one message, attachments included, once MIME-encoded (40 MB).
pub const MAX_MESSAGE_BYTES: usize = 40_000_000;

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

    /// "The maximum message size, including attachments, is 40 MB" (after encoding).
    fn max_message_bytes(&self) -> Option<usize> {
        Some(MAX_MESSAGE_BYTES)
    }

    async fn send(&self, message: &Message) -> Outcome {
        let recipients = message.recipients().count();
        let one_call = message.already_sent_to.is_empty() && recipients <= MAX_RECIPIENTS_PER_CALL;
        // SES counts the To and Cc of the headers as well as the call's destination, so
        // a split keeps each call's destination under what the headers leave.
        let in_headers = message.to.len() + message.cc.len();
        let per_call =
            if one_call { MAX_RECIPIENTS_PER_CALL } else { MAX_RECIPIENTS_PER_CALL.saturating_sub(in_headers) };
        if per_call == 0 {
            return Outcome::ProviderRefused {
                detail: format!(
                    "{in_headers} recipients in To and Cc: SES takes at most {MAX_RECIPIENTS_PER_CALL} per message, \
                     headers included, so this message cannot be split into calls it accepts"
                ),
                scope: RefusalScope::Message,
            };
        }
        let built = match build_content(message, one_call) {
            Ok(built) => built,
            Err(detail) => return Outcome::MessageRejected { detail: format!("cannot build the message: {detail}") },
        };
        if built.size > MAX_MESSAGE_BYTES {
            return Outcome::ProviderRefused {
                detail: format!("the message is {} bytes encoded; SES takes at most {MAX_MESSAGE_BYTES}", built.size),
                scope: RefusalScope::Message,
            };
        }
        let built = &built;
        super::in_batches(message, per_call, |batch| {
            let destination = content::destination(message, &batch, built.kind);
            self.call(built, destination)
        })
        .await
    }
}

impl Ses {
    /// One `SendEmail` call (the SDK's own tries included).
    async fn call(&self, built: &Built, destination: Destination) -> Outcome {
        let log = Arc::new(classify::AttemptLog::default());
        let result = self
            .client
            .send_email()
            .from_email_address(&built.from)
            .destination(destination)
            .set_reply_to_addresses(built.reply_to.clone())
            .content(built.content.clone())
            .set_email_tags(Some(built.tags.clone()))
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
