//! Tenants, API keys, the one key check and quotas: who is calling, what it may do, and
//! how much it may send.
//!
//! - [`model`]: [`Tenant`] and [`Quotas`], their checks, and the `From` rule
//!   ([`Tenant::may_send_from`]); [`domain`]: the normal form of domain names (IDNA);
//! - [`key`]: the key format `bmk_<id>_<secret>`, the stored [`ApiKey`] (a SHA-256, never
//!   the secret) and [`Scope`];
//! - [`registry`]: [`Registry`], tenants and keys in the store;
//! - [`check`]: [`KeyCheck::authenticate`], the one key check every surface calls;
//! - [`quota`]: [`Quota::admit`], the rate and daily count before anything is stored;
//! - [`audit`]: the append-only log of administrative changes.
//!
//! # Documents in the store
//!
//! All are fields of the backend [`Store`](backend_server::store::Store); ids are the
//! store's, and where one document per name is wanted, the oldest matching one counts
//! (see `registry::put_unique`; store ids sort in creation order).
//!
//! | kind | fields | written by |
//! |---|---|---|
//! | `tenant` | `tenant` (the slug), `doc` (JSON of the rest of [`Tenant`]) | [`Registry`], with expected versions |
//! | `api_key` | `key` (the 12-character id), `tenant`, `admin=true` for admin keys, `doc` (JSON of [`ApiKey`] but `id` and `last_used_ms`), `last_used_ms` | [`Registry`]; `last_used_ms` by [`KeyCheck`], blind, at most once a minute per key |
//! | `admin_keys` | one, with `a.<key id>` = `{"tenant","expires_ms"}` per admin key | [`Registry`]: revocations and suspensions decide "not the last admin" on it at its version |
//! | `audit` | `at_ms`, `day`, `actor`, `address`, `action`, `tenant`, `target`, `before`, `after` | [`audit::Audit::record`], once; never updated |
//! | `usage` | `tenant`, `day` (`YYYY-MM-DD`, UTC), `reserved.<node>`, `used.<node>` | each [`Quota`] node, only its own fields |
//!
//! # Reads and caches
//!
//! [`Registry`] always reads the store. [`KeyCheck`] caches per key id, for its TTL
//! ([`check::DEFAULT_CACHE_TTL`], 5 s, a constructor argument), the key record and its
//! tenant as read, or "no such key". So a revocation, a suspension, or an edit of a
//! tenant's domains or quotas made on any node is seen by every node within the TTL
//! after it is stored (5 s, within the 10 s); the node where it was made can
//! call [`KeyCheck::forget`] to see it at once. The token buckets are per node, in
//! memory; the daily count is shared through the store (below).
//!
//! # The key check's contract
//!
//! [`KeyCheck::authenticate`] answers a [`Caller`] (tenant, key id, scopes) or an
//! [`AuthError`]: `Malformed` (not shaped like a key), `Unknown` (no such key, or a wrong
//! secret for its id), `Revoked`, `Expired`, `Suspended`, or `Unavailable` (the store
//! could not answer). Cost on the cached path: one SHA-256 of the 60-byte key, a
//! constant-time comparison and a hash-map read; no store call. A miss costs two store
//! lookups and is cached, negative answers too. Cancel-safe (no lock held across an
//! await; a cancelled miss caches nothing). It never logs nor keeps the presented key,
//! and no `Debug` of a type here shows a secret. Scopes are then checked with
//! [`check::require`] / [`Caller::may_submit_for`] / [`Caller::may_read`].
//!
//! # The quota bound
//!
//! Across nodes, the messages admitted for a tenant in a UTC day never exceed its
//! `per_day` (no overshoot, whatever the concurrency, also across restarts); they fall
//! short of it at most by the reservations nodes hold unused: `nodes × block`, plus one
//! block per restart of a node that day (see [`quota`]).

pub mod audit;
pub mod check;
pub mod domain;
pub mod key;
pub mod model;
pub mod quota;
pub mod registry;

pub use check::{AuthError, Caller, Denied, KeyCheck, require};
pub use key::{ApiKey, NewKey, Scope};
pub use model::{Invalid, Quotas, Tenant, TenantState};
pub use quota::{Admitted, OverQuota, Quota, QuotaName};
pub use registry::{KeyRequest, Registry, RegistryError, TenantEdit, Versioned};

pub(crate) use bitmail_runtime::time::now_ms;
