//! A fake SendGrid: a real HTTP server speaking Mail Send v3 (`POST /v3/mail/send`) as
//! SendGrid documents it. It checks the bearer key and the body's shape, answers SendGrid's
//! `{"errors":[...]}` for what SendGrid would refuse, records what it accepts with the
//! `X-Message-Id` it gave, and can be scripted to fail, answer slowly, or never answer.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::prelude::*;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::shared::{lock, valid_email};

/// How the fake answers the next requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// Check the request and answer as SendGrid would (202, or 400/401 for bad input).
    Accept,
    /// Answer this status and body without looking at the request (after the auth check).
    Fail { status: u16, body: String },
    /// Wait, then behave as `Accept`.
    Delay(Duration),
    /// Read the request, then never answer.
    Hang,
    /// Read the request, then close the connection without answering.
    Drop,
}

/// Closes the connection of the request being handled, without an answer: unwinding
/// out of a handler ends its connection's task (and `resume_unwind` prints nothing).
pub(crate) fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new("fake provider: connection dropped as scripted"))
}

/// A message the fake accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The `X-Message-Id` the fake answered with.
    pub message_id: String,
    /// The request body, as sent.
    pub body: Value,
    /// `mail_settings.sandbox_mode.enable` was set: answered 200, not "sent".
    pub sandbox: bool,
}

struct Shared {
    api_key: String,
    behavior: Mutex<Behavior>,
    received: Mutex<Vec<Received>>,
    /// When each request to `/v3/mail/send` arrived.
    requests: Mutex<Vec<std::time::Instant>>,
    next_id: Mutex<u64>,
    /// Requests being answered now, and the most there ever were at once.
    concurrent: AtomicUsize,
    max_concurrent: AtomicUsize,
}

/// Counts a request as being answered while it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn new(shared: &'a Shared) -> Self {
        let now = shared.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_concurrent.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.concurrent.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running fake; it stops when dropped.
pub struct FakeSendGrid {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeSendGrid {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSendGrid {
    /// Starts on an ephemeral loopback port, accepting `api_key`.
    pub async fn start(api_key: &str) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), api_key).await
    }

    pub async fn start_on(addr: SocketAddr, api_key: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            api_key: api_key.to_owned(),
            behavior: Mutex::new(Behavior::Accept),
            received: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            next_id: Mutex::new(0),
            concurrent: AtomicUsize::new(0),
            max_concurrent: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/v3/mail/send", post(mail_send))
            .route("/_fake/messages", get(list_received))
            .fallback(|| async { error(StatusCode::NOT_FOUND, None, "Not Found") })
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "fake SendGrid stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to configure a SendGrid provider with.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_behavior(&self, behavior: Behavior) {
        *lock(&self.shared.behavior) = behavior;
    }

    /// Every message accepted so far, in order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// Every request that reached `/v3/mail/send`, accepted or not.
    pub fn requests(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// The most requests to `/v3/mail/send` that were being answered at once.
    pub fn max_concurrent(&self) -> usize {
        self.shared.max_concurrent.load(Ordering::SeqCst)
    }

    /// When each request reached `/v3/mail/send`.
    pub fn request_times(&self) -> Vec<std::time::Instant> {
        lock(&self.shared.requests).clone()
    }

    /// When the last request reached `/v3/mail/send`, if any did.
    pub fn last_request_at(&self) -> Option<std::time::Instant> {
        lock(&self.shared.requests).last().copied()
    }

    /// Waits until at least `n` messages were accepted, for at most `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn error(status: StatusCode, field: Option<&str>, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "field": field, "help": null }] });
    (status, axum::Json(body)).into_response()
}

async fn list_received(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    let all: Vec<Value> = lock(&shared.received)
        .iter()
        .map(|r| json!({ "x_message_id": r.message_id, "sandbox": r.sandbox, "body": r.body }))
        .collect();
    axum::Json(Value::Array(all))
}

async fn mail_send(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    lock(&shared.requests).push(std::time::Instant::now());
    let _in_flight = InFlight::new(&shared);
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| key == shared.api_key);
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            None,
            "The provided authorization grant is invalid, expired, or revoked",
        );
    }
    let behavior = lock(&shared.behavior).clone();
    match behavior {
        Behavior::Fail { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
        Behavior::Hang => std::future::pending::<()>().await,
        Behavior::Drop => drop_connection(),
        Behavior::Delay(d) => tokio::time::sleep(d).await,
        Behavior::Accept => {}
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return error(StatusCode::BAD_REQUEST, None, "Content-Type should be application/json.");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, None, "Bad Request");
    };
    if let Err((field, message)) = check(&body) {
        return error(StatusCode::BAD_REQUEST, Some(&field), &message);
    }
    let sandbox = body.pointer("/mail_settings/sandbox_mode/enable") == Some(&Value::Bool(true));
    let message_id = {
        let mut n = lock(&shared.next_id);
        *n += 1;
        format!("fake-sg-{:06}", *n)
    };
    let from = body.pointer("/from/email").and_then(Value::as_str).unwrap_or_default().to_owned();
    let subject = body.get("subject").and_then(Value::as_str).unwrap_or_default().to_owned();
    tracing::info!(%message_id, %from, %subject, sandbox, "fake SendGrid accepted a message");
    lock(&shared.received).push(Received { message_id: message_id.clone(), body, sandbox });
    let status = if sandbox { StatusCode::OK } else { StatusCode::ACCEPTED };
    (status, [("x-message-id", message_id)]).into_response()
}

type Problem = (String, String);

fn bad(field: impl Into<String>, message: &str) -> Problem {
    (field.into(), message.to_owned())
}

fn check_address(v: &Value, field: &str) -> Result<String, Problem> {
    let email = v
        .get("email")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{field}.email"), "The email parameter is required."))?;
    if !valid_email(email) {
        return Err(bad(format!("{field}.email"), "Does not contain a valid address."));
    }
    Ok(email.to_ascii_lowercase())
}

const RESERVED: &[&str] = &[
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
];

/// The checks SendGrid makes that BitMail's requests could fail.
fn check(body: &Value) -> Result<(), Problem> {
    check_address(body.get("from").unwrap_or(&Value::Null), "from")?;
    let personalizations =
        body.get("personalizations").and_then(Value::as_array).filter(|p| (1..=1000).contains(&p.len())).ok_or_else(
            || {
                bad(
                    "personalizations",
                    "The personalizations field is required and must have at least one personalization.",
                )
            },
        )?;
    let top_subject = body.get("subject").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    let mut seen = HashSet::new();
    for (i, p) in personalizations.iter().enumerate() {
        if p.get("to").and_then(Value::as_array).is_none_or(Vec::is_empty) {
            return Err(bad(
                format!("personalizations.{i}.to"),
                "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
            ));
        }
        for key in ["to", "cc", "bcc"] {
            for (j, a) in p.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
                let email = check_address(a, &format!("personalizations.{i}.{key}.{j}"))?;
                if !seen.insert(email) {
                    return Err(bad(
                        format!("personalizations.{i}.{key}.{j}.email"),
                        "Each email address in the personalization block should be unique between to, cc, and bcc. We found the first duplicate instance of [...] in the personalizations.0.to field.",
                    ));
                }
            }
        }
        let own_subject = p.get("subject").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
        if !top_subject && !own_subject {
            return Err(bad(
                "subject",
                "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
            ));
        }
    }
    if seen.len() > 1000 {
        return Err(bad("personalizations", "The total number of recipients must be no more than 1000."));
    }
    let content =
        body.get("content").and_then(Value::as_array).filter(|c| !c.is_empty()).ok_or_else(|| {
            bad("content", "Unless a valid template_id is provided, the content parameter is required.")
        })?;
    for (i, c) in content.iter().enumerate() {
        let ty = c.get("type").and_then(Value::as_str).unwrap_or_default();
        let value = c.get("value").and_then(Value::as_str).unwrap_or_default();
        if ty.is_empty() || value.is_empty() {
            return Err(bad(
                format!("content.{i}"),
                "The content value must be a string at least one character in length.",
            ));
        }
        if ty == "text/plain" && i != 0 {
            return Err(bad(
                format!("content.{i}.type"),
                "If present, text/plain must be first, followed by text/html, followed by any other content.",
            ));
        }
    }
    for (i, a) in body.get("attachments").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let text = |key: &str| a.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
        if text("content").is_none_or(|c| BASE64_STANDARD.decode(c).is_err()) {
            return Err(bad(format!("attachments.{i}.content"), "The attachment content must be base64 encoded."));
        }
        if text("filename").is_none() {
            return Err(bad(format!("attachments.{i}.filename"), "The attachment filename parameter is required."));
        }
        match text("disposition") {
            None | Some("attachment") => {}
            Some("inline") if text("content_id").is_some() => {}
            Some("inline") => {
                return Err(bad(
                    format!("attachments.{i}.content_id"),
                    "The content_id parameter is required if your attachment is inline.",
                ));
            }
            Some(_) => {
                return Err(bad(
                    format!("attachments.{i}.disposition"),
                    "The disposition must be either inline or attachment.",
                ));
            }
        }
    }
    if body.get("categories").and_then(Value::as_array).is_some_and(|c| c.len() > 10) {
        return Err(bad("categories", "You may not have more than 10 categories per request."));
    }
    if let Some(args) = body.get("custom_args").and_then(Value::as_object) {
        if args.values().any(|v| !v.is_string()) {
            return Err(bad("custom_args", "Custom args values must be strings."));
        }
        if serde_json::to_string(args).map_or(0, |s| s.len()) >= 10_000 {
            return Err(bad("custom_args", "Custom args must be less than 10000 bytes."));
        }
    }
    if let Some(headers) = body.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(bad(format!("headers.{name}"), "This header is reserved and cannot be set."));
            }
            if !value.is_string() {
                return Err(bad(format!("headers.{name}"), "Header values must be strings."));
            }
        }
    }
    Ok(())
}

/// A SendGrid Inbound Parse post in its raw-MIME mode, as SendGrid would make it: a plain
/// text mail from carol@example.net to bob@bitmail.test with this subject, `Message-ID`
/// (without the angle brackets) and text.
pub fn inbound_parse_form(subject: &str, message_id: &str, text: &str) -> reqwest::multipart::Form {
    let raw = format!(
        "From: Carol <carol@example.net>\r\nTo: bob@bitmail.test\r\nSubject: {subject}\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{message_id}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    );
    reqwest::multipart::Form::new()
        .text("email", raw)
        .text("envelope", r#"{"to":["bob@bitmail.test"],"from":"carol@example.net"}"#)
}
