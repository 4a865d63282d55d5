//! BitMail's HTTPS edge. It never talks to a provider: mail goes to mta-server over gRPC,
//! and users, sessions and message records live in backend-server.
//!
//! The public surface is what `main.rs` and the integration tests use: [`config`],
//! [`server`], [`probe`] and [`bitmail_runtime::tls::CertPaths`]. Everything else is private to the crate.
//!
//! Start and stop:
//! - [`config`]: the service's TOML configuration;
//! - [`tls`]: the rustls server configuration, from configured files or a self-signed
//!   certificate generated on first start;
//! - [`server`]: binding, serving and graceful shutdown;
//! - [`limits`]: `[limits]`, and what enforces them: concurrency caps with 503, the
//!   request timeout, the webhooks' budgets (`conn_cap`: the cap on connections);
//! - [`probe`]: `--probe`, `GET /healthz` against the running edge;
//! - [`create_user`]: `client-api create-user`, a user (the first admin) from the
//!   command line.
//!
//! The HTTP API, from the router down:
//! - `routes`: the router: every path, its handler, and the middleware stack;
//! - `metrics`: every request counted and timed, `GET /metrics` for this host only;
//! - `health`: `GET /healthz`, the upstreams' gRPC health;
//! - `page`: the webmail's files, or the bare page without a build;
//! - `session`: signing in and out, who is signed in;
//! - `mail`: reading, marking and deleting mail; delivery status of sent mail; the
//!   live stream of a mailbox's changes (`GET /api/events`);
//! - `search`: searching the user's own mail (the query language, its bounds);
//! - `groups_api`: groups, their members and owners (`groups`: what they are);
//! - `fan_out`: who gets a copy of a message sent here (Sent, local recipients, groups'
//!   members, a broadcast's users), its content stored once;
//! - `compose`: recipients, Markdown, attachments, local delivery, submission;
//! - `status`: providers, queue depth and the last hour's deliveries; following
//!   mta-server's status changes;
//! - `node_status`: each mta-server on the status page: reachable since when, and what
//!   its reports in the store say (node id, messages waiting);
//! - `webhooks`: the providers' event and inbound webhooks, forwarded untouched to
//!   mta-server;
//! - `app_api`: the SendGrid- and Mailgun-shaped sending APIs for applications, with
//!   the app's own key forwarded to mta-server (`sendgrid`, `mailgun`, `mime`; `form`
//!   and `submit` below them);
//! - `lists`: mailing lists: the public subscribe, confirm, unsubscribe (RFC 8058
//!   one-click) and preferences pages, and the lists, campaigns and tasks JSON API of
//!   the admin console and of apps, through mta-server's `Lists` service;
//! - `inbound`: received mail (parsed by mta-server) put into local users' inboxes;
//! - `admin`, `admin_ops`, `admin_audit`, `admin_csv`: the admin console's API (tenants,
//!   keys, usage; providers, suppressions; the audit log and its CSV export), for users
//!   with the `admin` role, through mta-server with `mta_admin_key`.
//!
//! What the handlers share, below them:
//! - `state`: `AppState`, what every handler is given;
//! - `mta_pool`: every mta-server, rotation over the healthy ones, Submit retried on
//!   another node under the same idempotency key, GetMessage from whichever has it;
//! - `extract`: the extractors: a JSON body with JSON rejections, the signed-in user;
//! - `csrf`: the same-origin and CSRF checks on every state change, and the CSRF token;
//! - `session_sweep`: sessions past their expiry deleted in bounded batches, every
//!   `session_sweep_secs`;
//! - `subscribe_limit`: the hosted subscribe form's posts per client address;
//! - `limiter`: failed sign-ins limited per name and per client address;
//! - `shared_counts`: failed sign-in counts in the store, seen by every edge;
//! - `send_limit`: one user's sends per minute and recipients per message;
//! - `sent_status`: the delivery status of sent mail, kept in its document once final;
//! - `verdicts`: a received message's SPF/DKIM/spam verdicts and the warnings shown;
//! - `deliveries`: the last hour's delivery outcomes, in memory, for the status page;
//! - `accounts`: users (argon2id password hashes) and sessions, as store documents;
//! - `live`: the open live streams of this edge by user, told of every mailbox change
//!   and delivery state; their caps and lifetime;
//! - `groups`: groups and their members as store documents;
//! - `mailbox`: folders, messages and attachments as store documents (`mailbox/index.rs`:
//!   what keeps a folder page and a search fast at any mailbox size);
//! - `unique`: documents stored once per unique key (user names, received mail), and
//!   those keys;
//! - `sanitize`: HTML mail made safe to show (ammonia), Markdown to HTML;
//! - `properties` (tests only): property tests of the edge's parsers;
//! - `assets`: the built webmail, compressed once and served with cache headers;
//! - `error`: the one JSON error type every handler returns.
//!
//! Handlers never import `routes`, and nothing below the handlers imports one, so the
//! modules import each other without cycles.

pub mod config;
pub mod create_user;
pub mod limits;
pub mod probe;
pub mod server;

mod accounts;
mod admin;
mod admin_audit;
mod admin_csv;
mod admin_ops;
mod app_api;
mod assets;
mod compose;
mod conn_cap;
mod csrf;
mod deliveries;
mod error;
mod extract;
mod fan_out;
mod groups;
mod groups_api;
mod health;
mod inbound;
mod limiter;
mod lists;
mod live;
mod mail;
mod mailbox;
mod metrics;
mod mta_pool;
mod node_status;
mod page;
#[cfg(test)]
mod properties;
mod routes;
mod sanitize;
mod search;
mod send_limit;
mod sent_status;
mod session;
mod session_sweep;
mod shared_counts;
mod state;
mod status;
mod subscribe_limit;
mod unique;
mod verdicts;
mod webhooks;
