//! A tenant's usage: messages per day over the last 31 days as SVG bars (like the
//! status page's chart), today's count against the daily quota; refreshed every 5 s.

use std::time::Duration;

use leptos::prelude::*;
use serde_json::Value;

use super::ui::{run, s, seg};
use crate::state::Ctx;

fn chart(days: &[Value]) -> impl IntoView + use<> {
    let (w, h, pad) = (360.0, 120.0, 18.0);
    let counts: Vec<(String, f64)> =
        days.iter().map(|d| (s(d, "day"), d["messages"].as_f64().unwrap_or(0.0))).collect();
    let max = counts.iter().map(|(_, n)| *n).fold(1.0_f64, f64::max);
    let slot = (w - pad) / counts.len().max(1) as f64;
    let bars = counts
        .iter()
        .enumerate()
        .map(|(i, (day, n))| {
            let height = (h - pad) * n / max;
            view! {
                <rect x=pad + i as f64 * slot + 1.0 y=h - pad - height width=(slot - 2.0).max(1.0) height=height fill="#1f5fbf" data-day=day.clone()>
                    <title>{format!("{day}: {n}")}</title>
                </rect>
            }
        })
        .collect_view();
    let first = counts.first().map(|(d, _)| d.clone()).unwrap_or_default();
    let last = counts.last().map(|(d, _)| d.clone()).unwrap_or_default();
    view! {
        <svg class="chart" id="usage-chart" viewBox=format!("0 0 {w} {h}") role="img">
            <line x1=pad y1=h - pad x2=w y2=h - pad stroke="#888"/>
            <line x1=pad y1=0 x2=pad y2=h - pad stroke="#888"/>
            <text x=0 y=10 font-size=9>{max.to_string()}</text>
            <text x=pad y=h - 4.0 font-size=9>{first}</text>
            <text x=w - 52.0 y=h - 4.0 font-size=9>{last}</text>
            {bars}
        </svg>
    }
}

#[component]
pub fn Usage(tenant: String) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let usage = RwSignal::new(None::<Value>);
    let tick = RwSignal::new(0u32);
    let path = format!("/api/admin/tenants/{}/usage", seg(&tenant));
    Effect::new(move |_| {
        tick.track();
        run(ctx, "GET", path.clone(), None, move |v| usage.set(Some(v)));
    });
    if let Ok(handle) = set_interval_with_handle(move || tick.update(|n| *n += 1), Duration::from_secs(5)) {
        on_cleanup(move || handle.clear());
    }
    let render = move |v: Value| {
        let days = v["days"].as_array().cloned().unwrap_or_default();
        let today = days.last().and_then(|d| d["messages"].as_u64()).unwrap_or(0);
        let total: u64 = days.iter().filter_map(|d| d["messages"].as_u64()).sum();
        let per_day = s(&v, "per_day");
        view! {
            <p>
                {ctx.tr("today")} ": " <strong id="usage-today">{today}</strong> " / " {per_day}
                " · " {ctx.tr("last_31")} ": " <strong id="usage-total">{total}</strong>
            </p>
            {chart(&days)}
        }
    };
    view! {
        <div id="usage">
            <h3>{ctx.tr("usage")}
                " " <button type="button" class="plain small" id="usage-refresh" on:click=move |_| tick.update(|n| *n += 1)>{ctx.tr("refresh")}</button>
            </h3>
            {move || match usage.get() {
                Some(v) => render(v).into_any(),
                None => view! { <p class="hint">{ctx.tr("loading")}</p> }.into_any(),
            }}
        </div>
    }
}
