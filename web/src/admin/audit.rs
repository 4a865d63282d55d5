//! The audit log: every administrative change, newest first, filtered by actor, tenant
//! and time, paged with the API's page token, and exported as CSV with the same filter.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use serde_json::Value;

use super::ui::{field, input, local_ms, query, run, s, when};
use crate::state::Ctx;

const PAGE: &str = "50";

/// A `datetime-local` value (the reader's time zone) as ms since the epoch; empty if none.
fn ms(local: &str) -> String {
    local_ms(local).map(|t| format!("{t:.0}")).unwrap_or_default()
}

/// A before/after value: compact JSON, or "–" when there is none.
fn value(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::String(s) if s.is_empty() => "–".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[component]
pub fn AuditLog() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let new = || RwSignal::new(String::new());
    let (actor, tenant, since, until) = (new(), new(), new(), new());
    // The filter applied, as a query string without the page token.
    let filter = RwSignal::new(String::new());
    // The tokens of the pages before this one, and this one's.
    let back = RwSignal::new(Vec::<String>::new());
    let token = RwSignal::new(String::new());
    let page = RwSignal::new(None::<Value>);
    let apply = move || {
        filter.set(query(&[
            ("actor", actor.get_untracked()),
            ("tenant", tenant.get_untracked()),
            ("since_ms", ms(&since.get_untracked())),
            ("until_ms", ms(&until.get_untracked())),
        ]));
        back.set(vec![]);
        token.set(String::new());
    };
    Effect::new(move |_| {
        let f = filter.get();
        let sep = if f.is_empty() { '?' } else { '&' };
        let paging = query(&[("page_token", token.get()), ("limit", PAGE.into())]);
        let path = format!("/api/admin/audit{f}{sep}{}", paging.trim_start_matches('?'));
        run(ctx, "GET", path, None, move |v| page.set(Some(v)));
    });
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        apply();
    };
    let next = move |_| {
        let Some(t) = page.with_untracked(|p| p.as_ref().map(|p| s(p, "next_page_token"))) else { return };
        back.update(|b| b.push(token.get_untracked()));
        token.set(t);
    };
    let prev = move |_| {
        let mut b = back.get_untracked();
        let t = b.pop().unwrap_or_default();
        back.set(b);
        token.set(t);
    };
    let entry = move |e: Value| {
        view! {
            <li data-id=s(&e, "id") data-action=s(&e, "action")>
                <div><strong class="audit-action">{s(&e, "action")}</strong> " · " <span class="audit-target">{s(&e, "target")}</span></div>
                <div class="meta">{when(ctx, &e["at_ms"])} " · " {s(&e, "actor")} " · " {s(&e, "address")}
                    {(!s(&e, "tenant").is_empty()).then(|| format!(" · {}", s(&e, "tenant")))}</div>
                <div class="change"><span class="meta">{ctx.tr("before")} ": "</span><code>{value(&e["before"])}</code></div>
                <div class="change"><span class="meta">{ctx.tr("after")} ": "</span><code>{value(&e["after"])}</code></div>
            </li>
        }
    };
    let more = move || page.with(|p| p.as_ref().is_some_and(|p| !s(p, "next_page_token").is_empty()));
    view! {
        <div id="admin-audit">
            <h3>{ctx.tr("audit")}</h3>
            <form id="audit-filter" class="filters" on:submit=submit>
                <div>{field(ctx, "audit-actor", "actor", actor)}</div>
                <div>{field(ctx, "audit-tenant", "tenant", tenant)}</div>
                <div>{input(ctx, "audit-since", "since", "datetime-local", since)}</div>
                <div>{input(ctx, "audit-until", "until", "datetime-local", until)}</div>
                <div class="row-actions">
                    <button id="audit-apply">{ctx.tr("apply")}</button>
                    <a id="audit-csv" class="button" download="audit.csv" href=move || format!("/api/admin/audit.csv{}", filter.get())>{ctx.tr("export_csv")}</a>
                </div>
            </form>
            {move || match page.get() {
                None => view! { <p class="hint">{ctx.tr("loading")}</p> }.into_any(),
                Some(p) => {
                    let entries = p["entries"].as_array().cloned().unwrap_or_default();
                    if entries.is_empty() {
                        view! { <p class="hint" id="audit-empty">{ctx.tr("none_yet")}</p> }.into_any()
                    } else {
                        view! { <ul class="audit" id="audit-list">{entries.into_iter().map(entry).collect_view()}</ul> }.into_any()
                    }
                }
            }}
            <div class="row-actions">
                <button type="button" class="plain" id="audit-prev" disabled=move || back.with(Vec::is_empty) on:click=prev>{ctx.tr("newer")}</button>
                <button type="button" class="plain" id="audit-next" disabled=move || !more() on:click=next>{ctx.tr("older")}</button>
            </div>
        </div>
    }
}
