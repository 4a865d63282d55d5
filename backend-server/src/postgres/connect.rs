//! The connection settings of the PostgreSQL engine: the URL checked once (also by
//! `--check-config`), the defaults that bound how long a dead host can hold a call, and
//! the description of the target used in error messages.
//!
//! Several hosts are named the libpq way, in the URL itself:
//! `postgres://user:pw@db1:5432,db2:5432/bitmail?target_session_attrs=read-write` (or
//! `host=db1,db2 port=5432,5432 ... target_session_attrs=read-write`). Every new
//! connection tries the hosts in order (or in random order with
//! `load_balance_hosts=random`) and keeps the first one whose sessions are read-write, so
//! after a standby is promoted new connections find it. With several hosts,
//! `target_session_attrs=read-write` is required: without it a connection could land on
//! a read-only standby and every write would fail. With `[postgres] ca_file`, each host's
//! certificate must carry that host's own name.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode, TargetSessionAttrs};

use super::errors::error_text;
use crate::store::StoreError;

/// How long one TCP connect to one host may take, unless the URL says
/// (`connect_timeout=` seconds). A new connection tries the hosts in turn, so a host that
/// drops packets costs this much before the next one is tried.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long sent data may stay unacknowledged before the connection is given up, unless
/// the URL says (`tcp_user_timeout=`): a host that vanished without closing its sockets
/// fails the calls in flight after this, not after the kernel's many minutes.
pub(super) const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);
/// TCP keepalive on idle pooled connections when the URL leaves tokio-postgres's default
/// of 2 hours: idle for 30 s, then 3 probes 10 s apart.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;
/// tokio-postgres's own `keepalives_idle` default, to tell "not set" apart.
const DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// Parses a connection URL; the error names what is wrong, never the URL itself (it may
/// hold a password). `tls`: whether `[postgres] ca_file` is set.
pub(crate) fn parse_url(url: &str, tls: bool) -> Result<tokio_postgres::Config, StoreError> {
    let config = tokio_postgres::Config::from_str(url).map_err(|e| StoreError::InvalidArgument(error_text(&e)))?;
    match (config.get_ssl_mode(), tls) {
        (SslMode::Require, false) => {
            return Err(StoreError::InvalidArgument(
                "sslmode=require needs postgres.ca_file, the CA that the server's certificate is verified against"
                    .into(),
            ));
        }
        (SslMode::Disable, true) => {
            return Err(StoreError::InvalidArgument(
                "sslmode=disable contradicts postgres.ca_file (TLS): remove one".into(),
            ));
        }
        _ => {}
    }
    let hosts = host_count(&config);
    let ports = config.get_ports().len();
    if ports > 1 && ports != hosts {
        return Err(StoreError::InvalidArgument(format!(
            "{hosts} hosts but {ports} ports: give one port for all hosts, or one per host"
        )));
    }
    let (names, addrs) = (config.get_hosts().len(), config.get_hostaddrs().len());
    if names > 0 && addrs > 0 && names != addrs {
        return Err(StoreError::InvalidArgument(format!(
            "{names} hosts but {addrs} hostaddrs: give one hostaddr per host"
        )));
    }
    if hosts > 1 && config.get_target_session_attrs() != TargetSessionAttrs::ReadWrite {
        return Err(StoreError::InvalidArgument(format!(
            "{hosts} hosts need target_session_attrs=read-write, so that connections go to the primary and \
             never to a read-only standby"
        )));
    }
    if tls && config.get_hosts().iter().any(|h| !matches!(h, Host::Tcp(_))) {
        return Err(StoreError::InvalidArgument(
            "postgres.ca_file (TLS) needs TCP hosts: PostgreSQL has no TLS on a Unix socket".into(),
        ));
    }
    Ok(config)
}

fn host_count(config: &tokio_postgres::Config) -> usize {
    config.get_hosts().len().max(config.get_hostaddrs().len()).max(1)
}

/// Fills in the timeouts the URL leaves unset (see the constants), and returns how long
/// opening one connection may take in all: every host tried once, plus the handshake.
pub(super) fn apply_defaults(config: &mut tokio_postgres::Config) -> Duration {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    if config.get_keepalives() && config.get_keepalives_idle() == DEFAULT_KEEPALIVE_IDLE {
        config.keepalives_idle(KEEPALIVE_IDLE);
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVE_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVE_RETRIES);
        }
    }
    if config.get_application_name().is_none() {
        config.application_name("bitmail-backend");
    }
    let per_host = config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT);
    let hosts = u32::try_from(host_count(config)).unwrap_or(u32::MAX);
    per_host.saturating_mul(hosts) + Duration::from_secs(5)
}

/// Hosts, ports and database name, for error messages; never the user's password.
pub(super) fn describe_target(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() { "localhost".to_owned() } else { hosts.join(",") };
    format!("{hosts}/{}", config.get_dbname().or(config.get_user()).unwrap_or("postgres"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> String {
        match parse_url(url, false) {
            Err(StoreError::InvalidArgument(why)) => why,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn several_hosts_need_read_write_sessions_and_matching_ports() {
        let two = "postgres://u:pw@h1:5432,h2:5433/db";
        assert!(refused(two).contains("2 hosts need target_session_attrs=read-write"));
        assert!(refused(&format!("{two}?target_session_attrs=any")).contains("read-write"));
        let config = parse_url(&format!("{two}?target_session_attrs=read-write"), false).unwrap();
        assert_eq!(describe_target(&config), "h1:5432,h2:5433/db");
        let why = refused("host=h1,h2,h3 port=1,2 dbname=db target_session_attrs=read-write");
        assert!(why.contains("3 hosts but 2 ports"), "{why}");
        // One port for all hosts is fine, as is a single host without the setting.
        parse_url("host=h1,h2 port=5432 dbname=db target_session_attrs=read-write", false).unwrap();
        parse_url("postgres://u:pw@h1/db", false).unwrap();
        let why = refused("postgres://u:pw@h1,h2/db?target_session_attrs=bogus");
        assert!(why.contains("target_session_attrs") && !why.contains("pw"), "{why}");
    }

    #[test]
    fn unset_timeouts_get_bounds_and_set_ones_stay() {
        let mut config = parse_url("postgres://u@h1,h2/db?target_session_attrs=read-write", false).unwrap();
        let open = apply_defaults(&mut config);
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert_eq!(config.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(open, Duration::from_secs(15));
        let mut config = parse_url("postgres://u@h1/db?connect_timeout=2&keepalives_idle=60", false).unwrap();
        assert_eq!(apply_defaults(&mut config), Duration::from_secs(7));
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(60));
    }
}
