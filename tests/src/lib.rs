//! Fakes of the outside world for BitMail's tests and for `cargo xtask run`.
//!
//! - [`sendgrid`]: a SendGrid Mail Send v3 server that checks what SendGrid checks,
//!   records what it accepts, and can be told to fail, slow down or never answer.
//! - [`mailgun`]: a Mailgun messages API server (`/v3/{domain}/messages` and
//!   `messages.mime`) that checks what Mailgun checks, records what it accepts, and
//!   takes the same scripted [`sendgrid::Behavior`].
//! - [`ses`]: an Amazon SES v2 `SendEmail` server answering SES's rest-json errors, for
//!   the answers an emulator cannot give (throttling, signature errors, hangs).
//! - [`sns`]: an Amazon SNS stand-in: an HTTPS server with a throwaway CA serving an
//!   RSA signing certificate and the `ConfirmSubscription` link, and a signer of SNS
//!   messages (signature versions 1 and 2).
//! - [`api_key`]: API keys made with `mta-server create-key` for tests and benchmarks
//!   that run the binary, and clients that send them.
//! - [`eventually`]: polling a condition to a deadline, for tests that would otherwise
//!   sleep a fixed time and then assert.
//! - [`moto`]: starts moto, an Amazon SES emulator from PyPI, as a child process.
//! - [`postgres`]: a throwaway PostgreSQL cluster (initdb in a temporary folder, a free
//!   loopback port), stopped and removed on drop; or a primary with a synchronous hot
//!   standby, to kill and promote.
//! - [`command_line`]: the checks of the command line every service shares, run
//!   against each real binary.
//! - [`store_conformance`](mod@store_conformance): the `Store` contract, written once, run against every
//!   engine; [`store_engines`]: fresh stores of each engine for it.
//!
//! - [`faulty_store`]: a `Store` around a real engine that fails, or holds, the next
//!   writes of one kind of document on purpose.
//! - [`ca`]: a throwaway CA and certificates it signs (servers, and a client per service
//!   for mutual TLS), as PEM files; the `bitmail-certs` binary writes a set of them.
//! - [`processes`]: the service binaries as child processes (kill -9 for real), and
//!   loopback ports to restart them on.
//! - [`store_bytes`]: what a set of documents weighs in the store.
//! - `shared`: what every fake uses (a poison-tolerant lock).
//!
//! The cross-service tests live in `tests/tests/suite/`, one test binary with a module
//! per scenario (one link of every service, not one per scenario).

pub mod api_key;
pub mod ca;
pub mod command_line;
pub mod eventually;
pub mod faulty_store;
pub mod mailgun;
pub mod moto;
pub mod postgres;
pub mod processes;
pub mod sendgrid;
pub mod ses;
mod shared;
pub mod sns;
pub mod store_bytes;
pub mod store_conformance;
pub mod store_engines;
