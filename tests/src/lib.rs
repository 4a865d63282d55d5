//! Fakes of the outside world for BitMail's tests and for `cargo xtask run`.
//!
//! - [`sendgrid`]: a SendGrid Mail Send v3 server that checks what SendGrid checks,
//!   records what it accepts, and can be told to fail, slow down or never answer.
//!
//! The cross-service tests live in `tests/tests/`, one scenario per file.

pub mod sendgrid;
