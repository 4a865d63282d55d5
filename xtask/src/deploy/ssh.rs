//! Talking to a host through the system `ssh`: batch mode (never a password prompt),
//! the configured key only, and the host key always verified against the configured
//! known_hosts file or key. ssh's own failures are turned into sentences that say which
//! host and what went wrong.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

use super::config::HostConfig;

/// How to reach one host.
#[derive(Debug, Clone)]
pub struct Ssh {
    pub host: HostConfig,
    known_hosts: PathBuf,
}

/// What a remote command printed and how it ended.
#[derive(Debug)]
pub struct Remote {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Ssh {
    /// Prepares the known_hosts file for `host` (its own, or one written into `scratch`
    /// from its `host_key`).
    pub fn new(host: &HostConfig, scratch: &Path) -> Result<Self> {
        let known_hosts = match (&host.known_hosts, &host.host_key) {
            (Some(file), _) => file.clone(),
            (None, Some(key)) => {
                let file = scratch.join(format!("known_hosts-{}", host.name));
                let pattern =
                    if host.port == 22 { host.address.clone() } else { format!("[{}]:{}", host.address, host.port) };
                let mut words = key.split_whitespace();
                let (kind, data) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
                std::fs::create_dir_all(scratch)?;
                std::fs::write(&file, format!("{pattern} {kind} {data}\n"))
                    .with_context(|| format!("cannot write {}", file.display()))?;
                file
            }
            (None, None) => bail!("host {}: no known_hosts or host_key", host.name),
        };
        Ok(Self { host: host.clone(), known_hosts })
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-p").arg(self.host.port.to_string()).arg("-i").arg(&self.host.key_file);
        for option in [
            "BatchMode=yes",
            "IdentitiesOnly=yes",
            "StrictHostKeyChecking=yes",
            "GlobalKnownHostsFile=/dev/null",
            "ConnectTimeout=10",
            "ServerAliveInterval=10",
            "ServerAliveCountMax=3",
            "LogLevel=ERROR",
        ] {
            cmd.arg("-o").arg(option);
        }
        cmd.arg("-o").arg(format!("UserKnownHostsFile={}", self.known_hosts.display()));
        cmd.arg(format!("{}@{}", self.host.user, self.host.address)).arg("--");
        cmd
    }

    /// Runs `script` with `sh` on the host (sent on standard input, so that no quoting
    /// of the login shell is involved). Fails only when ssh itself could not run it.
    pub fn run(&self, script: &str) -> Result<Remote> {
        let mut child = self
            .command()
            .args(["sh", "-s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start ssh (is the OpenSSH client installed?)")?;
        if let Some(mut stdin) = child.stdin.take() {
            // A host that hangs up early makes this fail; its answer below says why.
            let _ = stdin.write_all(script.as_bytes());
        }
        self.finish(child.wait_with_output()?)
    }

    /// Streams `local_dir`'s contents (tar) into `sh -c remote_command` on the host,
    /// which reads the archive on its standard input.
    pub fn upload(&self, local_dir: &Path, remote_command: &str) -> Result<Remote> {
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(local_dir)
            .args(["-cf", "-", "."])
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start tar")?;
        let archive = tar.stdout.take().context("tar has no output")?;
        let output = self
            .command()
            .arg(remote_command)
            .stdin(Stdio::from(archive))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output();
        let tar_status = tar.wait()?;
        let remote = self.finish(output.context("cannot start ssh")?)?;
        if !tar_status.success() {
            bail!("tar of {} failed ({tar_status})", local_dir.display());
        }
        Ok(remote)
    }

    fn finish(&self, out: Output) -> Result<Remote> {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // 255 is ssh's own failure; a remote command's codes are kept below it.
        if out.status.code() == Some(255) {
            bail!("{}", self.explain(&stderr));
        }
        Ok(Remote { ok: out.status.success(), stdout: String::from_utf8_lossy(&out.stdout).into_owned(), stderr })
    }

    /// One sentence naming the host and the problem, from ssh's error output.
    pub fn explain(&self, stderr: &str) -> String {
        let said = stderr.trim().lines().rfind(|l| !l.trim().is_empty()).unwrap_or("no message").trim();
        let host = format!("host {} ({})", self.host.name, self.host.target());
        let what = if stderr.contains("Host key verification failed")
            || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || stderr.contains("No ED25519 host key is known")
            || stderr.contains("host key is known")
        {
            format!("its host key does not match {} (not verified, nothing was sent)", self.known_hosts.display())
        } else if stderr.contains("UNPROTECTED PRIVATE KEY FILE")
            || stderr.contains("Load key")
            || stderr.contains("invalid format")
        {
            format!("the key file {} cannot be used", self.host.key_file.display())
        } else if stderr.contains("Permission denied") {
            format!("the key {} was not accepted for user {}", self.host.key_file.display(), self.host.user)
        } else if stderr.contains("Connection refused")
            || stderr.contains("timed out")
            || stderr.contains("No route to host")
            || stderr.contains("Could not resolve")
            || stderr.contains("Network is unreachable")
            || stderr.contains("Connection closed")
            || stderr.contains("Connection reset")
            || stderr.contains("kex_exchange_identification")
        {
            "it cannot be reached".to_owned()
        } else {
            "ssh failed".to_owned()
        };
        format!("{host}: {what} (ssh: {said})")
    }
}

/// `s` as one single-quoted shell word.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
