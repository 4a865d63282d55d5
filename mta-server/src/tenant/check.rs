//! The one key check every surface calls (gRPC bearer, SendGrid-shaped bearer,
//! Mailgun-shaped `api:KEY`, SMTP AUTH, device sync), with its cache.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use backend_server::store::{Fields, StoreError};

use super::key::{self, ApiKey, Malformed, Presented, Scope};
use super::model::Tenant;
use super::now_ms;
use super::registry::Registry;

/// How long a verified (or unknown) key is trusted without asking the store. A
/// revocation or suspension made on any node takes effect everywhere within this (plus
/// one store read).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);
/// The most keys the cache holds; when full, an arbitrary entry makes room.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// `last_used_ms` is written at most this often per key.
pub const LAST_USED_EVERY_MS: u64 = 60_000;
/// The most (prefix, address) pairs the refused-uses counter tells apart; beyond, counts
/// go to one `other` entry.
pub const MAX_REFUSED_PAIRS: usize = 10_000;

/// Who is calling: the key's tenant (as of the cache) and what the key may do.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Arc<Tenant>,
    pub key_id: String,
    pub scopes: BTreeSet<Scope>,
}

impl Caller {
    /// `bmk_<id>`, for logs and audit entries.
    pub fn prefix(&self) -> String {
        format!("{}{}", key::PREFIX, self.key_id)
    }

    pub fn require(&self, scope: Scope) -> Result<(), Denied> {
        require(self, scope)
    }

    /// Whether the caller may submit mail for `tenant`: its own with `send`, any with
    /// `service` (client-api naming its user's tenant) or `admin`.
    pub fn may_submit_for(&self, tenant: &str) -> Result<(), Denied> {
        if tenant == self.tenant.id {
            return self.require(Scope::Send);
        }
        if self.scopes.contains(&Scope::Service) || self.scopes.contains(&Scope::Admin) {
            return Ok(());
        }
        Err(Denied { key: self.prefix(), wanted: Scope::Service })
    }

    /// Whether the caller may see `tenant`'s messages: its own with `read`, any with
    /// `admin` or `service` (the edge, which shows each user only their own). A surface
    /// answers "not found" for another tenant's message, exactly as for an unknown one.
    pub fn may_read(&self, tenant: &str) -> bool {
        (tenant == self.tenant.id && self.require(Scope::Read).is_ok())
            || self.scopes.contains(&Scope::Admin)
            || self.scopes.contains(&Scope::Service)
    }
}

/// `Ok` when the caller's key grants `scope` ([`Scope::Admin`] implies all,
/// [`Scope::Service`] implies [`Scope::Send`]). gRPC `PERMISSION_DENIED`.
pub fn require(caller: &Caller, scope: Scope) -> Result<(), Denied> {
    if key::grants(&caller.scopes, scope) { Ok(()) } else { Err(Denied { key: caller.prefix(), wanted: scope }) }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key {key} does not grant `{}`", .wanted.as_str())]
pub struct Denied {
    pub key: String,
    pub wanted: Scope,
}

/// Why a presented key is refused. All but `Unavailable` are gRPC `UNAUTHENTICATED`
/// (HTTP 401); surfaces may tell them apart in their message, they reveal nothing a
/// holder of the key does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("not an API key: it {0}")]
    Malformed(Malformed),
    #[error("unknown API key")]
    Unknown,
    #[error("API key revoked")]
    Revoked,
    #[error("API key expired")]
    Expired,
    #[error("tenant {tenant:?} is suspended")]
    Suspended { tenant: String },
    /// The store could not answer; nothing is known about the key. gRPC `UNAVAILABLE`.
    #[error("cannot check the API key now: {0}")]
    Unavailable(String),
}

/// Refused uses of one key prefix (or `malformed`, or `other`) from one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedUses {
    pub prefix: String,
    pub addr: IpAddr,
    pub count: u64,
}

/// The key check; cheap to clone (one shared cache).
#[derive(Clone)]
pub struct KeyCheck {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    ttl: Duration,
    max_entries: usize,
    cache: Mutex<HashMap<String, Entry>>,
    last_used: Mutex<HashMap<String, u64>>,
    refused: Mutex<HashMap<(String, IpAddr), u64>>,
}

struct Entry {
    /// When the store read behind it started.
    read_at: Instant,
    value: Cached,
}

#[derive(Clone)]
enum Cached {
    Unknown,
    Known { key: Arc<ApiKey>, doc_id: Arc<str>, tenant: Arc<Tenant> },
}

impl KeyCheck {
    /// A check over the registry's store, trusting what it read for `cache_ttl`
    /// ([`DEFAULT_CACHE_TTL`] in service; a revoked key stops working on every node
    /// within it).
    pub fn new(registry: Registry, cache_ttl: Duration) -> Self {
        Self::with_capacity(registry, cache_ttl, DEFAULT_MAX_ENTRIES)
    }

    pub fn with_capacity(registry: Registry, cache_ttl: Duration, max_entries: usize) -> Self {
        let inner = Inner {
            registry,
            ttl: cache_ttl,
            max_entries: max_entries.max(1),
            cache: Mutex::default(),
            last_used: Mutex::default(),
            refused: Mutex::default(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Who presents `presented` (the whole `bmk_…` key), or why not.
    ///
    /// Cost: with the key cached (seen on this node within the TTL, known or unknown),
    /// one SHA-256 of the key, a constant-time comparison and a hash-map read under a
    /// short lock: no store call. Otherwise one or two store lookups (key, tenant), whose
    /// answer is cached, negative answers too, so unknown keys cannot hammer the store.
    /// `last_used_ms` is written in the background, at most once a minute per key.
    ///
    /// Cancel-safe: no lock is held across the store read, and a cancelled read caches
    /// nothing. Never logs nor keeps the presented key; only its id and hash are used.
    pub async fn authenticate(&self, presented: &str) -> Result<Caller, AuthError> {
        let presented = Presented::parse(presented).map_err(AuthError::Malformed)?;
        let hash = presented.hash();
        let id = presented.id();
        let started = Instant::now();
        let value = match self.cached(id, started) {
            Some(value) => value,
            None => {
                let value = self.read(id).await?;
                self.remember(id, started, value.clone());
                value
            }
        };
        let Cached::Known { key, doc_id, tenant } = value else {
            return Err(AuthError::Unknown);
        };
        // A right id with a wrong secret is as unknown as a wrong id.
        if !hash.matches(&key.secret_sha256) {
            return Err(AuthError::Unknown);
        }
        let now = now_ms();
        if key.revoked_ms.is_some() {
            return Err(AuthError::Revoked);
        }
        if key.is_expired(now) {
            return Err(AuthError::Expired);
        }
        if !tenant.is_active() {
            return Err(AuthError::Suspended { tenant: tenant.id.clone() });
        }
        self.note_use(&key.id, &doc_id, now);
        Ok(Caller { tenant, key_id: key.id.clone(), scopes: key.scopes.clone() })
    }

    /// [`KeyCheck::authenticate`], counting a refusal (not `Unavailable`) against the
    /// key's prefix and `addr`: what surfaces that know the client's address call.
    pub async fn authenticate_from(&self, presented: &str, addr: IpAddr) -> Result<Caller, AuthError> {
        let result = self.authenticate(presented).await;
        match &result {
            Ok(_) | Err(AuthError::Unavailable(_)) => {}
            Err(_) => {
                let prefix = Presented::parse(presented).map_or("malformed", |p| p.prefix());
                self.refused(prefix, addr);
            }
        }
        result
    }

    /// Counts one refused use of `prefix` (`bmk_<id>`; never a whole key) from `addr`.
    pub fn refused(&self, prefix: &str, addr: IpAddr) {
        let mut counts = lock(&self.inner.refused);
        let full = counts.len() >= MAX_REFUSED_PAIRS;
        let pair = (prefix.to_owned(), addr);
        let pair = if full && !counts.contains_key(&pair) {
            ("other".to_owned(), IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        } else {
            pair
        };
        *counts.entry(pair).or_default() += 1;
    }

    /// Refused uses counted since start, most first.
    pub fn refused_snapshot(&self) -> Vec<RefusedUses> {
        let counts = lock(&self.inner.refused);
        let mut all: Vec<RefusedUses> = counts
            .iter()
            .map(|((prefix, addr), count)| RefusedUses { prefix: prefix.clone(), addr: *addr, count: *count })
            .collect();
        all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.prefix.cmp(&b.prefix)));
        all
    }

    /// Drops what this node cached about a key, e.g. right after revoking it here.
    pub fn forget(&self, key_id: &str) {
        lock(&self.inner.cache).remove(key_id);
    }

    /// Drops the whole cache, e.g. after suspending a tenant here.
    pub fn forget_all(&self) {
        lock(&self.inner.cache).clear();
    }

    fn cached(&self, id: &str, now: Instant) -> Option<Cached> {
        let cache = lock(&self.inner.cache);
        let entry = cache.get(id)?;
        (now.saturating_duration_since(entry.read_at) < self.inner.ttl).then(|| entry.value.clone())
    }

    fn remember(&self, id: &str, read_at: Instant, value: Cached) {
        let mut cache = lock(&self.inner.cache);
        if cache.len() >= self.inner.max_entries
            && !cache.contains_key(id)
            && let Some(any) = cache.keys().next().cloned()
        {
            cache.remove(&any);
        }
        cache.insert(id.to_owned(), Entry { read_at, value });
    }

    async fn read(&self, id: &str) -> Result<Cached, AuthError> {
        let unavailable = |e: StoreError| AuthError::Unavailable(e.to_string());
        let Some((doc, key)) = self.inner.registry.load_key(id).await.map_err(unavailable)? else {
            return Ok(Cached::Unknown);
        };
        let Some((_, tenant)) = self.inner.registry.load_tenant(&key.tenant).await.map_err(unavailable)? else {
            // A key whose tenant is gone is no key.
            return Ok(Cached::Unknown);
        };
        Ok(Cached::Known { key: Arc::new(key), doc_id: doc.id.into(), tenant: Arc::new(tenant) })
    }

    /// Writes `last_used_ms` in the background when the last write is a minute old.
    fn note_use(&self, key_id: &str, doc_id: &Arc<str>, now: u64) {
        {
            let mut last = lock(&self.inner.last_used);
            if last.get(key_id).is_some_and(|&at| now.saturating_sub(at) < LAST_USED_EVERY_MS) {
                return;
            }
            if last.len() >= self.inner.max_entries {
                last.clear();
            }
            last.insert(key_id.to_owned(), now);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.inner.registry.store().clone();
        let doc_id = doc_id.clone();
        runtime.spawn(async move {
            let fields = Fields::from([("last_used_ms".to_owned(), now.to_string())]);
            // No expected version: this field is written by nobody else, and `update`
            // merges, so it cannot undo an edit of the key.
            if let Err(e) = store.update(&doc_id, fields, vec![], None).await {
                tracing::debug!(doc = %doc_id, error = %e, "could not record a key's last use");
            }
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the map whole, so a poisoned lock is usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
