//! Real service binaries as child processes, for tests where kill -9 must be real
//! (`whole_stack_faults`, `cluster`): each is found beside the test binary
//! (`target/debug`), started with its TOML config, its log appended to a file, and
//! killed when dropped. Also a signed-in webmail user over HTTPS, and polling to a
//! deadline.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

/// A binary of the workspace, built beside this test (`target/debug`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).expect("target/debug/deps/suite-*");
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
    pub name: &'static str,
    pub bin: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    log_env: &'static str,
    child: Option<Child>,
}

impl Service {
    pub fn new(name: &'static str, dir: &Path, log_env: &'static str, config: String) -> Service {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        Service { name, bin: binary(name), config: path, log: dir.join(format!("{name}.log")), log_env, child: None }
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .env(self.log_env, "info")
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

pub struct Webmail {
    pub http: reqwest::Client,
    pub base: String,
}

impl Webmail {
    pub async fn sign_in(&self, name: &str) -> (String, String) {
        let response = self
            .http
            .post(format!("{}/api/session", self.base))
            .json(&json!({ "name": name, "password": "a long password" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "signing in as {name}");
        let cookie = response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        (cookie, body["csrf_token"].as_str().unwrap().to_owned())
    }
}

/// A signed-in user; every call answers its status and JSON body, or None when the
/// connection failed (client-api down).
#[derive(Clone)]
pub struct User {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: String,
    pub csrf: String,
}

impl User {
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Option<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.ok()?;
        let status = response.status();
        let text = response.text().await.ok()?;
        Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Every message of a folder, all pages: subject -> how many times it is there.
    pub async fn folder(&self, folder: &str) -> HashMap<String, usize> {
        let mut subjects = HashMap::new();
        for page in 0.. {
            let (status, body) = self
                .call(reqwest::Method::GET, &format!("/api/folders/{folder}?page={page}&per_page=100"), None)
                .await
                .expect("client-api answers");
            assert_eq!(status, StatusCode::OK, "{body}");
            let messages = body["messages"].as_array().unwrap();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                *subjects.entry(m["subject"].as_str().unwrap().to_owned()).or_default() += 1;
            }
        }
        subjects
    }
}

/// Waits until `done` answers true, polling; fails after `within` saying `what`.
pub async fn until<F: std::future::Future<Output = bool>>(within: Duration, what: &str, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "not {what} after {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

