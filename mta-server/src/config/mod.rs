//! mta-server's configuration (`--config PATH`, TOML). Every key has a default; with no
//! providers configured the server still accepts mail and keeps it deferred.
//!
//! ```toml
//! listen = "127.0.0.1:50051"
//! max_message_bytes = 10485760
//! max_recipients = 1000
//! scheduler = "round-robin"          # or "priority", "weighted", "adaptive"
//!
//! [tls]                          # mutual TLS on `listen`; required unless it is loopback
//! ca_file = "/etc/bitmail/ca.pem"          # client certificates must chain to this CA
//! cert_file = "/etc/bitmail/mta.pem"       # this server's certificate (and --probe's client one)
//! key_file = "/etc/bitmail/mta.key"
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
//! [tenants]                   # who may send: tenants, API keys, quotas, the audit log
//! store = "http://127.0.0.1:50052"   # the backend-server every node shares; empty: a local file
//! path = "data/mta/tenants.redb"      # that local file (one node only)
//! node_id = "mta-1"                   # this node in the shared daily counts; default: host:port
//! key_cache_ms = 5000                 # a checked key is trusted this long: revocations reach every node within it
//! default_domains = ["localhost"]     # the sending domains of tenant `default`, made on first start
//! [tenants.tls]                       # mutual TLS to that backend-server; needs an https:// store
//! ca_file = "/etc/bitmail/ca.pem"     # its certificate must chain to this CA
//! cert_file = "/etc/bitmail/mta.pem"  # this node's client certificate
//! key_file = "/etc/bitmail/mta.key"
//! server_name = "backend.internal"    # the name in its certificate; default: the store URL's host
//! [tenants.default_quotas]            # tenant `default`'s quotas when it is made; each optional
//! per_day = 100000                    # messages per UTC day, across nodes
//! per_second = 50.0                   # sustained rate per node, and its burst
//! burst = 100
//! max_recipients = 100
//! max_message_bytes = 41943040
//!
//! [outbox]                     # webhooks to the tenants' apps
//! allow_private_urls = false     # true: http and loopback/private addresses too (tests, labs)
//! retry_initial_ms = 1000        # a failing webhook is retried after this, doubling...
//! retry_max_ms = 3600000         # ...up to this
//! give_up_hours = 72             # then the batch is dropped (at least 24)
//!
//! [lists]                      # mailing lists and campaigns (src/lists/)
//! public_url = "https://mail.example.org"   # the HTTPS edge, for the links in list mail; empty: lists send nothing
//! unsubscribe_domain = "mail.example.org"   # inbound mail for it reaches the edge: List-Unsubscribe gains a mailto:
//! concurrency = 32               # copies of one campaign submitted at once
//! max_backlog = 5000             # a campaign waits while the spool holds more messages than this
//!
//! [limits]                     # every gRPC call (runtime/src/limits.rs)
//! request_timeout_ms = 30000     # a unary call, or WatchMessages until it streams; then DEADLINE_EXCEEDED
//! max_concurrent_calls = 1024    # across connections, open streams included; more: RESOURCE_EXHAUSTED
//! retry_after_ms = 1000          # the hint given with RESOURCE_EXHAUSTED (`retry-after-ms`)
//!
//! [smtp]                       # SMTP submission: see config/smtp.rs; off by default
//! submission = "0.0.0.0:587"
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
//!
//! The `[[providers]]` sections are read by `config/providers.rs`: [`ProviderConfig`],
//! one struct per kind, [`SmtpSecurity`] and the per-provider [`ProviderLimits`].
//!
//! A leaf: configuration data and its validation only, importing no other module of the
//! crate but [`crate::keys`]. The domain modules build their settings from it
//! (`From<&HealthConfig> for HealthSettings` and the like), and [`crate::server`] wires
//! them together.

mod providers;
mod smtp;
mod tenants;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use bitmail_runtime::config::Validate;
use bitmail_runtime::grpc_tls::ServerTls;
use serde::Deserialize;

pub use providers::{
    MailgunConfig, ProviderConfig, ProviderLimits, SendGridConfig, SesConfig, SmtpConfig, SmtpSecurity,
};
pub use smtp::{LocalSubmission, SmtpListenConfig};
pub use tenants::{DefaultQuotas, TenantsConfig};

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
    /// Mutual TLS on `listen`: required unless it is a loopback address.
    pub tls: Option<ServerTls>,
    pub spool: SpoolConfig,
    pub delivery: DeliveryConfig,
    pub health: HealthConfig,
    pub retry: RetryConfig,
    pub suppression: SuppressionConfig,
    pub tenants: TenantsConfig,
    /// Webhooks to the tenants' apps.
    pub outbox: OutboxConfig,
    /// Mailing lists and campaigns.
    pub lists: ListsConfig,
    /// SMTP submission listeners (`config/smtp.rs`); none by default.
    pub smtp: SmtpListenConfig,
    /// Tried in the order the scheduler picks; names must be unique.
    pub providers: Vec<ProviderConfig>,
    /// `[limits]`: the timeout and concurrency limit of every gRPC call.
    #[serde(rename = "limits")]
    pub call_limits: bitmail_runtime::limits::GrpcLimits,
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

/// What to do when a provider took the request and never answered: it may have
/// accepted the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AmbiguousPolicy {
    /// Try the next provider at once; the message is flagged as a possible duplicate.
    FailOver,
    /// Try again later, from the first provider of a new round (flagged likewise).
    Defer,
    /// Never risk a duplicate: mark the message failed.
    Fail,
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

/// The tenants' webhooks (`crate::outbox`): which URLs they may register, and how a
/// failing one is retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OutboxConfig {
    /// Whether a webhook URL may be plain `http` or name (or resolve to) a loopback,
    /// private, link-local or unspecified address. Off by default: a tenant must not
    /// make mta-server call into its own network.
    pub allow_private_urls: bool,
    /// The first retry of a failing webhook, doubling up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// A batch still failing after this long is given up (counted as dropped).
    pub give_up_hours: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self { allow_private_urls: false, retry_initial_ms: 1000, retry_max_ms: 3_600_000, give_up_hours: 72 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ListsConfig {
    /// The HTTPS edge's base URL (`https://mail.example.org`), for the confirmation,
    /// unsubscribe and preferences links; empty: lists can be kept but send no mail.
    pub public_url: String,
    /// A domain whose received mail reaches the edge (an inbound webhook): when set,
    /// `List-Unsubscribe` also offers `mailto:unsubscribe@DOMAIN?subject=unsubscribe%20TOKEN`.
    pub unsubscribe_domain: String,
    /// Copies of one campaign submitted at once.
    pub concurrency: usize,
    /// A campaign waits while the spool holds more messages than this.
    pub max_backlog: u64,
}

impl Default for ListsConfig {
    fn default() -> Self {
        Self { public_url: String::new(), unsubscribe_domain: String::new(), concurrency: 32, max_backlog: 5000 }
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

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            max_message_bytes: 10 * 1024 * 1024,
            max_recipients: 1000,
            scheduler: SchedulerKind::RoundRobin,
            shutdown_grace_secs: 10,
            tls: None,
            spool: SpoolConfig::default(),
            delivery: DeliveryConfig::default(),
            health: HealthConfig::default(),
            retry: RetryConfig::default(),
            suppression: SuppressionConfig::default(),
            tenants: TenantsConfig::default(),
            outbox: OutboxConfig::default(),
            lists: ListsConfig::default(),
            smtp: SmtpListenConfig::default(),
            providers: Vec::new(),
            call_limits: Default::default(),
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

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        self.call_limits.validate(problems);
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
        bitmail_runtime::grpc_tls::check_listen("listen", self.listen, "tls", self.tls.as_ref(), problems);
        self.tenants.validate(problems);
        if self.outbox.retry_initial_ms == 0 || self.outbox.retry_max_ms < self.outbox.retry_initial_ms {
            problems.push("outbox.retry_initial_ms: more than 0 and at most outbox.retry_max_ms".into());
        }
        if self.outbox.give_up_hours < 24 {
            problems.push("outbox.give_up_hours: at least 24".into());
        }
        self.smtp.validate(problems);
        let url = &self.lists.public_url;
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://"))
            || url.contains(char::is_whitespace)
        {
            problems.push(format!("lists.public_url: {url:?} is not an http(s) URL"));
        }
        let d = &self.lists.unsubscribe_domain;
        if !d.is_empty() && crate::tenant::domain::normalize(d).is_err() {
            problems.push(format!("lists.unsubscribe_domain: {d:?} is not a domain name"));
        }
        if self.lists.concurrency == 0 || self.lists.concurrency > 1024 {
            problems.push("lists.concurrency: 1 to 1024".into());
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
            provider.validate(&at, problems);
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
