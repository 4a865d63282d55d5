//! The `[[providers]]` sections of the configuration: one struct per `kind`, the limits
//! every kind may set, and their validation.

use std::path::PathBuf;

use bitmail_runtime::config::Secret;
use serde::Deserialize;

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

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS at all: only for a relay on the same host or a test server.
    None,
}

/// What an operator can set per provider (`[providers.limits]`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderLimits {
    /// Attempts in flight at once; none by default.
    pub in_flight: Option<u32>,
    /// Attempts started per second, with a burst of one second's worth; none by default.
    pub per_second: Option<f64>,
    /// The largest message, in bytes as sent (attachments counted base64-encoded);
    /// the provider's own documented limit applies as well.
    pub max_message_bytes: Option<usize>,
}

impl ProviderLimits {
    /// Problems with these values, for config validation.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.in_flight == Some(0) {
            problems.push("in_flight: must be at least 1 (pause the provider to stop it)".to_owned());
        }
        if let Some(rate) = self.per_second
            && !(rate.is_finite() && rate > 0.0)
        {
            problems.push(format!("per_second: must be a positive number, not {rate}"));
        }
        if self.max_message_bytes == Some(0) {
            problems.push("max_message_bytes: must be at least 1".to_owned());
        }
        problems
    }
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

pub(super) fn check_url(field: &str, url: &str, problems: &mut Vec<String>) {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(_) => problems.push(format!("{field}: `{url}` must be an http:// or https:// URL")),
        Err(e) => problems.push(format!("{field}: `{url}` is not a URL ({e})")),
    }
}

impl ProviderConfig {
    /// Pushes this provider's problems, each prefixed with `at` (`providers[i]`); the
    /// uniqueness of names is [`Config`](super::Config)'s to check.
    pub(super) fn validate(&self, at: &str, problems: &mut Vec<String>) {
        problems.extend(self.limits().problems().into_iter().map(|p| format!("{at}.limits.{p}")));
        match self {
            ProviderConfig::Sendgrid(c) => {
                check_url(&format!("{at}.base_url"), &c.base_url, problems);
                if let Some(key) = &c.webhook_public_key
                    && let Err(e) = crate::keys::sendgrid_verification_key(key)
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
                        problems
                            .push(format!("{at}.sns_cert_hosts[{j}]: `{host}` is not a host name (host or host:port)"));
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
                // With a short key anyone could sign bounces and complaints (which
                // suppress addresses) and inbound mail; Mailgun's own keys are longer.
                if c.webhook_signing_key.as_ref().is_some_and(|k| k.expose().trim().len() < 16) {
                    problems.push(format!(
                        "{at}.webhook_signing_key: at least 16 characters (Mailgun's HTTP webhook signing key; \
                         it is all that guards events and inbound mail)"
                    ));
                }
                if c.timeout_ms == 0 || c.connect_timeout_ms == 0 {
                    problems.push(format!("{at}: timeouts must be more than 0 ms"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_or_empty_mailgun_signing_key_is_refused() {
        let section = |key: &str| {
            format!(
                "[[providers]]\nname = \"mg\"\nkind = \"mailgun\"\ndomain = \"mg.example.org\"\napi_key = \"k\"\n\
                 webhook_signing_key = {key:?}\n"
            )
        };
        for key in ["", "   ", "short-key"] {
            let err = bitmail_runtime::config::parse::<crate::config::Config>(&section(key), "t").unwrap_err();
            assert!(
                err.problems.join(" ").contains("providers[0].webhook_signing_key: at least 16"),
                "{key:?}: {err:?}"
            );
        }
        assert!(bitmail_runtime::config::parse::<crate::config::Config>(&section("key-0123456789abcdef"), "t").is_ok());
    }

    #[test]
    fn bad_limits_are_named() {
        let bad = ProviderLimits { in_flight: Some(0), per_second: Some(f64::NAN), max_message_bytes: Some(0) };
        assert_eq!(bad.problems().len(), 3);
        assert!(ProviderLimits { per_second: Some(0.5), ..Default::default() }.problems().is_empty());
    }
}
