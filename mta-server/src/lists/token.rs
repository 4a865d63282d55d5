//! The signed tokens of list links: a confirmation link (`c`, valid 7 days) and a
//! subscriber's link for unsubscribing and preferences (`s`, no expiry: a link in an old
//! mail must still unsubscribe), optionally naming the campaign whose mail carried it.
//!
//! A token is `KIND.SUBSCRIBER.CAMPAIGN.EXPIRES.MAC`: the subscriber's id, the campaign's
//! id or `-`, the expiry in seconds since the epoch (0: none), and the first 16 bytes of
//! HMAC-SHA256 over the rest, base64url, under the deployment's list secret. The secret
//! is made once, at random, and kept in the shared store (unique key `lists/secret`), so
//! that every node signs and checks alike. A token is a credential: never logged whole.

use std::sync::Arc;

use aws_lc_rs::hmac;
use backend_server::store::{Fields, Store, StoreError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const SECRET_KEY: &str = "lists/secret";
/// How long a confirmation link works.
pub const CONFIRM_VALID_SECS: u64 = 7 * 24 * 3600;
const MAC_BYTES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Confirm,
    Subscriber,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub kind: Kind,
    pub subscriber: String,
    pub campaign: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("this link is not valid (it was changed or is not BitMail's)")]
    Invalid,
    #[error("this link has expired; subscribe again for a new one")]
    Expired,
}

#[derive(Clone)]
pub struct Signer {
    key: Arc<hmac::Key>,
}

impl Signer {
    pub fn new(secret: &[u8]) -> Signer {
        Signer { key: Arc::new(hmac::Key::new(hmac::HMAC_SHA256, secret)) }
    }

    /// The deployment's signer, its secret read from (or made once in) `store`.
    pub async fn load(store: &Arc<dyn Store>) -> Result<Signer, StoreError> {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).map_err(|_| StoreError::Unavailable("no randomness".into()))?;
        let fields = Fields::from([
            ("kind".to_owned(), "lists-secret".to_owned()),
            ("secret".to_owned(), URL_SAFE_NO_PAD.encode(secret)),
        ]);
        let doc = match store.create(SECRET_KEY, fields).await {
            Ok(doc) => doc,
            Err(StoreError::AlreadyExists { id }) => store.get(&id).await?,
            Err(e) => return Err(e),
        };
        let secret = doc
            .fields
            .get("secret")
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .filter(|s| s.len() >= 32)
            .ok_or_else(|| StoreError::Unavailable("the stored list secret is damaged".into()))?;
        Ok(Signer::new(&secret))
    }

    fn mac(&self, body: &str) -> String {
        let tag = hmac::sign(&self.key, format!("bitmail-list-token\0{body}").as_bytes());
        URL_SAFE_NO_PAD.encode(&tag.as_ref()[..MAC_BYTES])
    }

    pub fn sign(&self, claims: &Claims, now_secs: u64) -> String {
        let (kind, expires) = match claims.kind {
            Kind::Confirm => ("c", now_secs + CONFIRM_VALID_SECS),
            Kind::Subscriber => ("s", 0),
        };
        let campaign = claims.campaign.as_deref().unwrap_or("-");
        let body = format!("{kind}.{}.{campaign}.{expires}", claims.subscriber);
        let mac = self.mac(&body);
        format!("{body}.{mac}")
    }

    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Claims, TokenError> {
        if token.len() > 300 {
            return Err(TokenError::Invalid);
        }
        let (body, mac) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let sent = URL_SAFE_NO_PAD.decode(mac).map_err(|_| TokenError::Invalid)?;
        let expected = hmac::sign(&self.key, format!("bitmail-list-token\0{body}").as_bytes());
        // Constant time: aws-lc-rs's verify compares whole tags, so compare the prefix
        // without an early exit here.
        if sent.len() != MAC_BYTES
            || sent.iter().zip(&expected.as_ref()[..MAC_BYTES]).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0
        {
            return Err(TokenError::Invalid);
        }
        let parts: Vec<&str> = body.split('.').collect();
        let [kind, subscriber, campaign, expires] = parts[..] else { return Err(TokenError::Invalid) };
        let kind = match kind {
            "c" => Kind::Confirm,
            "s" => Kind::Subscriber,
            _ => return Err(TokenError::Invalid),
        };
        let expires: u64 = expires.parse().map_err(|_| TokenError::Invalid)?;
        if expires != 0 && expires < now_secs {
            return Err(TokenError::Expired);
        }
        let campaign = (campaign != "-").then(|| campaign.to_owned());
        Ok(Claims { kind, subscriber: subscriber.to_owned(), campaign })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(kind: Kind) -> Claims {
        Claims { kind, subscriber: "0190-abc".into(), campaign: Some("0190-camp".into()) }
    }

    #[test]
    fn a_signed_token_verifies_and_a_changed_one_does_not() {
        let s = Signer::new(&[7; 32]);
        let t = s.sign(&claims(Kind::Subscriber), 1000);
        assert_eq!(s.verify(&t, 5_000_000_000).unwrap(), claims(Kind::Subscriber));
        let other = t.replace("0190-abc", "0190-abd");
        assert_eq!(s.verify(&other, 1000), Err(TokenError::Invalid));
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(s.verify(std::str::from_utf8(&flipped).unwrap(), 1000), Err(TokenError::Invalid));
        assert_eq!(Signer::new(&[8; 32]).verify(&t, 1000), Err(TokenError::Invalid));
        assert_eq!(s.verify("", 1000), Err(TokenError::Invalid));
        assert_eq!(s.verify(&"a.".repeat(400), 1000), Err(TokenError::Invalid));
    }

    #[test]
    fn a_confirmation_token_expires_after_seven_days() {
        let s = Signer::new(&[7; 32]);
        let t = s.sign(&claims(Kind::Confirm), 1000);
        assert!(s.verify(&t, 1000 + CONFIRM_VALID_SECS).is_ok());
        assert_eq!(s.verify(&t, 1001 + CONFIRM_VALID_SECS), Err(TokenError::Expired));
        // Moving the expiry breaks the signature.
        let later = t.replace(&format!(".{}.", 1000 + CONFIRM_VALID_SECS), ".99999999999.");
        assert_eq!(s.verify(&later, 1000), Err(TokenError::Invalid));
    }
}
