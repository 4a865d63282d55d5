//! backend-server's configuration (`--config PATH`, TOML). Every key has a default.
//!
//! ```toml
//! listen = "127.0.0.1:50052"
//! engine = "memory"          # or "postgres"
//!
//! [postgres]                   # read when engine = "postgres"
//! url = "postgres://bitmail:PASSWORD@127.0.0.1:5432/bitmail"   # or { env = "VAR" } / { file = "PATH" }
//! pool_size = 16
//! ```

use std::net::SocketAddr;

use bitmail_runtime::config::{Secret, Validate};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where the gRPC `Store` service listens.
    pub listen: SocketAddr,
    /// The storage engine.
    pub engine: Engine,
    /// The `postgres` engine's connection.
    pub postgres: PostgresConfig,
    /// How long shutdown waits for calls in flight.
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// Everything in RAM; lost on restart. For tests and demos.
    Memory,
    /// PostgreSQL, or a compatible distributed SQL engine: see `[postgres]`.
    Postgres,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PostgresConfig {
    /// A libpq-style URL or key/value string. A secret: it can hold the password.
    pub url: Secret,
    /// At most this many connections.
    pub pool_size: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self { url: Secret::default(), pool_size: 16 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50052)),
            engine: Engine::Memory,
            postgres: PostgresConfig::default(),
            shutdown_grace_secs: 10,
        }
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        if self.engine == Engine::Postgres {
            if self.postgres.url.is_empty() {
                problems.push("postgres.url: required when engine = \"postgres\"".into());
            } else if let Err(
                crate::store::StoreError::InvalidArgument(why) | crate::store::StoreError::Unavailable(why),
            ) = crate::postgres::parse_url(self.postgres.url.expose())
            {
                problems.push(format!("postgres.url: {why}"));
            }
            if !(1..=1024).contains(&self.postgres.pool_size) {
                problems.push(format!("postgres.pool_size: 1 to 1024, got {}", self.postgres.pool_size));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_an_unknown_engine() {
        let c: Config = bitmail_runtime::config::parse("", "t").unwrap();
        assert_eq!(c.listen.port(), 50052);
        let err = bitmail_runtime::config::parse::<Config>("engine = \"rocks\"\n", "t").unwrap_err();
        assert!(err.problems[0].contains("unknown variant `rocks`"), "{:?}", err.problems);
    }

    #[test]
    fn postgres_needs_a_url_that_parses_and_never_shows_it() {
        let err = bitmail_runtime::config::parse::<Config>("engine = \"postgres\"\n", "t").unwrap_err();
        assert_eq!(err.problems, vec!["postgres.url: required when engine = \"postgres\""]);

        let text = "engine = \"postgres\"\n[postgres]\nurl = \"postgres://u:hunter2@db/x?bogus=1\"\npool_size = 0\n";
        let err = bitmail_runtime::config::parse::<Config>(text, "t").unwrap_err();
        assert_eq!(err.problems.len(), 2, "{:?}", err.problems);
        assert!(err.problems[0].contains("unknown option `bogus`"), "{:?}", err.problems);
        assert!(!err.to_string().contains("hunter2"));

        let text = "engine = \"postgres\"\n[postgres]\nurl = \"postgres://u:hunter2@db:6543/x\"\n";
        let config: Config = bitmail_runtime::config::parse(text, "t").unwrap();
        assert_eq!((config.engine, config.postgres.pool_size), (Engine::Postgres, 16));
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
