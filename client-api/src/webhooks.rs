//! The providers' webhooks, where `{provider}` is the provider's name in mta-server's
//! config:
//!
//! - `POST /webhooks/{provider}/events`: delivery events (SendGrid Event Webhook,
//!   Mailgun event webhooks, SES events through SNS);
//! - `POST /webhooks/{provider}/inbound`: received mail (SendGrid Inbound Parse, Mailgun
//!   route forwards, SES `Received` through SNS), up to `max_inbound_bytes`.
//!
//! The request's headers and body bytes go to mta-server untouched
//! (`bitmail.v1.Mta/ReceiveWebhook`), where the provider's module checks the signature
//! over the raw bytes and parses them; its answer becomes the HTTP status the provider
//! gets (200, 400, 401, 403, 404, 503). Received mail comes back parsed and is put into the
//! inboxes of its local recipients ([`crate::inbound`]); mail for nobody here gets the
//! refusal that provider understands (Mailgun 406; 200 for the others, which would
//! retry anything else for days). Bodies over the budget (`limits.webhook_max_body_bytes`
//! for events, `max_inbound_bytes` for received mail) are refused with 413 before
//! anything is forwarded, and before any of the body is read when its `Content-Length`
//! says so; at most `limits.webhook_max_concurrent` webhook requests are read at once
//! (see [`crate::limits`]). Mailgun's signature fields are checked by mta-server before it
//! parses the rest of the form (`mta-server/src/inbound/signed.rs`).
//!
//! No session or same-origin rule applies: the provider's signature is the only
//! credential, and mta-server checks it.
//!
//! With several mta-servers, an event webhook goes to every node at once: a message's
//! status is in the spool of the node that took it, which alone stores its events (the
//! others count them unknown), and each node keeps its own suppression list. Each node
//! stores an event once, so when one cannot be reached the answer is 503 and the
//! provider's retry is safe for the nodes that took it already; unless the nodes reached
//! placed every event between them (each answers how many it did not hold), so that one
//! node down for long does not hold back the others' events. Received mail goes to one
//! node (the next if the first is not reached).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use bitmail_proto::v1 as pb;
use bitmail_runtime::metrics::Registry;

use crate::error::ApiError;
use crate::limits::{EdgeLimits, Gate, declared_length, gate};
use crate::mta_pool::Node;
use crate::state::AppState;

pub(crate) fn routes(max_inbound_bytes: usize, limits: &EdgeLimits, metrics: Registry) -> Router<Arc<AppState>> {
    let budget = |route: MethodRouter<Arc<AppState>>, bytes: usize| {
        route.layer(DefaultBodyLimit::max(bytes)).layer(middleware::from_fn_with_state(bytes, declared_length))
    };
    Router::new()
        .route("/webhooks/{provider}/events", budget(post(events), limits.webhook_max_body_bytes))
        .route("/webhooks/{provider}/inbound", budget(post(inbound), max_inbound_bytes))
        .route_layer(middleware::from_fn_with_state(Gate::webhooks(limits, metrics), gate))
}

async fn events(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    receive(&state, provider, pb::WebhookKind::Events, headers, body).await
}

async fn inbound(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    receive(&state, provider, pb::WebhookKind::Inbound, headers, body).await
}

fn answer(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

async fn receive(
    state: &AppState,
    provider: String,
    kind: pb::WebhookKind,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let headers = headers
        .iter()
        .filter_map(|(name, value)| {
            Some(pb::Header { name: name.as_str().to_owned(), value: value.to_str().ok()?.to_owned() })
        })
        .collect();
    let request = pb::WebhookRequest { provider: provider.clone(), headers, body: body.to_vec(), kind: kind as i32 };
    // An unreachable mta-server answers 503, which providers retry later.
    let answer_of_mta = if kind == pb::WebhookKind::Events && state.pool.nodes().len() > 1 {
        to_every_node(state, request).await?
    } else {
        let forward = |node: &Node| {
            let mut mta = state.mta_on(node);
            let request = request.clone();
            async move { mta.receive_webhook(request).await.map(tonic::Response::into_inner) }
        };
        state.pool.any(forward).await?
    };
    let status_of = |code: u32| {
        u16::try_from(code).ok().and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    };
    let status = status_of(answer_of_mta.http_status);
    if status != StatusCode::OK {
        return Ok(answer(status, format!("{}\n", answer_of_mta.message)));
    }
    let Some(mail) = answer_of_mta.mail else {
        return Ok(answer(
            status,
            format!("stored {}, seen before {}\n", answer_of_mta.stored, answer_of_mta.duplicates),
        ));
    };
    let key = mail.dedupe_key.clone();
    // A store failure answers 503 (or 500) through ApiError: the provider delivers again.
    let delivered = crate::inbound::deliver(state, mail).await?;
    for (result, n) in [
        ("stored", delivered.stored),
        ("duplicate", delivered.duplicates),
        ("unknown", delivered.unknown.len()),
        ("unsubscribed", delivered.unsubscribed),
    ] {
        if n > 0 {
            state.metrics.count(
                "bitmail_inbound_deliveries_total",
                "Received mail put into inboxes, by result (stored, duplicate, unknown recipient, unsubscribed: a list's unsubscribe address).",
                &[("provider", &provider), ("result", result)],
                n as u64,
            );
        }
    }
    if delivered.unsubscribed > 0 && delivered.stored + delivered.duplicates == 0 {
        tracing::info!(%provider, key, unsubscribed = delivered.unsubscribed, "received mail unsubscribed from a list");
        return Ok(answer(StatusCode::OK, format!("unsubscribed {}\n", delivered.unsubscribed)));
    }
    if delivered.stored + delivered.duplicates == 0 {
        tracing::warn!(%provider, key, unknown = ?delivered.unknown, "received mail for nobody here; refused");
        let status = status_of(answer_of_mta.unknown_recipients_status);
        return Ok(answer(status, format!("no such recipient here: {}\n", delivered.unknown.join(", "))));
    }
    tracing::info!(%provider, key, stored = delivered.stored, duplicates = delivered.duplicates, unknown = delivered.unknown.len(), "received mail delivered");
    Ok(answer(
        StatusCode::OK,
        format!("delivered to {} inbox(es), already there in {}\n", delivered.stored, delivered.duplicates),
    ))
}

/// An event webhook given to every node at once. A node not reached: 503 (the
/// provider's retry is safe: each node stores an event once). Else 200 with what they
/// stored together when any node took it: another's refusal is then its replay check
/// (Mailgun's token is single-use per node, so a retry after a 503 is a replay where it
/// was taken); when every node refused it (a bad signature), the first refusal.
async fn to_every_node(state: &AppState, request: pb::WebhookRequest) -> Result<pb::WebhookResponse, ApiError> {
    let mut asked = tokio::task::JoinSet::new();
    for (i, node) in state.pool.nodes().iter().enumerate() {
        let (mut mta, request, timeout) = (state.mta_on(node), request.clone(), state.pool.timeout);
        asked.spawn(async move {
            let answer = match tokio::time::timeout(timeout, mta.receive_webhook(request)).await {
                Ok(answer) => answer.map(tonic::Response::into_inner),
                Err(_) => Err(tonic::Status::deadline_exceeded("no answer in time")),
            };
            (i, answer)
        });
    }
    let mut answers = asked.join_all().await;
    answers.sort_by_key(|(i, _)| *i);
    let (mut taken, mut refused, mut unreached) = (None::<pb::WebhookResponse>, None, Vec::new());
    // How many events the request carried, as a node that took it counted them.
    let mut events = 0;
    for (i, answer) in answers {
        state.pool.note(i, &answer);
        match answer {
            Ok(a) if a.http_status == 200 => {
                events = events.max(a.stored + a.duplicates + a.unknown);
                let together =
                    taken.get_or_insert_with(|| pb::WebhookResponse { http_status: 200, ..Default::default() });
                together.stored += a.stored;
                together.duplicates += a.duplicates;
            }
            Ok(a) => {
                refused.get_or_insert(a);
            }
            Err(e) => unreached.push(format!("{}: {}", state.pool.nodes()[i].name(), e.message())),
        }
    }
    // A node not reached may hold some event's message, unless the nodes reached placed
    // every event between them: then nothing waits for it, and a node down for long does
    // not hold back every other node's events.
    let placed = taken.as_ref().map_or(0, |t| t.stored + t.duplicates);
    if !unreached.is_empty() && (events == 0 || placed < events) {
        return Err(ApiError::Upstream(format!("not every mta-server took the events: {}", unreached.join("; "))));
    }
    Ok(taken.or(refused).unwrap_or_default())
}
