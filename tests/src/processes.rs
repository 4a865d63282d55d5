//! Service binaries run as child processes, for tests and benchmarks where kill -9 must
//! be real: each found beside the running binary, started with its TOML config, its
//! stderr appended to a log file, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A binary of the workspace, built beside the running one: `target/debug` for a test
/// (which runs from `target/debug/deps`), `target/release` for a benchmark binary.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().expect("a folder").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: `cargo test --workspace` builds it, or `cargo build --bins`",
        path.display()
    );
    path
}

/// A loopback port free now, for a service that must come back on the same one: below
/// the ephemeral range, so that no other test's `127.0.0.1:0` takes it while the
/// service is down.
pub fn free_port() -> u16 {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let low = ephemeral.and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok()).unwrap_or(32768);
    let top = low.clamp(12000, 32768);
    loop {
        let port = fastrand::u16(10000..top);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One service binary run as a child process, killed when dropped.
pub struct Service {
    /// The binary's name, or the node's (`mta-1`) when several run from one binary.
    pub name: String,
    pub bin: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    log_env: &'static str,
    child: Option<Child>,
}

impl Service {
    /// The binary `name`, its config (written to `dir/NAME.toml`) and log (`dir/NAME.log`).
    pub fn new(name: &str, dir: &Path, log_env: &'static str, config: String) -> Service {
        Service::node(name, name, dir, log_env, config)
    }

    /// The binary `bin` as node `name` (its config `dir/NAME.toml`, its log `dir/NAME.log`).
    pub fn node(name: &str, bin: &str, dir: &Path, log_env: &'static str, config: String) -> Service {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        Service { name: name.to_owned(), bin: binary(bin), config: path, log, log_env, child: None }
    }

    /// Starts it with its log filter at `info`.
    pub fn start(&mut self) {
        self.start_logging("info");
    }

    /// Starts it with `filter` as its log filter (a benchmark quiets per-message lines).
    pub fn start_logging(&mut self, filter: &str) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .env(self.log_env, filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Still running (not exited on its own).
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn kill_9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    /// SIGTERM, and waits for it to exit.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
        child.wait().unwrap();
    }

    /// `BIN --config CONFIG --probe`: its own health check.
    pub async fn probe(&self) -> bool {
        let mut command = tokio::process::Command::new(&self.bin);
        command.arg("--config").arg(&self.config).arg("--probe").stdout(Stdio::null()).stderr(Stdio::null());
        command.status().await.is_ok_and(|s| s.success())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
