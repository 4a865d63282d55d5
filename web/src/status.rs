//! The status page: providers with their circuit and success rate, the queue depth, a
//! chart of mail sent per provider over the last hour (plain SVG), recent deliveries,
//! and each mta-server node: reachable or not since when, and what waits there.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;

use crate::api::date;
use crate::i18n::state_text;
use crate::state::Ctx;

const COLORS: [&str; 6] = ["#1f5fbf", "#d9822b", "#2e9e5b", "#a33ea1", "#c23b3b", "#5b6575"];

/// Bars per five-minute bucket, one colour per provider, side by side.
fn chart(sent: &serde_json::Map<String, Value>) -> impl IntoView + use<> {
    let (w, h, pad) = (360.0, 140.0, 18.0);
    let series: Vec<(String, Vec<f64>)> = sent
        .iter()
        .map(|(k, v)| {
            (k.clone(), v.as_array().map(|a| a.iter().map(|x| x.as_f64().unwrap_or(0.0)).collect()).unwrap_or_default())
        })
        .collect();
    let max = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(1.0_f64, f64::max);
    let buckets = series.first().map_or(12, |(_, v)| v.len().max(1));
    let slot = (w - pad) / buckets as f64;
    let bar = slot / (series.len().max(1) as f64 + 1.0);
    let mut bars = Vec::new();
    for (si, (_, values)) in series.iter().enumerate() {
        for (bi, v) in values.iter().enumerate() {
            let height = (h - pad) * v / max;
            let x = pad + bi as f64 * slot + si as f64 * bar;
            bars.push(view! { <rect x=x y=h - pad - height width=bar height=height fill=COLORS[si % COLORS.len()]><title>{v.to_string()}</title></rect> });
        }
    }
    let legend = series.iter().enumerate().map(|(i, (name, values))| {
        let total: f64 = values.iter().sum();
        view! { <span style=format!("color:{};margin-right:1rem", COLORS[i % COLORS.len()])>{format!("■ {name}: {total}")}</span> }
    }).collect_view();
    view! {
        <svg class="chart" id="chart" viewBox=format!("0 0 {w} {h}") role="img">
            <line x1=pad y1=h - pad x2=w y2=h - pad stroke="#888"/>
            <line x1=pad y1=0 x2=pad y2=h - pad stroke="#888"/>
            <text x=0 y=10 font-size=9>{max.to_string()}</text>
            <text x=pad y=h - 4.0 font-size=9>"-60 min"</text>
            <text x=w - 30.0 y=h - 4.0 font-size=9>"now"</text>
            {bars}
        </svg>
        <div class="meta">{legend}</div>
    }
}

#[component]
pub fn StatusView() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let data = RwSignal::new(None::<Value>);
    let tick = RwSignal::new(0u32);
    Effect::new(move |_| {
        tick.track();
        spawn_local(async move {
            match ctx.api("GET", "/api/status", None).await {
                Ok(v) => data.set(Some(v)),
                Err(e) => ctx.error(&e),
            }
        });
    });
    if let Ok(handle) = set_interval_with_handle(move || tick.update(|n| *n += 1), Duration::from_secs(5)) {
        on_cleanup(move || handle.clear());
    }
    let render = move |v: Value| {
        let providers = v["providers"].as_array().cloned().unwrap_or_default();
        let recent = v["recent"].as_array().cloned().unwrap_or_default();
        let sent = v["chart"]["sent"].as_object().cloned().unwrap_or_default();
        let degraded = v["degraded"].as_bool().unwrap_or(false);
        let rows = providers.into_iter().map(|p| {
            let rate = p["success_rate"].as_f64().unwrap_or(0.0);
            let attempts = p["attempts"].as_u64().unwrap_or(0);
            view! { <tr>
                <td>{p["name"].as_str().unwrap_or_default().to_owned()}</td>
                <td><span class=format!("badge b-{}", if p["circuit"] == "closed" { "sent" } else { "failed" })>{p["circuit"].as_str().unwrap_or_default().to_owned()}</span></td>
                <td>{if attempts == 0 { "–".to_owned() } else { format!("{:.0} % ({attempts})", rate * 100.0) }}</td>
                <td>{format!("{} / {} ms", p["latency_p50_ms"], p["latency_p99_ms"])}</td>
            </tr> }
        }).collect_view();
        let node_rows = v["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|n| {
                let up = n["reachable"].as_bool();
                let name = n["node_id"].as_str().or(n["url"].as_str()).unwrap_or_default().to_owned();
                let since = n["since_ms"].as_f64();
                let waiting = n["queued"].as_u64();
                let reporting = n["reporting"].as_bool().unwrap_or(false);
                let badge = if up == Some(false) { "failed" } else { "sent" };
                // One text, not a fragment per part: each optional view is code in the bundle.
                let text = move || {
                    let mut text = String::new();
                    if let (Some(at), Some(up)) = (since, up) {
                        let state = ctx.t(if up { "node_up" } else { "node_down" });
                        text = format!(" {state} {}", date(at, ctx.lang.get().locale()));
                    }
                    if let Some(q) = waiting {
                        text.push_str(&format!(" · {q} {}", ctx.t("node_waiting")));
                    }
                    if !reporting {
                        text.push_str(&format!(" · {}", ctx.t("node_silent")));
                    }
                    text
                };
                view! { <li class="node"><span class=format!("badge b-{badge}")>{name}</span>{text}</li> }
            })
            .collect_view();
        let recent_rows = recent
            .into_iter()
            .map(|d| {
                let state = d["state"].as_str().unwrap_or_default().to_owned();
                let at = d["at_ms"].as_f64().unwrap_or(0.0);
                view! { <li>{ctx.date(at)} " · " {d["provider"].as_str().unwrap_or_default().to_owned()} " · "
                {move || state_text(ctx.lang.get(), &state)}</li> }
            })
            .collect_view();
        view! {
            {degraded.then(|| view! { <div class="flash err">{ctx.text("degraded")}</div> })}
            <h3>{ctx.text("providers")}</h3>
            <table id="providers"><thead><tr><th></th><th>{ctx.text("circuit")}</th><th>{ctx.text("success")}</th><th>{ctx.text("latency")}</th></tr></thead>
                <tbody>{rows}</tbody></table>
            <p>{ctx.text("queue")} ": " <strong id="queue-depth">{v["queue_depth"].as_u64().unwrap_or(0)}</strong></p>
            <h3>{ctx.text("nodes")}</h3>
            <ul id="nodes">{node_rows}</ul>
            <h3>{ctx.text("chart")}</h3>
            {chart(&sent)}
            <h3>{ctx.text("recent")}</h3>
            <ul id="recent">{recent_rows}</ul>
        }
    };
    view! {
        <section class="card" id="status">
            <h2>{ctx.text("status")}</h2>
            {move || match data.get() {
                Some(v) => render(v).into_any(),
                None => view! { <p class="hint">{ctx.t("loading")}</p> }.into_any(),
            }}
        </section>
    }
}
