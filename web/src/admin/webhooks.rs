//! A tenant's app webhooks, as its apps registered them: the URL and shape, and how
//! delivery is going (delivered, dropped, failures in a row, the last attempt with its
//! status and error, the next try); refreshed every 5 s. Registering and deleting are
//! the apps' own (`/app/v1/webhooks`, with their key).

use std::time::Duration;

use leptos::prelude::*;
use serde_json::Value;

use super::ui::{cell, head, run, s, seg, when};
use crate::state::Ctx;

#[component]
pub fn Webhooks(tenant: String) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let hooks = RwSignal::new(None::<Vec<Value>>);
    let tick = RwSignal::new(0u32);
    let path = format!("/api/admin/tenants/{}/webhooks", seg(&tenant));
    Effect::new(move |_| {
        tick.track();
        run(ctx, "GET", path.clone(), None, move |v| {
            hooks.set(Some(v["webhooks"].as_array().cloned().unwrap_or_default()))
        });
    });
    if let Ok(handle) = set_interval_with_handle(move || tick.update(|n| *n += 1), Duration::from_secs(5)) {
        on_cleanup(move || handle.clear());
    }
    let row = move |w: Value| {
        let d = &w["delivery"];
        let failing = d["failures"].as_u64().unwrap_or(0) > 0;
        let last = match (d["last_status"].as_u64().unwrap_or(0), s(d, "last_error")) {
            (0, e) if e.is_empty() => String::new(),
            (status, e) if e.is_empty() => status.to_string(),
            (0, e) => e,
            (status, e) => format!("{status}: {e}"),
        };
        view! {
            <tr data-id=s(&w, "id") class:failing=failing>
                {cell(ctx, "webhook_url", view! { <code>{s(&w, "url")}</code> })}
                {cell(ctx, "webhook_format", s(&w, "format"))}
                {cell(ctx, "webhook_delivered", s(d, "delivered"))}
                {cell(ctx, "webhook_dropped", s(d, "dropped"))}
                {cell(ctx, "webhook_failures", s(d, "failures"))}
                {cell(ctx, "webhook_last_attempt", when(ctx, &d["last_attempt_at_ms"]))}
                {cell(ctx, "webhook_last_answer", last)}
                {cell(ctx, "webhook_next", when(ctx, &d["next_attempt_at_ms"]))}
            </tr>
        }
    };
    view! {
        <div id="admin-webhooks">
            <h3>{ctx.tr("webhooks")}
                " " <button type="button" class="plain small" id="webhooks-refresh" on:click=move |_| tick.update(|n| *n += 1)>{ctx.tr("refresh")}</button>
            </h3>
            {move || match hooks.get() {
                None => view! { <p class="hint">{ctx.tr("loading")}</p> }.into_any(),
                Some(l) if l.is_empty() => view! { <p class="hint">{ctx.tr("none_yet")}</p> }.into_any(),
                Some(l) => view! {
                    <table class="stack" id="webhook-list">
                        {head(ctx, &["webhook_url", "webhook_format", "webhook_delivered", "webhook_dropped", "webhook_failures",
                            "webhook_last_attempt", "webhook_last_answer", "webhook_next"])}
                        <tbody>{l.into_iter().map(row).collect_view()}</tbody>
                    </table>
                }.into_any(),
            }}
        </div>
    }
}
