//! The background tasks of a tenant (of one list, when `list` is set): imports, exports
//! and campaigns, newest first, each with a progress bar, its state, an import's report
//! (rejected rows with their line), an export's download, cancel and retry.
//!
//! Polled once a second while a task is queued or running (or a campaign is due or
//! sending: its task may not be there yet), and not otherwise: see [`Poll`]. A row is
//! drawn once; its content follows its task, and its buttons only its state, so they
//! are not made anew under the pointer each second.

use std::time::Duration;

use leptos::prelude::*;
use serde_json::Value;

use super::lists::{base, state_badge};
use super::ui::{ids, item, newest_first, num, run, s, seg, when};
use crate::state::Ctx;

/// Rows of an import's report shown; the API keeps the first 1000.
const REJECTED_SHOWN: usize = 20;

/// What a page of tasks polls with; `Copy`, for every part of the page.
#[derive(Clone, Copy)]
pub struct Poll {
    /// Bumped once a second while something runs, and by whatever starts a task: the
    /// tasks and campaigns are read again.
    pub tick: RwSignal<u32>,
    /// Bumped when the tasks that ran have all ended (the subscribers are read again).
    pub settled: RwSignal<u32>,
    /// A task is queued or running; a campaign is due or sending.
    pub tasks: RwSignal<bool>,
    pub campaigns: RwSignal<bool>,
}

impl Poll {
    /// Polls once a second while something runs, until the page is left.
    pub fn new() -> Poll {
        let new = || RwSignal::new(0);
        let poll = Poll { tick: new(), settled: new(), tasks: RwSignal::new(false), campaigns: RwSignal::new(false) };
        if let Ok(handle) = set_interval_with_handle(
            move || {
                if poll.tasks.get_untracked() || poll.campaigns.get_untracked() {
                    poll.again();
                }
            },
            Duration::from_secs(1),
        ) {
            on_cleanup(move || handle.clear());
        }
        poll
    }

    /// Reads the tasks and campaigns again now (and so polls while they run).
    pub fn again(&self) {
        self.tick.update(|n| *n += 1);
    }
}

fn running(state: &str) -> bool {
    matches!(state, "queued" | "running")
}

/// What a task's row shows but its buttons: drawn again as it changes.
fn task(ctx: Ctx, t: &Value) -> AnyView {
    let (id, kind, state) = (s(t, "id"), s(t, "kind"), s(t, "state"));
    let (done, total) = (num(&t["done"]), num(&t["total"]));
    let error = s(t, "error");
    view! {
        <div>
            <strong>{ctx.tr(&format!("k_{kind}"))}</strong> " · " <span class="meta">{when(ctx, &t["created_ms"])}</span> " "
            {state_badge(ctx, &state)}
        </div>
        <div>
            <progress id=format!("task-progress-{id}") value=done max=total.max(done).max(1)></progress>
            " " <span id=format!("task-count-{id}")>{format!("{done} / {total}")}</span>
        </div>
        {(!error.is_empty()).then(|| view! { <p class="flash err">{error}</p> })}
        {(kind != "campaign" && t["result"].is_object()).then(|| result(ctx, &id, &kind, &t["result"]))}
    }
    .into_any()
}

/// An import's added/updated/rejected and its first rejected rows; an export's rows.
fn result(ctx: Ctx, id: &str, kind: &str, r: &Value) -> AnyView {
    if kind == "export" {
        return view! { <p class="meta" id=format!("task-result-{id}")>{ctx.tr("exported")} ": " {num(&r["exported"])}</p> }.into_any();
    }
    let rows = r["rejected_rows"].as_array().cloned().unwrap_or_default();
    let more = rows.len() > REJECTED_SHOWN;
    let items = rows
        .into_iter()
        .take(REJECTED_SHOWN)
        .map(|row| {
            let line = num(&row["line"]);
            view! { <li data-line=line>{ctx.tr("line")} " " {line} ": " {s(&row, "reason")}</li> }
        })
        .collect_view();
    view! {
        <p class="meta" id=format!("task-result-{id}")>
            {ctx.tr("added")} ": " <strong>{num(&r["added"])}</strong> " · "
            {ctx.tr("updated")} ": " <strong>{num(&r["updated"])}</strong> " · "
            {ctx.tr("rejected")} ": " <strong>{num(&r["rejected"])}</strong>
        </p>
        <ul class="rejected" id=format!("task-rejected-{id}")>{items}{more.then_some(view! { <li>"…"</li> })}</ul>
    }
    .into_any()
}

#[component]
pub fn Tasks(tenant: String, list: String, poll: Poll) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let tasks = RwSignal::new(None::<Vec<Value>>);
    let prefix = StoredValue::new(base(&tenant));
    Effect::new(move |_| {
        poll.tick.track();
        let list = list.clone();
        run(ctx, "GET", format!("{}/tasks", prefix.get_value()), None, move |v| {
            let mut mine: Vec<Value> = v["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| list.is_empty() || t["list_id"] == list.as_str())
                .cloned()
                .collect();
            newest_first(&mut mine);
            let now = mine.iter().any(|t| running(t["state"].as_str().unwrap_or_default()));
            if poll.tasks.get_untracked() && !now {
                poll.settled.update(|n| *n += 1);
            }
            poll.tasks.set(now);
            tasks.set(Some(mine));
        });
    });
    let act = move |id: &str, verb: &'static str| {
        run(ctx, "POST", format!("{}/tasks/{}/{verb}", prefix.get_value(), seg(id)), None, move |_| {
            ctx.notice(if verb == "cancel" { "task_cancelled" } else { "task_retried" });
            poll.again();
        });
    };
    let row = move |id: String| {
        let t = item(tasks, id.clone());
        let state = Memo::new(move |_| t.with(|t| s(t, "state")));
        let kind = t.with_untracked(|t| s(t, "kind"));
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
        view! {
            <li id=format!("task-{id}") data-kind=kind>
                {move || t.with(|t| task(ctx, t))}
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
