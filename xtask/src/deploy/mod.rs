//! `cargo xtask deploy`: puts a release on the configured hosts over SSH, one host at a
//! time, and rolls a host back when its services do not come up healthy. Hosts go in
//! rolling order (storage, then MTAs, then edges: [`config::HostConfig::role_rank`]), so
//! with several hosts per role the others of a role serve while one restarts.
//!
//! - [`config`]: `deploy.toml`, typed and fully checked;
//! - [`certs`]: the certificate files the services' configs name, for the pre-flight;
//! - [`ssh`]: the system `ssh` with host keys verified, and its errors in words;
//! - [`release`]: release names, the staged folder, pruning;
//! - `bitmail-ctl.sh`: the script each release carries to stop, switch, start and probe
//!   the services on its host (systemd units or pid files).
//!
//! Order: check the config, check every selected host (reachable, key accepted, host key
//! verified, root writable, tools present, the configs' certificates there), build and test, check the binaries; only
//! then touch the first host. On a host: upload into `releases/.incoming-NAME`, verify
//! checksums, rename to `releases/NAME` (an interrupted upload never becomes a release),
//! check each service's `--check-config` there (removing the release if one fails),
//! stop the old services, switch
//! `current` with one rename, start, wait for every service's `--probe`. On failure,
//! switch back to the previous release, restart it and stop: later hosts are not
//! touched.

pub mod certs;
pub mod config;
pub mod release;
pub mod ssh;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};

use crate::out::say;
use config::{DeployConfig, HostConfig, Supervisor};
use ssh::{Ssh, quote};

/// `cargo xtask deploy`'s options.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// The deploy configuration
    #[arg(long, value_name = "FILE", default_value = "deploy.toml")]
    pub config: PathBuf,
    /// Only these hosts (comma-separated names), in rolling order (storage, MTAs, edges)
    #[arg(long, value_name = "a,b")]
    pub hosts: Option<String>,
    /// Do not run `cargo xtask test` before deploying
    #[arg(long)]
    pub skip_tests: bool,
    /// Switch each host back to its previous release and restart
    #[arg(long)]
    pub rollback: bool,
    /// Deploy the service binaries found in DIR as they are, without building
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// With --bin-dir: the built webmail to ship with client-api (else none)
    #[arg(long, value_name = "DIR", requires = "bin_dir")]
    pub web_dir: Option<PathBuf>,
}

/// What happened on one host.
enum Outcome {
    Deployed(String),
    RolledBackTo { release: String, to: String },
    Failed(String),
    NotStarted,
}

/// What the pre-flight check learnt about a host.
struct HostState {
    ssh: Ssh,
    supervisor: Supervisor,
    current: Option<String>,
    releases: Vec<String>,
    /// The current release's SHA256SUMS lines: binaries that did not change are linked
    /// from it on the host instead of being sent again.
    current_sums: Vec<String>,
}

/// Runs the command. `run_tests` is `cargo xtask test`; `build_web` is `cargo xtask web`,
/// answering where the built webmail is.
pub fn main(
    options: Options,
    workspace: &Path,
    run_tests: impl FnOnce() -> Result<()>,
    build_web: impl FnOnce() -> Result<PathBuf>,
) -> Result<()> {
    let config = config::load(&options.config)?;
    let hosts = config.select(options.hosts.as_deref())?;
    let scratch = workspace.join("target/xtask-deploy");
    std::fs::create_dir_all(&scratch)?;

    if let Some(dir) = &options.bin_dir {
        check_binaries(dir, &hosts)?;
    }
    step(&format!("pre-flight: {} host(s)", hosts.len()));
    let states = preflight(&hosts, &scratch, options.rollback)?;
    if options.rollback {
        return finish(rollback_all(&config, states));
    }

    let (bin_dir, web_dir) = match options.bin_dir {
        Some(dir) => (dir, options.web_dir),
        None => {
            step("cargo xtask web (the webmail, shipped with client-api)");
            let web = build_web()?;
            step("cargo build --release (backend-server, mta-server, client-api)");
            let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(workspace)
                .args(["build", "--release", "-p", "backend-server", "-p", "mta-server", "-p", "client-api", "--bins"])
                .status()
                .context("cannot start cargo")?;
            if !status.success() {
                bail!("cargo build --release failed ({status})");
            }
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from);
            (target.join("release"), Some(web))
        }
    };
    if let Some(web) = &web_dir
        && !web.join("index.html").is_file()
    {
        bail!("{} holds no built webmail (index.html); run `cargo xtask web`", web.display());
    }
    if options.skip_tests {
        step("tests skipped (--skip-tests)");
    } else {
        step("cargo xtask test");
        run_tests().context("the tests failed: nothing was deployed")?;
    }
    check_binaries(&bin_dir, &hosts)?;

    let name = release::release_name(env!("CARGO_PKG_VERSION"), SystemTime::now());
    step(&format!("deploying release {name}"));
    let total = states.len();
    let mut results = Vec::new();
    let mut failed = false;
    for (i, state) in states.into_iter().enumerate() {
        let host = state.ssh.host.clone();
        if failed {
            results.push((host, Outcome::NotStarted, Duration::ZERO));
            continue;
        }
        say!("[{}/{total}] {}: {}", i + 1, host.name, host.target());
        let started = Instant::now();
        let outcome = deploy_host(&config, &state, &name, &bin_dir, web_dir.as_deref(), &scratch);
        failed = !matches!(outcome, Outcome::Deployed(_));
        results.push((host, outcome, started.elapsed()));
    }
    finish(results)
}

fn step(what: &str) {
    say!("\n==> {what}");
}

fn check_binaries(dir: &Path, hosts: &[HostConfig]) -> Result<()> {
    let mut missing = Vec::new();
    for host in hosts {
        for service in host.services_in_order() {
            if !dir.join(service).is_file() {
                missing.push(format!("host {}: the {service} binary is missing from {}", host.name, dir.display()));
            }
        }
    }
    missing.dedup();
    if !missing.is_empty() {
        bail!("nothing was deployed:\n  {}", missing.join("\n  "));
    }
    Ok(())
}

/// Checks every host before any is touched; reports every host's problem at once.
fn preflight(hosts: &[HostConfig], scratch: &Path, rollback: bool) -> Result<Vec<HostState>> {
    let mut states = Vec::new();
    let mut problems = Vec::new();
    for host in hosts {
        match check_host(host, scratch, rollback) {
            Ok(state) => {
                say!(
                    "  {}: reachable, host key verified, {} supervisor, current release: {}",
                    host.name,
                    if state.supervisor == Supervisor::Systemd { "systemd" } else { "script" },
                    state.current.as_deref().unwrap_or("none")
                );
                states.push(state);
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    if !problems.is_empty() {
        bail!("pre-flight failed, no host was touched:\n  {}", problems.join("\n  "));
    }
    Ok(states)
}

fn check_host(host: &HostConfig, scratch: &Path, rollback: bool) -> Result<HostState> {
    let ssh = Ssh::new(host, scratch)?;
    // Each certificate file the host's configs name must be readable there (relative
    // paths from the root): the operator puts them on the host, no release carries them.
    let mut cert_checks = String::new();
    for (service, file) in &host.services {
        for (service, key, path) in certs::files(service, file)? {
            let problem = format!(
                "problem={service} {key}: {path} is not a readable file there (see deploy/README.md, Certificates)"
            );
            cert_checks.push_str(&format!(
                "( cd \"$ROOT\" 2>/dev/null && [ -r {} ] ) || echo {}\n",
                quote(&path),
                quote(&problem)
            ));
        }
    }
    let script = format!(
        r#"ROOT={root}
if [ -e "$ROOT" ]; then
  {{ [ -d "$ROOT" ] && [ -w "$ROOT" ]; }} || echo "problem=$ROOT is not a folder $(id -un) can write"
else
  p=$(dirname "$ROOT"); while [ ! -e "$p" ]; do p=$(dirname "$p"); done
  [ -w "$p" ] || echo "problem=cannot create $ROOT: $p is not writable for $(id -un)"
fi
for t in tar sha256sum setsid readlink sed; do command -v $t >/dev/null 2>&1 || echo "problem=$t is missing"; done
echo "arch=$(uname -m)"
if [ -d /run/systemd/system ]; then echo systemd=yes; else echo systemd=no; fi
if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then echo admin=yes; else echo admin=no; fi
if [ -L "$ROOT/current" ]; then echo "current=$(readlink "$ROOT/current" | sed 's#^releases/##')"; fi
for d in "$ROOT"/releases/*/; do [ -d "$d" ] && echo "release=$(basename "$d")"; done
[ -f "$ROOT/current/SHA256SUMS" ] && sed 's/^/sum=/' "$ROOT/current/SHA256SUMS"
{cert_checks}exit 0
"#,
        root = quote(&host.root)
    );
    let answer = ssh.run(&script)?;
    let at = format!("host {} ({})", host.name, host.target());
    if !answer.ok {
        bail!("{at}: the check script failed: {}", answer.stderr.trim());
    }
    let values = |key: &str| -> Vec<String> {
        answer.stdout.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_owned).collect()
    };
    let mut problems = values("problem");
    let arch = values("arch").pop().unwrap_or_default();
    if arch != std::env::consts::ARCH {
        problems.push(format!("it runs on {arch}, the binaries are built for {}", std::env::consts::ARCH));
    }
    let (systemd, admin) = (values("systemd").pop() == Some("yes".into()), values("admin").pop() == Some("yes".into()));
    let supervisor = match host.supervisor {
        Supervisor::Script => Supervisor::Script,
        Supervisor::Auto if systemd && admin => Supervisor::Systemd,
        Supervisor::Auto => Supervisor::Script,
        Supervisor::Systemd => {
            if !systemd {
                problems.push("supervisor = \"systemd\" but systemd does not run there".into());
            } else if !admin {
                problems.push(format!("supervisor = \"systemd\" needs root or passwordless sudo for {}", host.user));
            }
            Supervisor::Systemd
        }
    };
    let current = values("current").pop().filter(|c| !c.is_empty());
    let releases = values("release");
    if rollback {
        match &current {
            None => problems.push("it has no current release to roll back from".into()),
            Some(c) if release::previous(&releases, c).is_none() => {
                problems.push(format!("it has no release older than {c} to roll back to"))
            }
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        bail!("{at}: {}", problems.join("; "));
    }
    Ok(HostState { ssh, supervisor, current, releases, current_sums: values("sum") })
}

/// Prints what a remote step said, indented under the host's line.
fn show(remote: &ssh::Remote) {
    for line in remote.stdout.lines().chain(remote.stderr.lines()) {
        if !line.trim().is_empty() {
            say!("  {}", line.trim_start());
        }
    }
}

fn ctl(state: &HostState, release: &str, command: &str) -> Result<ssh::Remote> {
    let root = &state.ssh.host.root;
    state.ssh.run(&format!("exec sh {}/releases/{release}/bin/bitmail-ctl {command}\n", quote(root)))
}

fn deploy_host(
    config: &DeployConfig,
    state: &HostState,
    name: &str,
    bin_dir: &Path,
    web_dir: Option<&Path>,
    scratch: &Path,
) -> Outcome {
    let host = &state.ssh.host;
    let staged = scratch.join(name).join(&host.name);
    let result = (|| -> Result<Outcome> {
        release::stage(&staged, name, host, state.supervisor, bin_dir, web_dir)?;
        let (reused, bytes) = release::reuse_unchanged(&staged, &state.current_sums)?;
        let services = host.services_in_order().join(", ");
        if reused.is_empty() {
            say!("  uploading {name} ({} MB; {services})", bytes / 1_000_000);
        } else {
            say!("  uploading {name} ({} MB; {services}; unchanged: {})", bytes / 1_000_000, reused.join(", "));
        }
        let incoming = format!("releases/.incoming-{name}");
        // Unchanged binaries are hard links to the current release's (the checksums
        // below cover them too).
        let links: String = reused
            .iter()
            .map(|f| format!("ln current/{f} {incoming}/{f} || cp current/{f} {incoming}/{f}; "))
            .collect();
        let upload = format!(
            "set -e; mkdir -p {root}; cd {root}; mkdir -p releases; rm -rf releases/.incoming-*; \
             if [ -e releases/{name} ]; then echo 'release {name} exists already' >&2; exit 1; fi; \
             mkdir {incoming}; tar -xf - -C {incoming}; {links}cd {incoming}; sha256sum -c --quiet SHA256SUMS",
            root = quote(&host.root)
        );
        let sent = state.ssh.upload(&staged, &format!("sh -c {}", quote(&upload)))?;
        if !sent.ok {
            show(&sent);
            return Ok(Outcome::Failed("the upload failed; nothing was switched".into()));
        }
        // Renamed into place complete (checksums verified), then each service checks its
        // config there, so that paths into the release (the webmail) resolve; a release
        // that fails is removed before anything points at it.
        let check = state.ssh.run(&format!(
            "cd {root} && mv -T {incoming} releases/{name} && sh releases/{name}/bin/bitmail-ctl check releases/{name}\n",
            root = quote(&host.root)
        ))?;
        if !check.ok {
            show(&check);
            let _ = state.ssh.run(&format!("cd {} && rm -rf {incoming} releases/{name}\n", quote(&host.root)));
            return Ok(Outcome::Failed("a service refused its configuration; nothing was switched".into()));
        }
        say!("  uploaded and verified releases/{name}");

        let activated = ctl(state, name, &format!("activate {name}"))?;
        show(&activated);
        let healthy = activated.ok && {
            let waited = ctl(state, name, &format!("wait-healthy {}", config.health_timeout_secs))?;
            show(&waited);
            waited.ok
        };
        if healthy {
            let mut releases = state.releases.clone();
            releases.push(name.to_owned());
            let old = release::to_prune(&releases, config.keep_releases, name, state.current.as_deref());
            if !old.is_empty() {
                let removed = ctl(state, name, &format!("remove {}", old.join(" ")))?;
                show(&removed);
                say!("  removed old releases: {}", old.join(", "));
            }
            return Ok(Outcome::Deployed(name.to_owned()));
        }
        let Some(previous) = &state.current else {
            let stopped = ctl(state, name, "deactivate")?;
            show(&stopped);
            let _ = ctl(state, name, &format!("remove {name}"));
            return Ok(Outcome::Failed(format!(
                "{name} did not come up healthy and there is no release to go back to"
            )));
        };
        say!("  {name} is not healthy: rolling back to {previous}");
        match switch_verified(config, state, previous) {
            Ok(()) => {
                let _ = ctl(state, previous, &format!("remove {name}"));
                say!("  removed the failed release {name}");
                Ok(Outcome::RolledBackTo { release: name.to_owned(), to: previous.clone() })
            }
            Err(e) => Ok(Outcome::Failed(format!("{name} was not healthy, and rolling back failed too: {e:#}"))),
        }
    })();
    let _ = std::fs::remove_dir_all(&staged);
    result.unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")))
}

/// Switches the host to `release`, restarts, and waits until every service is healthy.
fn switch_verified(config: &DeployConfig, state: &HostState, release: &str) -> Result<()> {
    let activated = ctl(state, release, &format!("activate {release}"))?;
    show(&activated);
    if !activated.ok {
        bail!("cannot switch to {release}");
    }
    let waited = ctl(state, release, &format!("wait-healthy {}", config.health_timeout_secs))?;
    show(&waited);
    if !waited.ok {
        bail!("{release} is not healthy");
    }
    Ok(())
}

fn rollback_all(config: &DeployConfig, states: Vec<HostState>) -> Vec<(HostConfig, Outcome, Duration)> {
    let total = states.len();
    let mut results = Vec::new();
    let mut failed = false;
    for (i, state) in states.into_iter().enumerate() {
        let host = state.ssh.host.clone();
        if failed {
            results.push((host, Outcome::NotStarted, Duration::ZERO));
            continue;
        }
        let started = Instant::now();
        // The pre-flight made sure both exist.
        let current = state.current.clone().unwrap_or_default();
        let target = release::previous(&state.releases, &current).unwrap_or_default();
        say!("[{}/{total}] {}: rolling back from {current} to {target}", i + 1, host.name);
        let outcome = match switch_verified(config, &state, &target) {
            Ok(()) => Outcome::Deployed(target),
            Err(e) => {
                failed = true;
                say!("  {e:#}: switching back to {current}");
                match switch_verified(config, &state, &current) {
                    Ok(()) => Outcome::RolledBackTo { release: target, to: current },
                    Err(again) => Outcome::Failed(format!("{e:#}, and {current} did not come back: {again:#}")),
                }
            }
        };
        results.push((host, outcome, started.elapsed()));
    }
    results
}

/// Prints the summary table; an error when any host did not end on what was asked.
fn finish(results: Vec<(HostConfig, Outcome, Duration)>) -> Result<()> {
    let rows: Vec<[String; 4]> = results
        .iter()
        .map(|(host, outcome, took)| {
            let what = match outcome {
                Outcome::Deployed(r) => format!("ok: running {r}"),
                Outcome::RolledBackTo { release, to } => format!("FAILED: {release} not healthy, back on {to}"),
                Outcome::Failed(why) => format!("FAILED: {why}"),
                Outcome::NotStarted => "not touched (an earlier host failed)".into(),
            };
            let took = if took.is_zero() { "-".into() } else { format!("{:.1} s", took.as_secs_f64()) };
            [host.name.clone(), host.target(), what, took]
        })
        .collect();
    let header = ["host", "address", "result", "took"].map(String::from);
    let widths: Vec<usize> =
        (0..4).map(|c| rows.iter().chain([&header]).map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    say!();
    for row in [&header].into_iter().chain(&rows) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        say!("{}", cells.join("  ").trim_end());
    }
    let untouched = results.iter().filter(|(_, o, _)| matches!(o, Outcome::NotStarted)).count();
    let failed = results.iter().filter(|(_, o, _)| !matches!(o, Outcome::Deployed(_) | Outcome::NotStarted)).count();
    if failed > 0 {
        bail!("{failed} host(s) failed, {untouched} not touched");
    }
    Ok(())
}
