//! Mailing lists at the edge: the public pages subscribers see, and the JSON API of the
//! admin console and of apps. Every call goes to mta-server's `bitmail.v1.Lists`
//! service, which checks and stores everything; this module renders, translates and
//! limits.
//!
//! ## Public pages (server-rendered HTML, no script, English and French)
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET /lists/{list_id}/subscribe` | the hosted subscribe form: email, name, language, one input per attribute of the list |
//! | `POST /lists/{list_id}/subscribe` | urlencoded `email, name, language, <attributes>` → `Subscribe`; "check your mail" (double opt-in) or "subscribed" |
//! | `GET /lists/confirm/{token}` | what the confirmation link is about, and a button; changes nothing |
//! | `POST /lists/confirm/{token}` | `Confirm` → "confirmed" |
//! | `GET /lists/u/{token}` | "Unsubscribe x from LIST?" and a button; changes nothing |
//! | `POST /lists/u/{token}` | `List-Unsubscribe=One-Click` (RFC 8058) → reason `one-click`; the page's button → `link`; 200 |
//! | `GET /lists/prefs/{token}` | the preferences form: name, language, attributes, and an unsubscribe button |
//! | `POST /lists/prefs/{token}` | `action=save` → `UpdatePreferences`; `action=unsubscribe` → `Unsubscribe` reason `preferences` |
//!
//! These POSTs are the only cross-origin writes of the edge (the embeddable form posts
//! from the tenant's site, mail providers post one-click unsubscriptions): they carry no
//! session and are exempt from the same-origin and CSRF checks ([`crate::csrf`]); the
//! signed token, or for a subscription the double opt-in, is their only authority.
//! Bodies are at most 16 KiB (413 page), subscriptions at most 10 per client address in
//! 10 minutes (429 page with `Retry-After`, [`crate::subscribe_limit`]). No answer is a redirect.
//! The language is `?lang=en|fr`, else the subscriber's (token pages), else
//! `Accept-Language`. gRPC answers become pages: INVALID_ARGUMENT 400 with mta-server's
//! words, a bad token (UNAUTHENTICATED) 403 "this link is not valid or has expired",
//! NOT_FOUND 404, RESOURCE_EXHAUSTED 429, UNAVAILABLE 503 ([`pages`]).
//!
//! ## The JSON API ([`api`], [`campaigns`]; shapes in [`json`])
//!
//! One set of handlers, two ways in, P being either prefix:
//! - `P = /api/admin/tenants/{id}`: the admin console, a signed-in `admin`, as the rest
//!   of `/api/admin` (session, CSRF token, same origin), acting for tenant `{id}` with
//!   `mta_admin_key` and `x-bitmail-actor: user:NAME`;
//! - `P = /app/v1`: apps, with their own tenant key as `Authorization: Bearer KEY` (or
//!   Basic `api:KEY`), forwarded to mta-server, for the key's own tenant. A key refused
//!   by mta-server is 401.
//!
//! | method and path | request | answer |
//! | --- | --- | --- |
//! | `GET P/lists` | | `{lists: [List]}` |
//! | `POST P/lists` | `List` (no `id`, `tenant`, times, urls) | `List` |
//! | `GET P/lists/{list_id}` | | `List` |
//! | `PATCH P/lists/{list_id}` | any of `name, description, double_opt_in, from_email, from_name, attributes, confirmation, templates` (the fields present are replaced) | `List` |
//! | `GET P/lists/{list_id}/subscribers?state&limit&page_token` | | `{subscribers: [Subscriber], next_page_token}` |
//! | `POST P/lists/{list_id}/subscribers` | `{email, name?, language?, attributes?, confirmed?}` | `{subscriber: Subscriber, confirmation_sent}` |
//! | `POST P/lists/{list_id}/import?confirmed=true\|false` | the CSV itself, `Content-Type: text/csv`, at most 16 MiB (413) | `Task` |
//! | `POST P/lists/{list_id}/export` | | `Task` |
//! | `POST P/lists/{list_id}/trigger` | `{template, filter?, idempotency_key}` (or the `Idempotency-Key` header) | `Campaign` |
//! | `GET P/campaigns?list_id=` | | `{campaigns: [Campaign]}` |
//! | `POST P/campaigns` | `{list_id, name, subject, markdown, filter?, rate_per_second?, start_at_ms?, idempotency_key?, attachments?: [{filename, content_type, content_base64}]}` (or the `Idempotency-Key` header) | `Campaign` |
//! | `GET P/campaigns/{campaign_id}` | | `Campaign` |
//! | `POST P/campaigns/{campaign_id}/pause`, `/resume`, `/cancel` | | `Campaign` |
//! | `GET P/tasks` | | `{tasks: [Task]}` |
//! | `GET P/tasks/{task_id}` | | `Task` |
//! | `POST P/tasks/{task_id}/cancel`, `/retry` | | `Task` |
//! | `GET P/tasks/{task_id}/export.csv` | | the CSV, `text/csv`, as a download |
//!
//! Errors are `{"error": {"code", "message"}}` ([`crate::error::ApiError`]) with
//! mta-server's words: 400 INVALID_ARGUMENT (naming the field), 401 a refused app key,
//! 403, 404 (another tenant's list is not found), 409 FAILED_PRECONDITION (a finished
//! campaign or task), 413, 429, 503.
//!
//! The module's files: [`html`] the page shell, words and escaping; [`form`] the pages'
//! forms; [`pages`] the page handlers ([`prefs`] the
//! preferences page); [`json`]
//! the shapes; [`api`] lists, subscribers, import and export; [`campaigns`] campaigns,
//! triggers and tasks; [`mail`] the `mailto:` unsubscribe of received mail.

pub(crate) mod api;
pub(crate) mod campaigns;
pub(crate) mod form;
pub(crate) mod html;
pub(crate) mod json;
pub(crate) mod mail;
pub(crate) mod pages;
pub(crate) mod prefs;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use bitmail_proto::v1::lists_client::ListsClient;
use bitmail_runtime::grpc::{Bearer, WithKey};

use crate::mta_pool::{MtaPool, Node};
use crate::state::AppState;

/// What one call may carry either way: a 16 MiB import, its CSV in export chunks.
const WIRE_LIMIT: usize = 20 * 1024 * 1024;

/// mta-server's `Lists` service with one key, on whichever node answers (a call is
/// tried on the next node only when the one before never got it).
#[derive(Clone)]
pub(crate) struct Upstream {
    pool: Arc<MtaPool>,
    bearer: Bearer,
    /// `x-bitmail-actor` (`user:NAME`), for the audit log of the admin console's calls.
    actor: Option<String>,
}

impl Upstream {
    /// With the edge's own `service` key (`mta_key`): the hosted pages.
    pub(crate) fn service(state: &AppState) -> Upstream {
        Upstream { pool: state.pool.clone(), bearer: state.mta_bearer.clone(), actor: None }
    }

    pub(crate) fn new(pool: Arc<MtaPool>, bearer: Bearer, actor: Option<String>) -> Upstream {
        Upstream { pool, bearer, actor }
    }

    fn client(&self, node: &Node) -> ListsClient<WithKey> {
        node.lists(&self.bearer).max_encoding_message_size(WIRE_LIMIT).max_decoding_message_size(WIRE_LIMIT)
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = self.actor.as_deref().and_then(|a| a.parse().ok()) {
            request.metadata_mut().insert("x-bitmail-actor", value);
        }
        request
    }

    /// `message` sent with `rpc` (`|mut c, r| async move { c.get_list(r).await }`).
    pub(crate) async fn call<T, R, F, Fut>(&self, message: T, rpc: F) -> Result<R, tonic::Status>
    where
        T: Clone,
        F: Fn(ListsClient<WithKey>, tonic::Request<T>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let answer = self.pool.any(|node| rpc(self.client(node), self.request(message.clone()))).await;
        answer.map(tonic::Response::into_inner)
    }
}

/// Every route of this module, for `routes.rs`.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    let mut router = Router::new()
        .route("/lists/{list_id}/subscribe", get(pages::subscribe_form).post(pages::subscribe))
        .route("/lists/confirm/{token}", get(pages::confirm_page).post(pages::confirm))
        .route("/lists/u/{token}", get(pages::unsubscribe_page).post(pages::unsubscribe))
        .route("/lists/prefs/{token}", get(prefs::preferences_page).post(prefs::preferences));
    for prefix in ["/api/admin/tenants/{id}", "/app/v1"] {
        router = router.merge(api_routes(prefix));
    }
    router
}

/// The JSON API under one prefix.
fn api_routes(p: &str) -> Router<Arc<AppState>> {
    Router::new()
        .route(&format!("{p}/lists"), get(api::list_lists).post(api::create_list))
        .route(&format!("{p}/lists/{{list_id}}"), get(api::get_list).patch(api::update_list))
        .route(&format!("{p}/lists/{{list_id}}/subscribers"), get(api::subscribers).post(api::add_subscriber))
        .route(&format!("{p}/lists/{{list_id}}/import"), post(api::import))
        .route(&format!("{p}/lists/{{list_id}}/export"), post(api::export))
        .route(&format!("{p}/lists/{{list_id}}/trigger"), post(campaigns::trigger))
        .route(&format!("{p}/campaigns"), get(campaigns::list).post(campaigns::create))
        .route(&format!("{p}/campaigns/{{campaign_id}}"), get(campaigns::get))
        .route(&format!("{p}/campaigns/{{campaign_id}}/pause"), post(campaigns::pause))
        .route(&format!("{p}/campaigns/{{campaign_id}}/resume"), post(campaigns::resume))
        .route(&format!("{p}/campaigns/{{campaign_id}}/cancel"), post(campaigns::cancel))
        .route(&format!("{p}/tasks"), get(campaigns::tasks))
        .route(&format!("{p}/tasks/{{task_id}}"), get(campaigns::task))
        .route(&format!("{p}/tasks/{{task_id}}/cancel"), post(campaigns::cancel_task))
        .route(&format!("{p}/tasks/{{task_id}}/retry"), post(campaigns::retry_task))
        .route(&format!("{p}/tasks/{{task_id}}/export.csv"), get(campaigns::export_csv))
}
