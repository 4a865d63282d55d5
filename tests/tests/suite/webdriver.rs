//! Headless Chromium through chromedriver, spoken to in the W3C WebDriver protocol
//! (JSON over HTTP) with reqwest. Each `Browser` has its own driver process, its own
//! empty profile folder, and ends both when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Killing chromedriver leaves its Chromium running: stop every process started
        // with this test's own profile folder.
        let marker = format!("--user-data-dir={}", self.profile.display());
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            if cmdline.split(|b| *b == 0).any(|arg| arg == marker.as_bytes()) {
                let _ = std::process::Command::new("kill").arg("-9").arg(entry.file_name()).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium that accepts the edge's self-signed
    /// certificate.
    pub async fn start() -> Browser {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: `cargo xtask test` installs chromium and chromium-driver"
            );
        }
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = std::env::temp_dir().join(format!("bitmail-chromium-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&profile).unwrap();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser { http, session: String::new(), driver, profile };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", browser.profile.display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args, "prefs": { "intl.accept_languages": "en-GB" } },
        }}});
        let answer: Value =
            browser.http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}"));
        browser.session = format!("{base}/session/{session}");
        browser
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if answer["value"]["error"].is_string() {
            panic!("WebDriver {path}: {}", answer["value"]);
        }
        answer["value"].clone()
    }

    async fn try_cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Option<Value> {
        let answer: Value = self
            .http
            .request(method, format!("{}{path}", self.session))
            .json(&body)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (!answer["value"]["error"].is_string()).then(|| answer["value"].clone())
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", json!({ "url": url })).await;
    }

    /// The element matching `css`, waiting up to 10 s for it.
    pub async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found =
                self.try_cmd(reqwest::Method::POST, "/element", json!({ "using": "css selector", "value": css })).await;
            if let Some(id) = found.as_ref().and_then(|v| v[ELEMENT].as_str()) {
                return id.to_owned();
            }
            assert!(Instant::now() < deadline, "no element {css} within 10 s; page: {}", self.body_text().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of `css` contains `needle`, and answers that text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = self
                .script(
                    &format!("const e = document.querySelector({css:?}); return e ? e.innerText : null;"),
                    json!([]),
                )
                .await;
            if let Some(t) = text.as_str()
                && t.contains(needle)
            {
                return t.to_owned();
            }
            assert!(Instant::now() < deadline, "{css} never showed {needle:?}; it shows {text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn body_text(&self) -> String {
        self.try_cmd(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": "return document.body.innerText", "args": [] }),
        )
        .await
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
    }

    pub async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{el}/click"), json!({})).await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{el}/clear"), json!({})).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{el}/value"), json!({ "text": text })).await;
    }

    /// Chooses a file in an `<input type=file>`.
    pub async fn type_into_file(&self, css: &str, path: &Path) {
        let el = self.find(css).await;
        let text = path.display().to_string();
        self.cmd(reqwest::Method::POST, &format!("/element/{el}/value"), json!({ "text": text })).await;
    }

    /// Presses keys anywhere on the page (W3C key actions); `\u{E009}` is Control.
    pub async fn keys(&self, keys: &[&str]) {
        let mut actions: Vec<Value> = keys.iter().map(|k| json!({ "type": "keyDown", "value": k })).collect();
        actions.extend(keys.iter().rev().map(|k| json!({ "type": "keyUp", "value": k })));
        let body = json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] });
        self.cmd(reqwest::Method::POST, "/actions", body).await;
        self.cmd(reqwest::Method::DELETE, "/actions", Value::Null).await;
    }

    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/sync", json!({ "script": script, "args": args })).await
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(reqwest::Method::POST, "/window/rect", json!({ "width": width, "height": height })).await;
    }

    /// Saves a PNG of the page into target/screenshots/.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let png = self.cmd(reqwest::Method::GET, "/screenshot", Value::Null).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from)
            .join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        path
    }
}
