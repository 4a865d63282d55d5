//! API keys for tests and benchmarks that run the mta-server binary: made with
//! `mta-server create-key` before the server starts (a local tenants file is locked
//! while mta-server runs), then sent as `authorization: Bearer KEY`.

use std::path::Path;
use std::process::Command;

use bitmail_runtime::grpc::{Bearer, WithKey};

/// The `[tenants]` section of a config whose tenants file is `dir/tenants.redb`, with
/// `domains` for tenant `default` and `extra` lines after them (quotas, say).
pub fn tenants_section(dir: &Path, domains: &[&str], extra: &str) -> String {
    let domains: Vec<String> = domains.iter().map(|d| format!("{d:?}")).collect();
    format!(
        "[tenants]\npath = {:?}\ndefault_domains = [{}]\n{extra}",
        dir.join("tenants.redb").display().to_string(),
        domains.join(", ")
    )
}

/// Runs `mta_bin create-key --config config --scopes scopes --name name` and answers
/// the key it printed; panics with its stderr when it fails.
pub fn create_key(mta_bin: &Path, config: &Path, scopes: &str, name: &str) -> String {
    let out = Command::new(mta_bin)
        .arg("create-key")
        .arg("--config")
        .arg(config)
        .args(["--scopes", scopes, "--name", name])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} create-key: {e}", mta_bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "create-key failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    let key = stdout.trim().to_owned();
    assert!(key.starts_with("bmk_") && !key.contains(char::is_whitespace), "create-key printed {stdout:?}");
    key
}

/// An mta-server client on `channel` whose calls carry `key`.
pub fn client(channel: tonic::transport::Channel, key: &str) -> bitmail_proto::v1::mta_client::MtaClient<WithKey> {
    bitmail_proto::v1::mta_client::MtaClient::with_interceptor(
        channel,
        Bearer::new(Some(key)).expect("a printable key"),
    )
}
