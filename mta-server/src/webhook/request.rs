//! What every webhook parser, events or inbound, needs of the request the edge forwarded:
//! its header fields, and the ways a request is refused.
//!
//! Below both [`crate::events`] and [`crate::inbound`]: imports neither.

/// Why a webhook was refused; each maps to the HTTP status the provider gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("signature: {0}")]
    Unauthorized(String),
    /// Signed, but not for this server (an SNS topic not in the allow-list).
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("too large: {0}")]
    TooLarge(String),
    /// This provider has no such webhook configured.
    #[error("{0}")]
    NotConfigured(String),
    /// Could not be checked now (a signing certificate that could not be fetched): the
    /// provider should deliver again later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl Refused {
    pub fn http_status(&self) -> u32 {
        match self {
            Refused::Unauthorized(_) => 401,
            Refused::Forbidden(_) => 403,
            Refused::Malformed(_) => 400,
            Refused::TooLarge(_) => 413,
            Refused::NotConfigured(_) => 404,
            Refused::Unavailable(_) => 503,
        }
    }
}

/// The value of header `name` (case-insensitive), if present once.
pub(crate) fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
}
