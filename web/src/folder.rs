//! A folder: newest first, a page of [`PER_PAGE`] at a time, unread in bold, delivery
//! badges in Sent. Read again on `ctx.refresh`, which the live stream bumps as mail
//! arrives and deliveries move (`live`).

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;

use crate::i18n::state_text;
use crate::state::{Ctx, Page};

pub fn badge(ctx: Ctx, status: &Value) -> impl IntoView + use<> {
    let state = status["state"].as_str().unwrap_or("unknown").to_owned();
    let provider = status["provider"].as_str().map(str::to_owned);
    let class = format!("badge b-{state}");
    let data_state = state.clone();
    view! {
        <span class=class data-state=data_state>
            {move || {
                let lang = ctx.lang.get();
                let mut s = state_text(lang, &state).to_owned();
                if let Some(p) = &provider {
                    s = format!("{s} {} {}", crate::i18n::t(lang, "via"), if p == "local" { crate::i18n::t(lang, "local") } else { p });
                }
                s
            }}
        </span>
    }
}

/// Messages on a folder's page.
const PER_PAGE: u64 = 100;

#[component]
pub fn FolderView(folder: &'static str, page: usize) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let items = RwSignal::new(None::<Vec<Value>>);
    let total = RwSignal::new(0u64);
    ctx.selected.set(0);
    Effect::new(move |_| {
        ctx.refresh.track();
        spawn_local(async move {
            match ctx.api("GET", &format!("/api/folders/{folder}?page={page}&per_page={PER_PAGE}"), None).await {
                Ok(v) => {
                    let list = v["messages"].as_array().cloned().unwrap_or_default();
                    ctx.list.set(list.iter().map(|m| m["id"].as_str().unwrap_or_default().to_owned()).collect());
                    ctx.selected.update(|s| *s = (*s).min(list.len().saturating_sub(1)));
                    total.set(v["total"].as_u64().unwrap_or(0));
                    if folder == "inbox" {
                        ctx.unread.set(v["unread"].as_u64().unwrap_or(0) as usize);
                    }
                    items.set(Some(list));
                }
                Err(e) => ctx.error(&e),
            }
        });
    });
    let row = move |(i, m): (usize, Value)| {
        let id = m["id"].as_str().unwrap_or_default().to_owned();
        let who = if folder == "sent" {
            m["to"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        } else {
            m["from"].as_str().unwrap_or_default().to_owned()
        };
        let subject = m["subject"].as_str().unwrap_or_default().to_owned();
        let date_ms = m["date_ms"].as_f64().unwrap_or(0.0);
        let unread = !m["read"].as_bool().unwrap_or(true);
        let status = (folder == "sent").then(|| badge(ctx, &m["status"]));
        view! {
            <li class:unread=unread class:sel=move || ctx.selected.get() == i data-id=id.clone()
                on:click=ctx.to(Page::Message(id))>
                <span class="who">{who}</span>
                <span class="subj">{move || if subject.is_empty() { ctx.t("no_subject").to_owned() } else { subject.clone() }}</span>
                {status}
                <span class="date">{ctx.date(date_ms)}</span>
            </li>
        }
    };
    // The newer and older pages (`#newer`, `#older`): one view type for both.
    let pager = move |to: usize, key: &'static str| {
        view! { <button id=key class="plain" on:click=ctx.to(Page::Folder(folder, to))>{ctx.text(key)}</button> }
    };
    view! {
        <section class="card" id=format!("folder-{folder}")>
            <h2>
                {ctx.text(folder)}
                {move || (folder == "inbox" && ctx.unread.get() > 0).then(|| view! {
                    <span class="badge" id="unread-count">{ctx.unread.get()} " " {ctx.t("unread")}</span>
                })}
            </h2>
            {move || match items.get() {
                None => view! { <p class="hint">{ctx.t("loading")}</p> }.into_any(),
                Some(list) => {
                    let more = total.get_untracked() > (page as u64 + 1) * PER_PAGE;
                    view! {
                        {if list.is_empty() {
                            view! { <p class="hint">{ctx.t("empty")}</p> }.into_any()
                        } else {
                            view! { <ul class="list">{list.into_iter().enumerate().map(row).collect_view()}</ul> }.into_any()
                        }}
                        <div class="row-actions">
                            {(page > 0).then(|| pager(page - 1, "newer"))}
                            {more.then(|| pager(page + 1, "older"))}
                        </div>
                    }.into_any()
                }
            }}
            <p class="hint">{move || format!("{} · {}", total.get(), ctx.t("shortcuts"))}</p>
        </section>
    }
}
