//! A list's campaigns: the form that creates one (subject and Markdown body with
//! `{{ variables }}`, an optional filter of `attr=value` lines, a rate, a start time),
//! and each campaign's state and figures with pause, resume and cancel. Read again at
//! each `tick` of the tasks panel, so the figures move while a campaign sends.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use serde_json::{Map, Value, json};

use super::lists::{base, state_badge};
use super::tasks::Poll;
use super::ui::{
    area, cell, error_line, field, head, ids, input, item, local_ms, newest_first, num, query, run, run_at, s, seg,
    when,
};
use crate::state::Ctx;

/// The figures of a campaign's `stats`, with their text keys.
const STATS: [(&str, &str); 10] = [
    ("total", "s_total"),
    ("submitted", "s_submitted"),
    ("skipped", "s_skipped"),
    ("sent", "s_sent"),
    ("failed", "s_failed"),
    ("delivered", "s_delivered"),
    ("bounced", "s_bounced"),
    ("complained", "s_complained"),
    ("unsubscribed", "s_unsubscribed"),
    ("possible_duplicates", "s_possible_duplicates"),
];

/// `attr=value` lines as the filter's map, or the first line that is not one.
fn filter(text: &str) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => map.insert(k.trim().into(), v.trim().into()),
            _ => return Err(line.to_owned()),
        };
    }
    Ok(map)
}

/// A campaign's cells but its buttons: drawn again as it changes.
fn campaign(ctx: Ctx, c: &Value) -> AnyView {
    let state = s(c, "state");
    let error = s(c, "error");
    let stats = STATS
        .map(|(key, label)| {
            view! { <span class="stat">{ctx.tr(label)} ": " <strong data-stat=key>{num(&c["stats"][key])}</strong></span> }
        })
        .collect_view();
    view! {
        {cell(ctx, "campaign_name", view! { <strong>{s(c, "name")}</strong> <div class="meta">{s(c, "subject")}</div> })}
        {cell(ctx, "state", view! {
            {state_badge(ctx, &state)}
            {(state == "scheduled").then(|| view! { <div class="meta">{ctx.tr("starts")} " " {when(ctx, &c["start_at_ms"])}</div> })}
            {(!error.is_empty()).then(|| view! { <div class="meta err">{error}</div> })}
        })}
        {cell(ctx, "stats", view! { <div class="stats">{stats}</div> })}
        {cell(ctx, "created", when(ctx, &c["created_ms"]))}
    }
    .into_any()
}

#[derive(Clone, Copy)]
struct Form {
    name: RwSignal<String>,
    subject: RwSignal<String>,
    markdown: RwSignal<String>,
    filter: RwSignal<String>,
    rate: RwSignal<String>,
    start: RwSignal<String>,
}

impl Form {
    /// The POST body, or what is wrong (a text key and the bad value).
    fn body(&self, list: &str) -> Result<Value, (&'static str, String)> {
        let mut body = json!({
            "list_id": list,
            "name": self.name.get_untracked(),
            "subject": self.subject.get_untracked(),
            "markdown": self.markdown.get_untracked(),
        });
        let f = filter(&self.filter.get_untracked()).map_err(|line| ("bad_filter", line))?;
        if !f.is_empty() {
            body["filter"] = f.into();
        }
        let rate = self.rate.get_untracked();
        if !rate.trim().is_empty() {
            // JavaScript's parser: Rust's float parsing would add ~20 KB to the module.
            let n = js_sys::parse_float(rate.trim());
            if !n.is_finite() || n < 0.0 {
                return Err(("campaign_rate", rate));
            }
            body["rate_per_second"] = n.into();
        }
        let start = self.start.get_untracked();
        if !start.is_empty() {
            // An integer: a float (`1.7e12`) is no `int64` to the API.
            body["start_at_ms"] = (local_ms(&start).ok_or(("campaign_start", start))? as i64).into();
        }
        Ok(body)
    }
}

#[component]
pub fn Campaigns(tenant: String, list: String, poll: Poll) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let prefix = StoredValue::new(format!("{}/campaigns", base(&tenant)));
    let campaigns = RwSignal::new(None::<Vec<Value>>);
    let of_list = query(&[("list_id", list.clone())]);
    Effect::new(move |_| {
        poll.tick.track();
        run(ctx, "GET", format!("{}{of_list}", prefix.get_value()), None, move |v| {
            let mut l = v["campaigns"].as_array().cloned().unwrap_or_default();
            newest_first(&mut l);
            // Sending, or due: its figures move (a later start is not polled for).
            let now = js_sys::Date::now() as u64;
            poll.campaigns.set(l.iter().any(|c| match c["state"].as_str() {
                Some("running") => true,
                Some("scheduled") => num(&c["start_at_ms"]) <= now,
                _ => false,
            }));
            campaigns.set(Some(l));
        });
    });
    let new = || RwSignal::new(String::new());
    let form = Form { name: new(), subject: new(), markdown: new(), filter: new(), rate: new(), start: new() };
    let shown = RwSignal::new(None::<String>);
    let send = move |ev: SubmitEvent| {
        ev.prevent_default();
        match form.body(&list) {
            Ok(body) => run_at(ctx, shown, "POST", prefix.get_value(), Some(body), move |_| {
                ctx.notice("campaign_created");
                poll.again();
            }),
            Err((key, bad)) => shown.set(Some(format!("{} {}: {bad}", ctx.tr("e_bad_request"), ctx.tr(key)))),
        }
    };
    let act = move |id: &str, verb: &'static str| {
        run(ctx, "POST", format!("{}/{}/{verb}", prefix.get_value(), seg(id)), None, move |_| {
            ctx.notice(match verb {
                "pause" => "campaign_paused",
                "resume" => "campaign_resumed",
                _ => "campaign_cancelled",
            });
            poll.again();
        });
    };
    let row = move |id: String| {
        let c = item(campaigns, id.clone());
        let state = Memo::new(move |_| c.with(|c| s(c, "state")));
        let mine = StoredValue::new(id.clone());
        let button = move |verb: &'static str| {
            view! {
                <button type="button" class=format!("plain small campaign-{verb}") on:click=move |_| act(&mine.get_value(), verb)>{ctx.tr(verb)}</button>
            }
        };
        let actions = move || {
            let st = state.get();
            view! {
                {matches!(st.as_str(), "scheduled" | "running").then(|| button("pause"))}
                {(st == "paused").then(|| button("resume"))}
                {matches!(st.as_str(), "scheduled" | "running" | "paused").then(|| button("cancel"))}
            }
        };
        view! {
            <tr id=format!("campaign-{id}")>
                {move || c.with(|c| campaign(ctx, c))}
                {cell(ctx, "actions", actions)}
            </tr>
        }
    };
    let ids = ids(campaigns);
    view! {
        <div id="campaigns">
            <h3>{ctx.tr("campaigns")}
                " " <button type="button" class="plain small" id="campaigns-refresh" on:click=move |_| poll.again()>{ctx.tr("refresh")}</button>
            </h3>
            {move || match ids.get() {
                None => view! { <p class="hint">{ctx.tr("loading")}</p> }.into_any(),
                Some(l) if l.is_empty() => view! { <p class="hint" id="campaigns-empty">{ctx.tr("none_yet")}</p> }.into_any(),
                Some(l) => view! {
                    <table class="stack" id="campaign-list">
                        {head(ctx, &["campaign_name", "state", "stats", "created", ""])}
                        <tbody>{l.into_iter().map(row).collect_view()}</tbody>
                    </table>
                }.into_any(),
            }}
            <form id="campaign-new" on:submit=send>
                <h3>{ctx.tr("campaign_new")}</h3>
                {field(ctx, "campaign-name", "campaign_name", form.name)}
                {field(ctx, "campaign-subject", "subject", form.subject)}
                {area(ctx, "campaign-markdown", "campaign_body", form.markdown)}
                {area(ctx, "campaign-filter", "campaign_filter", form.filter)}
                <div class="quotas">
                    <div>{input(ctx, "campaign-rate", "campaign_rate", "text", form.rate)}</div>
                    <div>{input(ctx, "campaign-start", "campaign_start", "datetime-local", form.start)}</div>
                </div>
                {error_line("campaign-error", shown)}
                <div class="row-actions"><button id="campaign-send">{ctx.tr("campaign_send")}</button></div>
            </form>
        </div>
    }
}
