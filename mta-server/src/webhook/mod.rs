//! What every webhook parser, delivery events ([`crate::events`]) or received mail
//! ([`crate::inbound`]), needs: the request's header fields and the ways a request is
//! refused ([`request`]), the freshness of a signed timestamp and Mailgun's HMAC
//! ([`signature`]).
//!
//! Below both `events` and `inbound`: imports neither, nor anything else of the crate.
//! Which request goes to which parser is [`crate::receive`]'s choice, above both.

pub mod request;
pub mod signature;

pub use request::Refused;
pub(crate) use request::header;
pub(crate) use signature::fresh;
pub use signature::{MAX_SKEW, MailgunSigningKey};
