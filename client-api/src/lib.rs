//! BitMail's HTTPS edge. It never talks to a provider: mail goes to mta-server over gRPC,
//! and users, sessions and message records live in backend-server.
//!
//! - [`config`]: the service's TOML configuration;
//! - [`tls`]: the rustls server configuration, from configured files or a self-signed
//!   certificate generated on first start;
//! - [`accounts`]: users (argon2id password hashes) and sessions, as store documents;
//! - [`routes`]: the router, the extractors, the same-origin and CSRF checks;
//! - [`session`]: signing in and out, the CSRF token, the sign-in limiter;
//! - [`mailbox`]: folders, messages and attachments as store documents;
//! - [`mail`]: reading, marking and deleting mail; delivery status of sent mail;
//! - [`compose`]: recipients, Markdown, attachments, local delivery, submission;
//! - [`sanitize`]: HTML mail made safe to show (ammonia), Markdown to HTML;
//! - [`status`]: providers, queue depth and the last hour's deliveries;
//! - [`assets`]: the built webmail, compressed once and served with cache headers;
//! - [`webhooks`]: the providers' event webhooks, forwarded untouched to mta-server;
//! - [`error`]: the one JSON error type every handler returns;
//! - [`server`]: binding, serving and graceful shutdown;
//! - [`probe`]: `--probe`, `GET /healthz` against the running edge.

pub mod accounts;
pub mod assets;
pub mod compose;
pub mod config;
pub mod error;
pub mod inbound;
pub mod mail;
pub mod mailbox;
pub mod probe;
pub mod routes;
pub mod sanitize;
pub mod server;
pub mod session;
pub mod status;
pub mod tls;
pub mod webhooks;
