//! The certificate and key files a host's service configs name (each service's `[tls]`,
//! the links' `[mta_tls]`, `[backend_tls]`, `[tenants.tls]`, `[proxy.tls]`, and
//! `[postgres] ca_file`), so the pre-flight can check that every host has them before any
//! host is touched. They are the operator's, kept on the host (`ROOT/tls/`); a release
//! never carries them. Paths are as the service reads them: relative ones from the
//! host's root, its working folder.

use std::path::Path;

use anyhow::{Context, Result};

/// The file keys of a TLS section.
const FILE_KEYS: [&str; 3] = ["ca_file", "cert_file", "key_file"];

/// `(service, key, path)` for every certificate file named in `config`.
pub fn files(service: &str, config: &Path) -> Result<Vec<(String, String, String)>> {
    let text = std::fs::read_to_string(config).with_context(|| format!("cannot read {}", config.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("{} is not TOML", config.display()))?;
    let mut found = Vec::new();
    let mut take = |section: &str, value: Option<&toml::Value>, keys: &[&str]| {
        let Some(toml::Value::Table(t)) = value else { return };
        for key in keys {
            if let Some(toml::Value::String(path)) = t.get(*key) {
                found.push((service.to_owned(), format!("{section}.{key}"), path.clone()));
            }
        }
    };
    // client-api's [tls] is its HTTPS edge, with other key names.
    take("tls", table.get("tls"), &FILE_KEYS);
    take("tls", table.get("tls"), &["cert_path", "key_path"]);
    take("mta_tls", table.get("mta_tls"), &FILE_KEYS);
    take("backend_tls", table.get("backend_tls"), &FILE_KEYS);
    let nested = |outer: &str| table.get(outer).and_then(|t| t.get("tls"));
    take("tenants.tls", nested("tenants"), &FILE_KEYS);
    take("proxy.tls", nested("proxy"), &FILE_KEYS);
    take("postgres", table.get("postgres"), &["ca_file"]);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_layout_names_each_host_s_certificates() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/example");
        let edge = files("client-api", &example.join("edge-1/client-api.toml")).unwrap();
        let keys: Vec<&str> = edge.iter().map(|(_, k, _)| k.as_str()).collect();
        let want = ["mta_tls.ca_file", "mta_tls.cert_file", "mta_tls.key_file"];
        assert_eq!(
            keys,
            [&want[..], &["backend_tls.ca_file", "backend_tls.cert_file", "backend_tls.key_file"]].concat()
        );
        let mta = files("mta-server", &example.join("mta-1/mta-server.toml")).unwrap();
        assert_eq!(mta.len(), 6, "{mta:?}");
        assert!(mta.contains(&("mta-server".into(), "tenants.tls.cert_file".into(), "tls/mta-server.pem".into())));
        let storage = files("backend-server", &example.join("storage/backend-server.toml")).unwrap();
        assert_eq!(storage[0], ("backend-server".into(), "tls.ca_file".into(), "tls/ca.pem".into()));
    }
}
