//! Fakes of the outside world for BitMail's tests and for `cargo xtask run`.
//!
//! - [`sendgrid`]: a SendGrid Mail Send v3 server that checks what SendGrid checks,
//!   records what it accepts, and can be told to fail, slow down or never answer.
//! - [`mailgun`]: a Mailgun messages API server (`/v3/{domain}/messages` and
//!   `messages.mime`) that checks what Mailgun checks, records what it accepts, and
//!   takes the same scripted [`sendgrid::Behavior`].
//! - [`postgres`]: a throwaway PostgreSQL cluster (initdb in a temporary folder, a free
//!   loopback port), stopped and removed on drop.
//!
//! The cross-service tests live in `tests/tests/`, one scenario per file.

pub mod mailgun;
pub mod postgres;
pub mod sendgrid;
mod shared;
