//! For tests that run the real service binaries as child processes (`whole_stack_faults`,
//! `cluster`; the processes themselves: `bitmail_tests::processes`): a signed-in webmail
//! user over HTTPS, and polling to a deadline.

pub use bitmail_tests::processes::{Service, free_port};

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

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
    /// A webmail send of `subject` to an outside address: the mta id when answered 202,
    /// None for any other answer or none.
    pub async fn send_out(&self, subject: &str) -> Option<String> {
        let body = json!({ "to": "carol@example.net", "subject": subject, "text": "from the webmail" });
        match self.call(reqwest::Method::POST, "/api/messages", Some(body)).await {
            Some((StatusCode::ACCEPTED, sent)) => {
                Some(sent["mta_id"].as_str().expect("an outside recipient: an mta id").to_owned())
            }
            _ => None,
        }
    }

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
