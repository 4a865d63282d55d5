//! The background tasks of a tenant (of one list, when `list` is set): imports, exports
//! and campaigns, newest first, each with a progress bar, its state, an import's report
//! (rejected rows with their line), an export's download, cancel and retry.
//!
//! Polled once a second while a task is queued or running, and not otherwise: `tick`
//! (bumped by the interval, and by whatever starts a task) fetches them again; the
//! interval ends with the page. Each row is drawn once and its parts follow a memo of
//! its task, so the bar moves without its buttons being made anew under the pointer.

use std::time::Duration;

use leptos::prelude::*;
use serde_json::Value;

use super::lists::{base, state_badge};
use super::ui::{ids, item, run, s, seg, when};
use crate::state::Ctx;

/// Rows of an import's report shown; the API keeps the first 1000.
const REJECTED_SHOWN: usize = 20;

fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

fn running(state: &str) -> bool {
    matches!(state, "queued" | "running")
}

/// An import's added/updated/rejected and its first rejected rows; an export's rows.
fn result(ctx: Ctx, id: &str, kind: &str, r: &Value) -> AnyView {
    if kind == "export" {
        return view! { <p class="meta" id=format!("task-result-{id}")>{ctx.tr("exported")} ": " {num(r, "exported")}</p> }.into_any();
    }
    let rows = r["rejected_rows"].as_array().cloned().unwrap_or_default();
    let more = rows.len() > REJECTED_SHOWN;
    let items = rows
        .into_iter()
        .take(REJECTED_SHOWN)
        .map(|row| {
            let line = num(&row, "line");
            view! { <li data-line=line>{ctx.tr("line")} " " {line} ": " {s(&row, "reason")}</li> }
        })
        .collect_view();
    view! {
        <p class="meta" id=format!("task-result-{id}")>
            {ctx.tr("added")} ": " <strong>{num(r, "added")}</strong> " · "
            {ctx.tr("updated")} ": " <strong>{num(r, "updated")}</strong> " · "
            {ctx.tr("rejected")} ": " <strong>{num(r, "rejected")}</strong>
        </p>
        <ul class="rejected" id=format!("task-rejected-{id}")>{items}{more.then_some(view! { <li>"…"</li> })}</ul>
    }
    .into_any()
}

#[component]
pub fn Tasks(
    tenant: String,
    list: String,
    tick: RwSignal<u32>,
    /// Bumped when the tasks that were running have all ended.
    #[prop(optional)]
    settled: Option<RwSignal<u32>>,
) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let tasks = RwSignal::new(None::<Vec<Value>>);
    let active = RwSignal::new(false);
    let prefix = StoredValue::new(base(&tenant));
    Effect::new(move |_| {
        tick.track();
        let list = list.clone();
        run(ctx, "GET", format!("{}/tasks", prefix.get_value()), None, move |v| {
            let mut mine: Vec<Value> = v["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| list.is_empty() || t["list_id"] == list.as_str())
                .cloned()
                .collect();
            mine.sort_by_key(|t| std::cmp::Reverse(num(t, "created_ms")));
            let now = mine.iter().any(|t| running(t["state"].as_str().unwrap_or_default()));
            if let Some(settled) = settled.filter(|_| active.get_untracked() && !now) {
                settled.update(|n| *n += 1);
            }
            active.set(now);
            tasks.set(Some(mine));
        });
    });
    if let Ok(handle) = set_interval_with_handle(
        move || {
            if active.get_untracked() {
                tick.update(|n| *n += 1);
            }
        },
        Duration::from_secs(1),
    ) {
        on_cleanup(move || handle.clear());
    }
    let act = move |id: &str, verb: &'static str| {
        run(ctx, "POST", format!("{}/tasks/{}/{verb}", prefix.get_value(), seg(id)), None, move |_| {
            ctx.notice(if verb == "cancel" { "task_cancelled" } else { "task_retried" });
            tick.update(|n| *n += 1);
        });
    };
    let row = move |id: String| {
        let t = item(tasks, id.clone());
        let state = Memo::new(move |_| t.with(|t| s(t, "state")));
        let report = Memo::new(move |_| t.with(|t| t["result"].clone()));
        let (kind, created) = t.with_untracked(|t| (s(t, "kind"), when(ctx, &t["created_ms"])));
        let href = format!("{}/tasks/{}/export.csv", prefix.get_value(), seg(&id));
        let (mine, of_row) = (StoredValue::new(id.clone()), StoredValue::new(kind.clone()));
        // Cancel and retry for imports and exports; a campaign has its own buttons.
        let actions = move || {
            let (st, k) = (state.get(), of_row.get_value());
            let cancel = (running(&st) && k != "campaign").then(|| view! {
                <button type="button" class="plain small task-cancel" on:click=move |_| act(&mine.get_value(), "cancel")>{ctx.tr("cancel")}</button>
            });
            let retry = (matches!(st.as_str(), "failed" | "cancelled") && k != "campaign").then(|| view! {
                <button type="button" class="plain small task-retry" on:click=move |_| act(&mine.get_value(), "retry")>{ctx.tr("retry")}</button>
            });
            let get = (st == "done" && k == "export").then(|| view! {
                <a class="button" id=format!("task-download-{}", mine.get_value()) href=href.clone() download="subscribers.csv">{ctx.tr("download")}</a>
            });
            view! { {cancel}{retry}{get} }
        };
        let label = ctx.tr(&format!("k_{kind}"));
        view! {
            <li id=format!("task-{id}") data-kind=kind.clone() data-state=move || state.get()>
                <div>
                    <strong>{label}</strong> " · " <span class="meta">{created}</span> " "
                    {move || state_badge(ctx, &state.get())}
                </div>
                <div>
                    <progress id=format!("task-progress-{id}") value=move || t.with(|t| num(t, "done"))
                        max=move || t.with(|t| num(t, "total").max(num(t, "done")).max(1))></progress>
                    " " <span id=format!("task-count-{id}")>{move || t.with(|t| format!("{} / {}", num(t, "done"), num(t, "total")))}</span>
                </div>
                {move || t.with(|t| (!s(t, "error").is_empty()).then(|| view! { <p class="flash err">{s(t, "error")}</p> }))}
                {move || report.with(|r| (of_row.get_value() != "campaign" && r.is_object()).then(|| result(ctx, &mine.get_value(), &of_row.get_value(), r)))}
                <div class="row-actions">{actions}</div>
            </li>
        }
    };
    let ids = ids(tasks);
    view! {
        <div id="tasks">
            <h3>{ctx.tr("tasks")}</h3>
            {move || match ids.get() {
                None => view! { <p class="hint">{ctx.tr("loading")}</p> }.into_any(),
                Some(l) if l.is_empty() => view! { <p class="hint" id="tasks-empty">{ctx.tr("none_yet")}</p> }.into_any(),
                Some(l) => view! { <ul class="audit" id="task-list">{l.into_iter().map(row).collect_view()}</ul> }.into_any(),
            }}
        </div>
    }
}
