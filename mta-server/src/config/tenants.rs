//! `[tenants]`: where tenants, API keys, usage counts and the audit log live.

use std::path::PathBuf;

use serde::Deserialize;

/// Where tenants, keys, usage counts and the audit log live.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantsConfig {
    /// The backend-server (`http://host:port`) every mta-server node shares; empty: a
    /// store file of this node's own at `path`.
    pub store: String,
    pub path: PathBuf,
    /// This node's name in the daily counts it shares with the others; empty: the
    /// host name and the listen port.
    pub node_id: String,
    /// How long a checked key (and its tenant) is trusted before it is read again.
    pub key_cache_ms: u64,
    /// The sending domains of tenant `default`, when it is created on the first start.
    pub default_domains: Vec<String>,
}

impl Default for TenantsConfig {
    fn default() -> Self {
        Self {
            store: String::new(),
            path: PathBuf::from("data/mta/tenants.redb"),
            node_id: String::new(),
            key_cache_ms: 5000,
            default_domains: vec!["localhost".into()],
        }
    }
}

impl TenantsConfig {
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        if self.store.is_empty() && self.path.as_os_str().is_empty() {
            problems.push("tenants.path: must not be empty when tenants.store is".into());
        }
        if !self.store.is_empty() {
            super::providers::check_url("tenants.store", &self.store, problems);
        }
        if !(100..=60_000).contains(&self.key_cache_ms) {
            problems.push(format!("tenants.key_cache_ms: {} is not between 100 and 60000", self.key_cache_ms));
        }
        let name_char = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
        if self.node_id.len() > 64 || !self.node_id.chars().all(name_char) {
            problems.push("tenants.node_id: at most 64 of ASCII letters, digits, `-`, `_`, `.`, `:`".into());
        }
        if self.default_domains.is_empty() {
            problems.push("tenants.default_domains: at least one domain".into());
        }
        for (i, domain) in self.default_domains.iter().enumerate() {
            if let Err(e) = crate::tenant::domain::normalize(domain) {
                problems.push(format!("tenants.default_domains[{i}]: {domain:?} {e}"));
            }
        }
    }
}
