//! A fake Amazon SES v2: a real HTTP server answering `SendEmail`
//! (`POST /v2/email/outbound-emails`) the way SES's rest-json protocol does, for the
//! answers an emulator such as moto cannot give (throttling, signature errors, a paused
//! account, 5xx, a hang after the request).
//!
//! It checks that the request is SigV4-signed with the expected access key id (else
//! `403 UnrecognizedClientException`, as SES answers), records the JSON body of every
//! message it accepts, and answers errors as SES does: the status, the error type in
//! the `x-amzn-ErrorType` header, and `{"message": ...}` as the body.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::shared::{lock, valid_email};

/// How the fake answers the next requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SesBehavior {
    /// Check the request and answer as SES would (200 with a `MessageId`, or 400).
    Accept,
    /// Answer this status, error type and message (after the signature check).
    Fail { status: u16, error_type: String, message: String },
    /// Read the request, then never answer.
    Hang,
    /// Wait, then behave as `Accept`.
    Delay(Duration),
}

impl SesBehavior {
    pub fn fail(status: u16, error_type: &str, message: &str) -> Self {
        SesBehavior::Fail { status, error_type: error_type.into(), message: message.into() }
    }
}

/// A message the fake accepted.
#[derive(Debug, Clone)]
pub struct SesReceived {
    /// The `MessageId` the fake answered with.
    pub message_id: String,
    /// The request body, as sent.
    pub body: Value,
}

impl SesReceived {
    /// The value of the `EmailTags` entry `name`.
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.body.get("EmailTags")?.as_array()?.iter().find(|t| t["Name"] == name)?.get("Value")?.as_str()
    }

    /// The value of the `Simple` content's header `name`.
    pub fn simple_header(&self, name: &str) -> Option<&str> {
        let headers = self.body.pointer("/Content/Simple/Headers")?.as_array()?;
        headers.iter().find(|h| h["Name"] == name)?.get("Value")?.as_str()
    }
}

struct Shared {
    access_key_id: String,
    behavior: Mutex<SesBehavior>,
    received: Mutex<Vec<SesReceived>>,
    requests: Mutex<usize>,
}

/// A running fake; it stops when dropped.
pub struct FakeSes {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeSes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSes {
    /// Starts on an ephemeral loopback port, accepting requests signed with `access_key_id`.
    pub async fn start(access_key_id: &str) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), access_key_id).await
    }

    pub async fn start_on(addr: SocketAddr, access_key_id: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            access_key_id: access_key_id.to_owned(),
            behavior: Mutex::new(SesBehavior::Accept),
            received: Mutex::new(Vec::new()),
            requests: Mutex::new(0),
        });
        let app = Router::new()
            .route("/v2/email/outbound-emails", post(send_email))
            .route("/_fake/messages", get(list_received))
            .fallback(|| async { error(404, "UnknownOperationException", "") })
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "fake SES stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// The `endpoint_url` to configure an SES provider with.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_behavior(&self, behavior: SesBehavior) {
        *lock(&self.shared.behavior) = behavior;
    }

    /// Every message accepted so far, in order.
    pub fn received(&self) -> Vec<SesReceived> {
        lock(&self.shared.received).clone()
    }

    /// Every request that reached `SendEmail`, accepted or not.
    pub fn requests(&self) -> usize {
        *lock(&self.shared.requests)
    }
}

/// An error as SES's rest-json protocol answers it.
fn error(status: u16, error_type: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("x-amzn-ErrorType", error_type.to_owned())], axum::Json(json!({ "message": message }))).into_response()
}

async fn list_received(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    let all = lock(&shared.received).iter().map(|r| json!({ "MessageId": r.message_id, "body": r.body })).collect();
    axum::Json(Value::Array(all))
}

/// The access key id of a SigV4 `Authorization` header for service `ses`.
fn signed_by(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth.strip_prefix("AWS4-HMAC-SHA256 Credential=")?;
    let mut scope = credential.split(',').next()?.split('/');
    let key = scope.next()?;
    let (_date, _region, service) = (scope.next()?, scope.next()?, scope.next()?);
    (service == "ses" && headers.contains_key("x-amz-date")).then(|| key.to_owned())
}

async fn send_email(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    *lock(&shared.requests) += 1;
    if signed_by(&headers).as_deref() != Some(shared.access_key_id.as_str()) {
        return error(403, "UnrecognizedClientException", "The security token included in the request is invalid.");
    }
    let behavior = lock(&shared.behavior).clone();
    match behavior {
        SesBehavior::Fail { status, error_type, message } => return error(status, &error_type, &message),
        SesBehavior::Hang => std::future::pending::<()>().await,
        SesBehavior::Delay(d) => tokio::time::sleep(d).await,
        SesBehavior::Accept => {}
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "BadRequestException", "Request body is not valid JSON.");
    };
    if let Err(message) = check(&body) {
        return error(400, "BadRequestException", &message);
    }
    let message_id = format!("fake-ses-{:06}", lock(&shared.received).len() + 1);
    tracing::info!(%message_id, from = %body["FromEmailAddress"], "fake SES accepted a message");
    lock(&shared.received).push(SesReceived { message_id: message_id.clone(), body });
    axum::Json(json!({ "MessageId": message_id })).into_response()
}

/// The bare address of `Name <addr>` or `addr`.
fn bare(address: &str) -> &str {
    match (address.rfind('<'), address.strip_suffix('>')) {
        (Some(start), Some(rest)) => &rest[start + 1..],
        _ => address,
    }
}

/// What SES checks before accepting a `SendEmail` request.
fn check(body: &Value) -> Result<(), String> {
    let from = body["FromEmailAddress"].as_str().ok_or("FromEmailAddress is required")?;
    if !valid_email(bare(from)) {
        return Err(format!("Illegal address: {from}"));
    }
    let mut count = 0;
    for list in ["ToAddresses", "CcAddresses", "BccAddresses"] {
        for address in body["Destination"][list].as_array().into_iter().flatten() {
            let address = address.as_str().unwrap_or_default();
            if !valid_email(bare(address)) {
                return Err(format!("Illegal address: {address}"));
            }
            count += 1;
        }
    }
    if count == 0 || count > 50 {
        return Err(format!("{count} recipients; between 1 and 50 are allowed"));
    }
    let content = &body["Content"];
    match (content.get("Simple"), content.get("Raw")) {
        (Some(simple), None) => {
            if simple.pointer("/Subject/Data").and_then(Value::as_str).is_none() {
                return Err("Subject is required".into());
            }
            if simple.pointer("/Body/Text").is_none() && simple.pointer("/Body/Html").is_none() {
                return Err("Body needs Text or Html".into());
            }
            if simple["Headers"].as_array().is_some_and(|h| h.len() > 15) {
                return Err("At most 15 headers are allowed".into());
            }
        }
        (None, Some(raw)) => {
            if raw["Data"].as_str().is_none_or(str::is_empty) {
                return Err("Raw.Data is required".into());
            }
        }
        _ => return Err("Content needs exactly one of Simple, Raw or Template".into()),
    }
    for tag in body["EmailTags"].as_array().into_iter().flatten() {
        let ok = |v: &Value| {
            v.as_str().is_some_and(|s| {
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
        };
        if !ok(&tag["Name"]) || !ok(&tag["Value"]) {
            return Err(format!("Invalid tag {tag}"));
        }
    }
    Ok(())
}
