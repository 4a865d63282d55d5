//! API keys: the format, generation, the stored record (a hash, never the secret) and
//! parsing a presented key.
//!
//! A key reads `bmk_<id>_<secret>`: `bmk_` so leaked-secret scanners can recognise it,
//! `<id>` 12 characters of lowercase base32 (60 random bits; `bmk_<id>` is the visible
//! prefix shown in lists and logs), `<secret>` 43 characters of base64url without padding
//! (32 random bytes from aws-lc-rs's system generator).

use std::collections::BTreeSet;
use std::fmt;

use aws_lc_rs::digest;
use backend_server::store::Fields;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::model::{Invalid, Problem, Problems};

pub const PREFIX: &str = "bmk_";
pub const ID_CHARS: usize = 12;
pub const SECRET_CHARS: usize = 43;
/// The whole key's length: `bmk_` + id + `_` + secret.
pub const KEY_CHARS: usize = PREFIX.len() + ID_CHARS + 1 + SECRET_CHARS;
pub const MAX_NAME_CHARS: usize = 100;

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Submit mail as the key's own tenant.
    Send,
    /// Status and events of the key's own tenant's messages.
    Read,
    /// Everything, across tenants: implies every other scope.
    Admin,
    /// The edge's own key (client-api): submit naming another tenant, for its webmail
    /// users (each user's tenant's `From` rules and quotas then apply); read every
    /// tenant's message status (the edge shows each user only their own); forward
    /// provider webhooks; see the providers for the status page. Implies [`Scope::Send`]
    /// and [`Scope::Read`]; no administration.
    Service,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Send, Scope::Read, Scope::Admin, Scope::Service];

    /// The scope named `name` (`send`, `read`, `admin`, `service`).
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Read => "read",
            Scope::Admin => "admin",
            Scope::Service => "service",
        }
    }
}

/// Whether a key holding `scopes` may act with `wanted` ([`Scope::Admin`] implies all,
/// [`Scope::Service`] implies [`Scope::Send`] and [`Scope::Read`]).
pub fn grants(scopes: &BTreeSet<Scope>, wanted: Scope) -> bool {
    scopes.contains(&wanted)
        || scopes.contains(&Scope::Admin)
        || (matches!(wanted, Scope::Send | Scope::Read) && scopes.contains(&Scope::Service))
}

/// The SHA-256 of a whole key, hex in documents. A fast hash is right here, and a slow
/// password hash (argon2) would be wrong: the key holds 256 random bits, so there is
/// nothing to guess, and the check runs on every submission.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyHash(String);

impl KeyHash {
    pub fn of(key: &str) -> Self {
        let d = digest::digest(&digest::SHA256, key.as_bytes());
        Self(d.as_ref().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Constant-time comparison (in the contents; both are 64 hex characters).
    pub fn matches(&self, other: &KeyHash) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.0.as_bytes(), other.0.as_bytes()).is_ok()
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

/// A stored key: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The 12 base32 characters; unique.
    pub id: String,
    pub tenant: String,
    /// 1..=100 characters, no control characters.
    pub name: String,
    pub scopes: BTreeSet<Scope>,
    pub secret_sha256: KeyHash,
    pub created_ms: u64,
    pub expires_ms: Option<u64>,
    pub revoked_ms: Option<u64>,
    /// Written by the key check at most once a minute per key; may lag by that much.
    pub last_used_ms: Option<u64>,
    /// Who created it: a user or a key prefix, as the caller's surface names it.
    pub created_by: String,
}

/// The `kind` field of key documents.
pub const KIND: &str = "api_key";

impl ApiKey {
    /// `bmk_<id>`: what lists, logs and the refused-uses counter show.
    pub fn prefix(&self) -> String {
        format!("{PREFIX}{}", self.id)
    }

    pub fn grants(&self, wanted: Scope) -> bool {
        grants(&self.scopes, wanted)
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|e| e <= now_ms)
    }

    /// Unrevoked and unexpired at `now_ms` (its tenant's state aside).
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.revoked_ms.is_none() && !self.is_expired(now_ms)
    }

    /// Fields: `kind=api_key`, `key=<id>`, `tenant`, `admin=true` for admin keys (to find
    /// them all), `doc` (JSON of the rest but `id` and `last_used_ms`), and `last_used_ms`
    /// on its own, so the key check's blind write of it never races an edit of `doc`.
    pub fn to_fields(&self) -> Fields {
        let mut body = serde_json::to_value(self).expect("a key serializes");
        if let Some(map) = body.as_object_mut() {
            map.remove("id");
            map.remove("last_used_ms");
        }
        let mut fields = Fields::from([
            ("kind".to_owned(), KIND.to_owned()),
            ("key".to_owned(), self.id.clone()),
            ("tenant".to_owned(), self.tenant.clone()),
            ("doc".to_owned(), body.to_string()),
        ]);
        if self.scopes.contains(&Scope::Admin) {
            fields.insert("admin".into(), "true".into());
        }
        if let Some(ms) = self.last_used_ms {
            fields.insert("last_used_ms".into(), ms.to_string());
        }
        fields
    }

    pub fn from_fields(fields: &Fields) -> Option<Self> {
        if fields.get("kind").map(String::as_str) != Some(KIND) {
            return None;
        }
        let mut body: serde_json::Value = serde_json::from_str(fields.get("doc")?).ok()?;
        let map = body.as_object_mut()?;
        map.insert("id".into(), fields.get("key")?.clone().into());
        let last_used = fields.get("last_used_ms").and_then(|v| v.parse::<u64>().ok());
        map.insert("last_used_ms".into(), last_used.into());
        serde_json::from_value(body).ok()
    }
}

/// A key just created: the record to store and the whole key, to show once.
pub struct NewKey {
    pub record: ApiKey,
    key: String,
}

impl NewKey {
    /// A new key with random id and secret. Checks the name and scopes (at least one).
    pub fn generate(
        tenant: &str,
        name: &str,
        scopes: BTreeSet<Scope>,
        expires_ms: Option<u64>,
        created_by: &str,
        now_ms: u64,
    ) -> Result<Self, Invalid> {
        let mut p = Problems::default();
        p.text("name", name, MAX_NAME_CHARS);
        if scopes.is_empty() {
            p.add("scopes", Problem::Empty);
        }
        if expires_ms.is_some_and(|e| e <= now_ms) {
            p.add("expires_ms", Problem::Other("is not in the future"));
        }
        p.text("created_by", created_by, 200);
        p.finish()?;

        let mut id_bytes = [0u8; ID_CHARS];
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut id_bytes).expect("the system random generator works");
        aws_lc_rs::rand::fill(&mut secret).expect("the system random generator works");
        // 5 random bits per character: 60 bits in all.
        let id: String = id_bytes.iter().map(|b| BASE32[usize::from(b & 31)] as char).collect();
        let key = format!("{PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(secret));
        let record = ApiKey {
            id,
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            scopes,
            secret_sha256: KeyHash::of(&key),
            created_ms: now_ms,
            expires_ms,
            revoked_ms: None,
            last_used_ms: None,
            created_by: created_by.to_owned(),
        };
        Ok(Self { record, key })
    }

    /// The whole key (`bmk_<id>_<secret>`), to hand to the caller once and never store.
    pub fn expose(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey").field("record", &self.record).field("key", &"<secret>").finish()
    }
}

/// A presented key that has the right shape.
#[derive(Clone, Copy)]
pub struct Presented<'a> {
    key: &'a str,
}

impl<'a> Presented<'a> {
    /// Checks the shape only: the prefix, the lengths, the alphabets, and that the secret
    /// is canonical base64url for 32 bytes. A key that fails is "malformed", told apart
    /// from a well-formed key nobody created ("unknown").
    pub fn parse(key: &'a str) -> Result<Self, Malformed> {
        let rest = key.strip_prefix(PREFIX).ok_or(Malformed::Prefix)?;
        if key.len() != KEY_CHARS {
            return Err(Malformed::Length);
        }
        let (id, rest) = rest.split_at_checked(ID_CHARS).ok_or(Malformed::Length)?;
        if !id.bytes().all(|b| BASE32.contains(&b)) {
            return Err(Malformed::Characters);
        }
        let secret = rest.strip_prefix('_').ok_or(Malformed::Characters)?;
        match URL_SAFE_NO_PAD.decode(secret) {
            Ok(bytes) if bytes.len() == 32 => Ok(Self { key }),
            _ => Err(Malformed::Characters),
        }
    }

    pub fn id(&self) -> &'a str {
        &self.key[PREFIX.len()..PREFIX.len() + ID_CHARS]
    }

    /// `bmk_<id>`.
    pub fn prefix(&self) -> &'a str {
        &self.key[..PREFIX.len() + ID_CHARS]
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.key)
    }
}

impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Presented({}_..)", self.prefix())
    }
}

/// Why a presented string is not a key at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("does not start with {PREFIX:?}")]
    Prefix,
    #[error("is not {KEY_CHARS} characters long")]
    Length,
    #[error("holds characters a key does not")]
    Characters,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(s: &[Scope]) -> BTreeSet<Scope> {
        s.iter().copied().collect()
    }

    #[test]
    fn a_generated_key_parses_and_matches_its_hash() {
        let new = NewKey::generate("acme", "ci", scopes(&[Scope::Send]), None, "admin", 1).unwrap();
        let key = new.expose();
        assert_eq!(key.len(), KEY_CHARS);
        let presented = Presented::parse(key).unwrap();
        assert_eq!(presented.id(), new.record.id);
        assert_eq!(presented.prefix(), new.record.prefix());
        assert!(presented.hash().matches(&new.record.secret_sha256));
        let other = NewKey::generate("acme", "ci", scopes(&[Scope::Send]), None, "admin", 1).unwrap();
        assert_ne!(other.record.id, new.record.id);
        assert!(!Presented::parse(other.expose()).unwrap().hash().matches(&new.record.secret_sha256));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let new = NewKey::generate("acme", "ci", scopes(&[Scope::Send]), None, "admin", 1).unwrap();
        let secret = &new.expose()[PREFIX.len() + ID_CHARS + 1..];
        let hash = new.record.secret_sha256.0.clone();
        for shown in
            [format!("{new:?}"), format!("{:?}", new.record), format!("{:?}", Presented::parse(new.expose()).unwrap())]
        {
            assert!(!shown.contains(secret) && !shown.contains(&hash), "{shown}");
        }
    }

    #[test]
    fn malformed_keys_are_told_apart() {
        let new = NewKey::generate("acme", "ci", scopes(&[Scope::Send]), None, "admin", 1).unwrap();
        let key = new.expose();
        assert_eq!(Presented::parse(&key.replacen("bmk_", "bmx_", 1)).unwrap_err(), Malformed::Prefix);
        assert_eq!(Presented::parse(&key[..KEY_CHARS - 1]).unwrap_err(), Malformed::Length);
        assert_eq!(Presented::parse(&format!("{key}A")).unwrap_err(), Malformed::Length);
        assert_eq!(Presented::parse("").unwrap_err(), Malformed::Prefix);
        let upper = format!("bmk_{}{}", key[4..16].to_uppercase(), &key[16..]);
        assert_eq!(Presented::parse(&upper).unwrap_err(), Malformed::Characters);
        let bad_secret = format!("{}!{}", &key[..17], &key[18..]);
        assert_eq!(Presented::parse(&bad_secret).unwrap_err(), Malformed::Characters);
        let no_sep = format!("{}x{}", &key[..16], &key[17..]);
        assert_eq!(Presented::parse(&no_sep).unwrap_err(), Malformed::Characters);
    }

    #[test]
    fn scopes_imply() {
        let admin = scopes(&[Scope::Admin]);
        assert!([Scope::Send, Scope::Read, Scope::Service].iter().all(|s| grants(&admin, *s)));
        let service = scopes(&[Scope::Service]);
        assert!(grants(&service, Scope::Send) && grants(&service, Scope::Read) && !grants(&service, Scope::Admin));
        let send = scopes(&[Scope::Send]);
        assert!(!grants(&send, Scope::Read) && !grants(&send, Scope::Service));
    }

    #[test]
    fn bad_names_and_empty_scopes_are_refused() {
        let err = NewKey::generate("acme", "a\u{0}b", BTreeSet::new(), Some(5), "admin", 10).unwrap_err();
        let got: Vec<String> = err.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            ["name: holds the control character U+0000", "scopes: required", "expires_ms: is not in the future"]
        );
        assert!(NewKey::generate("acme", &"n".repeat(101), scopes(&[Scope::Read]), None, "a", 1).is_err());
    }

    #[test]
    fn document_round_trip() {
        let mut new = NewKey::generate("acme", "ci", scopes(&[Scope::Admin]), Some(9), "admin", 1).unwrap();
        new.record.last_used_ms = Some(5);
        let fields = new.record.to_fields();
        assert_eq!(fields["admin"], "true");
        assert_eq!(fields["last_used_ms"], "5");
        assert_eq!(ApiKey::from_fields(&fields).unwrap(), new.record);
    }
}
