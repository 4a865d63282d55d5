//! A list's subscribers: a page of them filtered by state, paged with the API's page
//! token; a CSV import (the file's bytes sent as they are, `text/csv`) and an export,
//! both background tasks that the tasks panel follows.

use leptos::prelude::*;
use serde_json::Value;
use wasm_bindgen::JsCast;

use super::lists::{base, state_badge, state_word};
use super::tasks::Poll;
use super::ui::{call, cell, check, error_line, head, query, run, s, seg, when};
use crate::state::Ctx;

/// The file chosen in `#import-file`.
fn chosen_file() -> Option<web_sys::File> {
    let input = web_sys::window()?.document()?.get_element_by_id("import-file")?;
    input.dyn_into::<web_sys::HtmlInputElement>().ok()?.files()?.get(0)
}

/// `k=v, k=v` of a subscriber's attributes.
fn pairs(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(", ")
        })
        .unwrap_or_default()
}

#[component]
pub fn Subscribers(tenant: String, list: String, poll: Poll) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let prefix = format!("{}/lists/{}", base(&tenant), seg(&list));
    let state = RwSignal::new(String::new());
    let back = RwSignal::new(Vec::<String>::new());
    let token = RwSignal::new(String::new());
    let page = RwSignal::new(None::<Value>);
    let path = prefix.clone();
    Effect::new(move |_| {
        // Again when the tasks end: an import adds subscribers.
        poll.settled.track();
        let q = query(&[("state", state.get()), ("limit", "50".into()), ("page_token", token.get())]);
        run(ctx, "GET", format!("{path}/subscribers{q}"), None, move |v| page.set(Some(v)));
    });
    let next = move |_| {
        let Some(t) = page.with_untracked(|p| p.as_ref().map(|p| s(p, "next_page_token"))) else { return };
        back.update(|b| b.push(token.get_untracked()));
        token.set(t);
    };
    let prev = move |_| {
        let mut b = back.get_untracked();
        token.set(b.pop().unwrap_or_default());
        back.set(b);
    };
    let confirmed = RwSignal::new(false);
    let shown = RwSignal::new(None::<String>);
    let import_path = prefix.clone();
    let import = move |_| {
        let Some(file) = chosen_file() else {
            shown.set(Some(ctx.tr("no_file").to_owned()));
            return;
        };
        let path = format!("{import_path}/import?confirmed={}", confirmed.get_untracked());
        // The File itself is the body: the browser sends its bytes, none copied here.
        call(
            ctx,
            Some(shown),
            "POST",
            path,
            Some(("text/csv", file.into())),
            Box::new(move |_| {
                ctx.notice("import_started");
                poll.again();
            }),
        );
    };
    let export = move |_| {
        run(ctx, "POST", format!("{prefix}/export"), None, move |_| {
            ctx.notice("export_started");
            poll.again();
        });
    };
    let row = move |v: Value| {
        view! {
            <tr data-email=s(&v, "email")>
                {cell(ctx, "address", s(&v, "email"))}
                {cell(ctx, "name", s(&v, "name"))}
                {cell(ctx, "language", s(&v, "language"))}
                {cell(ctx, "state", state_badge(ctx, &s(&v, "state")))}
                {cell(ctx, "attributes", pairs(&v["attributes"]))}
                {cell(ctx, "created", when(ctx, &v["created_ms"]))}
            </tr>
        }
    };
    let more = move || page.with(|p| p.as_ref().is_some_and(|p| !s(p, "next_page_token").is_empty()));
    view! {
        <div id="subscribers">
            <h3>{ctx.tr("subscribers")}</h3>
            <fieldset id="import-form">
                <legend>{ctx.tr("import")}</legend>
                <label for="import-file">{ctx.tr("import_file")}</label>
                <input type="file" id="import-file" accept=".csv,text/csv"/>
                {check(ctx, "import-confirmed", "import_confirmed", confirmed)}
                {error_line("import-error", shown)}
                <div class="row-actions">
                    <button type="button" id="import-start" on:click=import>{ctx.tr("import")}</button>
                    <button type="button" class="plain" id="export-start" on:click=export>{ctx.tr("export_csv")}</button>
                </div>
            </fieldset>
            <label for="subscribers-state">{ctx.tr("state")}</label>
            <select id="subscribers-state" on:change=move |ev| {
                state.set(event_target_value(&ev));
                back.set(vec![]);
                token.set(String::new());
            }>
                <option value="">{ctx.tr("all_states")}</option>
                <option value="unconfirmed">{state_word(ctx, "unconfirmed")}</option>
                <option value="confirmed">{state_word(ctx, "confirmed")}</option>
                <option value="unsubscribed">{state_word(ctx, "unsubscribed")}</option>
            </select>
            {move || page.get().map(|p| {
                let l = p["subscribers"].as_array().cloned().unwrap_or_default();
                if l.is_empty() {
                    view! { <p class="hint" id="subscribers-empty">{ctx.tr("none_yet")}</p> }.into_any()
                } else {
                    view! {
                        <table class="stack" id="subscriber-list">
                            {head(ctx, &["address", "name", "language", "state", "attributes", "created"])}
                            <tbody>{l.into_iter().map(row).collect_view()}</tbody>
                        </table>
                    }.into_any()
                }
            })}
            <div class="row-actions">
                <button type="button" class="plain" id="subscribers-prev" disabled=move || back.with(Vec::is_empty) on:click=prev>{ctx.tr("previous")}</button>
                <button type="button" class="plain" id="subscribers-next" disabled=move || !more() on:click=next>{ctx.tr("next")}</button>
            </div>
        </div>
    }
}
