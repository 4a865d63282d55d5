//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary folder, `postgres`
//! on a free loopback port (its socket in the same folder), stopped and removed on drop.
//!
//! The server binaries come from Debian's `postgresql` package
//! (`/usr/lib/postgresql/<version>/bin`, the newest version found), or from the folder
//! named by `BITMAIL_PG_BIN`. `cargo xtask test` installs the package when it is missing.
//! PostgreSQL refuses to run as root, so when the tests run as root the cluster runs as
//! the `postgres` system user (which the package creates), or `nobody`.
//!
//! The cluster trusts connections on its socket (used here to create databases) and asks
//! for a password over TCP, so the URLs handed to tests carry a real password. A test
//! cluster runs with `fsync=off` (nothing in it outlives the test); a benchmark's
//! ([`PgServer::start_durable`]) syncs like a production server.
//!
//! Fail-over tests use a pair: [`PgServer::start_primary`], then
//! [`PgServer::start_standby`] (`pg_basebackup -R` into a new folder, streaming
//! replication, run as the same user as the primary, on another port), made
//! synchronous (`synchronous_standby_names = '*'`, `synchronous_commit = on`), so that a
//! commit is answered only once the standby has it. [`PgServer::kill`] kills the
//! primary (SIGKILL, the postmaster and its backends, as if its machine died) and
//! [`PgServer::promote`] makes the standby the primary. With asynchronous replication,
//! the last commits before the kill could be missing on the promoted standby.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The superuser of every test cluster.
pub const USER: &str = "bitmail";

/// A running cluster; stopped (immediate shutdown) and deleted when dropped.
pub struct PgServer {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    password: String,
    mode: Mode,
    /// `ssl=on` with this certificate and key (in the cluster's folder).
    ssl: Option<(PathBuf, PathBuf)>,
    child: Option<Child>,
}

/// How a cluster runs: for tests, like production, or as one of a replicated pair.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `fsync=off`, `synchronous_commit=off`: nothing outlives the test.
    Test,
    /// Every commit synced to disk, for benchmarks.
    Durable,
    /// A primary or standby: WAL for streaming replication, commits that wait for the
    /// synchronous standby (`synchronous_commit=on`); `fsync=off`, since the test kills
    /// processes, not machines.
    Replicated,
}

impl Mode {
    fn settings(self) -> &'static [&'static str] {
        match self {
            Mode::Test => &["fsync=off", "synchronous_commit=off", "full_page_writes=off"],
            Mode::Durable => &["fsync=on", "synchronous_commit=on", "full_page_writes=on"],
            Mode::Replicated => &[
                "fsync=off",
                "synchronous_commit=on",
                "full_page_writes=on",
                "wal_level=replica",
                "max_wal_senders=4",
                "hot_standby=on",
            ],
        }
    }
}

/// The folder holding `initdb` and `postgres`, when PostgreSQL is installed.
pub fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BITMAIL_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
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

/// The user and group to run the server as: ourselves, or a system user when we are
/// root (PostgreSQL refuses root).
fn run_as() -> Result<Option<(u32, u32)>> {
    if fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd")?;
    for name in ["postgres", "nobody"] {
        let Some(line) = passwd.lines().find(|l| l.split(':').next() == Some(name)) else {
            continue;
        };
        let parts: Vec<&str> = line.split(':').collect();
        if let (Some(uid), Some(gid)) = (parts.get(2), parts.get(3)) {
            return Ok(Some((uid.parse()?, gid.parse()?)));
        }
    }
    bail!("running as root and neither the `postgres` nor the `nobody` user exists to run PostgreSQL")
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{prefix}_{}_{}_{}", std::process::id(), nanos % 1_000_000_000, NEXT.fetch_add(1, Ordering::Relaxed))
}

fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl PgServer {
    /// One cluster shared by the tests of this process that run at the same time: it
    /// starts with the first and stops when the last lets go of it. Give each test its
    /// own database ([`PgServer::create_database`]).
    pub fn shared() -> Result<Arc<PgServer>> {
        static SHARED: Mutex<Weak<PgServer>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(server) = shared.upgrade() {
            return Ok(server);
        }
        let server = Arc::new(PgServer::start()?);
        *shared = Arc::downgrade(&server);
        Ok(server)
    }

    /// Creates and starts a new cluster for tests (`fsync=off`). Blocks for about a second.
    pub fn start() -> Result<PgServer> {
        Self::start_with(Mode::Test, None)
    }

    /// A test cluster ready to be the primary of a pair: WAL for streaming replication,
    /// replication connections trusted on its socket, `synchronous_commit=on`. Commits
    /// wait for a standby only once [`PgServer::start_standby`] made one synchronous.
    pub fn start_primary() -> Result<PgServer> {
        Self::start_with(Mode::Replicated, None)
    }

    /// A test cluster that also takes TLS (`ssl=on`), with a certificate for `localhost`
    /// and `127.0.0.1` signed by `ca`. Plaintext connections are still accepted.
    pub fn start_tls(ca: &crate::ca::Ca) -> Result<PgServer> {
        Self::start_with(Mode::Test, Some(ca))
    }

    /// A cluster that syncs its commits to disk like a production one (`fsync=on`,
    /// `synchronous_commit=on`), for benchmarks that compare engines.
    pub fn start_durable() -> Result<PgServer> {
        Self::start_with(Mode::Durable, None)
    }

    fn start_with(mode: Mode, tls: Option<&crate::ca::Ca>) -> Result<PgServer> {
        let bin = find_bin_dir().context(
            "PostgreSQL's server binaries are not installed (looked in /usr/lib/postgresql/*/bin and \
             $BITMAIL_PG_BIN); `cargo xtask test` installs them (apt-get install postgresql)",
        )?;
        let owner = run_as()?;
        let dir = std::env::temp_dir().join(unique("bitmail-pg"));
        fs::create_dir_all(&dir)?;
        let password = unique("pw").replace('_', "x");
        let mut server = PgServer { dir: dir.clone(), bin, port: 0, password, mode, ssl: None, child: None };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        let pwfile = dir.join("pwfile");
        fs::write(&pwfile, &server.password)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))?;
        }

        let log = dir.join("initdb.log");
        let status = server
            .command("initdb", owner)
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", USER, "-E", "UTF8", "--locale=C", "--no-sync", "--auth-local=trust"])
            .args(["--auth-host=scram-sha-256", "--pwfile"])
            .arg(&pwfile)
            .stdout(fs::File::create(&log)?)
            .stderr(fs::File::create(dir.join("initdb.err"))?)
            .status()
            .context("cannot run initdb")?;
        if !status.success() {
            bail!("initdb failed ({status}):\n{}", tail(&dir.join("initdb.err")));
        }

        if mode == Mode::Replicated {
            // initdb's sample has this line too; the pair must not depend on it.
            let mut hba = fs::OpenOptions::new().append(true).open(dir.join("data/pg_hba.conf"))?;
            std::io::Write::write_all(&mut hba, b"\nlocal replication all trust\n")?;
        }

        if let Some(ca) = tls {
            // postgres wants its key private to the user it runs as.
            let issued = ca.issue("postgres-server", &["localhost", "127.0.0.1"])?;
            let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
            fs::copy(&issued.cert, &cert)?;
            fs::copy(&issued.key, &key)?;
            fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&cert, Some(uid), Some(gid))?;
                std::os::unix::fs::chown(&key, Some(uid), Some(gid))?;
            }
            server.ssl = Some((cert, key));
        }

        server.launch_retrying(owner)?;
        Ok(server)
    }

    /// A port can be taken between finding it free and the server binding it: try again.
    fn launch_retrying(&mut self, owner: Option<(u32, u32)>) -> Result<()> {
        let mut last_error = None;
        for _ in 0..3 {
            match self.launch(owner) {
                Ok(()) => return Ok(()),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("PostgreSQL did not start")))
    }

    fn command(&self, program: &str, owner: Option<(u32, u32)>) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(&self.dir).env("LC_ALL", "C").stdin(Stdio::null());
        cmd
    }

    fn launch(&mut self, owner: Option<(u32, u32)>) -> Result<()> {
        self.port = free_port()?;
        let log = self.dir.join("postgres.log");
        let child = self
            .command("postgres", owner)
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"])
            .args(self.mode.settings().iter().flat_map(|setting| ["-c", *setting]))
            .args(self.ssl.iter().flat_map(|(cert, key)| {
                ["-c".to_owned(), "ssl=on".to_owned(), "-c".to_owned()]
                    .into_iter()
                    .chain([format!("ssl_cert_file={}", cert.display()), "-c".to_owned()])
                    .chain([format!("ssl_key_file={}", key.display())])
            }))
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log)?)
            .spawn()
            .context("cannot start postgres")?;
        self.child = Some(child);

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .arg("-h")
                .arg(&self.dir)
                .args(["-p", &self.port.to_string(), "-U", USER, "-d", "postgres", "-q"])
                .status()
                .context("cannot run pg_isready")?;
            if ready.success() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("postgres exited while starting ({status}):\n{}", tail(&log));
            }
            if Instant::now() > deadline {
                self.stop();
                bail!("postgres did not accept connections within 30 s:\n{}", tail(&log));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password (for URLs over TCP).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A URL for `database` over TCP, with the password.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}:{}@127.0.0.1:{}/{database}", self.password, self.port)
    }

    /// Creates a new, empty database and returns its URL.
    pub fn create_database(&self) -> Result<String> {
        let name = unique("t");
        let output = Command::new(self.bin.join("createdb"))
            .arg("-h")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-U", USER, &name])
            .output()
            .context("cannot run createdb")?;
        if !output.status.success() {
            bail!("createdb {name} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(self.url(&name))
    }

    /// Runs one SQL command with `psql` in `database` and returns what it printed
    /// (unaligned, tuples only), e.g. to read an `EXPLAIN`.
    pub fn psql(&self, database_url: &str, sql: &str) -> Result<String> {
        let database = database_url.rsplit('/').next().unwrap_or("postgres");
        let output = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", database, "-X", "-A", "-t", "-v"])
            .arg("ON_ERROR_STOP=1")
            .arg("-c")
            .arg(sql)
            .output()
            .context("cannot run psql")?;
        if !output.status.success() {
            bail!("psql failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Starts a hot standby of this cluster (made by [`PgServer::start_primary`]):
    /// `pg_basebackup -R` over the primary's socket into a new folder, as the user the
    /// primary runs as, started on another free port, streaming from the primary. Returns
    /// once the primary's commits wait for it (`synchronous_standby_names = '*'`, set on
    /// the primary only, so the standby once promoted does not wait for a standby it does
    /// not have). The standby has the primary's databases and password.
    pub fn start_standby(&self) -> Result<PgServer> {
        if self.mode != Mode::Replicated {
            bail!("a standby needs a primary started with PgServer::start_primary");
        }
        let owner = run_as()?;
        let dir = std::env::temp_dir().join(unique("bitmail-pg-standby"));
        fs::create_dir_all(&dir)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        let mut standby = PgServer {
            dir: dir.clone(),
            bin: self.bin.clone(),
            port: 0,
            password: self.password.clone(),
            mode: Mode::Replicated,
            ssl: None,
            child: None,
        };
        let err = dir.join("basebackup.err");
        let status = standby
            .command("pg_basebackup", owner)
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-h")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-U", USER, "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&err)?)
            .status()
            .context("cannot run pg_basebackup")?;
        if !status.success() {
            bail!("pg_basebackup failed ({status}):\n{}", tail(&err));
        }
        standby.launch_retrying(owner)?;

        self.psql("postgres", "ALTER SYSTEM SET synchronous_standby_names = '*'")?;
        self.psql("postgres", "SELECT pg_reload_conf()")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self.psql("postgres", "SELECT string_agg(sync_state, ',') FROM pg_stat_replication")?;
            if state.trim() == "sync" {
                return Ok(standby);
            }
            if Instant::now() > deadline {
                bail!("the standby did not become synchronous within 30 s (sync_state {:?})", state.trim());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Promotes this standby to a primary (`pg_promote()`), returning once it takes writes.
    pub fn promote(&self) -> Result<()> {
        let promoted = self.psql("postgres", "SELECT pg_promote(true, 30)")?;
        if promoted.trim() != "t" {
            bail!("pg_promote did not finish within 30 s: {promoted:?}");
        }
        Ok(())
    }

    /// Kills the cluster as a crash would: SIGKILL to the postmaster and every backend,
    /// no shutdown, no goodbye to clients (their sockets are closed by the kernel). Its
    /// folder goes when it is dropped.
    pub fn kill(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else { bail!("the cluster is not running") };
        let postmaster = child.id();
        let mut pids = vec![postmaster.to_string()];
        pids.extend(children_of(postmaster).into_iter().map(|p| p.to_string()));
        let status = Command::new("kill").arg("-KILL").args(&pids).status().context("cannot run kill")?;
        let _ = child.wait();
        if !status.success() {
            bail!("kill -KILL {pids:?} failed ({status})");
        }
        // No postmaster is left to remove the small System V segment it holds.
        if let Ok(pid_file) = fs::read_to_string(self.dir.join("data/postmaster.pid"))
            && let Some(id) = pid_file.lines().nth(6).and_then(|l| l.split_whitespace().nth(1))
        {
            let _ = Command::new("ipcrm").args(["-m", id]).stderr(Stdio::null()).status();
        }
        Ok(())
    }

    /// A URL that names this primary and then `standby`, for `database` (a URL from
    /// [`PgServer::create_database`]), with `target_session_attrs=read-write` so that
    /// connections go to whichever of the two takes writes.
    pub fn pair_url(&self, standby: &PgServer, database_url: &str) -> String {
        let database = database_url.rsplit('/').next().unwrap_or("postgres");
        format!(
            "postgres://{USER}:{}@127.0.0.1:{},127.0.0.1:{}/{database}?target_session_attrs=read-write",
            self.password, self.port, standby.port
        )
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGQUIT: immediate shutdown; the postmaster ends its backends and releases
            // its shared memory. SIGKILL only if it does not go.
            let _ = Command::new("kill").args(["-QUIT", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The processes whose parent is `pid` (from `/proc/*/stat`).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (comm) state ppid ...": the name can hold spaces and parentheses.
            let after_name = &stat[stat.rfind(')')? + 1..];
            let parent: u32 = after_name.split_whitespace().nth(1)?.parse().ok()?;
            (parent == pid).then_some(child)
        })
        .collect()
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
