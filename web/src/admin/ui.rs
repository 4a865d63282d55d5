//! The console's texts are read untracked (`Ctx::tr`): the shell renders the console
//! again when the language changes, which costs far less code than a reactive text each.
//!
//! What the console's pages share: labelled fields, table cells that stack on a phone,
//! dates, query strings, and errors shown with the API's own message.

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;

use crate::api::{ApiErr, date};
use crate::i18n::{error_text, t};
use crate::state::Ctx;

/// Shows an API error: our sentence for its code, then the server's message (it names
/// the bad field, the missing tenant, the conflicting version).
pub fn fail(ctx: Ctx, e: &ApiErr) {
    let lang = ctx.lang.get_untracked();
    let lead = match e.code.as_str() {
        "bad_request" => t(lang, "e_bad_request").to_owned(),
        "not_found" => t(lang, "e_admin_not_found").to_owned(),
        "conflict" => t(lang, "e_conflict").to_owned(),
        _ => error_text(lang, e),
    };
    let text = if e.message.is_empty() || lead.ends_with(&e.message) { lead } else { format!("{lead} {}", e.message) };
    ctx.flash.set(Some((true, text)));
}

/// Calls the API; on success runs `done` with the answer, else shows the error.
pub fn run(ctx: Ctx, method: &'static str, path: String, body: Option<Value>, done: impl FnOnce(Value) + 'static) {
    run_boxed(ctx, method, path, body, Box::new(done));
}

/// One future type for every call of the console (a generic one per call site would
/// each carry a copy of the request code: kilobytes of WebAssembly apiece).
fn run_boxed(ctx: Ctx, method: &'static str, path: String, body: Option<Value>, done: Box<dyn FnOnce(Value)>) {
    spawn_local(async move {
        match ctx.api(method, &path, body.as_ref()).await {
            Ok(v) => done(v),
            Err(e) => fail(ctx, &e),
        }
    });
}

/// A time in ms since the epoch as the reader's language writes it; 0 is "never".
pub fn when(ctx: Ctx, ms: &Value) -> String {
    let ms = ms.as_f64().unwrap_or(0.0);
    if ms <= 0.0 { "–".to_owned() } else { date(ms, ctx.lang.get_untracked().locale()) }
}

/// A string field of a JSON object.
pub fn s(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The strings of a JSON array, joined for reading.
pub fn joined(v: &Value, sep: &str) -> String {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(sep)).unwrap_or_default()
}

/// A list typed by a person: separated by commas, semicolons, spaces or new lines.
pub fn split(text: &str) -> Vec<String> {
    text.split([',', ';', ' ', '\n']).map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

/// `?k=v&...` with the empty values left out, each value URI-encoded.
pub fn query(pairs: &[(&str, String)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", String::from(js_sys::encode_uri_component(v))))
        .collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

/// A path segment, URI-encoded (addresses hold `@` and `+`).
pub fn seg(text: &str) -> String {
    js_sys::encode_uri_component(text).into()
}

/// A labelled text input bound to `value`.
pub fn field(ctx: Ctx, id: &'static str, label: &'static str, value: RwSignal<String>) -> impl IntoView + use<> {
    view! {
        <label for=id>{ctx.tr(label)}</label>
        <input id=id on:input=move |ev| value.set(event_target_value(&ev)) prop:value=move || value.get()/>
    }
}

/// A table cell that, on a phone, becomes a line of a stacked row with its heading.
pub fn cell(ctx: Ctx, label: &'static str, content: impl IntoView + 'static) -> AnyView {
    td(ctx.tr(label), content.into_any())
}

fn td(label: &'static str, content: AnyView) -> AnyView {
    view! { <td data-label=label>{content}</td> }.into_any()
}

/// Table headings from text keys.
pub fn head(ctx: Ctx, labels: &'static [&'static str]) -> impl IntoView {
    let cells = labels.iter().map(|l| view! { <th>{if l.is_empty() { "" } else { ctx.tr(l) }}</th> }).collect_view();
    view! { <thead><tr>{cells}</tr></thead> }
}
