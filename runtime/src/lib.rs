//! What every BitMail service shares at start and stop, so that each `main.rs` stays a
//! few lines of wiring:
//!
//! - [`cli`]: `--config PATH`, `--check-config`, `--probe`, `--help` and `--version` (clap);
//! - [`config`]: TOML loading where unknown keys are errors and every problem is reported
//!   at once, plus [`config::Secret`] for values that must never be logged;
//! - [`shutdown`]: one future that resolves on SIGTERM or Ctrl-C;
//! - [`grpc`]: the standard health service and server reflection for a tonic server;
//! - [`grpc_tls`]: mutual TLS for gRPC servers and clients, and the loopback-only rule
//!   for plaintext;
//! - [`limits`]: the timeout and concurrency limit (load shedding) around every gRPC call;
//! - [`metrics`]: Prometheus metrics, served at `GET /metrics`;
//! - [`probe`]: `--probe`, asking a running gRPC service for its health;
//! - [`sync`]: poison-tolerant locking of `std::sync` locks;
//! - [`tls`]: a TLS server identity from PEM files, or a self-signed one for development;
//! - [`time`]: the wall clock in milliseconds ([`time::now_ms`]) and calendar dates;
//! - [`init_tracing`]: `tracing` output filtered by one environment variable per service.

pub mod cli;
pub mod config;
pub mod grpc;
pub mod grpc_tls;
pub mod limits;
pub mod metrics;
pub mod probe;
pub mod shutdown;
pub mod sync;
pub mod time;
pub mod tls;

/// Exit code for a configuration that does not load (EX_USAGE, as sysexits.h).
pub const EXIT_BAD_CONFIG: i32 = 64;

/// Sets up `tracing` output on stderr. The filter comes from the environment variable
/// `env_var` (for example `BITMAIL_MTA_LOG=debug`); without it, `info` for BitMail's own
/// crates and `warn` for everything else. With `BITMAIL_LOG_FORMAT=json`, one JSON object
/// per line (for log collectors) instead of text.
pub fn init_tracing(env_var: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(env_var).unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,mta_server=info,backend_server=info,client_api=info,bitmail_runtime=info,bitmail_tests=info,bitmail_fakes=info",
        )
    });
    // A second call (tests start several services in one process) keeps the first.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("BITMAIL_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}
