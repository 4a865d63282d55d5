//! Handing the copies of one request to mta-server with the caller's own key, and
//! mta-server's refusals as [`Refusal`]s.
//!
//! A request of one copy is one `Submit`, which checks it whole. A request of several is
//! first checked copy by copy with `validate_only` (nothing stored or counted), then
//! submitted; only a quota or the spool can then refuse a later copy after earlier ones
//! were accepted. With an `Idempotency-Key`, copy `i` is submitted under `KEY#i`: the
//! same request sent again (after a 429, say) answers the copies already accepted with
//! their first ids, and submits only the rest.

use std::sync::Arc;

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::mta_client::MtaClient;
use bitmail_runtime::grpc::{Bearer, WithKey};
use tokio::task::JoinSet;
use tonic::Code;
use tonic::metadata::MetadataMap;

use super::Refusal;
use crate::mta_pool::{MtaPool, Node};
use crate::state::AppState;
use axum::http::{HeaderMap, StatusCode};

/// Copies submitted at once: they share the spool's group commits.
const IN_FLIGHT: usize = 32;
/// An `Idempotency-Key` leaves room for `#<copy>` in mta-server's 200 characters.
const MAX_IDEMPOTENCY_KEY: usize = 190;

/// mta-server's services, called with the app's own key, through the pool.
pub(crate) struct Upstream {
    pool: Arc<MtaPool>,
    bearer: Bearer,
}

impl Upstream {
    /// A key that is not printable ASCII is no key of ours: 401.
    pub(crate) fn new(state: &AppState, key: &str) -> Result<Self, Refusal> {
        let bearer = Bearer::new(Some(key)).map_err(|_| unauthorized())?;
        Ok(Upstream { pool: state.pool.clone(), bearer })
    }

    /// mta-server's `Mta` service, with the app's key, on the node the pool picks.
    pub(crate) fn mta(&self) -> MtaClient<WithKey> {
        self.pool.pick().mta(&self.bearer).max_encoding_message_size(usize::MAX)
    }

    /// The calling key's tenant, with its sending domains.
    pub(crate) async fn who_am_i(&self) -> Result<pb::WhoAmIResponse, Refusal> {
        let ask = |node: &Node| {
            let mut admin = node.admin(&self.bearer);
            async move { admin.who_am_i(pb::WhoAmIRequest {}).await.map(tonic::Response::into_inner) }
        };
        self.pool.any(ask).await.map_err(|s| refusal(&s))
    }

    /// One message's status (`read` scope; the tenant's own messages only), from the
    /// node that has it.
    pub(crate) async fn get_message(&self, id: &str) -> Result<pb::MessageStatus, Refusal> {
        self.pool.get_message(&self.bearer, id, None).await.map_err(|s| refusal(&s))
    }

    /// A page of the tenant's event log (of the node the pool picks).
    pub(crate) async fn list_events(&self, after: String, limit: u32) -> Result<pb::ListEventsResponse, Refusal> {
        let request = pb::ListEventsRequest { after, limit, tenant: String::new() };
        let ask = |node: &Node| {
            let (mut mta, request) = (node.mta(&self.bearer), request.clone());
            async move { mta.list_events(request).await.map(tonic::Response::into_inner) }
        };
        self.pool.any(ask).await.map_err(|s| refusal(&s))
    }

    /// Submits `copies` (checking them all first when there are several, or when
    /// `validate_only`), and answers their message ids in order (none when
    /// `validate_only`). A refusal names the copy it is about.
    pub(crate) async fn submit(
        &self,
        copies: Vec<pb::SubmitRequest>,
        idempotency_key: Option<&str>,
        validate_only: bool,
    ) -> Result<Vec<String>, (usize, Refusal)> {
        if validate_only || copies.len() > 1 {
            let checks = copies.iter().map(|c| pb::SubmitRequest { validate_only: true, ..c.clone() }).collect();
            self.submit_all(checks).await?;
        }
        if validate_only {
            return Ok(Vec::new());
        }
        let copies = copies
            .into_iter()
            .enumerate()
            .map(|(i, c)| match idempotency_key {
                Some(key) => pb::SubmitRequest { idempotency_key: format!("{key}#{i}"), ..c },
                None => c,
            })
            .collect();
        self.submit_all(copies).await
    }

    /// Every copy, [`IN_FLIGHT`] at a time; the ids in order, or the first refusal.
    async fn submit_all(&self, copies: Vec<pb::SubmitRequest>) -> Result<Vec<String>, (usize, Refusal)> {
        let mut ids = vec![String::new(); copies.len()];
        let mut pending = copies.into_iter().enumerate();
        let mut running = JoinSet::new();
        loop {
            while running.len() < IN_FLIGHT
                && let Some((i, copy)) = pending.next()
            {
                let (pool, bearer) = (self.pool.clone(), self.bearer.clone());
                running.spawn(async move { (i, pool.submit(&bearer, &MetadataMap::new(), copy).await) });
            }
            let Some(done) = running.join_next().await else { break };
            let (i, answer) =
                done.map_err(|e| (0, Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, None, e.to_string())))?;
            match answer {
                Ok(submitted) => ids[i] = submitted.response.message_id,
                Err(status) => return Err((i, refusal(&status))),
            }
        }
        Ok(ids)
    }
}

/// The `Idempotency-Key` header, if any: printable ASCII, at most 190 characters.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().ok().filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY);
    match key {
        Some(k) => Ok(Some(k.to_owned())),
        None => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            Some("Idempotency-Key"),
            format!("the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"),
        )),
    }
}

pub(crate) fn unauthorized() -> Refusal {
    Refusal::new(StatusCode::UNAUTHORIZED, None, "The provided authorization grant is invalid, expired, or revoked")
}

/// mta-server's answer as the app should see it. The field is mta-server's name for
/// it (`to[1]`, `attachments[0].content`), for the provider's module to translate.
pub(crate) fn refusal(s: &tonic::Status) -> Refusal {
    let message = s.message().to_owned();
    let field = field_of(&message);
    let status = match s.code() {
        Code::InvalidArgument if message.contains("the limit is") => StatusCode::PAYLOAD_TOO_LARGE,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        // tonic's own refusal of a request over mta-server's decoding limit.
        Code::OutOfRange => StatusCode::PAYLOAD_TOO_LARGE,
        Code::Unauthenticated => return unauthorized(),
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::ResourceExhausted => return exhausted(s, message, field),
        Code::Unavailable | Code::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Refusal { status, field, message, retry_after_secs: None }
}

/// A quota: 429 with when to retry; a size quota 413; the recipients quota 400; the
/// spool full 503.
fn exhausted(s: &tonic::Status, message: String, field: Option<String>) -> Refusal {
    let retry_after_ms = s.metadata().get("retry-after-ms").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let status = if retry_after_ms.is_some() {
        StatusCode::TOO_MANY_REQUESTS
    } else if message.contains("max_message_bytes") {
        StatusCode::PAYLOAD_TOO_LARGE
    } else if message.contains("max_recipients") {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Refusal { status, field, message, retry_after_secs: retry_after_ms.map(|ms| ms.div_ceil(1000).max(1)) }
}

/// `to[1]` in `to[1]: ...`: mta-server names the field first, before `: `.
fn field_of(message: &str) -> Option<String> {
    let (head, _) = message.split_once(": ")?;
    let plain = head.bytes().all(|b| b.is_ascii_alphanumeric() || b"_[].\"-".contains(&b));
    (plain && !head.is_empty()).then(|| head.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    #[test]
    fn mta_server_refusals_become_http_statuses() {
        let r = refusal(&Status::invalid_argument("to[1]: `x` is not a valid address"));
        assert_eq!((r.status, r.field.as_deref()), (StatusCode::BAD_REQUEST, Some("to[1]")));
        let r = refusal(&Status::invalid_argument("html: the message is 5 bytes; the limit is 4 bytes"));
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(refusal(&Status::unauthenticated("unknown key")), unauthorized());
        assert_eq!(refusal(&Status::permission_denied("from: x")).status, StatusCode::FORBIDDEN);
        let mut over = Status::resource_exhausted("over the per_day quota of 1");
        over.metadata_mut().insert("retry-after-ms", "1200".parse().unwrap());
        let r = refusal(&over);
        assert_eq!((r.status, r.retry_after_secs), (StatusCode::TOO_MANY_REQUESTS, Some(2)));
        let r = refusal(&Status::resource_exhausted("over the max_message_bytes quota: 9, at most 8"));
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(refusal(&Status::resource_exhausted("the spool is full")).status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refusal(&Status::unavailable("down")).status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(field_of("over the per_day quota: 3"), None);
        assert_eq!(field_of("metadata[\"k\"]: bad").as_deref(), Some("metadata[\"k\"]"));
    }

    #[test]
    fn idempotency_keys_are_short_printable_ascii() {
        let mut headers = HeaderMap::new();
        assert_eq!(idempotency_key(&headers).unwrap(), None);
        headers.insert("idempotency-key", "order-42".parse().unwrap());
        assert_eq!(idempotency_key(&headers).unwrap().as_deref(), Some("order-42"));
        headers.insert("idempotency-key", "x".repeat(191).parse().unwrap());
        assert_eq!(idempotency_key(&headers).unwrap_err().field.as_deref(), Some("Idempotency-Key"));
    }
}
