//! The local PostgreSQL cluster `cargo xtask run --nodes N` keeps its store in:
//! `initdb` into `data/nodes/pg` once (reused on later runs), `postgres` on its own
//! loopback port with its socket in that folder, stopped (fast shutdown) when the guard is
//! dropped. The server binaries are Debian's `postgresql` package, installed with apt-get
//! when missing (as `cargo xtask test` does); `BITMAIL_PG_BIN` names another folder.
//! PostgreSQL refuses to run as root: as root, the cluster belongs to and runs as the
//! `postgres` user the package creates.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::out::tell;

/// The cluster's superuser and the database the backend-server uses.
pub(crate) const USER: &str = "bitmail";
pub(crate) const DATABASE: &str = "bitmail";

/// A running cluster; stopped when dropped.
pub(crate) struct LocalPg {
    child: Child,
    pub(crate) port: u16,
    pub(crate) password: String,
}

impl LocalPg {
    /// The backend-server's `[postgres] url`, over TCP with the password.
    pub(crate) fn url(&self) -> String {
        format!("postgres://{USER}:{}@127.0.0.1:{}/{DATABASE}", self.password, self.port)
    }
}

impl Drop for LocalPg {
    fn drop(&mut self) {
        // SIGINT: fast shutdown (sessions ended, a clean checkpoint): the data is reused.
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// The folder holding `initdb` and `postgres`: `BITMAIL_PG_BIN`, or the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BITMAIL_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.split('.').next()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// The uid and gid of `postgres` when we are root; `None` otherwise.
fn run_as() -> Result<Option<(u32, u32)>> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:")).context(
        "running as root and there is no `postgres` user to run PostgreSQL as (Debian's postgresql package makes it)",
    )?;
    let parts: Vec<&str> = line.split(':').collect();
    Ok(Some((parts.get(2).context("/etc/passwd")?.parse()?, parts.get(3).context("/etc/passwd")?.parse()?)))
}

fn command(bin: &Path, program: &str, owner: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(bin.join(program));
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd.env("LC_ALL", "C").stdin(Stdio::null());
    cmd
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("cannot chown {}", path.display()))?;
    }
    Ok(())
}

/// Starts the cluster in `dir` on `port`, making it first when `dir` holds none. The
/// superuser's password is kept beside it in `password_file` (mode 0600).
pub(crate) fn start(dir: &Path, port: u16, password_file: &Path) -> Result<LocalPg> {
    let bin = match find_bin_dir() {
        Some(bin) => bin,
        None => {
            crate::test::apt_install("the local cluster of `cargo xtask run --nodes`", &["postgresql"])?;
            find_bin_dir().context("apt-get installed postgresql, but no initdb is in /usr/lib/postgresql/*/bin")?
        }
    };
    let owner = run_as()?;
    if !dir.join("PG_VERSION").is_file() {
        make(&bin, dir, password_file, owner)?;
    }
    let password = std::fs::read_to_string(password_file)
        .with_context(|| format!("cannot read {} (remove {} to start afresh)", password_file.display(), dir.display()))?
        .trim()
        .to_owned();
    let log = dir.with_extension("log");
    let child = command(&bin, "postgres", owner)
        .arg("-D")
        .arg(dir)
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?)
        .spawn()
        .context("cannot start postgres")?;
    let mut pg = LocalPg { child, port, password };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = command(&bin, "pg_isready", None)
            .arg("-h")
            .arg(dir)
            .args(["-p", &port.to_string(), "-U", USER, "-d", "postgres", "-q"])
            .status()
            .context("cannot run pg_isready")?;
        if ready.success() {
            break;
        }
        if let Some(status) = pg.child.try_wait()? {
            bail!("postgres exited while starting ({status}); see {}", log.display());
        }
        if Instant::now() > deadline {
            bail!("postgres did not accept connections on {port} within 30 s; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The database, on the first run (createdb says so when it exists).
    let exists = command(&bin, "psql", None)
        .arg("-h")
        .arg(dir)
        .args(["-p", &port.to_string(), "-U", USER, "-d", "postgres", "-XAtc"])
        .arg(format!("SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"))
        .output()
        .context("cannot run psql")?;
    if !exists.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&exists.stderr).trim());
    }
    if String::from_utf8_lossy(&exists.stdout).trim() != "1" {
        let made = command(&bin, "createdb", None)
            .arg("-h")
            .arg(dir)
            .args(["-p", &port.to_string(), "-U", USER, DATABASE])
            .output()
            .context("cannot run createdb")?;
        if !made.status.success() {
            // Dropping `pg` stops the server.
            bail!("createdb {DATABASE} failed: {}", String::from_utf8_lossy(&made.stderr).trim());
        }
    }
    Ok(pg)
}

/// `initdb` into `dir` with a new password: trust on the socket (for createdb), a
/// password over TCP.
fn make(bin: &Path, dir: &Path, password_file: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    tell!("making a PostgreSQL cluster in {}", dir.display());
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    chown(dir, owner)?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let password = format!("bitmail{:x}{:x}", std::process::id(), nanos);
    crate::run::write_private(password_file, &password)?;
    // initdb (maybe as `postgres`) reads the password from a file of its own, removed after.
    let pwfile = dir.with_extension("pwfile");
    crate::run::write_private(&pwfile, &password)?;
    chown(&pwfile, owner)?;
    let out = command(bin, "initdb", owner)
        .arg("-D")
        .arg(dir)
        .args(["-U", USER, "-E", "UTF8", "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256"])
        .arg("--pwfile")
        .arg(&pwfile)
        .output()
        .context("cannot run initdb")?;
    let _ = std::fs::remove_file(&pwfile);
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(dir);
        bail!("initdb failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cluster is made on the first start and reused on the second: same password,
    /// the database still there (PostgreSQL is installed by `cargo xtask test`).
    #[test]
    fn a_cluster_is_made_once_and_reused() {
        let base = std::env::temp_dir().join(format!("xtask-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let (dir, password_file) = (base.join("pg"), base.join("pg.password"));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let bin = find_bin_dir().expect("PostgreSQL is installed (cargo xtask test installs it)");
        let select = |pg: &LocalPg, sql: &str| {
            let out = Command::new(bin.join("psql")).arg(pg.url()).args(["-XAtc", sql]).output().expect("psql runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let pg = start(&dir, port, &password_file).unwrap();
        let first_password = pg.password.clone();
        select(&pg, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)");
        drop(pg);
        let pg = start(&dir, port, &password_file).unwrap();
        assert_eq!(pg.password, first_password);
        assert_eq!(select(&pg, "SELECT n FROM kept"), "7");
        drop(pg);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
