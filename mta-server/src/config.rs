//! mta-server's configuration (`--config PATH`, TOML). Every key has a default; with no
//! providers configured the server still accepts mail and keeps it deferred.
//!
//! ```toml
//! listen = "127.0.0.1:50051"
//! max_message_bytes = 10485760
//! max_recipients = 1000
//! scheduler = "round-robin"          # or "priority", "weighted", "adaptive"
//!
//! [spool]
//! path = "data/mta/spool.redb"
//! max_bytes = 10737418240        # past this, Submit answers RESOURCE_EXHAUSTED
//! cache_bytes = 67108864
//! keep_statuses_days = 30        # then sent and failed messages are forgotten
//!
//! [delivery]
//! concurrency = 64
//! ambiguous = "fail-over"        # or "defer", or "fail": when a provider never answered
//!
//! [health]
//! failure_threshold = 3          # transient failures in a row that open a circuit
//! cool_down_secs = 30            # before an open circuit lets a probe through
//! refused_cool_down_secs = 900   # after bad credentials or a paused account
//!
//! [suppression]                 # after a hard bounce or a complaint reported by webhook
//! hard_bounce_days = 30          # 0: for ever
//! complaint_days = 0
//!
//! [retry]
//! initial_secs = 30
//! max_delay_secs = 3600
//! max_age_secs = 259200
//!
//! [[providers]]
//! name = "sendgrid"
//! kind = "sendgrid"
//! base_url = "https://api.sendgrid.com"
//! api_key = { env = "SENDGRID_API_KEY" }
//! webhook_public_key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE..."   # Event Webhook verification key
//! inbound_password = { env = "SENDGRID_INBOUND_PASSWORD" }  # Basic auth of the Inbound Parse URL
//! weight = 1                     # its share under scheduler = "weighted"
//! # Optional, for every kind: attempts in flight at once, attempts started per second,
//! # and the largest message (the provider's own documented limit applies too).
//! limits = { in_flight = 32, per_second = 50, max_message_bytes = 20000000 }
//!
//! [[providers]]
//! name = "mailgun"
//! kind = "mailgun"
//! base_url = "https://api.eu.mailgun.net"   # default https://api.mailgun.net
//! domain = "mg.example.org"
//! api_key = { env = "MAILGUN_API_KEY" }
//! webhook_signing_key = { env = "MAILGUN_WEBHOOK_KEY" }   # event webhooks and route forwards
//!
//! [[providers]]
//! name = "relay"
//! kind = "smtp"
//! host = "smtp.example.org"
//! security = "starttls"          # or "implicit" (port 465), or "none" (local relays only)
//! username = "bitmail"
//! password = { env = "SMTP_PASSWORD" }
//!
//! [[providers]]
//! name = "ses"
//! kind = "ses"
//! region = "eu-west-1"
//! access_key_id = { env = "AWS_ACCESS_KEY_ID" }
//! secret_access_key = { env = "AWS_SECRET_ACCESS_KEY" }
//! # session_token = { env = "AWS_SESSION_TOKEN" }   # temporary credentials only
//! # endpoint_url = "http://127.0.0.1:5000"          # an emulator instead of email.{region}.amazonaws.com
//! # configuration_set = "bitmail"                    # where SES sends this provider's events
//! # SNS topics whose notifications are taken (events and received mail); none: refused
//! # sns_topics = ["arn:aws:sns:eu-west-1:123456789012:bitmail"]
//! timeout_ms = 15000     # the whole attempt: the SDK's own retries and back-offs included
//! max_attempts = 2       # tries the SDK makes within that budget (1 = none of its own)
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bitmail_runtime::config::{Secret, Validate};
use serde::Deserialize;

use crate::delivery::{AmbiguousPolicy, DeliverySettings, RetryPolicy};
use crate::health::HealthSettings;
use crate::limits::ProviderLimits;
use crate::message::Limits;
use crate::provider::smtp::SmtpSecurity;
use crate::spool::SpoolSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where the gRPC `Mta` service listens.
    pub listen: SocketAddr,
    /// Subject, bodies and headers together, in bytes.
    pub max_message_bytes: usize,
    /// to + cc + bcc of one message.
    pub max_recipients: usize,
    pub scheduler: SchedulerKind,
    /// How long shutdown waits for deliveries in flight.
    pub shutdown_grace_secs: u64,
    pub spool: SpoolConfig,
    pub delivery: DeliveryConfig,
    pub health: HealthConfig,
    pub retry: RetryConfig,
    pub suppression: SuppressionConfig,
    /// Tried in the order the scheduler picks; names must be unique.
    pub providers: Vec<ProviderConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchedulerKind {
    /// The first choice rotates over the providers (the default).
    RoundRobin,
    /// Always the configured order: a primary and backups.
    Priority,
    /// First choices in proportion to each provider's `weight`.
    Weighted,
    /// Shares follow live success rate and latency.
    Adaptive,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SpoolConfig {
    /// The spool file (created with its folder when missing).
    pub path: PathBuf,
    /// The disk quota: past this file size, `Submit` answers RESOURCE_EXHAUSTED.
    pub max_bytes: u64,
    /// The spool's page cache, which bounds its memory whatever the backlog.
    pub cache_bytes: usize,
    /// How long `GetMessage` still knows a sent or failed message.
    pub keep_statuses_days: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DeliveryConfig {
    /// Delivery rounds running at once.
    pub concurrency: usize,
    /// What to do when a provider took a request and never answered.
    pub ambiguous: AmbiguousPolicy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    pub failure_threshold: u32,
    pub cool_down_secs: u64,
    pub refused_cool_down_secs: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self { failure_threshold: 3, cool_down_secs: 30, refused_cool_down_secs: 900 }
    }
}

/// How long a hard bounce or a complaint keeps its address off the recipients.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SuppressionConfig {
    /// 0: for ever.
    pub hard_bounce_days: u64,
    /// 0: for ever.
    pub complaint_days: u64,
}

impl Default for SuppressionConfig {
    fn default() -> Self {
        Self { hard_bounce_days: 30, complaint_days: 0 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RetryConfig {
    pub initial_secs: u64,
    pub max_delay_secs: u64,
    /// Default 3 days.
    pub max_age_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ProviderConfig {
    Sendgrid(SendGridConfig),
    Mailgun(MailgunConfig),
    Smtp(SmtpConfig),
    Ses(SesConfig),
}

impl ProviderConfig {
    pub fn name(&self) -> &str {
        match self {
            ProviderConfig::Sendgrid(c) => &c.name,
            ProviderConfig::Mailgun(c) => &c.name,
            ProviderConfig::Smtp(c) => &c.name,
            ProviderConfig::Ses(c) => &c.name,
        }
    }

    pub fn limits(&self) -> ProviderLimits {
        match self {
            ProviderConfig::Sendgrid(c) => c.limits,
            ProviderConfig::Mailgun(c) => c.limits,
            ProviderConfig::Smtp(c) => c.limits,
            ProviderConfig::Ses(c) => c.limits,
        }
    }

    pub fn weight(&self) -> u32 {
        match self {
            ProviderConfig::Sendgrid(c) => c.weight,
            ProviderConfig::Mailgun(c) => c.weight,
            ProviderConfig::Smtp(c) => c.weight,
            ProviderConfig::Ses(c) => c.weight,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendGridConfig {
    pub name: String,
    #[serde(default = "sendgrid_base_url")]
    pub base_url: String,
    pub api_key: Secret,
    #[serde(default)]
    pub sandbox: bool,
    /// The Event Webhook's verification key (base64 DER public key, as SendGrid shows
    /// it); without it, this provider's webhooks are refused.
    pub webhook_public_key: Option<String>,
    /// The password of the HTTP Basic auth written into the Inbound Parse URL
    /// (`https://bitmail:PASSWORD@host/webhooks/NAME/inbound`): Inbound Parse signs
    /// nothing, so without it received mail from SendGrid is refused.
    pub inbound_password: Option<Secret>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// This provider's share under `scheduler = "weighted"`; 0 makes it a backup only.
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub limits: ProviderLimits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailgunConfig {
    pub name: String,
    /// `https://api.mailgun.net` (US) or `https://api.eu.mailgun.net` (EU).
    #[serde(default = "mailgun_base_url")]
    pub base_url: String,
    /// The sending domain registered with Mailgun.
    pub domain: String,
    pub api_key: Secret,
    /// `o:testmode=yes`: accepted by Mailgun, not delivered.
    #[serde(default)]
    pub test_mode: bool,
    /// The HTTP webhook signing key (not the API key); without it, this provider's
    /// webhooks are refused.
    pub webhook_signing_key: Option<Secret>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub limits: ProviderLimits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub name: String,
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `implicit`, 25 for `none`.
    pub port: Option<u16>,
    #[serde(default = "default_security")]
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// A PEM file of a CA to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Recipients per SMTP transaction (RFC 5321 servers take at least 100); more take
    /// several transactions, and a failure part-way never resends to those reached.
    #[serde(default = "default_recipients_per_call")]
    pub max_recipients_per_call: usize,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub limits: ProviderLimits,
}

/// Amazon SES v2 through aws-sdk-sesv2.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SesConfig {
    pub name: String,
    /// The AWS region of the SES account, such as `eu-west-1`.
    pub region: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    /// Only with temporary (STS) credentials.
    pub session_token: Option<Secret>,
    /// Another endpoint than `https://email.{region}.amazonaws.com`: an emulator or a test.
    pub endpoint_url: Option<String>,
    /// The SES configuration set whose event destinations get this provider's events.
    pub configuration_set: Option<String>,
    /// The SNS topic ARNs whose notifications (SES events, received mail) are taken;
    /// messages from any other topic are refused, and with none, all are.
    #[serde(default)]
    pub sns_topics: Vec<String>,
    /// Hosts that signing certificates and subscription URLs may come from. Empty: only
    /// Amazon's `sns.<region>.amazonaws.com`. For tests and private clouds.
    #[serde(default)]
    pub sns_cert_hosts: Vec<String>,
    /// More trusted root certificates (PEM) for fetching SNS signing certificates.
    pub sns_ca_file: Option<PathBuf>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// The whole attempt, the SDK's own retries and the back-off between them included
    /// (the SDK's operation timeout).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Tries the SDK makes within `timeout_ms` on throttling, 5xx and connection
    /// failures (1 = none of its own; BitMail then fails over to the next provider).
    #[serde(default = "default_ses_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// A sandbox account sends 1 message per second: `limits = { per_second = 1 }`.
    #[serde(default)]
    pub limits: ProviderLimits,
}

fn default_ses_max_attempts() -> u32 {
    2
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Implicit => 465,
            SmtpSecurity::None => 25,
        })
    }
}

fn default_security() -> SmtpSecurity {
    SmtpSecurity::Starttls
}

fn default_recipients_per_call() -> usize {
    100
}

fn default_max_connections() -> u32 {
    4
}

fn mailgun_base_url() -> String {
    "https://api.mailgun.net".into()
}

fn default_weight() -> u32 {
    1
}

fn sendgrid_base_url() -> String {
    "https://api.sendgrid.com".into()
}
fn default_connect_timeout_ms() -> u64 {
    3_000
}
fn default_timeout_ms() -> u64 {
    15_000
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            max_message_bytes: 10 * 1024 * 1024,
            max_recipients: 1000,
            scheduler: SchedulerKind::RoundRobin,
            shutdown_grace_secs: 10,
            spool: SpoolConfig::default(),
            delivery: DeliveryConfig::default(),
            health: HealthConfig::default(),
            retry: RetryConfig::default(),
            suppression: SuppressionConfig::default(),
            providers: Vec::new(),
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data/mta/spool.redb"),
            max_bytes: 10 << 30,
            cache_bytes: 64 << 20,
            keep_statuses_days: 30,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self { concurrency: 64, ambiguous: AmbiguousPolicy::FailOver }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { initial_secs: 30, max_delay_secs: 3600, max_age_secs: 3 * 24 * 3600 }
    }
}

impl Config {
    pub fn limits(&self) -> Limits {
        Limits { max_message_bytes: self.max_message_bytes, max_recipients: self.max_recipients }
    }

    pub fn suppression_rules(&self) -> crate::spool::SuppressionRules {
        let ms = |days: u64| days.saturating_mul(24 * 3600 * 1000);
        crate::spool::SuppressionRules {
            hard_bounce_ms: ms(self.suppression.hard_bounce_days),
            complaint_ms: ms(self.suppression.complaint_days),
        }
    }

    pub fn spool_settings(&self) -> SpoolSettings {
        SpoolSettings { max_bytes: self.spool.max_bytes, cache_bytes: self.spool.cache_bytes }
    }

    pub fn delivery_settings(&self) -> DeliverySettings {
        DeliverySettings {
            concurrency: self.delivery.concurrency,
            retry: RetryPolicy {
                initial: Duration::from_secs(self.retry.initial_secs),
                max_delay: Duration::from_secs(self.retry.max_delay_secs),
                max_age: Duration::from_secs(self.retry.max_age_secs),
            },
            ambiguous: self.delivery.ambiguous,
        }
    }

    pub fn health_settings(&self) -> HealthSettings {
        HealthSettings {
            failure_threshold: self.health.failure_threshold,
            cool_down: Duration::from_secs(self.health.cool_down_secs),
            refused_cool_down: Duration::from_secs(self.health.refused_cool_down_secs),
        }
    }
}

fn check_url(field: &str, url: &str, problems: &mut Vec<String>) {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(_) => problems.push(format!("{field}: `{url}` must be an http:// or https:// URL")),
        Err(e) => problems.push(format!("{field}: `{url}` is not a URL ({e})")),
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        if self.max_message_bytes == 0 {
            problems.push("max_message_bytes: must be more than 0".into());
        }
        if self.max_recipients == 0 {
            problems.push("max_recipients: must be more than 0".into());
        }
        if self.health.failure_threshold == 0 {
            problems.push("health.failure_threshold: must be more than 0".into());
        }
        if self.health.cool_down_secs == 0 {
            problems.push("health.cool_down_secs: must be more than 0".into());
        }
        if self.delivery.concurrency == 0 {
            problems.push("delivery.concurrency: must be more than 0".into());
        }
        if self.spool.path.as_os_str().is_empty() {
            problems.push("spool.path: must not be empty".into());
        }
        if self.spool.keep_statuses_days == 0 {
            problems.push("spool.keep_statuses_days: at least 1".into());
        }
        if self.spool.cache_bytes < (1 << 20) {
            problems.push("spool.cache_bytes: at least 1048576 (1 MiB)".into());
        }
        if self.retry.initial_secs == 0 || self.retry.initial_secs > self.retry.max_delay_secs {
            problems.push("retry.initial_secs: must be more than 0 and at most retry.max_delay_secs".into());
        }
        if self.scheduler == SchedulerKind::Weighted
            && !self.providers.is_empty()
            && self.providers.iter().all(|p| p.weight() == 0)
        {
            problems.push("scheduler: `weighted` needs at least one provider with a weight above 0".into());
        }
        let mut names = HashSet::new();
        for (i, provider) in self.providers.iter().enumerate() {
            let at = format!("providers[{i}]");
            if provider.name().trim().is_empty() {
                problems.push(format!("{at}.name: must not be empty"));
            } else if !names.insert(provider.name()) {
                problems.push(format!("{at}.name: `{}` is used by another provider", provider.name()));
            }
            problems.extend(provider.limits().problems().into_iter().map(|p| format!("{at}.limits.{p}")));
            match provider {
                ProviderConfig::Sendgrid(c) => {
                    check_url(&format!("{at}.base_url"), &c.base_url, problems);
                    if let Some(key) = &c.webhook_public_key
                        && let Err(e) = crate::events::sendgrid::Verifier::new(key)
                    {
                        problems.push(format!("{at}.webhook_public_key: {e}"));
                    }
                    if c.api_key.is_empty() {
                        problems.push(format!("{at}.api_key: must not be empty"));
                    }
                    if c.inbound_password.as_ref().is_some_and(|p| p.expose().len() < 16) {
                        problems.push(format!(
                            "{at}.inbound_password: at least 16 characters (it is all that guards inbound mail)"
                        ));
                    }
                    if c.timeout_ms == 0 || c.connect_timeout_ms == 0 {
                        problems.push(format!("{at}: timeouts must be more than 0 ms"));
                    }
                }
                ProviderConfig::Smtp(c) => {
                    if c.host.trim().is_empty() {
                        problems.push(format!("{at}.host: must not be empty"));
                    }
                    if c.username.is_some() != c.password.is_some() {
                        problems.push(format!("{at}: username and password go together"));
                    }
                    if let Some(ca) = &c.ca_file
                        && !ca.is_file()
                    {
                        problems.push(format!("{at}.ca_file: {} is not a readable file", ca.display()));
                    }
                    if c.timeout_ms == 0 || c.max_connections == 0 || c.max_recipients_per_call == 0 {
                        problems.push(format!(
                            "{at}: timeout_ms, max_connections and max_recipients_per_call must be more than 0"
                        ));
                    }
                }
                ProviderConfig::Ses(c) => {
                    let region_ok = !c.region.is_empty()
                        && c.region
                            .split('-')
                            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
                    if !region_ok {
                        problems.push(format!("{at}.region: `{}` is not an AWS region such as eu-west-1", c.region));
                    }
                    if c.access_key_id.is_empty() {
                        problems.push(format!("{at}.access_key_id: must not be empty"));
                    }
                    if c.secret_access_key.is_empty() {
                        problems.push(format!("{at}.secret_access_key: must not be empty"));
                    }
                    if let Some(url) = &c.endpoint_url {
                        check_url(&format!("{at}.endpoint_url"), url, problems);
                    }
                    let set_ok = |s: &String| {
                        (1..=64).contains(&s.len())
                            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    };
                    if c.configuration_set.as_ref().is_some_and(|s| !set_ok(s)) {
                        problems.push(format!("{at}.configuration_set: 1 to 64 ASCII letters, digits, _ or -"));
                    }
                    if c.timeout_ms == 0 || c.connect_timeout_ms == 0 {
                        problems.push(format!("{at}: timeouts must be more than 0 ms"));
                    }
                    if !(1..=10).contains(&c.max_attempts) {
                        problems.push(format!("{at}.max_attempts: from 1 to 10"));
                    }
                    for (j, topic) in c.sns_topics.iter().enumerate() {
                        let parts: Vec<&str> = topic.split(':').collect();
                        if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[5].is_empty() {
                            problems.push(format!(
                                "{at}.sns_topics[{j}]: `{topic}` is not an SNS topic ARN such as \
                                 arn:aws:sns:eu-west-1:123456789012:bitmail"
                            ));
                        }
                    }
                    for (j, host) in c.sns_cert_hosts.iter().enumerate() {
                        if host.is_empty() || host.contains(['/', '@', ' ']) {
                            problems.push(format!(
                                "{at}.sns_cert_hosts[{j}]: `{host}` is not a host name (host or host:port)"
                            ));
                        }
                    }
                    if let Some(ca) = &c.sns_ca_file
                        && !ca.is_file()
                    {
                        problems.push(format!("{at}.sns_ca_file: {} is not a readable file", ca.display()));
                    }
                }
                ProviderConfig::Mailgun(c) => {
                    check_url(&format!("{at}.base_url"), &c.base_url, problems);
                    if c.api_key.is_empty() {
                        problems.push(format!("{at}.api_key: must not be empty"));
                    }
                    let domain_ok = !c.domain.is_empty()
                        && c.domain
                            .split('.')
                            .all(|l| !l.is_empty() && l.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-'));
                    if !domain_ok {
                        problems.push(format!("{at}.domain: `{}` is not a domain name", c.domain));
                    }
                    if c.timeout_ms == 0 || c.connect_timeout_ms == 0 {
                        problems.push(format!("{at}: timeouts must be more than 0 ms"));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitmail_runtime::config::parse;

    #[test]
    fn defaults_start_with_no_file() {
        let c: Config = parse("", "t").unwrap();
        assert_eq!(c.listen.port(), 50051);
        assert!(c.providers.is_empty());
        assert_eq!(c.retry.max_age_secs, 259_200);
    }

    #[test]
    fn a_full_provider_section_loads() {
        let c: Config = parse(
            "[[providers]]\nname = \"sg\"\nkind = \"sendgrid\"\nbase_url = \"http://127.0.0.1:9\"\napi_key = \"k\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.providers[0].name(), "sg");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
            max_recipients = 0
            [delivery]
            concurrency = 0
            [[providers]]
            name = "sg"
            kind = "sendgrid"
            base_url = "ftp://x"
            api_key = ""
            [[providers]]
            name = "sg"
            kind = "sendgrid"
            api_key = "k"
        "#;
        let err = parse::<Config>(text, "t").unwrap_err();
        let all = err.problems.join("\n");
        for needle in [
            "max_recipients",
            "delivery.concurrency",
            "providers[0].base_url",
            "providers[0].api_key",
            "providers[1].name",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
    }

    #[test]
    fn an_ses_section_loads_and_is_checked() {
        let c: Config = parse(
            "[[providers]]\nname = \"ses\"\nkind = \"ses\"\nregion = \"eu-west-1\"\naccess_key_id = \"AKID\"\n\
             secret_access_key = \"s\"\nendpoint_url = \"http://127.0.0.1:5000\"\n",
            "t",
        )
        .unwrap();
        match &c.providers[0] {
            ProviderConfig::Ses(s) => {
                assert_eq!((s.region.as_str(), s.max_attempts, s.timeout_ms), ("eu-west-1", 2, 15_000));
                assert!(!format!("{s:?}").contains("AKID"), "keys stay out of Debug: {s:?}");
            }
            other => panic!("{other:?}"),
        }
        let text = "[[providers]]\nname = \"ses\"\nkind = \"ses\"\nregion = \"EU West\"\naccess_key_id = \"\"\n\
                    secret_access_key = \"\"\nendpoint_url = \"nope\"\nconfiguration_set = \"a.b\"\nmax_attempts = 0\n";
        let all = parse::<Config>(text, "t").unwrap_err().problems.join("\n");
        for needle in [
            "providers[0].region",
            "providers[0].access_key_id",
            "providers[0].secret_access_key",
            "providers[0].endpoint_url",
            "providers[0].configuration_set",
            "providers[0].max_attempts",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
    }

    #[test]
    fn unknown_keys_and_kinds_are_errors() {
        let err = parse::<Config>("listen_addr = \"x\"\n", "t").unwrap_err();
        assert_eq!(err.problems, vec!["listen_addr: unknown key"]);
        let err =
            parse::<Config>("[[providers]]\nname = \"a\"\nkind = \"sendgrid\"\napi_key = \"k\"\napikey = \"k\"\n", "t")
                .unwrap_err();
        assert!(err.problems.join(" ").contains("apikey"), "{:?}", err.problems);
        let err = parse::<Config>("[[providers]]\nname = \"a\"\nkind = \"postal\"\n", "t").unwrap_err();
        assert!(err.problems.join(" ").contains("postal"), "{:?}", err.problems);
    }
}
