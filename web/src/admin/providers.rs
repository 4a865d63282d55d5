//! Providers as an admin sees them: the circuit, success rate, latency, mail in flight
//! and the last error; pause and resume. Refreshed every 5 s.

use std::time::Duration;

use leptos::prelude::*;
use serde_json::Value;

use super::ui::{cell, head, run, s, seg};
use crate::state::Ctx;

#[component]
pub fn Providers() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let data = RwSignal::new(None::<Value>);
    let tick = RwSignal::new(0u32);
    Effect::new(move |_| {
        tick.track();
        run(ctx, "GET", "/api/admin/providers".into(), None, move |v| data.set(Some(v)));
    });
    if let Ok(handle) = set_interval_with_handle(move || tick.update(|n| *n += 1), Duration::from_secs(5)) {
        on_cleanup(move || handle.clear());
    }
    let act = move |name: String, paused: bool| {
        let verb = if paused { "resume" } else { "pause" };
        run(ctx, "POST", format!("/api/admin/providers/{}/{verb}", seg(&name)), None, move |_| {
            ctx.notice(if paused { "provider_resumed" } else { "provider_paused" });
            tick.update(|n| *n += 1);
        });
    };
    let row = move |p: Value| {
        let name = s(&p, "name");
        let circuit = s(&p, "circuit");
        let paused = circuit == "paused";
        let class = format!(
            "badge b-{}",
            if circuit == "closed" {
                "sent"
            } else if paused {
                "queued"
            } else {
                "failed"
            }
        );
        let rate = p["success_rate"].as_f64().unwrap_or(0.0);
        let (target, data_name) = (name.clone(), name.clone());
        view! {
            <tr data-name=data_name>
                {cell(ctx, "provider", name)}
                {cell(ctx, "circuit", view! { <span class=class>{circuit}</span> })}
                {cell(ctx, "success", format!("{:.0} %", rate * 100.0))}
                {cell(ctx, "latency", format!("{} / {} ms", p["latency_p50_ms"], p["latency_p99_ms"]))}
                {cell(ctx, "in_flight", s(&p, "in_flight"))}
                {cell(ctx, "last_error", s(&p, "last_error"))}
                {cell(ctx, "actions", view! {
                    <button type="button" class=if paused { "provider-resume" } else { "plain provider-pause" }
                        on:click=move |_| act(target.clone(), paused)>
                        {ctx.tr(if paused { "resume" } else { "pause" })}
                    </button>
                })}
            </tr>
        }
    };
    let render = move |v: Value| {
        let providers = v["providers"].as_array().cloned().unwrap_or_default();
        view! {
            {v["degraded"].as_bool().unwrap_or(false).then(|| view! { <div class="flash err">{ctx.tr("degraded")}</div> })}
            <table class="stack" id="admin-provider-list">
                {head(ctx, &["provider", "circuit", "success", "latency", "in_flight", "last_error", ""])}
                <tbody>{providers.into_iter().map(row).collect_view()}</tbody>
            </table>
            <p>{ctx.tr("backlog")} ": " <strong id="admin-backlog">{s(&v, "backlog")}</strong></p>
        }
    };
    view! {
        <div id="admin-providers">
            <h3>{ctx.tr("providers")}</h3>
            {move || match data.get() {
                Some(v) => render(v).into_any(),
                None => view! { <p class="hint">{ctx.tr("loading")}</p> }.into_any(),
            }}
        </div>
    }
}
