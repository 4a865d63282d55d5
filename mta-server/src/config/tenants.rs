//! `[tenants]`: where tenants, API keys, usage counts and the audit log live.

use std::path::PathBuf;

use bitmail_runtime::grpc_tls::ClientTls;
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
    /// The quotas of tenant `default`, when it is created on the first start; a quota
    /// left out keeps its default (`crate::tenant::Quotas::default`). Later edits go
    /// through the admin API: this never changes a stored tenant.
    pub default_quotas: DefaultQuotas,
    /// Mutual TLS to the backend-server at `store` (an `https://` URL).
    pub tls: Option<ClientTls>,
}

/// `[tenants.default_quotas]`: each quota of tenant `default` at its creation; `None`
/// keeps the built-in default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefaultQuotas {
    pub per_day: Option<u64>,
    pub per_second: Option<f64>,
    pub burst: Option<u32>,
    pub max_recipients: Option<u32>,
    pub max_message_bytes: Option<u64>,
}

impl DefaultQuotas {
    /// The built-in defaults with the configured ones over them.
    pub fn quotas(&self) -> crate::tenant::Quotas {
        let d = crate::tenant::Quotas::default();
        crate::tenant::Quotas {
            per_day: self.per_day.unwrap_or(d.per_day),
            per_second: self.per_second.unwrap_or(d.per_second),
            burst: self.burst.unwrap_or(d.burst),
            max_recipients: self.max_recipients.unwrap_or(d.max_recipients),
            max_message_bytes: self.max_message_bytes.unwrap_or(d.max_message_bytes),
        }
    }
}

impl Default for TenantsConfig {
    fn default() -> Self {
        Self {
            store: String::new(),
            path: PathBuf::from("data/mta/tenants.redb"),
            node_id: String::new(),
            key_cache_ms: 5000,
            default_domains: vec!["localhost".into()],
            default_quotas: DefaultQuotas::default(),
            tls: None,
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
            bitmail_runtime::grpc_tls::check_link(
                "tenants.store",
                &self.store,
                "tenants.tls",
                self.tls.as_ref(),
                problems,
            );
        } else if self.tls.is_some() {
            problems.push("tenants.tls: set only with tenants.store (a backend-server)".into());
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
        if let Err(invalid) = self.default_quotas.quotas().validate() {
            problems.extend(invalid.0.iter().map(|e| format!("tenants.default_{e}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use bitmail_runtime::config::parse;

    #[test]
    fn default_quotas_overlay_the_built_in_ones_and_are_checked() {
        let c: Config = parse("[tenants.default_quotas]\nper_second = 2000.0\nburst = 5000\n", "t").unwrap();
        let q = c.tenants.default_quotas.quotas();
        assert_eq!((q.per_second, q.burst), (2000.0, 5000));
        assert_eq!(q.per_day, crate::tenant::Quotas::default().per_day);

        let err = parse::<Config>("[tenants.default_quotas]\nburst = 0\nbogus = 1\n", "t").unwrap_err();
        assert!(err.problems.join("\n").contains("bogus"), "{err}");
        let err = parse::<Config>("[tenants.default_quotas]\nburst = 0\n", "t").unwrap_err();
        assert!(err.problems.join("\n").contains("tenants.default_quotas.burst"), "{err}");
    }

    #[test]
    fn the_store_link_and_the_listener_follow_the_tls_rules() {
        let err = parse::<Config>("[tenants]\nstore = \"https://10.0.0.12:50052\"\n", "t").unwrap_err();
        assert!(err.problems.join("\n").contains("tenants.tls: required for the https:// tenants.store"), "{err}");
        let text = "[tenants.tls]\nca_file = \"a\"\ncert_file = \"b\"\nkey_file = \"c\"\n";
        let err = parse::<Config>(text, "t").unwrap_err();
        assert!(err.problems.join("\n").contains("tenants.tls: set only with tenants.store"), "{err}");
        let err = parse::<Config>("listen = \"10.0.0.11:50051\"\n", "t").unwrap_err();
        assert!(err.problems.join("\n").contains("tls: required because listen = \"10.0.0.11:50051\""), "{err}");
    }
}
