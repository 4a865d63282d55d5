//! Tenants and keys in the store: create, read, list, edit (with optimistic versions),
//! suspend and resume, create and revoke keys, and the default tenant.
//!
//! Every call goes to the store (nothing is cached here; [`super::KeyCheck`] caches).

use std::collections::BTreeSet;
use std::sync::Arc;

use backend_server::store::{Document, Fields, Store, StoreError};
use serde::{Deserialize, Serialize};

use super::key::{self, ApiKey, NewKey, Scope};
use super::model::{self, Invalid, Quotas, Tenant, TenantState};
use super::now_ms;

/// A value with the version of its document: pass it back to edit it.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// An edit of a tenant: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantEdit {
    pub display_name: Option<String>,
    pub domains: Option<Vec<String>>,
    pub addresses: Option<Vec<String>>,
    pub quotas: Option<Quotas>,
}

/// What to create a key with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRequest {
    pub tenant: String,
    pub name: String,
    pub scopes: BTreeSet<Scope>,
    pub expires_ms: Option<u64>,
    pub created_by: String,
}

/// A key just stored: the record, and the whole key to show once (see
/// [`NewKey::expose`]); only its hash is stored.
pub type CreatedKey = NewKey;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no tenant {0:?}")]
    NoTenant(String),
    #[error("tenant {0:?} exists already")]
    TenantExists(String),
    /// Shown by the key's prefix (`bmk_<id>`).
    #[error("no key {0}")]
    NoKey(String),
    /// Nothing was changed: read the tenant again and redo the edit on what it is now.
    #[error("tenant {tenant:?} is at version {actual}, not the expected {expected}; read it again")]
    Conflict { tenant: String, expected: u64, actual: u64 },
    #[error("key {0} is revoked already")]
    AlreadyRevoked(String),
    /// Nothing was changed: the change would leave no unrevoked, unexpired admin key of
    /// an active tenant, and nobody could administer the deployment any more.
    #[error("refused: this would leave no usable admin key; create another admin key first")]
    LastAdmin,
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// The id of the tenant [`Registry::ensure_default_tenant`] creates.
pub const DEFAULT_TENANT: &str = "default";

/// The one document listing the admin keys (`kind=admin_keys`, a field `a.<key id>` per
/// admin key, holding its tenant and expiry). A revocation or suspension that could
/// remove the last admin is decided on this document with an expected version, so two
/// admins revoking each other's keys at once cannot both succeed.
const ADMINS_KIND: &str = "admin_keys";

#[derive(Debug, Serialize, Deserialize)]
struct AdminEntry {
    tenant: String,
    expires_ms: Option<u64>,
}

#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stores a new tenant (already checked by [`Tenant::new`]). `TenantExists` when one
    /// with this id is stored, also when another node created it a moment before.
    pub async fn create_tenant(&self, mut tenant: Tenant) -> Result<Versioned<Tenant>, RegistryError> {
        tenant.normalize()?;
        let (doc, created) = put_unique(&*self.store, &tenant_subset(&tenant.id), tenant.to_fields()).await?;
        if !created {
            return Err(RegistryError::TenantExists(tenant.id));
        }
        Ok(Versioned { value: tenant, version: doc.version })
    }

    pub async fn get_tenant(&self, id: &str) -> Result<Versioned<Tenant>, RegistryError> {
        self.load_tenant(id)
            .await?
            .map(|(doc, t)| Versioned { value: t, version: doc.version })
            .ok_or_else(|| RegistryError::NoTenant(id.to_owned()))
    }

    /// One page of tenants in creation order, and the token of the next page.
    pub async fn list_tenants(
        &self,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<(Vec<Versioned<Tenant>>, Option<String>), RegistryError> {
        let subset = Fields::from([("kind".to_owned(), model::KIND.to_owned())]);
        let page = self.store.lookup(&subset, limit, page_token).await?;
        let mut tenants: Vec<Versioned<Tenant>> = Vec::with_capacity(page.documents.len());
        for doc in &page.documents {
            if let Some(t) = Tenant::from_fields(&doc.fields)
                // A duplicate left by a lost creation race (see `put_unique`): the oldest counts.
                && !tenants.iter().any(|v| v.value.id == t.id)
            {
                tenants.push(Versioned { value: t, version: doc.version });
            }
        }
        Ok((tenants, page.next_page_token))
    }

    /// Applies `edit` if the tenant is still at `expected_version`; otherwise `Conflict`
    /// and nothing changed. The edited tenant is checked whole before it is stored.
    pub async fn update_tenant(
        &self,
        id: &str,
        expected_version: u64,
        edit: TenantEdit,
    ) -> Result<Versioned<Tenant>, RegistryError> {
        let (doc, mut tenant) = self.load_tenant(id).await?.ok_or_else(|| RegistryError::NoTenant(id.to_owned()))?;
        if doc.version != expected_version {
            return Err(RegistryError::Conflict {
                tenant: id.to_owned(),
                expected: expected_version,
                actual: doc.version,
            });
        }
        if let Some(v) = edit.display_name {
            tenant.display_name = v;
        }
        if let Some(v) = edit.domains {
            tenant.domains = v;
        }
        if let Some(v) = edit.addresses {
            tenant.addresses = v;
        }
        if let Some(v) = edit.quotas {
            tenant.quotas = v;
        }
        tenant.updated_ms = now_ms();
        tenant.normalize()?;
        self.write_tenant(&doc, tenant).await
    }

    /// Suspends the tenant: every key of it is refused on every node within the key
    /// check's TTL. Refused with `LastAdmin` when its keys are the only usable admin keys.
    /// Idempotent.
    pub async fn suspend(&self, id: &str) -> Result<Versioned<Tenant>, RegistryError> {
        loop {
            let (admins, entries) = self.admins().await?;
            let live_before = self.live_admins(&entries, None, None).await?;
            let live_after = self.live_admins(&entries, None, Some(id)).await?;
            if live_before > 0 && live_after == 0 {
                return Err(RegistryError::LastAdmin);
            }
            // Claim the admin document's version, so a concurrent revocation re-decides.
            match self.touch(&admins).await {
                Err(StoreError::VersionMismatch { .. }) => continue,
                other => other?,
            };
            return self.set_state(id, TenantState::Suspended).await;
        }
    }

    /// Resumes a suspended tenant. Idempotent.
    pub async fn resume(&self, id: &str) -> Result<Versioned<Tenant>, RegistryError> {
        self.set_state(id, TenantState::Active).await
    }

    /// Creates a tenant `default` (sending from `domains`, default quotas, active) unless
    /// one exists; answers the stored one either way (its domains as stored: this never
    /// edits an existing tenant). Safe when nodes race: each looks up
    /// `kind=tenant, tenant=default` and creates only if none; a node that created one
    /// looks again, and when an older document is there (another node won), deletes its
    /// own and answers the older. Store ids sort in creation order, so every reader agrees
    /// on "the oldest".
    pub async fn ensure_default_tenant(&self, domains: &[String]) -> Result<Versioned<Tenant>, RegistryError> {
        self.ensure_default_tenant_with(domains, Quotas::default()).await
    }

    /// [`Registry::ensure_default_tenant`] with these quotas, if it is created now
    /// (`[tenants.default_quotas]`).
    pub async fn ensure_default_tenant_with(
        &self,
        domains: &[String],
        quotas: Quotas,
    ) -> Result<Versioned<Tenant>, RegistryError> {
        let tenant = Tenant::new(DEFAULT_TENANT, "Default", domains, &[], quotas, now_ms())?;
        let (doc, _) = put_unique(&*self.store, &tenant_subset(DEFAULT_TENANT), tenant.to_fields()).await?;
        let value = Tenant::from_fields(&doc.fields).ok_or_else(|| bad_document(&doc))?;
        Ok(Versioned { value, version: doc.version })
    }

    /// Creates a key for an existing tenant; the answer holds the whole key, which is
    /// never stored nor shown again.
    pub async fn create_key(&self, request: KeyRequest) -> Result<CreatedKey, RegistryError> {
        if self.load_tenant(&request.tenant).await?.is_none() {
            return Err(RegistryError::NoTenant(request.tenant));
        }
        let new = NewKey::generate(
            &request.tenant,
            &request.name,
            request.scopes,
            request.expires_ms,
            &request.created_by,
            now_ms(),
        )?;
        self.store.put(new.record.to_fields()).await?;
        if new.record.grants(Scope::Admin) {
            // After the key is stored: a crash in between leaves an admin key the list
            // does not count, which can only make a revocation refused, never allowed.
            let (admins, _) = self.admins().await?;
            let entry = AdminEntry { tenant: new.record.tenant.clone(), expires_ms: new.record.expires_ms };
            let fields =
                Fields::from([(admin_field(&new.record.id), serde_json::to_string(&entry).expect("serializes"))]);
            self.store.update(&admins.id, fields, vec![], None).await?;
        }
        Ok(new)
    }

    pub async fn get_key(&self, key_id: &str) -> Result<ApiKey, RegistryError> {
        Ok(self.load_key(key_id).await?.ok_or_else(|| no_key(key_id))?.1)
    }

    /// Every key of the tenant, oldest first, without secrets (only their hashes exist).
    pub async fn list_keys(&self, tenant: &str) -> Result<Vec<ApiKey>, RegistryError> {
        let subset =
            Fields::from([("kind".to_owned(), key::KIND.to_owned()), ("tenant".to_owned(), tenant.to_owned())]);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.store.lookup(&subset, backend_server::store::MAX_LOOKUP_LIMIT, token.as_deref()).await?;
            keys.extend(page.documents.iter().filter_map(|d| ApiKey::from_fields(&d.fields)));
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => return Ok(keys),
            }
        }
    }

    /// Revokes the key (on every node within the key check's TTL). Refused with
    /// `LastAdmin`, nothing changed, when it is the last usable admin key.
    pub async fn revoke_key(&self, key_id: &str) -> Result<ApiKey, RegistryError> {
        loop {
            let (doc, mut record) = self.load_key(key_id).await?.ok_or_else(|| no_key(key_id))?;
            if record.revoked_ms.is_some() {
                return Err(RegistryError::AlreadyRevoked(record.prefix()));
            }
            let (admins, entries) = self.admins().await?;
            // Only a key the admin list holds counts; one it no longer holds was decided on
            // by an earlier pass of this loop.
            if entries.iter().any(|(id, _)| id == key_id) {
                let live_before = self.live_admins(&entries, None, None).await?;
                let live_after = self.live_admins(&entries, Some(key_id), None).await?;
                if live_before > 0 && live_after == 0 {
                    return Err(RegistryError::LastAdmin);
                }
                match self
                    .store
                    .update(&admins.id, Fields::new(), vec![admin_field(key_id)], Some(admins.version))
                    .await
                {
                    Err(StoreError::VersionMismatch { .. }) => continue,
                    other => other?,
                };
            }
            record.revoked_ms = Some(now_ms());
            let fields = Fields::from([("doc".to_owned(), record.to_fields()["doc"].clone())]);
            match self.store.update(&doc.id, fields, vec![], Some(doc.version)).await {
                Err(StoreError::VersionMismatch { .. }) => continue,
                other => other?,
            };
            return Ok(record);
        }
    }

    /// The key's document and record; `None` when no such key. Used by the key check.
    pub(crate) async fn load_key(&self, key_id: &str) -> Result<Option<(Document, ApiKey)>, StoreError> {
        let subset = Fields::from([("kind".to_owned(), key::KIND.to_owned()), ("key".to_owned(), key_id.to_owned())]);
        let doc = oldest(&*self.store, &subset).await?;
        Ok(doc.and_then(|d| ApiKey::from_fields(&d.fields).map(|k| (d, k))))
    }

    pub(crate) async fn load_tenant(&self, id: &str) -> Result<Option<(Document, Tenant)>, StoreError> {
        let doc = oldest(&*self.store, &tenant_subset(id)).await?;
        Ok(doc.and_then(|d| Tenant::from_fields(&d.fields).map(|t| (d, t))))
    }

    async fn set_state(&self, id: &str, state: TenantState) -> Result<Versioned<Tenant>, RegistryError> {
        loop {
            let (doc, mut tenant) =
                self.load_tenant(id).await?.ok_or_else(|| RegistryError::NoTenant(id.to_owned()))?;
            if tenant.state == state {
                return Ok(Versioned { value: tenant, version: doc.version });
            }
            tenant.state = state;
            tenant.updated_ms = now_ms();
            match self.write_tenant(&doc, tenant).await {
                Err(RegistryError::Conflict { .. }) => continue,
                other => return other,
            }
        }
    }

    async fn write_tenant(&self, doc: &Document, tenant: Tenant) -> Result<Versioned<Tenant>, RegistryError> {
        match self.store.update(&doc.id, tenant.to_fields(), vec![], Some(doc.version)).await {
            Ok(stored) => Ok(Versioned { value: tenant, version: stored.version }),
            Err(StoreError::VersionMismatch { expected, actual, .. }) => {
                Err(RegistryError::Conflict { tenant: tenant.id, expected, actual })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The admin list document (created if missing) and its entries.
    async fn admins(&self) -> Result<(Document, Vec<(String, AdminEntry)>), StoreError> {
        let subset = Fields::from([("kind".to_owned(), ADMINS_KIND.to_owned())]);
        let (doc, _) = put_unique(&*self.store, &subset, subset.clone()).await?;
        let entries = doc
            .fields
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("a.")?.to_owned(), serde_json::from_str(v).ok()?)))
            .collect();
        Ok((doc, entries))
    }

    /// How many listed admin keys are usable (unexpired, tenant active), leaving out one
    /// key or one tenant's keys. Reads each tenant holding an admin key (a few).
    async fn live_admins(
        &self,
        entries: &[(String, AdminEntry)],
        without_key: Option<&str>,
        without_tenant: Option<&str>,
    ) -> Result<usize, StoreError> {
        let now = now_ms();
        let mut live = 0;
        for (id, entry) in entries {
            if Some(id.as_str()) == without_key
                || Some(entry.tenant.as_str()) == without_tenant
                || entry.expires_ms.is_some_and(|e| e <= now)
            {
                continue;
            }
            if self.load_tenant(&entry.tenant).await?.is_some_and(|(_, t)| t.is_active()) {
                live += 1;
            }
        }
        Ok(live)
    }

    async fn touch(&self, doc: &Document) -> Result<Document, StoreError> {
        let fields = Fields::from([("touched_ms".to_owned(), now_ms().to_string())]);
        self.store.update(&doc.id, fields, vec![], Some(doc.version)).await
    }
}

fn tenant_subset(id: &str) -> Fields {
    Fields::from([("kind".to_owned(), model::KIND.to_owned()), ("tenant".to_owned(), id.to_owned())])
}

fn admin_field(key_id: &str) -> String {
    format!("a.{key_id}")
}

fn no_key(key_id: &str) -> RegistryError {
    RegistryError::NoKey(format!("{}{key_id}", key::PREFIX))
}

fn bad_document(doc: &Document) -> RegistryError {
    RegistryError::Store(StoreError::Unavailable(format!(
        "document {:?} is not a tenant as this version reads it",
        doc.id
    )))
}

/// The oldest document matching `subset` (ids sort in creation order).
pub(crate) async fn oldest(store: &dyn Store, subset: &Fields) -> Result<Option<Document>, StoreError> {
    Ok(store.lookup(subset, 1, None).await?.documents.into_iter().next())
}

/// The one document matching `subset`, stored with `fields` if there is none; `true`
/// when this call created it. When nodes race, the oldest document wins: a creator that
/// finds an older one after its put deletes its own (nobody else uses it: whoever saw it
/// also saw the older one) and answers the older. A failed delete leaves a duplicate that
/// readers ignore, as they all read the oldest.
pub(crate) async fn put_unique(
    store: &dyn Store,
    subset: &Fields,
    fields: Fields,
) -> Result<(Document, bool), StoreError> {
    if let Some(doc) = oldest(store, subset).await? {
        return Ok((doc, false));
    }
    let mine = store.put(fields).await?;
    match oldest(store, subset).await? {
        Some(first) if first.id != mine.id => {
            if let Err(e) = store.delete(&mine.id).await {
                tracing::warn!(id = %mine.id, error = %e, "could not delete the loser of a creation race");
            }
            Ok((first, false))
        }
        _ => Ok((mine, true)),
    }
}
