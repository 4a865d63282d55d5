//! backend-server's configuration (`--config PATH`, TOML). Every key has a default.
//!
//! ```toml
//! listen = "127.0.0.1:50052"
//! engine = "embedded"                  # "embedded" (default), "memory", "postgres" or "proxy"
//! max_document_bytes = 16777216        # keys + values of one document, in bytes
//! shutdown_grace_secs = 10
//!
//! [tls]                                # mutual TLS on `listen`; required unless it is loopback
//! ca_file = "/etc/bitmail/ca.pem"      # client certificates must chain to this CA
//! cert_file = "/etc/bitmail/backend.pem"   # this server's certificate (and --probe's client one)
//! key_file = "/etc/bitmail/backend.key"
//! [limits]                             # every gRPC call (runtime/src/limits.rs)
//! request_timeout_ms = 30000           # a unary call, or a Lookup until it streams; then DEADLINE_EXCEEDED
//! max_concurrent_calls = 1024          # across connections; more: RESOURCE_EXHAUSTED at once
//! retry_after_ms = 1000                # the hint given with RESOURCE_EXHAUSTED
//!
//! [embedded]                           # engine = "embedded": one redb file
//! path = "data/backend/store.redb"
//! cache_bytes = 134217728              # redb's page cache: bounds its memory
//!
//! [postgres]                           # engine = "postgres"
//! url = "postgres://bitmail:PASSWORD@127.0.0.1:5432/bitmail"   # or { env = "VAR" } / { file = "PATH" }
//! # A primary and its standbys: the hosts in order, the primary found by its sessions:
//! # url = "postgres://bitmail:PASSWORD@db1:5432,db2:5432/bitmail?target_session_attrs=read-write"
//! pool_size = 16
//! ca_file = "/etc/bitmail/pg-ca.pem"   # TLS, the server's certificate verified against this
//!                                      # CA and the URL's host name (as sslmode=verify-full)
//!
//! [proxy]                              # engine = "proxy": another backend-server
//! url = "http://storage.internal:50052"
//! connect_timeout_ms = 1000
//! timeout_ms = 5000                    # per call; then UNAVAILABLE
//! [proxy.tls]                          # mutual TLS to the node; needs an https:// url
//! ca_file = "/etc/bitmail/ca.pem"      # the node's certificate must chain to this CA
//! cert_file = "/etc/bitmail/edge.pem"  # this server's client certificate
//! key_file = "/etc/bitmail/edge.key"
//! server_name = "storage.internal"     # the name in the node's certificate; default: the url's host
//! ```
//!
//! Adding an engine: a variant of [`Engine`], its own section struct here, a line in
//! `server::open_store`, and a line in `tests/tests/suite/store_conformance.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bitmail_runtime::config::{Secret, Validate};
use bitmail_runtime::grpc_tls::{ClientTls, ServerTls};
use bitmail_runtime::limits::GrpcLimits;
use serde::Deserialize;

use crate::store::{DEFAULT_MAX_DOCUMENT_BYTES, Limits};

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where the gRPC `Store` service listens.
    pub listen: SocketAddr,
    /// The storage engine.
    pub engine: Engine,
    /// The largest document (keys plus values, in bytes); larger ones are refused with
    /// `INVALID_ARGUMENT`.
    pub max_document_bytes: usize,
    /// How long shutdown waits for calls in flight.
    pub shutdown_grace_secs: u64,
    /// Mutual TLS on `listen`: required unless it is a loopback address.
    pub tls: Option<ServerTls>,
    pub embedded: EmbeddedConfig,
    /// The `postgres` engine's connection.
    pub postgres: PostgresConfig,
    pub proxy: ProxyConfig,
    /// `[limits]`: the timeout and concurrency limit of every gRPC call.
    #[serde(rename = "limits")]
    pub call_limits: GrpcLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// Everything in RAM; lost on restart. For tests and caches.
    Memory,
    /// One redb file on disk; every acknowledged write is durable.
    Embedded,
    /// PostgreSQL, or a compatible distributed SQL engine: see `[postgres]`.
    Postgres,
    /// Forwards every call to another backend-server over gRPC.
    Proxy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PostgresConfig {
    /// A libpq-style URL or key/value string. A secret: it can hold the password.
    ///
    /// Several hosts (a primary and its hot standbys) go in the URL the libpq way,
    /// `postgres://u:pw@db1:5432,db2:5432/bitmail?target_session_attrs=read-write`
    /// (`target_session_attrs=read-write` is then required; one port for all hosts or one
    /// per host). Each new connection tries the hosts in order and keeps the first
    /// read-write one, so after a standby is promoted the store reconnects to it without
    /// a restart. `connect_timeout` (default 5 s per host) and `tcp_user_timeout`
    /// (default 20 s) bound how long a vanished host can hold a call.
    pub url: Secret,
    /// At most this many connections.
    pub pool_size: usize,
    /// TLS to PostgreSQL: the CA (PEM) the server's certificate must chain to; its name
    /// must match the URL's host (with several hosts, the host connected to). Without it,
    /// plaintext.
    pub ca_file: Option<PathBuf>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self { url: Secret::default(), pool_size: 16, ca_file: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct EmbeddedConfig {
    /// The database file (created with its folder when missing).
    pub path: PathBuf,
    /// redb's page cache, in bytes.
    pub cache_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ProxyConfig {
    /// The storage node, `http://host:port` (or `https://`).
    pub url: String,
    pub connect_timeout_ms: u64,
    /// Each call's deadline; a call that takes longer answers `UNAVAILABLE`.
    pub timeout_ms: u64,
    /// Mutual TLS to the node (with an `https://` url).
    pub tls: Option<ClientTls>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50052)),
            engine: Engine::Embedded,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            shutdown_grace_secs: 10,
            tls: None,
            embedded: EmbeddedConfig::default(),
            postgres: PostgresConfig::default(),
            proxy: ProxyConfig::default(),
            call_limits: GrpcLimits::default(),
        }
    }
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self { path: PathBuf::from("data/backend/store.redb"), cache_bytes: 128 << 20 }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self { url: String::new(), connect_timeout_ms: 1000, timeout_ms: 5000, tls: None }
    }
}

impl ProxyConfig {
    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

impl Config {
    pub(crate) fn limits(&self) -> Limits {
        Limits { max_document_bytes: self.max_document_bytes }
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        self.call_limits.validate(problems);
        if self.max_document_bytes < 1024 {
            problems.push(format!("max_document_bytes: at least 1024, got {}", self.max_document_bytes));
        }
        if self.max_document_bytes > 1 << 30 {
            problems.push(format!("max_document_bytes: at most 1 GiB (1073741824), got {}", self.max_document_bytes));
        }
        bitmail_runtime::grpc_tls::check_listen("listen", self.listen, "tls", self.tls.as_ref(), problems);
        match self.engine {
            Engine::Memory => {}
            Engine::Postgres => {
                if let Some(ca) = &self.postgres.ca_file
                    && let Err(e) = crate::postgres_tls::read_roots(ca)
                {
                    problems.push(format!("postgres.ca_file: {e}"));
                }
                if self.postgres.url.is_empty() {
                    problems.push("postgres.url: required when engine = \"postgres\"".into());
                } else if let Err(
                    crate::store::StoreError::InvalidArgument(why) | crate::store::StoreError::Unavailable(why),
                ) = crate::postgres::parse_url(self.postgres.url.expose(), self.postgres.ca_file.is_some())
                {
                    problems.push(format!("postgres.url: {why}"));
                }
                if !(1..=1024).contains(&self.postgres.pool_size) {
                    problems.push(format!("postgres.pool_size: 1 to 1024, got {}", self.postgres.pool_size));
                }
            }
            Engine::Embedded => {
                if self.embedded.path.as_os_str().is_empty() {
                    problems.push("embedded.path: must not be empty".into());
                }
            }
            Engine::Proxy => {
                let url = &self.proxy.url;
                if url.is_empty() {
                    problems.push("proxy.url: required with engine = \"proxy\"".into());
                } else if !(url.starts_with("http://") || url.starts_with("https://"))
                    || url.parse::<tonic::transport::Uri>().is_err()
                {
                    problems.push(format!("proxy.url: {url:?} is not an http:// or https:// URL"));
                }
                bitmail_runtime::grpc_tls::check_link("proxy.url", url, "proxy.tls", self.proxy.tls.as_ref(), problems);
                if self.proxy.timeout_ms == 0 || self.proxy.connect_timeout_ms == 0 {
                    problems.push("proxy.timeout_ms, proxy.connect_timeout_ms: must be more than 0".into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        bitmail_runtime::config::parse::<Config>(text, "t").unwrap_err().problems
    }

    #[test]
    fn defaults_and_an_unknown_engine() {
        let c: Config = bitmail_runtime::config::parse("", "t").unwrap();
        assert_eq!(c.listen.port(), 50052);
        assert_eq!(c.engine, Engine::Embedded);
        assert_eq!(c.limits().max_document_bytes, 16 << 20);
        let err = problems("engine = \"rocks\"\n");
        assert!(err[0].contains("unknown variant `rocks`"), "{err:?}");
    }

    #[test]
    fn postgres_needs_a_url_that_parses_and_never_shows_it() {
        assert_eq!(problems("engine = \"postgres\"\n"), vec!["postgres.url: required when engine = \"postgres\""]);

        let text = "engine = \"postgres\"\n[postgres]\nurl = \"postgres://u:hunter2@db/x?bogus=1\"\npool_size = 0\n";
        let err = bitmail_runtime::config::parse::<Config>(text, "t").unwrap_err();
        assert_eq!(err.problems.len(), 2, "{:?}", err.problems);
        assert!(err.problems[0].contains("unknown option `bogus`"), "{:?}", err.problems);
        assert!(!err.to_string().contains("hunter2"));

        let text = "engine = \"postgres\"\n[postgres]\nurl = \"postgres://u:hunter2@db1,db2/x\"\n";
        let err = problems(text);
        assert!(err[0].starts_with("postgres.url: 2 hosts need target_session_attrs=read-write"), "{err:?}");
        assert!(!err[0].contains("hunter2"), "{err:?}");
        let text = "engine = \"postgres\"\n[postgres]\nurl = \"postgres://u:pw@db1:1,db2:2/x?target_session_attrs=read-write\"\n";
        bitmail_runtime::config::parse::<Config>(text, "t").unwrap();

        let text = "engine = \"postgres\"\n[postgres]\nurl = \"postgres://u:hunter2@db:6543/x\"\n";
        let config: Config = bitmail_runtime::config::parse(text, "t").unwrap();
        assert_eq!((config.engine, config.postgres.pool_size), (Engine::Postgres, 16));
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn a_proxy_needs_a_url_and_every_problem_is_reported() {
        let err = problems("engine = \"proxy\"\nmax_document_bytes = 10\n");
        assert_eq!(err.len(), 2, "{err:?}");
        assert!(err.iter().any(|p| p.contains("proxy.url: required")), "{err:?}");
        assert!(err.iter().any(|p| p.contains("max_document_bytes")), "{err:?}");
        let err = problems("engine = \"proxy\"\n[proxy]\nurl = \"storage:50052\"\n");
        assert!(err[0].contains("not an http"), "{err:?}");
        let ok: Config =
            bitmail_runtime::config::parse("engine = \"proxy\"\n[proxy]\nurl = \"http://10.0.0.2:50052\"\n", "t")
                .unwrap();
        assert_eq!(ok.proxy.timeout(), Duration::from_secs(5));
    }

    #[test]
    fn tls_is_needed_beyond_loopback_and_for_https_and_verified_postgres() {
        let err = problems("listen = \"0.0.0.0:50052\"\n");
        assert!(err[0].starts_with("tls: required because listen = \"0.0.0.0:50052\""), "{err:?}");
        let err = problems("engine = \"proxy\"\n[proxy]\nurl = \"https://10.0.0.2:50052\"\n");
        assert!(err[0].starts_with("proxy.tls: required for the https:// proxy.url"), "{err:?}");

        let pg = "engine = \"postgres\"\n[postgres]\nurl = \"postgres://u:pw@db/x?sslmode=require\"\n";
        assert!(problems(pg)[0].contains("postgres.ca_file"), "{:?}", problems(pg));
        let pg =
            "engine = \"postgres\"\n[postgres]\nurl = \"postgres://u:pw@db/x\"\nca_file = \"/nonexistent/ca.pem\"\n";
        assert!(problems(pg)[0].starts_with("postgres.ca_file: cannot read /nonexistent/ca.pem"), "{:?}", problems(pg));
    }
}
