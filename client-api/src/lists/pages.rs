//! The public pages' handlers (the table is in [`super`]; the preferences page in
//! [`super::prefs`]). Each GET only reads (a
//! link's GET is what mail scanners follow); each POST makes one change. A token is a
//! secret: it is never logged, and only passed on to mta-server, which alone can tell a
//! good one.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bitmail_proto::v1 as pb;
use tonic::{Code, Status};

use super::Upstream;
use super::form::{Entry, FieldErrors, fields, is_one_click, read_body};
use super::html::{self, Lang, error, escape, fill, message, page};
use crate::state::AppState;

/// What the visitor's request says about the page's language.
pub(super) struct Visitor {
    query_lang: Option<String>,
    accept_language: Option<String>,
    pub(super) address: String,
}

impl Visitor {
    pub(super) fn new(query: Option<&str>, headers: &HeaderMap, peer: SocketAddr) -> Visitor {
        let query_lang = query
            .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "lang").map(|(_, v)| v.into_owned()));
        let accept_language = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Visitor { query_lang, accept_language, address: peer.ip().to_string() }
    }

    /// The page's language, once the subscriber's (if any) is known.
    pub(super) fn lang(&self, subscriber: Option<&str>) -> Lang {
        html::choose(self.query_lang.as_deref(), subscriber, self.accept_language.as_deref())
    }
}

/// What mta-server's refusal becomes as a page. `by_token`: the call was authorised by
/// a link's token, so UNAUTHENTICATED (and NOT_FOUND, a subscriber since removed) is that
/// link's fault; otherwise UNAUTHENTICATED is the edge's own key, a misconfiguration.
pub(super) fn refused(s: &Status, lang: Lang, by_token: bool) -> Response {
    let w = lang.words();
    match s.code() {
        Code::InvalidArgument => error(StatusCode::BAD_REQUEST, lang, s.message(), None),
        Code::Unauthenticated | Code::NotFound if by_token => error(StatusCode::FORBIDDEN, lang, w.invalid_link, None),
        Code::NotFound => error(StatusCode::NOT_FOUND, lang, w.not_found, None),
        Code::ResourceExhausted => {
            let ms = s.metadata().get("retry-after-ms").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            error(StatusCode::TOO_MANY_REQUESTS, lang, w.too_many, Some(ms.map_or(60, |ms| ms.div_ceil(1000).max(1))))
        }
        Code::PermissionDenied => error(StatusCode::FORBIDDEN, lang, s.message(), None),
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => {
            error(StatusCode::CONFLICT, lang, s.message(), None)
        }
        Code::Unavailable | Code::DeadlineExceeded => {
            tracing::warn!(code = ?s.code(), error = %s.message(), "lists page: mta-server unreachable");
            error(StatusCode::SERVICE_UNAVAILABLE, lang, w.unavailable, Some(5))
        }
        Code::Unimplemented => {
            tracing::error!(error = super::api::NOT_SERVED, "lists page");
            error(StatusCode::SERVICE_UNAVAILABLE, lang, w.unavailable, None)
        }
        Code::Unauthenticated => {
            tracing::error!(error = %s.message(), "lists page: mta-server refused the edge's mta_key");
            error(StatusCode::SERVICE_UNAVAILABLE, lang, w.unavailable, None)
        }
        code => {
            tracing::error!(?code, error = %s.message(), "lists page: mta-server call failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, lang, w.internal, None)
        }
    }
}

fn invalid_link(lang: Lang) -> Response {
    error(StatusCode::FORBIDDEN, lang, lang.words().invalid_link, None)
}

pub(super) fn too_large(lang: Lang) -> Response {
    error(StatusCode::PAYLOAD_TOO_LARGE, lang, lang.words().too_large, None)
}

/// Whether `token` could be one of BitMail's (URL-safe, not huge), before anything is
/// asked of mta-server about it.
pub(crate) fn plausible_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 1024
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~=+".contains(&b))
}

async fn get_list(up: &Upstream, list_id: &str) -> Result<pb::MailingList, Status> {
    let request = pb::GetListRequest { tenant: String::new(), list_id: list_id.to_owned() };
    up.call(request, |mut c, r| async move { c.get_list(r).await }).await
}

/// What a token is about, when it is of `kind` (a confirmation token is no
/// unsubscribe token); the refusal page otherwise.
pub(super) async fn read_token(
    up: &Upstream,
    token: &str,
    kind: &str,
    visitor: &Visitor,
) -> Result<pb::TokenInfo, Response> {
    if !plausible_token(token) {
        return Err(invalid_link(visitor.lang(None)));
    }
    let request = pb::TokenRequest { token: token.to_owned(), client_address: visitor.address.clone() };
    match up.call(request, |mut c, r| async move { c.read_token(r).await }).await {
        Ok(info) if info.kind == kind && info.subscriber.is_some() => Ok(info),
        Ok(_) => Err(invalid_link(visitor.lang(None))),
        Err(s) => Err(refused(&s, visitor.lang(None), true)),
    }
}

/// A POST button (the form posts back to this page's own URL, `?lang=` included).
pub(super) fn button(hidden: &[(&str, &str)], label: &str, class: &str) -> String {
    let inputs: String = hidden
        .iter()
        .map(|(n, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(n), escape(v)))
        .collect();
    format!("<form method=\"post\">{inputs}<button type=\"submit\" class=\"{class}\">{}</button></form>", escape(label))
}

pub(super) fn field_error<'a>(errors: &'a FieldErrors, field: &str) -> Option<&'a str> {
    errors.iter().find(|(f, _)| f == field).map(|(_, m)| *m)
}

/// The fields of a subscriber: name, language, one input per attribute.
pub(super) fn subscriber_fields(lang: Lang, entry: &Entry, errors: &FieldErrors) -> String {
    let w = lang.words();
    let mut html = html::input("name", w.name, "text", &entry.name, false, field_error(errors, "name"));
    let chosen = Lang::parse(&entry.language).unwrap_or(lang);
    html.push_str(&html::language_select(w, chosen, field_error(errors, "language")));
    for (attribute, value) in &entry.attributes {
        html.push_str(&html::input(attribute, attribute, "text", value, false, field_error(errors, attribute)));
    }
    html
}

pub(super) fn errors_summary(lang: Lang, errors: &FieldErrors, upstream: Option<&str>) -> String {
    match upstream {
        Some(text) => format!("<p class=\"error\">{}</p>", escape(text)),
        None if !errors.is_empty() => format!("<p class=\"error\">{}</p>", escape(lang.words().fix_below)),
        None => String::new(),
    }
}

/// The subscribe form of `list`, holding `entry` and showing `errors`.
fn subscribe_form_page(
    status: StatusCode,
    lang: Lang,
    list: &pb::MailingList,
    entry: &Entry,
    errors: &FieldErrors,
    upstream_error: Option<&str>,
) -> Response {
    let w = lang.words();
    let mut body = String::from(
        "<p class=\"lang\"><a href=\"?lang=en\" hreflang=\"en\">English</a> · \
<a href=\"?lang=fr\" hreflang=\"fr\">Français</a></p>",
    );
    if !list.description.is_empty() {
        body.push_str(&format!("<p>{}</p>", escape(&list.description)));
    }
    body.push_str(&errors_summary(lang, errors, upstream_error));
    body.push_str("<form method=\"post\">");
    body.push_str(&html::input("email", w.email, "email", &entry.email, true, field_error(errors, "email")));
    let mut entry = entry.clone();
    if entry.attributes.is_empty() {
        entry.attributes = list.attributes.iter().map(|a| (a.clone(), String::new())).collect();
    }
    body.push_str(&subscriber_fields(lang, &entry, errors));
    body.push_str(&format!("<button type=\"submit\">{}</button></form>", escape(w.subscribe)));
    page(status, lang, &w.subscribe_to.replace("{list}", &list.name), &body)
}

/// `GET /lists/{list_id}/subscribe`.
pub(crate) async fn subscribe_form(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(list_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let visitor = Visitor::new(query.as_deref(), &headers, peer);
    let lang = visitor.lang(None);
    match get_list(&Upstream::service(&state), &list_id).await {
        Ok(list) => subscribe_form_page(StatusCode::OK, lang, &list, &Entry::default(), &Vec::new(), None),
        Err(s) => refused(&s, lang, false),
    }
}

/// `POST /lists/{list_id}/subscribe`: counted against the client address first, then
/// read within 16 KiB, checked whole, and only then subscribed.
pub(crate) async fn subscribe(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(list_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let visitor = Visitor::new(query.as_deref(), &headers, peer);
    let lang = visitor.lang(None);
    if let Err(wait) = state.subscribe_limit.check(peer.ip()) {
        return error(StatusCode::TOO_MANY_REQUESTS, lang, lang.words().too_many, Some(wait.as_secs().max(1)));
    }
    let Ok(bytes) = read_body(&headers, body).await else { return too_large(lang) };
    let up = Upstream::service(&state);
    let list = match get_list(&up, &list_id).await {
        Ok(list) => list,
        Err(s) => return refused(&s, lang, false),
    };
    let (entry, errors) = Entry::read(&fields(&bytes), &list.attributes, true, lang.words());
    if !errors.is_empty() {
        return subscribe_form_page(StatusCode::BAD_REQUEST, lang, &list, &entry, &errors, None);
    }
    let language = entry.language_or(lang);
    let request = pb::SubscribeRequest {
        tenant: String::new(),
        list_id: list.id.clone(),
        email: entry.email.clone(),
        name: entry.name.clone(),
        language: language.clone(),
        attributes: entry.given_attributes(),
        client_address: visitor.address.clone(),
        confirmed: false,
    };
    match up.call(request, |mut c, r| async move { c.subscribe(r).await }).await {
        Ok(_) => {
            let lang = visitor.lang(Some(&language));
            let w = lang.words();
            let values = [("email", entry.email.as_str()), ("list", list.name.as_str())];
            // The answer is the list's, not the address's: whether the address was
            // already subscribed is not told to whoever typed it.
            if list.double_opt_in {
                message(StatusCode::OK, lang, w.check_mail_title, &fill(w.check_mail, &values))
            } else {
                message(StatusCode::OK, lang, w.subscribed_title, &fill(w.subscribed, &values))
            }
        }
        Err(s) if s.code() == Code::InvalidArgument => {
            subscribe_form_page(StatusCode::BAD_REQUEST, lang, &list, &entry, &Vec::new(), Some(s.message()))
        }
        Err(s) => refused(&s, lang, false),
    }
}

pub(super) fn subscriber_of(info: &pb::TokenInfo) -> pb::Subscriber {
    info.subscriber.clone().unwrap_or_default()
}

/// `GET /lists/confirm/{token}`: a button; nothing changes.
pub(crate) async fn confirm_page(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let visitor = Visitor::new(query.as_deref(), &headers, peer);
    let info = match read_token(&Upstream::service(&state), &token, "confirm", &visitor).await {
        Ok(info) => info,
        Err(page) => return page,
    };
    let subscriber = subscriber_of(&info);
    let lang = visitor.lang(Some(&subscriber.language));
    let w = lang.words();
    let values = [("email", subscriber.email.as_str()), ("list", info.list_name.as_str())];
    if subscriber.state == "confirmed" {
        return message(StatusCode::OK, lang, w.confirmed_title, &fill(w.confirmed, &values));
    }
    let body = format!("<p>{}</p>{}", fill(w.confirm_question, &values), button(&[], w.confirm, ""));
    page(StatusCode::OK, lang, w.confirm_title, &body)
}

/// `POST /lists/confirm/{token}`.
pub(crate) async fn confirm(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let visitor = Visitor::new(query.as_deref(), &headers, peer);
    let up = Upstream::service(&state);
    let info = match read_token(&up, &token, "confirm", &visitor).await {
        Ok(info) => info,
        Err(page) => return page,
    };
    let request = pb::TokenRequest { token, client_address: visitor.address.clone() };
    match up.call(request, |mut c, r| async move { c.confirm(r).await }).await {
        Ok(subscriber) => {
            let lang = visitor.lang(Some(&subscriber.language));
            let w = lang.words();
            let values = [("email", subscriber.email.as_str()), ("list", info.list_name.as_str())];
            message(StatusCode::OK, lang, w.confirmed_title, &fill(w.confirmed, &values))
        }
        Err(s) => refused(&s, visitor.lang(Some(&subscriber_of(&info).language)), true),
    }
}

/// `GET /lists/u/{token}`: asks; nothing changes, no redirect.
pub(crate) async fn unsubscribe_page(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let visitor = Visitor::new(query.as_deref(), &headers, peer);
    let info = match read_token(&Upstream::service(&state), &token, "subscriber", &visitor).await {
        Ok(info) => info,
        Err(page) => return page,
    };
    let subscriber = subscriber_of(&info);
    let lang = visitor.lang(Some(&subscriber.language));
    let w = lang.words();
    let values = [("email", subscriber.email.as_str()), ("list", info.list_name.as_str())];
    if subscriber.state == "unsubscribed" {
        return message(StatusCode::OK, lang, w.unsubscribed_title, &fill(w.already_unsubscribed, &values));
    }
    let body =
        format!("<p>{}</p>{}", fill(w.unsubscribe_question, &values), button(&[("via", "page")], w.unsubscribe, ""));
    page(StatusCode::OK, lang, w.unsubscribe_title, &body)
}

/// `POST /lists/u/{token}`: RFC 8058's one-click POST (`List-Unsubscribe=One-Click`,
/// from a mail provider, no cookie, any origin), or the page's own button. 200 either
/// way, never a redirect.
pub(crate) async fn unsubscribe(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let visitor = Visitor::new(query.as_deref(), &headers, peer);
    let Ok(bytes) = read_body(&headers, body).await else { return too_large(visitor.lang(None)) };
    let reason = if is_one_click(&headers, &bytes) { "one-click" } else { "link" };
    leave(&state, token, reason, &visitor).await
}

/// Unsubscribes the subscriber of `token` for `reason`, and says so.
pub(super) async fn leave(state: &AppState, token: String, reason: &str, visitor: &Visitor) -> Response {
    let up = Upstream::service(state);
    let info = match read_token(&up, &token, "subscriber", visitor).await {
        Ok(info) => info,
        Err(page) => return page,
    };
    let request = pb::UnsubscribeRequest { token, reason: reason.to_owned(), client_address: visitor.address.clone() };
    match up.call(request, |mut c, r| async move { c.unsubscribe(r).await }).await {
        Ok(subscriber) => {
            let lang = visitor.lang(Some(&subscriber.language));
            let w = lang.words();
            let values = [("email", subscriber.email.as_str()), ("list", info.list_name.as_str())];
            message(StatusCode::OK, lang, w.unsubscribed_title, &fill(w.unsubscribed, &values))
        }
        Err(s) => refused(&s, visitor.lang(Some(&subscriber_of(&info).language)), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn refusals_become_pages_in_the_page_language() {
        let cases = [
            (Status::invalid_argument("email: not an address"), true, StatusCode::BAD_REQUEST, "email: not an address"),
            (Status::unauthenticated("bad signature"), true, StatusCode::FORBIDDEN, "Ce lien n’est pas valide"),
            (Status::not_found("no such subscriber"), true, StatusCode::FORBIDDEN, "Ce lien n’est pas valide"),
            (Status::not_found("no such list"), false, StatusCode::NOT_FOUND, "Cette liste n’existe pas"),
            (Status::resource_exhausted("slow down"), false, StatusCode::TOO_MANY_REQUESTS, "Trop de tentatives"),
            (Status::unavailable("node down"), true, StatusCode::SERVICE_UNAVAILABLE, "pas disponible"),
            (Status::unauthenticated("key revoked"), false, StatusCode::SERVICE_UNAVAILABLE, "pas disponible"),
            (Status::unimplemented(""), false, StatusCode::SERVICE_UNAVAILABLE, "pas disponible"),
            (Status::internal("disk"), false, StatusCode::INTERNAL_SERVER_ERROR, "de notre côté"),
        ];
        for (status, by_token, http, words) in cases {
            let response = refused(&status, Lang::Fr, by_token);
            assert_eq!(response.status(), http, "{status:?}");
            let body = text(response).await;
            assert!(body.contains(words), "{status:?}: {body}");
            assert!(!body.contains("bad signature") && !body.contains("key revoked") && !body.contains("disk"));
        }
        let mut slow = Status::resource_exhausted("slow down");
        slow.metadata_mut().insert("retry-after-ms", "2500".parse().unwrap());
        assert_eq!(refused(&slow, Lang::En, false).headers()[header::RETRY_AFTER], "3");
        assert_eq!(refused(&Status::resource_exhausted("x"), Lang::En, false).headers()[header::RETRY_AFTER], "60");
    }

    #[test]
    fn only_url_safe_tokens_are_passed_on() {
        assert!(plausible_token("v1.eyJsIjoiMDE5MyJ9.c2lnbmF0dXJl_-"));
        assert!(!plausible_token(""));
        assert!(!plausible_token("a b"));
        assert!(!plausible_token("a<script>"));
        assert!(!plausible_token(&"a".repeat(1025)));
    }

    #[tokio::test]
    async fn the_subscribe_form_has_every_attribute_and_escapes_the_list() {
        let list = pb::MailingList {
            id: "l1".into(),
            name: "Power <cuts>".into(),
            description: "\"quoted\" & more".into(),
            attributes: vec!["area".into(), "role".into()],
            ..Default::default()
        };
        let errors: FieldErrors = vec![("area".into(), Lang::En.words().bad_attribute)];
        let entry = Entry {
            email: "a@b.co".into(),
            attributes: vec![("area".into(), "<x>".into()), ("role".into(), String::new())],
            ..Default::default()
        };
        let body = text(subscribe_form_page(StatusCode::BAD_REQUEST, Lang::En, &list, &entry, &errors, None)).await;
        assert!(body.contains("Subscribe to Power &lt;cuts&gt;"), "{body}");
        assert!(body.contains("&quot;quoted&quot; &amp; more"));
        assert!(
            body.contains("name=\"area\"") && body.contains("name=\"role\"") && body.contains("value=\"&lt;x&gt;\"")
        );
        assert!(
            body.contains("name=\"email\"")
                && body.contains("name=\"language\"")
                && body.contains("<form method=\"post\">")
        );
        assert!(body.contains(Lang::En.words().bad_attribute) && body.contains(Lang::En.words().fix_below));
        assert!(!body.contains("<script"));
    }
}
