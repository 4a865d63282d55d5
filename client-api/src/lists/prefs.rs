//! The preferences page of a subscriber token: name, language and the list's
//! attributes (`action=save` → `UpdatePreferences`), and a button that leaves the list
//! (`action=unsubscribe` → `Unsubscribe`, reason `preferences`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bitmail_proto::v1 as pb;
use tonic::Code;

use super::Upstream;
use super::form::{Entry, FieldErrors, fields, read_body};
use super::html::{Lang, escape, fill, message, page};
use super::pages::{
    Visitor, button, errors_summary, leave, read_token, refused, subscriber_fields, subscriber_of, too_large,
};
use crate::state::AppState;

/// What the preferences form says above its fields besides field errors.
enum Problem<'a> {
    None,
    Saved,
    /// mta-server's refusal of the form.
    Upstream(&'a str),
}

/// The preferences form of the subscriber `info` is about.
fn preferences_form(
    status: StatusCode,
    lang: Lang,
    info: &pb::TokenInfo,
    entry: &Entry,
    errors: &FieldErrors,
    problem: Problem<'_>,
) -> Response {
    let w = lang.words();
    let subscriber = subscriber_of(info);
    let values = [("email", subscriber.email.as_str()), ("list", info.list_name.as_str())];
    let mut body = format!("<p>{}</p>", fill(w.prefs_intro, &values));
    match problem {
        Problem::Saved => body.push_str(&format!("<p><strong>{}</strong></p>", escape(w.saved))),
        Problem::Upstream(text) => body.push_str(&errors_summary(lang, errors, Some(text))),
        Problem::None => body.push_str(&errors_summary(lang, errors, None)),
    }
    body.push_str("<form method=\"post\"><input type=\"hidden\" name=\"action\" value=\"save\">");
    body.push_str(&subscriber_fields(lang, entry, errors));
    body.push_str(&format!("<button type=\"submit\">{}</button></form>", escape(w.save)));
    body.push_str(&button(&[("action", "unsubscribe")], w.leave, "secondary"));
    page(status, lang, w.prefs_title, &body)
}

/// The form's values as they are stored.
fn entry_of(info: &pb::TokenInfo) -> Entry {
    let subscriber = subscriber_of(info);
    let attributes = info
        .attributes
        .iter()
        .map(|a| (a.clone(), subscriber.attributes.get(a).cloned().unwrap_or_default()))
        .collect();
    Entry { email: subscriber.email, name: subscriber.name, language: subscriber.language, attributes }
}

/// `GET /lists/prefs/{token}`.
pub(crate) async fn preferences_page(
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
    if subscriber.state == "unsubscribed" {
        let w = lang.words();
        let values = [("email", subscriber.email.as_str()), ("list", info.list_name.as_str())];
        return message(StatusCode::OK, lang, w.prefs_title, &fill(w.already_unsubscribed, &values));
    }
    preferences_form(StatusCode::OK, lang, &info, &entry_of(&info), &Vec::new(), Problem::None)
}

/// `POST /lists/prefs/{token}`: `action=save` with the fields, or `action=unsubscribe`.
pub(crate) async fn preferences(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let visitor = Visitor::new(query.as_deref(), &headers, peer);
    let Ok(bytes) = read_body(&headers, body).await else { return too_large(visitor.lang(None)) };
    let form = fields(&bytes);
    if form.get("action").map(String::as_str) == Some("unsubscribe") {
        return leave(&state, token, "preferences", &visitor).await;
    }
    let up = Upstream::service(&state);
    let info = match read_token(&up, &token, "subscriber", &visitor).await {
        Ok(info) => info,
        Err(page) => return page,
    };
    let lang = visitor.lang(Some(&subscriber_of(&info).language));
    let (entry, errors) = Entry::read(&form, &info.attributes, false, lang.words());
    if !errors.is_empty() {
        let entry = Entry { email: subscriber_of(&info).email, ..entry };
        return preferences_form(StatusCode::BAD_REQUEST, lang, &info, &entry, &errors, Problem::None);
    }
    let request = pb::UpdatePreferencesRequest {
        token,
        name: entry.name.clone(),
        language: entry.language_or(lang),
        attributes: entry.all_attributes(),
        client_address: visitor.address.clone(),
    };
    match up.call(request, |mut c, r| async move { c.update_preferences(r).await }).await {
        Ok(subscriber) => {
            let lang = visitor.lang(Some(&subscriber.language));
            let info = pb::TokenInfo { subscriber: Some(subscriber), ..info };
            preferences_form(StatusCode::OK, lang, &info, &entry_of(&info), &Vec::new(), Problem::Saved)
        }
        Err(s) if s.code() == Code::InvalidArgument => {
            // mta-server's words, above the form as it was sent.
            let entry = Entry { email: subscriber_of(&info).email, ..entry };
            let problem = Problem::Upstream(s.message());
            preferences_form(StatusCode::BAD_REQUEST, lang, &info, &entry, &Vec::new(), problem)
        }
        Err(s) => refused(&s, lang, true),
    }
}
