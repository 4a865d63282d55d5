//! The deploy configuration (`deploy.toml`): which hosts, how to reach each over SSH, and
//! which services each runs with which configuration. Unknown keys are errors and every
//! problem is reported at once, as for the services' own configurations.
//!
//! A role may have several hosts (two edges, two MTAs): each is its own `[[hosts]]` with
//! its own config files. They are deployed one at a time, storage first, then the MTAs,
//! then the edges ([`HostConfig::role_rank`]), so that each host's upstreams run the
//! new release before it does and the other hosts of its role serve meanwhile. mta-server
//! hosts that share a tenants store must each set their own `[tenants] node_id`.
//!
//! ```toml
//! keep_releases = 5            # per host; the current and the previous are always kept
//! health_timeout_secs = 60     # how long each service may take to answer its health check
//!
//! [[hosts]]
//! name = "mta"
//! address = "203.0.113.11"
//! port = 22
//! user = "bitmail"
//! key_file = "~/.ssh/bitmail_deploy"        # private key; never a password
//! known_hosts = "known_hosts"               # or: host_key = "ssh-ed25519 AAAA..."
//! root = "/opt/bitmail"                     # releases/, current, run/, logs/, data/
//! supervisor = "auto"                       # "systemd", "script" (pid files), or "auto"
//! [hosts.services]
//! mta-server = "mta/mta-server.toml"        # paths relative to this file
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Deserialize;

/// The services a host can run, in the order they start (each one's upstreams first).
pub const SERVICES: [&str; 3] = ["backend-server", "mta-server", "client-api"];

#[derive(Debug, Deserialize)]
pub struct DeployConfig {
    #[serde(default = "default_keep")]
    pub keep_releases: usize,
    #[serde(default = "default_health_timeout")]
    pub health_timeout_secs: u64,
    #[serde(default)]
    pub hosts: Vec<HostConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HostConfig {
    pub name: String,
    pub address: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub user: String,
    pub key_file: PathBuf,
    pub known_hosts: Option<PathBuf>,
    /// One public host key line (`ssh-ed25519 AAAA...`), instead of a known_hosts file.
    pub host_key: Option<String>,
    pub root: String,
    #[serde(default)]
    pub supervisor: Supervisor,
    /// Service name → its configuration file on this machine.
    pub services: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Supervisor {
    /// systemd when it runs on the host, the script otherwise.
    #[default]
    Auto,
    Systemd,
    /// `bitmail-ctl`: pid files under `root/run`, logs under `root/logs`.
    Script,
}

fn default_keep() -> usize {
    5
}
fn default_health_timeout() -> u64 {
    60
}
fn default_port() -> u16 {
    22
}

impl HostConfig {
    /// `user@address:port`, for messages.
    pub fn target(&self) -> String {
        format!("{}@{}:{}", self.user, self.address, self.port)
    }

    /// The services of this host in start order.
    pub fn services_in_order(&self) -> Vec<&'static str> {
        SERVICES.into_iter().filter(|s| self.services.contains_key(*s)).collect()
    }

    /// Where the host goes in a rolling deploy: storage (backend-server) first, then
    /// the MTAs, then the edges, by the first service of [`SERVICES`] it runs.
    pub fn role_rank(&self) -> usize {
        SERVICES.iter().position(|s| self.services.contains_key(*s)).unwrap_or(SERVICES.len())
    }
}

/// The `[tenants]` `store` and `node_id` an mta-server config sets (empty when it does
/// not); `None` when the file cannot be read as TOML (the service's own check says why).
fn tenants_of(file: &Path) -> Option<(String, String)> {
    let table: toml::Table = std::fs::read_to_string(file).ok()?.parse().ok()?;
    let tenants = table.get("tenants").and_then(toml::Value::as_table);
    let key = |k: &str| tenants.and_then(|t| t.get(k)).and_then(toml::Value::as_str).unwrap_or_default().to_owned();
    Some((key("store"), key("node_id")))
}

/// Reads and checks `path`; relative paths inside are resolved against its folder.
pub fn load(path: &Path) -> Result<DeployConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parse(&text, base).map_err(|problems| {
        anyhow::anyhow!(
            "{}: {} problem(s):\n{}",
            path.display(),
            problems.len(),
            problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
        )
    })
}

/// Parses deploy.toml text: every problem found, or the configuration with its paths
/// made absolute against `base`.
pub fn parse(text: &str, base: &Path) -> Result<DeployConfig, Vec<String>> {
    let table: toml::Table = toml::from_str(text).map_err(|e| vec![e.to_string().trim().to_owned()])?;
    let mut problems = Vec::new();
    let parsed: Result<DeployConfig, _> =
        serde_ignored::deserialize(toml::Value::Table(table), |path| problems.push(format!("{path}: unknown key")));
    let mut config = match parsed {
        Ok(c) => c,
        Err(e) => {
            problems.push(e.to_string());
            return Err(problems);
        }
    };
    for host in &mut config.hosts {
        host.key_file = resolve(base, &host.key_file);
        host.known_hosts = host.known_hosts.as_ref().map(|p| resolve(base, p));
        for file in host.services.values_mut() {
            *file = resolve(base, file);
        }
    }
    config.check(&mut problems);
    if problems.is_empty() { Ok(config) } else { Err(problems) }
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    if path.is_absolute() { path.to_owned() } else { base.join(path) }
}

/// A name that is safe as a file name and in a shell word: letters, digits, `.`, `_`, `-`.
pub fn plain_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with(['.', '-']) && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl DeployConfig {
    fn check(&self, problems: &mut Vec<String>) {
        if self.keep_releases < 2 {
            problems.push("keep_releases: at least 2 (the current release and the one to roll back to)".into());
        }
        if self.health_timeout_secs == 0 {
            problems.push("health_timeout_secs: must be more than 0".into());
        }
        if self.hosts.is_empty() {
            problems.push("hosts: no [[hosts]] configured".into());
        }
        let mut names = HashSet::new();
        // mta-servers on a shared tenants store: (where, host, node_id).
        let mut sharing: Vec<(String, &str, String)> = Vec::new();
        for (i, host) in self.hosts.iter().enumerate() {
            let at = if plain_name(&host.name) { format!("hosts[{i}] ({})", host.name) } else { format!("hosts[{i}]") };
            if !plain_name(&host.name) {
                problems.push(format!("{at}.name: `{}` must be letters, digits, `.`, `_` or `-`", host.name));
            } else if !names.insert(host.name.as_str()) {
                problems.push(format!("{at}.name: `{}` is used by another host", host.name));
            }
            if host.address.is_empty() || host.address.starts_with('-') || host.address.contains(char::is_whitespace) {
                problems.push(format!("{at}.address: `{}` is not a host name or IP address", host.address));
            }
            if host.port == 0 {
                problems.push(format!("{at}.port: must be 1-65535"));
            }
            if host.user.is_empty() || host.user.starts_with('-') || !host.user.chars().all(|c| c.is_ascii_graphic()) {
                problems.push(format!("{at}.user: `{}` is not a user name", host.user));
            }
            if !host.key_file.is_file() {
                problems.push(format!("{at}.key_file: {} is not a readable file", host.key_file.display()));
            }
            match (&host.known_hosts, &host.host_key) {
                (Some(_), Some(_)) => problems.push(format!("{at}: give known_hosts or host_key, not both")),
                (None, None) => {
                    problems.push(format!("{at}: known_hosts or host_key is required (host keys are always verified)"))
                }
                (Some(file), None) if !file.is_file() => {
                    problems.push(format!("{at}.known_hosts: {} is not a readable file", file.display()))
                }
                (None, Some(key)) if !valid_host_key(key) => {
                    problems.push(format!("{at}.host_key: expected one public key line such as `ssh-ed25519 AAAA...`"))
                }
                _ => {}
            }
            if !host.root.starts_with('/') || host.root == "/" || host.root.contains(['\'', '\n', '\0']) {
                problems.push(format!("{at}.root: `{}` must be an absolute folder other than /", host.root));
            }
            if host.services.is_empty() {
                problems.push(format!("{at}.services: name at least one of {}", SERVICES.join(", ")));
            }
            for (service, file) in &host.services {
                if service == "mta-server"
                    && let Some((store, node_id)) = tenants_of(file)
                    && !store.is_empty()
                {
                    sharing.push((at.clone(), host.name.as_str(), node_id));
                }
                if !SERVICES.contains(&service.as_str()) {
                    problems
                        .push(format!("{at}.services.{service}: unknown service (expected {})", SERVICES.join(", ")));
                } else if !file.is_file() {
                    problems.push(format!("{at}.services.{service}: {} is not a readable file", file.display()));
                }
            }
        }
        // Nodes sharing a store count their daily quotas under their node_id: each needs
        // its own, or two would overwrite each other's counts.
        if sharing.len() > 1 {
            for (i, (at, _, node_id)) in sharing.iter().enumerate() {
                if node_id.is_empty() {
                    problems.push(format!(
                        "{at}.services.mta-server: sets no [tenants] node_id; with {} mta-server hosts on a shared store \
                         each needs its own",
                        sharing.len()
                    ));
                } else if let Some((_, other, _)) = sharing[..i].iter().find(|(_, _, id)| id == node_id) {
                    problems.push(format!(
                        "{at}.services.mta-server: [tenants] node_id `{node_id}` is host {other}'s too; each mta-server \
                         needs its own"
                    ));
                }
            }
        }
    }

    /// The hosts `--hosts a,b` names (all without it), in rolling order: by
    /// [`HostConfig::role_rank`], and within a role in configuration order.
    pub fn select(&self, names: Option<&str>) -> Result<Vec<HostConfig>> {
        let mut hosts = self.select_unordered(names)?;
        hosts.sort_by_key(HostConfig::role_rank);
        Ok(hosts)
    }

    fn select_unordered(&self, names: Option<&str>) -> Result<Vec<HostConfig>> {
        let Some(names) = names else { return Ok(self.hosts.clone()) };
        let wanted: Vec<&str> = names.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let known: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
        let unknown: Vec<&str> = wanted.iter().copied().filter(|w| !known.contains(w)).collect();
        if !unknown.is_empty() {
            bail!("--hosts: no host named {} in the deploy config (it has {})", unknown.join(", "), known.join(", "));
        }
        if wanted.is_empty() {
            bail!("--hosts: name at least one host");
        }
        Ok(self.hosts.iter().filter(|h| wanted.contains(&h.name.as_str())).cloned().collect())
    }
}

fn valid_host_key(key: &str) -> bool {
    let mut words = key.split_whitespace();
    matches!((words.next(), words.next()), (Some(kind), Some(data))
        if (kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"))
            && data.len() > 20
            && data.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)))
        && !key.contains('\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[&str]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-deploy-config-{}-{}", std::process::id(), files.len()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in files {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        dir
    }

    const GOOD: &str = r#"
        keep_releases = 3
        [[hosts]]
        name = "mta"
        address = "192.0.2.1"
        user = "bitmail"
        key_file = "id"
        host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKj4Yx2oS0m1Wq7W2n3T8gU1cXz9Bv6eF0pQ"
        root = "/opt/bitmail"
        [hosts.services]
        mta-server = "mta.toml"
    "#;

    #[test]
    fn a_good_file_loads_with_paths_made_absolute() {
        let dir = dir_with(&["id", "mta.toml"]);
        let c = parse(GOOD, &dir).unwrap();
        let host = &c.hosts[0];
        assert_eq!((host.port, host.supervisor, c.health_timeout_secs), (22, Supervisor::Auto, 60));
        assert_eq!(host.key_file, dir.join("id"));
        assert_eq!(host.services["mta-server"], dir.join("mta.toml"));
        assert_eq!(host.services_in_order(), ["mta-server"]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = dir_with(&[]);
        let text = r#"
            keep_releases = 1
            colour = "blue"
            [[hosts]]
            name = "edge"
            address = "192.0.2.1"
            user = "bitmail"
            key_file = "missing-key"
            root = "opt/bitmail"
            suprevisor = "script"
            [hosts.services]
            mta-server = "missing.toml"
            smtpd = "x.toml"
            [[hosts]]
            name = "edge"
            address = "192.0.2.2"
            user = "bitmail"
            key_file = "missing-key"
            host_key = "not a key"
            root = "/srv/bitmail"
            [hosts.services]
        "#;
        let problems = parse(text, &dir).unwrap_err().join("\n");
        for needle in [
            "colour: unknown key",
            "hosts.0.suprevisor: unknown key",
            "keep_releases: at least 2",
            "hosts[0] (edge).key_file",
            "hosts[0] (edge): known_hosts or host_key is required",
            "hosts[0] (edge).root",
            "hosts[0] (edge).services.mta-server",
            "hosts[0] (edge).services.smtpd: unknown service",
            "hosts[1] (edge).name: `edge` is used by another host",
            "hosts[1] (edge).host_key",
            "hosts[1] (edge).services: name at least one",
        ] {
            assert!(problems.contains(needle), "missing {needle:?} in:\n{problems}");
        }
    }

    #[test]
    fn the_example_layout_is_complete_but_for_the_operator_s_key() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/example");
        let problems = parse(include_str!("../../../deploy/example/deploy.toml"), &dir).unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems.iter().all(|p| p.contains(".key_file: ") && p.contains("bitmail_deploy")), "{problems:?}");
    }

    /// `[[hosts]]` entries named `name`, each running `service` with config `file`.
    fn hosts_toml(hosts: &[(&str, &str, &str)]) -> String {
        hosts
            .iter()
            .map(|(name, service, file)| {
                GOOD.split("[[hosts]]")
                    .nth(1)
                    .unwrap()
                    .replace("name = \"mta\"", &format!("name = \"{name}\""))
                    .replace("mta-server = \"mta.toml\"", &format!("{service} = \"{file}\""))
            })
            .map(|entry| format!("[[hosts]]{entry}"))
            .collect()
    }

    #[test]
    fn hosts_roll_storage_first_then_mtas_then_edges() {
        let dir = dir_with(&["id", "mta.toml", "edge.toml", "storage.toml"]);
        let text = hosts_toml(&[
            ("edge-1", "client-api", "edge.toml"),
            ("mta-1", "mta-server", "mta.toml"),
            ("edge-2", "client-api", "edge.toml"),
            ("storage", "backend-server", "storage.toml"),
            ("mta-2", "mta-server", "mta.toml"),
        ]);
        let c = parse(&text, &dir).unwrap();
        let order =
            |names: Option<&str>| -> Vec<String> { c.select(names).unwrap().into_iter().map(|h| h.name).collect() };
        assert_eq!(order(None), ["storage", "mta-1", "mta-2", "edge-1", "edge-2"]);
        assert_eq!(order(Some("edge-2,mta-2,edge-1")), ["mta-2", "edge-1", "edge-2"]);
    }

    #[test]
    fn mtas_on_a_shared_store_need_node_ids_of_their_own() {
        let dir = dir_with(&["id", "a.toml", "b.toml", "c.toml", "local.toml"]);
        let shared = |node_id: &str| format!("[tenants]\nstore = \"https://10.0.0.12:50052\"\n{node_id}");
        std::fs::write(dir.join("a.toml"), shared("node_id = \"mta-1\"")).unwrap();
        std::fs::write(dir.join("b.toml"), shared("node_id = \"mta-1\"")).unwrap();
        std::fs::write(dir.join("c.toml"), shared("")).unwrap();
        // Its own tenants file: its counts are its own whatever its node_id.
        std::fs::write(dir.join("local.toml"), "[tenants]\nnode_id = \"mta-1\"\n").unwrap();
        let hosts = [
            ("mta-a", "mta-server", "a.toml"),
            ("mta-b", "mta-server", "b.toml"),
            ("mta-c", "mta-server", "c.toml"),
            ("mta-local", "mta-server", "local.toml"),
        ];
        let problems = parse(&hosts_toml(&hosts), &dir).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("hosts[1] (mta-b).services.mta-server: [tenants] node_id `mta-1` is host mta-a's")
        );
        assert!(problems[1].starts_with("hosts[2] (mta-c).services.mta-server: sets no [tenants] node_id; with 3"));
        std::fs::write(dir.join("b.toml"), shared("node_id = \"mta-2\"")).unwrap();
        std::fs::write(dir.join("c.toml"), shared("node_id = \"mta-3\"")).unwrap();
        parse(&hosts_toml(&hosts), &dir).unwrap();
        // One mta-server on a shared store may leave it to its default (host:port).
        parse(&hosts_toml(&hosts[2..]), &dir).unwrap();
    }

    #[test]
    fn hosts_are_selected_by_name_and_unknown_names_are_refused() {
        let dir = dir_with(&["id", "mta.toml"]);
        let c = parse(GOOD, &dir).unwrap();
        assert_eq!(c.select(None).unwrap().len(), 1);
        assert_eq!(c.select(Some("mta")).unwrap()[0].name, "mta");
        let err = c.select(Some("mta,edge")).unwrap_err().to_string();
        assert!(err.contains("no host named edge") && err.contains("it has mta"), "{err}");
    }
}
