//! The console's texts are read untracked (`Ctx::tr`): the shell renders the console
//! again when the language changes, which costs far less code than a reactive text each.
//!
//! What the console's pages share: labelled fields, table cells that stack on a phone,
//! dates, query strings, and errors shown with the API's own message.

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

use crate::api::{ApiErr, date};
use crate::i18n::{error_text, t};
use crate::state::Ctx;

/// An API error: our sentence for its code, then the server's message (it names
/// the bad field, the missing tenant, the conflicting version).
pub fn fail_text(ctx: Ctx, e: &ApiErr) -> String {
    let lang = ctx.lang.get_untracked();
    let lead = match e.code.as_str() {
        "bad_request" => t(lang, "e_bad_request").to_owned(),
        "not_found" => t(lang, "e_admin_not_found").to_owned(),
        "conflict" => t(lang, "e_conflict").to_owned(),
        _ => error_text(lang, e),
    };
    if e.message.is_empty() || lead.ends_with(&e.message) { lead } else { format!("{lead} {}", e.message) }
}

/// Where a call's error is shown: the page's notice (None), or a line next to the form
/// that made the call (see [`error_line`]).
pub type Shown = Option<RwSignal<Option<String>>>;

/// Calls the API; on success runs `done` with the answer, else shows the error.
pub fn run(ctx: Ctx, method: &'static str, path: String, body: Option<Value>, done: impl FnOnce(Value) + 'static) {
    call_json(ctx, None, method, path, body, Box::new(done));
}

/// [`run`] with the error shown next to the form whose line is `shown`.
pub fn run_at(
    ctx: Ctx,
    shown: RwSignal<Option<String>>,
    method: &'static str,
    path: String,
    body: Option<Value>,
    done: impl FnOnce(Value) + 'static,
) {
    call_json(ctx, Some(shown), method, path, body, Box::new(done));
}

/// [`call`] with a JSON body; not generic, so written once.
fn call_json(
    ctx: Ctx,
    shown: Shown,
    method: &'static str,
    path: String,
    body: Option<Value>,
    done: Box<dyn FnOnce(Value)>,
) {
    let body = body.map(|b| ("application/json", JsValue::from_str(&b.to_string())));
    call(ctx, shown, method, path, body, done);
}

/// One future type for every call of the console (a generic one per call site would
/// each carry a copy of the request code: kilobytes of WebAssembly apiece). `body` is
/// its content type and content.
pub fn call(
    ctx: Ctx,
    shown: Shown,
    method: &'static str,
    path: String,
    body: Option<(&'static str, JsValue)>,
    done: Box<dyn FnOnce(Value)>,
) {
    spawn_local(async move {
        let answer = ctx.send(method, &path, body).await;
        if let Some(line) = shown {
            line.set(answer.as_ref().err().map(|e| fail_text(ctx, e)));
        }
        match answer {
            Ok(v) => done(v),
            Err(e) if shown.is_none() => ctx.flash.set(Some((true, fail_text(ctx, &e)))),
            Err(_) => {}
        }
    });
}

/// The error line of a form (`id`), empty until a call of the form fails.
pub fn error_line(id: &'static str, shown: RwSignal<Option<String>>) -> impl IntoView {
    move || shown.get().map(|text| view! { <p class="flash err" id=id role="alert">{text}</p> })
}

/// Copies `text` with `navigator.clipboard`, and says whether it worked.
pub fn copy(ctx: Ctx, text: String) {
    spawn_local(async move {
        let Some(window) = web_sys::window() else { return };
        let copied = JsFuture::from(window.navigator().clipboard().write_text(&text)).await;
        match copied {
            Ok(_) => ctx.notice("copied"),
            Err(_) => ctx.flash.set(Some((true, ctx.tr("copy_failed").to_owned()))),
        }
    });
}

/// A `datetime-local` value (the reader's time zone) as ms since the epoch.
pub fn local_ms(local: &str) -> Option<f64> {
    let t = js_sys::Date::new(&JsValue::from_str(local)).get_time();
    (!local.is_empty() && !t.is_nan()).then_some(t)
}

/// A count or time of the API: a JSON number, or a string of digits (how protobuf's
/// JSON writes 64-bit numbers).
pub fn num(v: &Value) -> u64 {
    v.as_u64().or_else(|| v.as_str().and_then(|t| t.parse().ok())).unwrap_or(0)
}

/// A time in ms since the epoch as the reader's language writes it; 0 is "never".
pub fn when(ctx: Ctx, ms: &Value) -> String {
    let ms = num(ms) as f64;
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
    input(ctx, id, label, "text", value)
}

/// A labelled input of a type (`number`, `datetime-local`) bound to `value`.
pub fn input(
    ctx: Ctx,
    id: &'static str,
    label: &'static str,
    kind: &'static str,
    value: RwSignal<String>,
) -> impl IntoView + use<> {
    view! {
        <label for=id>{ctx.tr(label)}</label>
        <input id=id type=kind step="any" on:input=move |ev| value.set(event_target_value(&ev)) prop:value=move || value.get()/>
    }
}

/// A labelled text area bound to `value`.
pub fn area(ctx: Ctx, id: &'static str, label: &'static str, value: RwSignal<String>) -> impl IntoView + use<> {
    view! {
        <label for=id>{ctx.tr(label)}</label>
        <textarea id=id on:input=move |ev| value.set(event_target_value(&ev)) prop:value=move || value.get()></textarea>
    }
}

/// A labelled checkbox bound to `on`.
pub fn check(ctx: Ctx, id: &'static str, label: &'static str, on: RwSignal<bool>) -> impl IntoView + use<> {
    view! {
        <label class="check" for=id>
            <input type="checkbox" id=id prop:checked=move || on.get() on:change=move |ev| on.set(event_target_checked(&ev))/>
            " " {ctx.tr(label)}
        </label>
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

/// The ids of `items`, changing only when an item comes or goes: rows drawn from it are
/// drawn once, and follow their item through [`item`].
pub fn ids(items: RwSignal<Option<Vec<Value>>>) -> Memo<Option<Vec<String>>> {
    Memo::new(move |_| items.with(|l| l.as_ref().map(|l| l.iter().map(|v| s(v, "id")).collect())))
}

/// The item of `items` whose id is `id` (null once it is gone), changing only with it.
pub fn item(items: RwSignal<Option<Vec<Value>>>, id: String) -> Memo<Value> {
    Memo::new(move |_| items.with(|l| l.iter().flatten().find(|v| v["id"] == id.as_str()).cloned().unwrap_or_default()))
}

/// Newest first, by `created_ms` (one sort for every list of the console).
pub fn newest_first(items: &mut [Value]) {
    items.sort_unstable_by_key(|v| std::cmp::Reverse(num(&v["created_ms"])));
}
