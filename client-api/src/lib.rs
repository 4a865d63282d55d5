//! BitMail's HTTPS edge. It never talks to a provider: mail goes to mta-server over gRPC,
//! and users, sessions and message records live in backend-server.
//!
//! - [`config`]: the service's TOML configuration;
//! - [`tls`]: the rustls server configuration, from configured files or a self-signed
//!   certificate generated on first start;
//! - [`accounts`]: users (argon2id password hashes) and sessions, as store documents;
//! - [`routes`]: the HTTP API (`/healthz`, `/api/session`, `/api/messages`) and the page;
//! - [`error`]: the one JSON error type every handler returns;
//! - [`server`]: binding, serving and graceful shutdown;
//! - [`probe`]: `--probe`, `GET /healthz` against the running edge.

pub mod accounts;
pub mod config;
pub mod error;
pub mod probe;
pub mod routes;
pub mod server;
pub mod tls;
