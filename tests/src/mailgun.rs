//! A fake Mailgun: a real HTTP server speaking the messages API as Mailgun documents it
//! (`POST /v3/{domain}/messages` and `messages.mime`). It checks HTTP Basic auth (`api`
//! and the key) and the form's fields,
//! answers Mailgun's `{"message": ...}` for what Mailgun would refuse, records what it
//! accepts with the id it gave, and follows the same scripted [`Behavior`] as the fake
//! SendGrid: fail, answer slowly, or never answer.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::prelude::*;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::shared::{lock, valid_email};

pub use crate::sendgrid::Behavior;

/// Mailgun refuses messages over 25 MB.
const MAX_MESSAGE: usize = 25 * 1024 * 1024;
/// Room for a 25 MB message plus the multipart framing, so that an oversized message is
/// read whole and answered 413 rather than cut off mid-upload.
const MAX_BODY: usize = 26 * 1024 * 1024;
/// All `o:`, `h:`, `v:` and `t:` values together.
const MAX_OPTIONS: usize = 16 * 1024;
const MAX_RECIPIENTS: usize = 1000;

/// A message the fake accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The `{domain}` of the URL it was posted to.
    pub domain: String,
    /// The `id` the fake answered with, angle brackets included.
    pub message_id: String,
    /// Every form field that was not a file, in order, repeated names kept.
    pub fields: Vec<(String, String)>,
    /// Every file part, in order.
    pub files: Vec<ReceivedFile>,
    /// `o:testmode=yes` was set: answered 200, not "delivered".
    pub test_mode: bool,
}

/// A file part of an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFile {
    /// The form field: `attachment`, `inline`, or `message` for `messages.mime`.
    pub field: String,
    pub filename: String,
    /// As the part declared it; empty when it declared none.
    pub content_type: String,
    pub data: Vec<u8>,
}

impl Received {
    /// The first value of field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of field `name`; for `to`, `cc` and `bcc` each address of a
    /// comma-separated list on its own, trimmed.
    pub fn all(&self, name: &str) -> Vec<&str> {
        let values = self.fields.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        if matches!(name, "to" | "cc" | "bcc") { values.flat_map(split_addresses).collect() } else { values.collect() }
    }

    /// The raw MIME document of a `messages.mime` post.
    pub fn mime(&self) -> Option<Cow<'_, str>> {
        self.files.iter().find(|f| f.field == "message").map(|f| String::from_utf8_lossy(&f.data))
    }
}

struct Shared {
    api_key: String,
    behavior: Mutex<Behavior>,
    received: Mutex<Vec<Received>>,
    requests: Mutex<usize>,
    next_id: Mutex<u64>,
}

/// A running fake; it stops when dropped.
pub struct FakeMailgun {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeMailgun {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeMailgun {
    /// Starts on an ephemeral loopback port, accepting `api_key` for any domain.
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
            requests: Mutex::new(0),
            next_id: Mutex::new(0),
        });
        let app = Router::new()
            .route("/v3/{domain}/messages", post(messages))
            .route("/v3/{domain}/messages.mime", post(messages_mime))
            .route("/_fake/messages", get(list_received))
            .fallback(|| async { error(StatusCode::NOT_FOUND, "Not Found") })
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "fake Mailgun stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to configure a Mailgun provider with (in place of
    /// `https://api.mailgun.net`).
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

    /// Every request that reached `messages` or `messages.mime`, accepted or not.
    pub fn requests(&self) -> usize {
        *lock(&self.shared.requests)
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

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

async fn list_received(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    let all: Vec<Value> = lock(&shared.received)
        .iter()
        .map(|r| {
            let files: Vec<Value> = r
                .files
                .iter()
                .map(|f| json!({ "field": f.field, "filename": f.filename, "content_type": f.content_type, "size": f.data.len() }))
                .collect();
            json!({ "domain": r.domain, "id": r.message_id, "test_mode": r.test_mode, "fields": r.fields, "files": files, "mime": r.mime() })
        })
        .collect();
    axum::Json(Value::Array(all))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Messages,
    Mime,
}

async fn messages(state: State<Arc<Shared>>, domain: Path<String>, req: Request) -> Response {
    handle(state, domain, req, Endpoint::Messages).await
}

async fn messages_mime(state: State<Arc<Shared>>, domain: Path<String>, req: Request) -> Response {
    handle(state, domain, req, Endpoint::Mime).await
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path(domain): Path<String>,
    req: Request,
    endpoint: Endpoint,
) -> Response {
    *lock(&shared.requests) += 1;
    // Read the whole request first, as the fake SendGrid does, so `Hang` and `Fail`
    // answer (or not) a request that was fully sent.
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "Request entity too large");
    };
    if !authorized(&parts.headers, &shared.api_key) {
        return (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "text/plain")], "Forbidden").into_response();
    }
    let behavior = lock(&shared.behavior).clone();
    match behavior {
        Behavior::Fail { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let ty = if serde_json::from_str::<Value>(&body).is_ok() { "application/json" } else { "text/plain" };
            return (status, [(header::CONTENT_TYPE, ty)], body).into_response();
        }
        Behavior::Hang => std::future::pending::<()>().await,
        Behavior::Drop => crate::sendgrid::drop_connection(),
        Behavior::Delay(d) => tokio::time::sleep(d).await,
        Behavior::Accept => {}
    }
    let req = Request::from_parts(parts, Body::from(body));
    let mut msg = match read_form(req, domain).await {
        Ok(msg) => msg,
        Err(response) => return response,
    };
    let size = msg.fields.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
        + msg.files.iter().map(|f| f.data.len()).sum::<usize>();
    if size > MAX_MESSAGE {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "Message size exceeds the 25 MB limit");
    }
    let checked = match endpoint {
        Endpoint::Messages => check_messages(&msg),
        Endpoint::Mime => check_mime(&msg),
    };
    if let Err(message) = checked {
        return error(StatusCode::BAD_REQUEST, &message);
    }
    msg.test_mode =
        msg.field("o:testmode").is_some_and(|v| v.eq_ignore_ascii_case("yes") || v.eq_ignore_ascii_case("true"));
    msg.message_id = {
        let mut n = lock(&shared.next_id);
        *n += 1;
        format!("<20261123.{:06}.fake@{}>", *n, msg.domain)
    };
    tracing::info!(
        message_id = %msg.message_id,
        domain = %msg.domain,
        from = msg.field("from").unwrap_or_default(),
        test_mode = msg.test_mode,
        "fake Mailgun accepted a message"
    );
    let id = msg.message_id.clone();
    lock(&shared.received).push(msg);
    axum::Json(json!({ "id": id, "message": "Queued. Thank you." })).into_response()
}

/// Basic auth with user `api` and the key as password.
fn authorized(headers: &HeaderMap, api_key: &str) -> bool {
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, creds)| creds.trim())
    else {
        return false;
    };
    let Ok(decoded) = BASE64_STANDARD.decode(encoded) else {
        return false;
    };
    decoded.strip_prefix(b"api:".as_slice()) == Some(api_key.as_bytes())
}

/// Splits the multipart body into fields and files; a part with a filename is a file.
async fn read_form(req: Request, domain: String) -> Result<Received, Response> {
    let bad = |e: &dyn std::fmt::Display| error(StatusCode::BAD_REQUEST, &e.to_string());
    let mut form = Multipart::from_request(req, &()).await.map_err(|e| bad(&e.body_text()))?;
    let mut msg =
        Received { domain, message_id: String::new(), fields: Vec::new(), files: Vec::new(), test_mode: false };
    while let Some(part) = form.next_field().await.map_err(|e| bad(&e.body_text()))? {
        let name = part.name().unwrap_or_default().to_owned();
        let filename = part.file_name().map(str::to_owned);
        let content_type = part.content_type().unwrap_or_default().to_owned();
        let data = part.bytes().await.map_err(|e| bad(&e.body_text()))?;
        match filename {
            Some(filename) => msg.files.push(ReceivedFile { field: name, filename, content_type, data: data.to_vec() }),
            None => msg.fields.push((name, String::from_utf8_lossy(&data).into_owned())),
        }
    }
    Ok(msg)
}

/// The checks Mailgun makes on `messages` that BitMail's requests could fail.
fn check_messages(msg: &Received) -> Result<(), String> {
    let from = msg.field("from").map(str::trim).unwrap_or_default();
    if from.is_empty() {
        return Err("'from' parameter is missing".into());
    }
    if !valid_address(from) {
        return Err("from parameter is not a valid address. please check documentation".into());
    }
    check_recipients(msg)?;
    let has = |name| msg.field(name).is_some_and(|v| !v.is_empty());
    if !has("text") && !has("html") && !has("template") {
        return Err("Need at least one of 'text', 'html' or 'template' parameters specified".into());
    }
    if has("html") && has("template") {
        return Err("Only one parameters 'html' or 'template' is allowed".into());
    }
    check_options(msg)
}

/// The checks Mailgun makes on `messages.mime`.
fn check_mime(msg: &Received) -> Result<(), String> {
    check_recipients(msg)?;
    match msg.files.iter().find(|f| f.field == "message") {
        Some(f) if !f.data.is_empty() => {}
        _ if msg.field("message").is_some() => {
            return Err("'message' parameter is not a file".into());
        }
        _ => return Err("'message' parameter is missing".into()),
    }
    check_options(msg)
}

fn check_recipients(msg: &Received) -> Result<(), String> {
    if msg.all("to").is_empty() {
        return Err("'to' parameter is missing".into());
    }
    let mut count = 0;
    for key in ["to", "cc", "bcc"] {
        for address in msg.all(key) {
            if !valid_address(address) {
                return Err(format!("{key} parameter is not a valid address. please check documentation"));
            }
            count += 1;
        }
    }
    if count > MAX_RECIPIENTS {
        return Err("Too many recipients; max is 1000".into());
    }
    Ok(())
}

fn check_options(msg: &Received) -> Result<(), String> {
    let size: usize = msg
        .fields
        .iter()
        .filter(|(n, _)| ["o:", "h:", "v:", "t:"].iter().any(|p| n.starts_with(p)))
        .map(|(_, v)| v.len())
        .sum();
    if size > MAX_OPTIONS {
        return Err("Send options (parameters starting with o:, h:, or v:) are limited to 16 kB total".into());
    }
    Ok(())
}

/// Splits a `to`/`cc`/`bcc` value at commas outside quotes and angle brackets.
fn split_addresses(list: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut angle) = (0, false, false);
    for (i, c) in list.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(list[start..].trim());
    out.retain(|a| !a.is_empty());
    out
}

/// `a@b.c` or `Name <a@b.c>`, checked as loosely as the fake SendGrid checks.
fn valid_address(address: &str) -> bool {
    match address.rfind('<') {
        Some(i) => address[i + 1..].strip_suffix('>').is_some_and(valid_email),
        None => valid_email(address),
    }
}

#[cfg(test)]
mod tests {
    use reqwest::multipart::{Form, Part};

    use super::*;

    const KEY: &str = "key-test";

    fn message() -> Form {
        Form::new()
            .text("from", "BitMail <sender@example.com>")
            .text("to", "alice@example.org")
            .text("subject", "Hello")
            .text("text", "Hi there")
    }

    /// Posts `form` to `path` with `key` as the Basic password, answering the status
    /// and the body as a client sees them.
    async fn post(fake: &FakeMailgun, path: &str, key: Option<&str>, form: Form) -> (u16, String) {
        let mut request = reqwest::Client::new().post(format!("{}{path}", fake.base_url())).multipart(form);
        if let Some(key) = key {
            request = request.basic_auth("api", Some(key));
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    fn json(body: &str) -> Value {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    }

    #[tokio::test]
    async fn accepts_a_message_and_records_fields_and_files() {
        let fake = FakeMailgun::start(KEY).await.unwrap();
        let form = message()
            .text("to", "Bob <bob@example.org>, \"Doe, Carol\" <carol@example.org>")
            .text("cc", "dave@example.org")
            .text("html", "<p>Hi there</p>")
            .text("o:tag", "welcome")
            .text("o:tag", "bitmail")
            .text("h:X-BitMail-Id", "m-1")
            .text("v:bitmail-id", "m-1")
            .part(
                "attachment",
                Part::bytes(b"a,b\n1,2\n".to_vec()).file_name("report.csv").mime_str("text/csv").unwrap(),
            )
            .part(
                "inline",
                Part::bytes(vec![0x89, b'P', b'N', b'G']).file_name("logo.png").mime_str("image/png").unwrap(),
            );
        let (status, body) = post(&fake, "/v3/mg.example.com/messages", Some(KEY), form).await;
        assert_eq!(status, 200, "{body}");
        let answer = json(&body);
        assert_eq!(answer["message"], "Queued. Thank you.");
        assert_eq!(answer["id"], "<20261123.000001.fake@mg.example.com>");

        let got = fake.wait_for(1, Duration::from_secs(1)).await;
        assert_eq!(got.len(), 1);
        let r = &got[0];
        assert_eq!(r.domain, "mg.example.com");
        assert_eq!(r.message_id, answer["id"]);
        assert!(!r.test_mode);
        assert_eq!(r.field("from"), Some("BitMail <sender@example.com>"));
        assert_eq!(r.field("subject"), Some("Hello"));
        assert_eq!(r.all("to"), ["alice@example.org", "Bob <bob@example.org>", "\"Doe, Carol\" <carol@example.org>"]);
        assert_eq!(r.all("cc"), ["dave@example.org"]);
        assert_eq!(r.all("o:tag"), ["welcome", "bitmail"]);
        assert_eq!(r.field("h:X-BitMail-Id"), Some("m-1"));
        assert_eq!(r.field("v:bitmail-id"), Some("m-1"));
        assert_eq!(
            r.files,
            [
                ReceivedFile {
                    field: "attachment".into(),
                    filename: "report.csv".into(),
                    content_type: "text/csv".into(),
                    data: b"a,b\n1,2\n".to_vec(),
                },
                ReceivedFile {
                    field: "inline".into(),
                    filename: "logo.png".into(),
                    content_type: "image/png".into(),
                    data: vec![0x89, b'P', b'N', b'G'],
                },
            ]
        );

        let listed = reqwest::get(format!("{}/_fake/messages", fake.base_url())).await.unwrap().text().await.unwrap();
        let listed = json(&listed);
        assert_eq!(listed[0]["id"], answer["id"]);
        assert_eq!(listed[0]["files"][0]["size"], 8);

        let (status, body) = post(&fake, "/v3/mg.example.com/messages", Some(KEY), message()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["id"], "<20261123.000002.fake@mg.example.com>");
        assert_eq!(fake.requests(), 2);
    }

    #[tokio::test]
    async fn wrong_or_missing_key_answers_401_forbidden() {
        let fake = FakeMailgun::start(KEY).await.unwrap();
        let path = "/v3/mg.example.com/messages";
        for key in [Some("key-wrong"), None] {
            let (status, body) = post(&fake, path, key, message()).await;
            assert_eq!((status, body.as_str()), (401, "Forbidden"));
        }
        // The right key under another user name is refused too.
        let response = reqwest::Client::new()
            .post(format!("{}{path}", fake.base_url()))
            .basic_auth("user", Some(KEY))
            .multipart(message())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.text().await.unwrap(), "Forbidden");
        assert_eq!(fake.requests(), 3);
        assert!(fake.received().is_empty());
    }

    #[tokio::test]
    async fn missing_from_answers_400() {
        let fake = FakeMailgun::start(KEY).await.unwrap();
        let form = Form::new().text("to", "alice@example.org").text("text", "Hi");
        let (status, body) = post(&fake, "/v3/mg.example.com/messages", Some(KEY), form).await;
        assert_eq!(status, 400);
        assert_eq!(json(&body), json!({ "message": "'from' parameter is missing" }));
        assert!(fake.received().is_empty());
    }

    #[tokio::test]
    async fn missing_or_invalid_to_answers_400() {
        let fake = FakeMailgun::start(KEY).await.unwrap();
        let path = "/v3/mg.example.com/messages";
        let form = Form::new().text("from", "sender@example.com").text("text", "Hi");
        let (status, body) = post(&fake, path, Some(KEY), form).await;
        assert_eq!(status, 400);
        assert_eq!(json(&body)["message"], "'to' parameter is missing");

        let form = message().text("to", "Bob <not an address>");
        let (status, body) = post(&fake, path, Some(KEY), form).await;
        assert_eq!(status, 400);
        assert_eq!(json(&body)["message"], "to parameter is not a valid address. please check documentation");
        assert!(fake.received().is_empty());
    }

    #[tokio::test]
    async fn no_text_or_html_answers_400() {
        let fake = FakeMailgun::start(KEY).await.unwrap();
        let form =
            Form::new().text("from", "sender@example.com").text("to", "alice@example.org").text("subject", "Hello");
        let (status, body) = post(&fake, "/v3/mg.example.com/messages", Some(KEY), form).await;
        assert_eq!(status, 400);
        assert_eq!(json(&body)["message"], "Need at least one of 'text', 'html' or 'template' parameters specified");
        assert!(fake.received().is_empty());
    }

    #[tokio::test]
    async fn more_than_1000_recipients_answers_400() {
        let fake = FakeMailgun::start(KEY).await.unwrap();
        let path = "/v3/mg.example.com/messages";
        let list =
            |from: usize, to: usize| (from..to).map(|i| format!("r{i}@example.org")).collect::<Vec<_>>().join(", ");
        // 1000 recipients split over a comma-separated `to` and repeated `bcc`s: accepted.
        let mut form = message().text("to", list(1, 600));
        for i in 600..1000 {
            form = form.text("bcc", format!("r{i}@example.org"));
        }
        let (status, body) = post(&fake, path, Some(KEY), form).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(fake.received()[0].all("bcc").len(), 400);

        let form = message().text("to", list(1, 600)).text("cc", list(600, 1001));
        let (status, body) = post(&fake, path, Some(KEY), form).await;
        assert_eq!(status, 400);
        assert_eq!(json(&body)["message"], "Too many recipients; max is 1000");
        assert_eq!(fake.received().len(), 1);
    }

    #[tokio::test]
    async fn send_options_over_16_kb_answer_400() {
        let fake = FakeMailgun::start(KEY).await.unwrap();
        let path = "/v3/mg.example.com/messages";
        let form = message().text("v:data", "x".repeat(16 * 1024));
        let (status, body) = post(&fake, path, Some(KEY), form).await;
        assert_eq!(status, 200, "{body}");

        let form = message().text("v:data", "x".repeat(16 * 1024)).text("h:X-More", "y");
        let (status, body) = post(&fake, path, Some(KEY), form).await;
        assert_eq!(status, 400);
        assert_eq!(
            json(&body)["message"],
            "Send options (parameters starting with o:, h:, or v:) are limited to 16 kB total"
        );
        assert_eq!(fake.received().len(), 1);
    }

    #[tokio::test]
    async fn over_25_mb_answers_413() {
        let fake = FakeMailgun::start(KEY).await.unwrap();
        let big = Part::bytes(vec![b'x'; MAX_MESSAGE]).file_name("big.bin");
        let form = message().part("attachment", big);
        let (status, body) = post(&fake, "/v3/mg.example.com/messages", Some(KEY), form).await;
        assert_eq!(status, 413);
        assert!(json(&body)["message"].is_string(), "{body}");
        assert!(fake.received().is_empty());
    }

    #[tokio::test]
    async fn testmode_is_recorded() {
        let fake = FakeMailgun::start(KEY).await.unwrap();
        let form = message().text("o:testmode", "yes");
        let (status, body) = post(&fake, "/v3/mg.example.com/messages", Some(KEY), form).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["message"], "Queued. Thank you.");
        let got = fake.received();
        assert!(got[0].test_mode);
        assert_eq!(got[0].field("o:testmode"), Some("yes"));
    }

    #[tokio::test]
    async fn messages_mime_records_the_raw_mime() {
        let fake = FakeMailgun::start(KEY).await.unwrap();
        let mime = "From: sender@example.com\r\nTo: alice@example.org\r\nSubject: Hello\r\n\r\nHi there\r\n";
        let form = Form::new().text("to", "alice@example.org").part(
            "message",
            Part::bytes(mime.as_bytes().to_vec()).file_name("message.mime").mime_str("message/rfc822").unwrap(),
        );
        let (status, body) = post(&fake, "/v3/mg.example.com/messages.mime", Some(KEY), form).await;
        assert_eq!(status, 200, "{body}");
        let answer = json(&body);
        assert_eq!(answer["message"], "Queued. Thank you.");
        let got = fake.received();
        assert_eq!(got[0].message_id, answer["id"]);
        assert_eq!(got[0].mime().as_deref(), Some(mime));
        assert_eq!(got[0].files[0].content_type, "message/rfc822");
        assert_eq!(got[0].all("to"), ["alice@example.org"]);
    }

    #[tokio::test]
    async fn messages_mime_needs_the_message_as_a_file() {
        let fake = FakeMailgun::start(KEY).await.unwrap();
        let path = "/v3/mg.example.com/messages.mime";
        let form = Form::new().text("to", "alice@example.org");
        let (status, body) = post(&fake, path, Some(KEY), form).await;
        assert_eq!(status, 400);
        assert_eq!(json(&body)["message"], "'message' parameter is missing");

        let form = Form::new().text("to", "alice@example.org").text("message", "Subject: Hello\r\n\r\nHi\r\n");
        let (status, body) = post(&fake, path, Some(KEY), form).await;
        assert_eq!(status, 400);
        assert_eq!(json(&body)["message"], "'message' parameter is not a file");
        assert!(fake.received().is_empty());
    }

    #[tokio::test]
    async fn fail_behavior_answers_its_status_and_body() {
        let fake = FakeMailgun::start(KEY).await.unwrap();
        let path = "/v3/mg.example.com/messages";
        fake.set_behavior(Behavior::Fail { status: 500, body: r#"{"message":"Internal Server Error"}"#.into() });
        let (status, body) = post(&fake, path, Some(KEY), message()).await;
        assert_eq!(status, 500);
        assert_eq!(json(&body)["message"], "Internal Server Error");
        // The auth check still comes first.
        let (status, body) = post(&fake, path, Some("key-wrong"), message()).await;
        assert_eq!((status, body.as_str()), (401, "Forbidden"));
        assert!(fake.received().is_empty());

        fake.set_behavior(Behavior::Accept);
        let (status, _) = post(&fake, path, Some(KEY), message()).await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn hang_never_answers() {
        let fake = FakeMailgun::start(KEY).await.unwrap();
        fake.set_behavior(Behavior::Hang);
        let sent = reqwest::Client::new()
            .post(format!("{}/v3/mg.example.com/messages", fake.base_url()))
            .basic_auth("api", Some(KEY))
            .multipart(message())
            .timeout(Duration::from_millis(300))
            .send()
            .await;
        assert!(sent.is_err_and(|e| e.is_timeout()));
        assert_eq!(fake.requests(), 1);
        assert!(fake.received().is_empty());
    }

    #[tokio::test]
    async fn unknown_path_answers_404_json() {
        let fake = FakeMailgun::start(KEY).await.unwrap();
        let (status, body) = post(&fake, "/v3/mg.example.com/nothing", Some(KEY), message()).await;
        assert_eq!(status, 404);
        assert_eq!(json(&body), json!({ "message": "Not Found" }));
        assert_eq!(fake.requests(), 0);
    }
}
