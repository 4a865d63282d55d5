//! Signature checks that more than one kind of webhook makes: the freshness of a signed
//! timestamp, and Mailgun's HMAC, which signs its event webhooks and its inbound route
//! forwards alike.
//!
//! Below both [`crate::events`] and [`crate::inbound`]: imports neither.

use std::time::Duration;

use aws_lc_rs::hmac;

use super::request::Refused;

/// How far a webhook's signed timestamp may be from now.
pub const MAX_SKEW: Duration = Duration::from_secs(600);

/// Checks a signed timestamp (seconds since the epoch) against now.
pub(crate) fn fresh(timestamp_secs: &str, now_ms: u64) -> Result<(), Refused> {
    let secs: u64 = timestamp_secs
        .trim()
        .parse()
        .map_err(|_| Refused::Unauthorized(format!("timestamp {timestamp_secs:?} is not a number of seconds")))?;
    let skew = (secs.saturating_mul(1000)).abs_diff(now_ms);
    if skew > MAX_SKEW.as_millis() as u64 {
        return Err(Refused::Unauthorized(format!(
            "timestamp is {} s from now; at most {} s are allowed",
            skew / 1000,
            MAX_SKEW.as_secs()
        )));
    }
    Ok(())
}

/// Mailgun's webhook signing key (not the API key).
pub struct MailgunSigningKey {
    key: hmac::Key,
}

impl MailgunSigningKey {
    pub fn new(signing_key: &str) -> Self {
        MailgunSigningKey { key: hmac::Key::new(hmac::HMAC_SHA256, signing_key.as_bytes()) }
    }

    /// Checks a Mailgun signature: `signature` is the lowercase hex HMAC-SHA256 of
    /// `timestamp` followed by `token`, and `timestamp` is within [`MAX_SKEW`] of
    /// `now_ms`. Used by event webhooks and by inbound route forwards alike. The token's
    /// single use is the caller's to enforce.
    pub fn verify(&self, timestamp: &str, token: &str, signature: &str, now_ms: u64) -> Result<(), Refused> {
        let tag = decode_hex(signature).ok_or_else(|| Refused::Unauthorized("`signature` is not hex".into()))?;
        hmac::verify(&self.key, format!("{timestamp}{token}").as_bytes(), &tag)
            .map_err(|_| Refused::Unauthorized("the signature does not match".into()))?;
        fresh(timestamp, now_ms)
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}
