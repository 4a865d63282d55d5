//! A release as it is uploaded: its name, the folder staged for one host, and which old
//! releases a host may forget.
//!
//! ```text
//! releases/0.1.0-20250611T101530.123Z/
//!   bin/<service>...  bin/bitmail-ctl   config/<service>.toml   systemd/bitmail-<service>.service
//!   SERVICES (start order)   RELEASE (what and when)   SHA256SUMS (checked on the host)
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use super::config::{HostConfig, Supervisor};
use super::ssh::quote;

const CTL: &str = include_str!("bitmail-ctl.sh");
const UNITS: [(&str, &str); 3] = [
    ("backend-server", include_str!("../../../deploy/systemd/bitmail-backend-server.service")),
    ("mta-server", include_str!("../../../deploy/systemd/bitmail-mta-server.service")),
    ("client-api", include_str!("../../../deploy/systemd/bitmail-client-api.service")),
];

/// `<version>-<UTC time to the millisecond>`: names sort by time within a version, and
/// two deploys never pick the same one.
pub fn release_name(version: &str, at: SystemTime) -> String {
    format!("{version}-{}", utc_stamp(at))
}

/// `20250611T101530.123Z`.
pub fn utc_stamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The time part of a release name made by [`release_name`], which orders releases.
pub fn stamp_of(name: &str) -> Option<&str> {
    let stamp = name.rsplit_once('-')?.1;
    let ok = stamp.len() == 20
        && stamp.as_bytes()[8] == b'T'
        && stamp.as_bytes()[15] == b'.'
        && stamp.ends_with('Z')
        && stamp.bytes().enumerate().all(|(i, b)| matches!(i, 8 | 15 | 19) || b.is_ascii_digit());
    ok.then_some(stamp)
}

/// The release a rollback from `current` goes to: the newest one older than it.
pub fn previous(releases: &[String], current: &str) -> Option<String> {
    let now = stamp_of(current)?;
    releases.iter().filter(|r| stamp_of(r).is_some_and(|s| s < now)).max_by_key(|r| stamp_of(r)).cloned()
}

/// The releases to delete so that `keep` remain: never `current` nor `previous`, and
/// never a folder that is not a release name of ours.
pub fn to_prune(releases: &[String], keep: usize, current: &str, previous: Option<&str>) -> Vec<String> {
    let mut ours: Vec<&String> = releases.iter().filter(|r| stamp_of(r).is_some()).collect();
    ours.sort_by_key(|r| std::cmp::Reverse(stamp_of(r)));
    let mut kept = 0;
    let mut prune = Vec::new();
    for r in ours {
        if r == current || Some(r.as_str()) == previous {
            continue;
        }
        // The current and the previous count against `keep` too.
        let protected = 1 + usize::from(previous.is_some());
        if kept + protected < keep {
            kept += 1;
        } else {
            prune.push(r.clone());
        }
    }
    prune
}

/// The control script for one host, with its root and supervisor written in.
pub fn render_ctl(root: &str, supervisor: Supervisor) -> String {
    let supervisor = if supervisor == Supervisor::Systemd { "systemd" } else { "script" };
    CTL.replacen("@ROOT@", &quote(root), 1).replacen("@SUPERVISOR@", supervisor, 1)
}

/// The systemd unit of `service` for a host: its root folder and user written in.
pub fn render_unit(service: &str, root: &str, user: &str) -> Option<String> {
    let (_, text) = UNITS.iter().find(|(s, _)| *s == service)?;
    Some(text.replace("/opt/bitmail", root).replace("User=bitmail", &format!("User={user}")))
}

/// Lays out the release folder for `host` in `dir`: the binaries it runs (from
/// `bin_dir`), their configurations, the control script and units, and checksums.
/// Copies every file under `from` into `to`, answering the copies.
fn copy_tree(from: &Path, to: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            out.extend(copy_tree(&entry.path(), &target)?);
        } else {
            std::fs::copy(entry.path(), &target).with_context(|| format!("cannot copy {}", entry.path().display()))?;
            out.push(target);
        }
    }
    Ok(out)
}

pub fn stage(
    dir: &Path,
    name: &str,
    host: &HostConfig,
    supervisor: Supervisor,
    bin_dir: &Path,
    web_dir: Option<&Path>,
) -> Result<u64> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    for sub in ["bin", "config", "systemd"] {
        std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let services = host.services_in_order();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut bytes = 0;
    for service in &services {
        let bin = dir.join("bin").join(service);
        let from = bin_dir.join(service);
        if std::fs::hard_link(&from, &bin).is_err() {
            std::fs::copy(&from, &bin).with_context(|| format!("cannot copy {}", from.display()))?;
        }
        bytes += std::fs::metadata(&bin)?.len();
        let config = dir.join("config").join(format!("{service}.toml"));
        std::fs::copy(&host.services[*service], &config)
            .with_context(|| format!("cannot copy {}", host.services[*service].display()))?;
        if *service == "client-api"
            && let Some(web) = web_dir
        {
            // The webmail ships in the release; the edge's config points at this
            // release's copy unless the operator set `web_dir` themselves.
            let copied = copy_tree(web, &dir.join("web"))?;
            bytes += copied.iter().map(|f| std::fs::metadata(f).map_or(0, |m| m.len())).sum::<u64>();
            files.extend(copied);
            let text = std::fs::read_to_string(&config)?;
            if !text.lines().any(|l| l.trim_start().starts_with("web_dir")) {
                let here = format!("{}/releases/{name}/web", host.root.trim_end_matches('/'));
                std::fs::write(&config, format!("web_dir = {here:?}\n{text}"))?;
            }
        }
        let unit = render_unit(service, &host.root, &host.user).context("no unit for this service")?;
        std::fs::write(dir.join("systemd").join(format!("bitmail-{service}.service")), unit)?;
        files.extend([bin, config]);
    }
    let ctl = dir.join("bin/bitmail-ctl");
    std::fs::write(&ctl, render_ctl(&host.root, supervisor))?;
    set_executable(&ctl)?;
    files.push(ctl);
    std::fs::write(dir.join("SERVICES"), services.iter().map(|s| format!("{s}\n")).collect::<String>())?;
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    std::fs::write(
        dir.join("RELEASE"),
        format!("release = {name}\ncommit = {commit}\nhost = {}\nservices = {}\n", host.name, services.join(" ")),
    )?;

    let relative: Vec<String> =
        files.iter().map(|f| f.strip_prefix(dir).unwrap_or(f).to_string_lossy().into_owned()).collect();
    let sums = Command::new("sha256sum").args(&relative).current_dir(dir).output().context("cannot run sha256sum")?;
    if !sums.status.success() {
        bail!("sha256sum failed: {}", String::from_utf8_lossy(&sums.stderr).trim());
    }
    std::fs::write(dir.join("SHA256SUMS"), sums.stdout)?;
    Ok(bytes)
}

/// Removes from the staged folder the binaries whose checksum and path appear in
/// `current_sums` (the host's current release): the host links them instead. Returns
/// them and the bytes left to send.
pub fn reuse_unchanged(dir: &Path, current_sums: &[String]) -> Result<(Vec<String>, u64)> {
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS"))?;
    let mut reused = Vec::new();
    for line in sums.lines() {
        let Some((_, file)) = line.split_once("  ") else { continue };
        let is_binary = file.starts_with("bin/") && file != "bin/bitmail-ctl";
        if is_binary && current_sums.iter().any(|c| c.trim_end() == line.trim_end()) {
            std::fs::remove_file(dir.join(file))?;
            reused.push(file.to_owned());
        }
    }
    let mut bytes = 0;
    for sub in ["bin", "config"] {
        for entry in std::fs::read_dir(dir.join(sub))? {
            bytes += entry?.metadata()?.len();
        }
    }
    Ok((reused, bytes))
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names_carry_the_utc_time_to_the_millisecond() {
        let at = UNIX_EPOCH + Duration::from_millis(1_718_100_930_123);
        assert_eq!(release_name("0.1.0", at), "0.1.0-20240611T101530.123Z");
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "20000229T000000.000Z");
        assert_eq!(stamp_of("0.1.0-rc1-20240611T101530.123Z"), Some("20240611T101530.123Z"));
        assert_eq!(stamp_of("notes"), None);
    }

    fn names(stamps: &[&str]) -> Vec<String> {
        stamps.iter().map(|s| format!("0.1.0-2024061{s}T000000.000Z")).collect()
    }

    #[test]
    fn rollback_goes_to_the_newest_older_release() {
        let r = names(&["1", "2", "3", "4"]);
        assert_eq!(previous(&r, &r[2]), Some(r[1].clone()));
        assert_eq!(previous(&r, &r[0]), None);
    }

    #[test]
    fn pruning_keeps_the_newest_and_always_current_and_previous() {
        let mut r = names(&["1", "2", "3", "4", "5"]);
        r.push("operator-notes".into());
        // Current is the newest: keep 3 = current + previous + one more.
        assert_eq!(to_prune(&r, 3, &r[4], Some(&r[3])), vec![r[1].clone(), r[0].clone()]);
        // After a rollback to the oldest, the newest others fill what is left.
        assert_eq!(to_prune(&r, 2, &r[0], None), vec![r[3].clone(), r[2].clone(), r[1].clone()]);
    }

    #[test]
    fn units_and_the_script_get_the_host_s_root_and_user() {
        let unit = render_unit("mta-server", "/srv/bm", "mail").unwrap();
        assert!(
            unit.contains("ExecStart=/srv/bm/current/bin/mta-server --config /srv/bm/current/config/mta-server.toml")
        );
        assert!(unit.contains("User=mail\n") && !unit.contains("/opt/bitmail"));
        let ctl = render_ctl("/srv/it's", Supervisor::Script);
        assert!(ctl.contains(r"ROOT='/srv/it'\''s'") && ctl.contains("SUPERVISOR=script"));
    }
}
