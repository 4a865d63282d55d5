//! The HTTP API, the webmail's files, and what every request goes through.
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET /healthz` | 200 when mta-server and backend-server answer, else 503 |
//! | `POST /api/session` | `{name, password}`: signs in, sets the session cookie; answers the CSRF token |
//! | `GET /api/session` | who is signed in, with the CSRF token |
//! | `DELETE /api/session` | signs out |
//! | `GET /api/folders/{inbox,sent}?page&per_page` | a page of a folder, newest first; total and unread counts; delivery status in `sent` |
//! | `GET /api/mail/{id}?images=true` | one message, HTML sanitized, remote images removed unless asked |
//! | `GET /api/search?q&limit&cursor` | the user's own mail matching `q` (words, `"phrases"`, `from:`, `to:`, `subject:`, `body:`), newest first, see [`crate::search`] |
//! | `GET /api/events` | server-sent events of the user's mailbox: `mail` (new, changed, deleted), `status` (a sent message's state), `ready`, `resync`; see [`crate::live`] |
//! | `GET`, `POST /api/groups`; `GET /api/groups/{name}` | the user's groups; a new one `{name, members?}`; one with its members, see [`crate::groups_api`] |
//! | `POST /api/groups/{name}/members`, `DELETE .../members/{member}` | `{names, owner?}`: adding members (owners); removing one (owners), or leaving |
//! | `PATCH /api/mail/{id}` | `{read}`: marks it read or unread |
//! | `DELETE /api/mail/{id}` | deletes it |
//! | `GET /api/mail/{id}/attachments/{n}` | an attachment, as a download |
//! | `POST /api/messages` | `{to, cc, bcc, subject, markdown \| text/html, attachments}`: sends |
//! | `POST /api/preview` | `{markdown}`: the HTML it would be sent as |
//! | `GET /api/status` | providers, queue depth, recent deliveries, sent per provider over the last hour |
//! | `GET /metrics` | Prometheus metrics, to this host only |
//! | `/api/admin/...` | the admin console (admins only: 403 for others), see below |
//! | `GET /`, `GET /assets/*` | the webmail (`web_dir`), compressed, with cache headers |
//! | `GET /admin/...`, `GET /admin/assets/*` | the webmail with the admin console (`web_dir/admin`), when built; every path under `/admin/` gets its page |
//! | `POST /webhooks/{provider}/events` | a provider's event webhook, see [`crate::webhooks`] |
//! | `POST /webhooks/{provider}/inbound` | a provider's inbound mail webhook, see [`crate::webhooks`] |
//! | `POST /v3/mail/send` | SendGrid-shaped sending with a tenant key, see [`crate::app_api`] |
//! | `POST /v3/{domain}/messages`, `/v3/{domain}/messages.mime` | Mailgun-shaped sending with a tenant key |
//! | `GET`, `POST /lists/{list_id}/subscribe` | a list's hosted subscribe form (HTML, en/fr), and subscribing through it, see [`crate::lists`] |
//! | `GET`, `POST /lists/confirm/{token}` | the double opt-in link: a page with a button; the button confirms |
//! | `GET`, `POST /lists/u/{token}` | unsubscribing: a page that asks; a POST (RFC 8058 `List-Unsubscribe=One-Click`, or the button) unsubscribes |
//! | `GET`, `POST /lists/prefs/{token}` | a subscriber's preferences (name, language, attributes), and leaving |
//! | `/app/v1/lists/...`, `/app/v1/campaigns/...`, `/app/v1/tasks/...` | the lists API for apps, with their tenant key (below) |
//!
//! The admin console's API (see [`crate::admin`]; times in ms since the epoch):
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET`, `POST /api/admin/tenants` | the tenants; a new one `{id, display_name, domains, addresses?, quotas?}` |
//! | `PATCH /api/admin/tenants/{id}` | any of `{display_name, domains, addresses, quotas, state, expected_version}` |
//! | `GET`, `POST /api/admin/tenants/{id}/keys` | its keys; a new one `{name, scopes, expires_ms?}`, answered with its secret once |
//! | `POST /api/admin/keys/{id}/revoke` | revokes a key |
//! | `GET /api/admin/tenants/{id}/usage` | messages per UTC day, the last 31 days |
//! | `GET /api/admin/tenants/{id}/webhooks` | the tenant's app webhooks and how their delivery is going |
//! | `GET /api/admin/providers`, `POST .../{name}/pause`, `.../{name}/resume` | provider health; pausing and resuming |
//! | `GET /api/admin/suppressions?q&limit`, `POST`, `DELETE .../{address}` | the suppression list |
//! | `GET /api/admin/audit?actor&tenant&since_ms&until_ms&page_token&limit` | the audit log, a page |
//! | `GET /api/admin/audit.csv?...` | the audit log as CSV, every page (at most 100 000 rows) |
//!
//! The lists API (see [`crate::lists`], which has the bodies and answers), the same
//! under `P = /api/admin/tenants/{id}` (an admin, for tenant `{id}`) and `P = /app/v1`
//! (an app's key, for its tenant):
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET`, `POST P/lists`; `GET`, `PATCH P/lists/{list_id}` | lists; an edit replaces the fields present |
//! | `GET`, `POST P/lists/{list_id}/subscribers` | a page of subscribers (`?state&limit&page_token`); adding one |
//! | `POST P/lists/{list_id}/import?confirmed=`, `POST P/lists/{list_id}/export` | a CSV import (the body, `text/csv`, 16 MiB at most) or an export, as a task |
//! | `POST P/lists/{list_id}/trigger` | a template of the list to the subscribers matching a filter, once per idempotency key |
//! | `GET`, `POST P/campaigns`; `GET P/campaigns/{campaign_id}`; `POST .../pause`, `.../resume`, `.../cancel` | campaigns |
//! | `GET P/tasks`, `GET P/tasks/{task_id}`, `POST .../cancel`, `.../retry`, `GET .../export.csv` | background tasks; a finished export's CSV |
//!
//! CSRF: every state change except signing in needs the session's CSRF token in
//! `X-CSRF-Token` (see [`crate::csrf`]); besides, the session cookie is
//! `SameSite=Strict`, bodies are JSON (a cross-site form cannot send JSON without a CORS
//! preflight, which is never granted), and a state change whose `Origin` is not this
//! host is refused. Every mail endpoint answers 404 for another user's message. The
//! POSTs of the public list pages (`/lists/...`) are the one exception to both checks:
//! they come from other sites by design and carry no session ([`crate::lists`]).
//!
//! Limits ([`crate::limits`]): every request takes a slot of `max_concurrent_requests`
//! (none left: 503 with `Retry-After`) and has `request_timeout_ms` (then 504); the
//! webhooks take a slot of their own cap too and have their own body budgets.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, post};

use crate::error::ApiError;
use crate::limits::{EdgeLimits, Gate};
use crate::state::AppState;
use crate::{
    admin, admin_audit, admin_csv, admin_ops, app_api, compose, csrf, groups_api, health, lists, mail, metrics, page,
    search, session, status, webhooks,
};

/// The admin console's API.
fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/admin/tenants", get(admin::list_tenants).post(admin::create_tenant))
        .route("/api/admin/tenants/{id}", axum::routing::patch(admin::update_tenant))
        .route("/api/admin/tenants/{id}/keys", get(admin::list_keys).post(admin::create_key))
        .route("/api/admin/tenants/{id}/usage", get(admin::usage))
        .route("/api/admin/tenants/{id}/webhooks", get(admin::list_webhooks))
        .route("/api/admin/keys/{id}/revoke", post(admin::revoke_key))
        .route("/api/admin/providers", get(admin_ops::providers))
        .route("/api/admin/providers/{name}/pause", post(admin_ops::pause))
        .route("/api/admin/providers/{name}/resume", post(admin_ops::resume))
        .route("/api/admin/suppressions", get(admin_ops::suppressions).post(admin_ops::add_suppression))
        .route("/api/admin/suppressions/{address}", delete(admin_ops::remove_suppression))
        .route("/api/admin/audit", get(admin_audit::audit))
        .route("/api/admin/audit.csv", get(admin_csv::audit_csv))
}

pub(crate) fn router(
    state: Arc<AppState>,
    max_body_bytes: usize,
    max_inbound_bytes: usize,
    limits: &EdgeLimits,
) -> Router {
    let all = Gate::all(limits, state.metrics.clone());
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/api/session", get(session::whoami).post(session::sign_in).delete(session::sign_out))
        .route("/api/folders/{folder}", get(mail::list))
        .route("/api/mail/{id}", get(mail::read).patch(mail::mark).delete(mail::delete))
        .route("/api/mail/{id}/attachments/{index}", get(mail::attachment))
        .route("/api/search", get(search::search))
        .route("/api/events", get(mail::events))
        .route("/api/groups", get(groups_api::list).post(groups_api::create))
        .route("/api/groups/{name}", get(groups_api::show))
        .route("/api/groups/{name}/members", post(groups_api::add_members))
        .route("/api/groups/{name}/members/{member}", delete(groups_api::remove_member))
        .route("/api/messages", post(compose::send))
        .route("/api/preview", post(compose::preview))
        .route("/api/status", get(status::status))
        .route("/metrics", get(metrics::metrics))
        .merge(admin_routes())
        .merge(lists::routes())
        .route("/api/{*rest}", axum::routing::any(|| async { ApiError::NotFound("no such endpoint".into()) }))
        .merge(webhooks::routes(max_inbound_bytes, limits, state.metrics.clone()))
        .merge(app_api::routes())
        .fallback(page::page)
        .layer(middleware::from_fn(csrf::csrf_checked_writes))
        .layer(middleware::from_fn(csrf::same_origin_writes))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // Inside the metrics, so that what is shed is counted as answered too.
        .layer(middleware::from_fn_with_state(all, crate::limits::gate))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::count_requests))
        .layer(middleware::from_fn(page::https_only))
        .with_state(state)
}
