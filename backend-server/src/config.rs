//! backend-server's configuration (`--config PATH`, TOML). Every key has a default.
//!
//! ```toml
//! listen = "127.0.0.1:50052"
//! engine = "memory"
//! ```

use std::net::SocketAddr;

use bitmail_runtime::config::Validate;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where the gRPC `Store` service listens.
    pub listen: SocketAddr,
    /// The storage engine. Only `memory` exists so far.
    pub engine: Engine,
    /// How long shutdown waits for calls in flight.
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// Everything in RAM; lost on restart. For tests and demos.
    Memory,
}

impl Default for Config {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 50052)), engine: Engine::Memory, shutdown_grace_secs: 10 }
    }
}

impl Validate for Config {
    fn validate(&self, _problems: &mut Vec<String>) {}
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
}
