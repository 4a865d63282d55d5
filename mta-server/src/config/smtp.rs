//! `[smtp]`: SMTP submission (RFC 6409) for applications that speak nothing else. Off
//! unless a listener is named.
//!
//! ```toml
//! [smtp]
//! submission = "0.0.0.0:587"     # STARTTLS, then AUTH
//! submissions = "0.0.0.0:465"    # TLS from the first byte (RFC 8314)
//! cert_file = "/etc/bitmail/smtp.crt"   # PEM chain; both unset: a self-signed
//! key_file = "/etc/bitmail/smtp.key"    # certificate for localhost, made on first start
//! hostname = "mail.example.org"  # named in the greeting and the EHLO reply
//! max_connections = 1000
//! max_connections_per_client = 50
//! command_timeout_secs = 300     # idle time allowed between two commands (RFC 5321 4.5.3.2)
//! session_timeout_secs = 1800    # a whole session
//! max_bad_commands = 10          # then 421 and the connection is closed
//! max_auth_failures = 5          # per client address within auth_failure_window_secs
//! auth_failure_window_secs = 900
//! auth_failure_delay_ms = 1000   # before a refused AUTH is answered
//! [smtp.local]                   # optional: no AUTH, loopback only, for one tenant
//! listen = "127.0.0.1:2525"
//! tenant = "default"
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpListenConfig {
    /// Port 587: plaintext until STARTTLS; AUTH only after it.
    pub submission: Option<SocketAddr>,
    /// Port 465: implicit TLS.
    pub submissions: Option<SocketAddr>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub hostname: String,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub command_timeout_secs: u64,
    pub session_timeout_secs: u64,
    pub max_bad_commands: u32,
    pub max_auth_failures: u32,
    pub auth_failure_window_secs: u64,
    pub auth_failure_delay_ms: u64,
    pub local: Option<LocalSubmission>,
}

/// A listener without AUTH or TLS for programs on the same host (cron, a benchmark):
/// everything it accepts is sent as `tenant`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSubmission {
    pub listen: SocketAddr,
    pub tenant: String,
}

impl Default for SmtpListenConfig {
    fn default() -> Self {
        Self {
            submission: None,
            submissions: None,
            cert_file: None,
            key_file: None,
            hostname: "localhost".into(),
            max_connections: 1000,
            max_connections_per_client: 50,
            command_timeout_secs: 300,
            session_timeout_secs: 1800,
            max_bad_commands: 10,
            max_auth_failures: 5,
            auth_failure_window_secs: 900,
            auth_failure_delay_ms: 1000,
            local: None,
        }
    }
}

impl SmtpListenConfig {
    /// Whether any listener is configured.
    pub fn enabled(&self) -> bool {
        self.submission.is_some() || self.submissions.is_some() || self.local.is_some()
    }

    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        if self.cert_file.is_some() != self.key_file.is_some() {
            problems.push("smtp.cert_file, smtp.key_file: set both, or neither (a self-signed certificate)".into());
        }
        let host_ok = !self.hostname.is_empty()
            && self.hostname.len() <= 253
            && self.hostname.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !host_ok {
            problems.push(format!("smtp.hostname: `{}` is not a host name", self.hostname));
        }
        for (name, value) in [
            ("max_connections", self.max_connections as u64),
            ("max_connections_per_client", self.max_connections_per_client as u64),
            ("command_timeout_secs", self.command_timeout_secs),
            ("session_timeout_secs", self.session_timeout_secs),
            ("max_bad_commands", u64::from(self.max_bad_commands)),
            ("max_auth_failures", u64::from(self.max_auth_failures)),
            ("auth_failure_window_secs", self.auth_failure_window_secs),
        ] {
            if value == 0 {
                problems.push(format!("smtp.{name}: must be more than 0"));
            }
        }
        if let Some(local) = &self.local {
            if !local.listen.ip().is_loopback() {
                problems.push(format!(
                    "smtp.local.listen: {} is not a loopback address; unauthenticated submission is for this host only",
                    local.listen
                ));
            }
            if local.tenant.trim().is_empty() {
                problems.push("smtp.local.tenant: name the tenant its mail is sent as".into());
            }
        }
    }
}
