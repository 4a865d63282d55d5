//! The suppression list: search by address, add an address (with a reason), remove one.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use serde_json::{Value, json};

use super::ui::{cell, field, head, query, run, s, seg, when};
use crate::state::Ctx;

#[component]
pub fn Suppressions() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let list = RwSignal::new(None::<Vec<Value>>);
    let q = RwSignal::new(String::new());
    let reload = RwSignal::new(0u32);
    Effect::new(move |_| {
        reload.track();
        let path = format!("/api/admin/suppressions{}", query(&[("q", q.get_untracked()), ("limit", "200".into())]));
        run(ctx, "GET", path, None, move |v| list.set(Some(v["suppressions"].as_array().cloned().unwrap_or_default())));
    });
    let search = move |ev: SubmitEvent| {
        ev.prevent_default();
        reload.update(|n| *n += 1);
    };
    let (address, reason) = (RwSignal::new(String::new()), RwSignal::new(String::new()));
    let add = move |ev: SubmitEvent| {
        ev.prevent_default();
        let mut body = json!({ "address": address.get_untracked().trim() });
        let why = reason.get_untracked();
        if !why.trim().is_empty() {
            body["reason"] = json!(why.trim());
        }
        run(ctx, "POST", "/api/admin/suppressions".into(), Some(body), move |_| {
            address.set(String::new());
            reason.set(String::new());
            ctx.notice("suppression_added");
            reload.update(|n| *n += 1);
        });
    };
    let remove = move |a: String| {
        run(ctx, "DELETE", format!("/api/admin/suppressions/{}", seg(&a)), None, move |_| {
            ctx.notice("suppression_removed");
            reload.update(|n| *n += 1);
        });
    };
    let row = move |e: Value| {
        let a = s(&e, "address");
        let (target, data_address) = (a.clone(), a.clone());
        view! {
            <tr data-address=data_address>
                {cell(ctx, "address", a)}
                {cell(ctx, "reason", s(&e, "reason"))}
                {cell(ctx, "source", s(&e, "source"))}
                {cell(ctx, "created", when(ctx, &e["created_ms"]))}
                {cell(ctx, "expires", when(ctx, &e["expires_ms"]))}
                {cell(ctx, "actions", view! {
                    <button type="button" class="plain supp-remove" on:click=move |_| remove(target.clone())>{ctx.tr("remove")}</button>
                })}
            </tr>
        }
    };
    view! {
        <div id="admin-suppressions">
            <h3>{ctx.tr("suppressions")}</h3>
            <form id="supp-search-form" class="inline" on:submit=search role="search">
                {field(ctx, "supp-q", "search", q)}
                <button id="supp-search">{ctx.tr("search")}</button>
            </form>
            {move || match list.get() {
                None => view! { <p class="hint">{ctx.tr("loading")}</p> }.into_any(),
                Some(l) if l.is_empty() => view! { <p class="hint" id="supp-empty">{ctx.tr("none_yet")}</p> }.into_any(),
                Some(l) => view! {
                    <table class="stack" id="supp-list">
                        {head(ctx, &["address", "reason", "source", "created", "expires", ""])}
                        <tbody>{l.into_iter().map(row).collect_view()}</tbody>
                    </table>
                }.into_any(),
            }}
            <form id="supp-new" on:submit=add>
                <h3>{ctx.tr("suppression_new")}</h3>
                {field(ctx, "supp-new-address", "address", address)}
                {field(ctx, "supp-new-reason", "reason", reason)}
                <div class="row-actions"><button id="supp-add">{ctx.tr("add")}</button></div>
            </form>
        </div>
    }
}
