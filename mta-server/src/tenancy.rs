//! A node's tenancy, opened from `[tenants]`: the store holding tenants, keys, usage and
//! the audit log (the shared backend-server, or a file of this node's own), and what is
//! built on it: the registry, the key check, the quotas and the audit log. Also the
//! `mta-server create-key` command that makes the first admin key of a deployment.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backend_server::embedded::EmbeddedStore;
use backend_server::proxy::ProxyStore;
use backend_server::store::{Limits, Store, StoreError};

use crate::config::{Config, TenantsConfig};
use crate::service::Tenancy;
use crate::tenant::audit::Audit;
use crate::tenant::quota::DEFAULT_BLOCK;
use crate::tenant::{KeyCheck, KeyRequest, Quota, Registry, Scope};

/// The page cache of a node's own tenants file: tenants and keys are few.
const LOCAL_CACHE_BYTES: usize = 8 << 20;

/// The store `[tenants]` names.
pub async fn open_store(config: &TenantsConfig) -> Result<Arc<dyn Store>, StoreError> {
    if config.store.is_empty() {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("cannot create the folder {}: {e}", dir.display())))?;
        }
        let store = EmbeddedStore::open(&config.path, LOCAL_CACHE_BYTES, Limits::default())?;
        return Ok(Arc::new(store));
    }
    let store = ProxyStore::new(
        &config.store,
        config.tls.as_ref(),
        Duration::from_secs(1),
        Duration::from_secs(5),
        Limits::default(),
    )?;
    Ok(Arc::new(store))
}

/// This node's name in the shared daily counts.
fn node_id(config: &Config) -> String {
    if !config.tenants.node_id.is_empty() {
        return config.tenants.node_id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "mta".into());
    format!("{host}:{}", config.listen.port())
}

/// What the services of a node share about tenants.
pub struct Opened {
    pub tenancy: Tenancy,
    pub keys: Arc<KeyCheck>,
    /// This node's name (`[tenants] node_id`, or host:port).
    pub node_id: String,
    /// Whether the store is shared with other nodes (a backend-server), not a local file.
    pub shared: bool,
}

/// Opens the store and builds the registry, key check, quotas and audit log on it; the
/// default tenant is made when missing (in the background when the store cannot be
/// reached yet: mail is refused until it can).
pub async fn open(config: &Config) -> Result<Opened, StoreError> {
    let store = open_store(&config.tenants).await?;
    let registry = Registry::new(store.clone());
    let domains = config.tenants.default_domains.clone();
    let quotas = config.tenants.default_quotas.quotas();
    let default = registry.clone();
    tokio::spawn(async move {
        loop {
            match default.ensure_default_tenant_with(&domains, quotas).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot make sure the default tenant exists; trying again in 5 s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    });
    let keys = Arc::new(KeyCheck::new(registry.clone(), Duration::from_millis(config.tenants.key_cache_ms)));
    let node_id = node_id(config);
    let quota = Arc::new(Quota::new(store.clone(), &node_id, DEFAULT_BLOCK));
    quota.spawn_flusher();
    let tenancy = Tenancy { registry, quota, audit: Audit::new(store) };
    Ok(Opened { tenancy, keys, node_id, shared: !config.tenants.store.is_empty() })
}

/// `mta-server create-key`: a key for a tenant, printed once on stdout.
#[derive(Debug, clap::Parser)]
#[command(
    name = "mta-server create-key",
    version,
    about = "Create an API key and print it once (stdout: the key alone). For the first admin key of a \
             deployment: mta-server create-key --config mta.toml --scopes admin --name ops",
    after_help = "With tenants in a local file (no [tenants] store), stop mta-server first: the file is \
                  locked while it runs. Exit codes: 0 created, 1 could not, 64 bad command line or \
                  configuration."
)]
pub struct CreateKey {
    /// The TOML configuration of mta-server, for its `[tenants]` store
    #[arg(short, long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The tenant the key belongs to (`default` is made on first use)
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// What the key may do: send, read, admin, service (comma-separated)
    #[arg(long, value_delimiter = ',', default_value = "admin")]
    pub scopes: Vec<String>,
    /// A name to recognise the key by in lists
    #[arg(long)]
    pub name: String,
    /// Days until the key expires; none: it does not
    #[arg(long)]
    pub expires_days: Option<u64>,
}

/// Runs `create-key`; the error is a sentence for stderr.
pub async fn create_key(args: CreateKey, config: &Config) -> Result<String, String> {
    let scopes = args
        .scopes
        .iter()
        .map(|s| {
            Scope::parse(s.trim()).ok_or_else(|| format!("--scopes: unknown scope {s:?} (send, read, admin, service)"))
        })
        .collect::<Result<_, _>>()?;
    let store = open_store(&config.tenants).await.map_err(|e| e.to_string())?;
    let registry = Registry::new(store);
    registry
        .ensure_default_tenant_with(&config.tenants.default_domains, config.tenants.default_quotas.quotas())
        .await
        .map_err(|e| e.to_string())?;
    let expires_ms = args.expires_days.map(|d| bitmail_runtime::time::now_ms() + d.saturating_mul(86_400_000));
    let request =
        KeyRequest { tenant: args.tenant, name: args.name, scopes, expires_ms, created_by: "create-key".into() };
    let created = registry.create_key(request).await.map_err(|e| e.to_string())?;
    Ok(created.expose().to_owned())
}
