//! Mailing lists: a tenant's lists (picked with a selector), creating one, and one
//! list's page, which holds `subscribers` (a page of them, import and export),
//! `campaigns` (the form and the list's campaigns) and `tasks` (the background tasks,
//! polled while one runs). All of it calls `/api/admin/tenants/{tenant}/...`.
//!
//! Element ids, stable for the tests (`{id}` is the API's id of the thing):
//! - the lists: `#admin-lists`, `#lists-tenant` (the tenant's `<select>`), `#list-list`
//!   (the table), `#list-{id}` (the link to a list's page), the form `#list-new` with
//!   `#list-create-name`, `#list-create-from-email`, `#list-create-from-name`,
//!   `#list-create-double`, `#list-create-attributes`, `#list-create` and its error
//!   `#list-create-error`;
//! - a list's page: `#admin-list[data-id]`, `#list-back`, `#list-subscribe-url`,
//!   `#list-form-html` (the read-only form snippet), `#list-form-copy`;
//! - subscribers: `#subscribers`, `#subscribers-state`, `#subscriber-list` (rows
//!   `tr[data-email]`), `#subscribers-prev`, `#subscribers-next`; `#import-file`,
//!   `#import-confirmed`, `#import-start`, `#import-error`; `#export-start`;
//! - campaigns: the form `#campaign-new` with `#campaign-name`, `#campaign-subject`,
//!   `#campaign-markdown`, `#campaign-filter`, `#campaign-rate`, `#campaign-start`,
//!   `#campaign-send` and `#campaign-error`; `#campaign-list` with rows
//!   `#campaign-{id}[data-state]`, each stat in `[data-stat=sent]` (and the other
//!   names of the API's `stats`), buttons `.campaign-pause`, `.campaign-resume`,
//!   `.campaign-cancel`;
//! - tasks: `#tasks`, `#task-list`, rows `#task-{id}[data-kind][data-state]` with
//!   `<progress id="task-progress-{id}">` and `#task-count-{id}` ("done / total"), an
//!   import's `#task-result-{id}` and `#task-rejected-{id}` (`li[data-line]`), an
//!   export's `#task-download-{id}`, buttons `.task-cancel`, `.task-retry`.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use serde_json::{Value, json};

use super::campaigns::Campaigns;
use super::subscribers::Subscribers;
use super::tasks::{Poll, Tasks};
use super::ui::{cell, check, copy, error_line, field, head, joined, run, run_at, s, seg, split, when};
use crate::state::{Admin, Ctx, Page};

/// `/api/admin/tenants/{tenant}`, the prefix of every call here.
pub fn base(tenant: &str) -> String {
    format!("/api/admin/tenants/{}", seg(tenant))
}

/// The tenant named, or the admin's own.
fn or_own(ctx: Ctx, tenant: String) -> String {
    if tenant.is_empty() {
        ctx.me.with_untracked(|m| m.as_ref().map(|m| m.tenant.clone())).unwrap_or_default()
    } else {
        tenant
    }
}

/// The words for a state of a task, campaign or subscriber (the API's word if unknown).
pub fn state_word(ctx: Ctx, state: &str) -> String {
    let word = ctx.tr(&format!("x_{state}"));
    if word == "?" { state.to_owned() } else { word.to_owned() }
}

/// A badge for a state, coloured as the delivery states are.
pub fn state_badge(ctx: Ctx, state: &str) -> impl IntoView + use<> {
    let colour = match state {
        "done" | "confirmed" => "sent",
        "failed" | "cancelled" | "unsubscribed" => "failed",
        _ => "queued",
    };
    view! { <span class=format!("badge b-{colour}") data-state=state.to_owned()>{state_word(ctx, state)}</span> }
}

#[component]
pub fn ListsPage(tenant: String) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let tenant = or_own(ctx, tenant);
    let tenants = RwSignal::new(Vec::<String>::new());
    run(ctx, "GET", "/api/admin/tenants".into(), None, move |v| {
        tenants.set(v["tenants"].as_array().into_iter().flatten().map(|t| s(t, "id")).collect());
    });
    let lists = RwSignal::new(None::<Vec<Value>>);
    let prefix = base(&tenant);
    run(ctx, "GET", format!("{prefix}/lists"), None, move |v| {
        lists.set(Some(v["lists"].as_array().cloned().unwrap_or_default()));
    });
    let new = || RwSignal::new(String::new());
    let (name, from_email, from_name, attributes) = (new(), new(), new(), new());
    let double = RwSignal::new(true);
    let shown = RwSignal::new(None::<String>);
    let at = tenant.clone();
    let create = move |ev: SubmitEvent| {
        ev.prevent_default();
        let body = json!({
            "name": name.get_untracked(),
            "from_email": from_email.get_untracked().trim(),
            "from_name": from_name.get_untracked(),
            "double_opt_in": double.get_untracked(),
            "attributes": split(&attributes.get_untracked()),
        });
        let at = at.clone();
        run_at(ctx, shown, "POST", format!("{}/lists", base(&at)), Some(body), move |v| {
            ctx.go(Page::Admin(Admin::List(at, s(&v, "id"))));
            ctx.notice("list_created");
        });
    };
    let opened = tenant.clone();
    let row = move |l: Value| {
        let id = s(&l, "id");
        let (open, tenant) = (id.clone(), opened.clone());
        view! {
            <tr data-id=id.clone()>
                {cell(ctx, "display_name", view! {
                    <a href="#" id=format!("list-{id}") on:click=move |ev| {
                        ev.prevent_default();
                        ctx.go(Page::Admin(Admin::List(tenant.clone(), open.clone())));
                    }>{s(&l, "name")}</a>
                })}
                {cell(ctx, "from_email", s(&l, "from_email"))}
                {cell(ctx, "double_opt_in", ctx.tr(if l["double_opt_in"] == true { "yes" } else { "no" }))}
                {cell(ctx, "attributes", joined(&l["attributes"], ", "))}
                {cell(ctx, "created", when(ctx, &l["created_ms"]))}
            </tr>
        }
    };
    let selected = tenant.clone();
    view! {
        <div id="admin-lists">
            <h3>{ctx.tr("lists")}</h3>
            <label for="lists-tenant">{ctx.tr("tenant")}</label>
            <select id="lists-tenant" on:change=move |ev| ctx.go(Page::Admin(Admin::Lists(event_target_value(&ev))))>
                {move || tenants.get().into_iter().map(|t| view! {
                    <option value=t.clone() selected=t == selected>{t.clone()}</option>
                }).collect_view()}
            </select>
            {move || match lists.get() {
                None => view! { <p class="hint">{ctx.tr("loading")}</p> }.into_any(),
                Some(l) if l.is_empty() => view! { <p class="hint" id="lists-empty">{ctx.tr("none_yet")}</p> }.into_any(),
                Some(l) => view! {
                    <table class="stack" id="list-list">
                        {head(ctx, &["display_name", "from_email", "double_opt_in", "attributes", "created"])}
                        <tbody>{l.into_iter().map(row.clone()).collect_view()}</tbody>
                    </table>
                }.into_any(),
            }}
            <form id="list-new" on:submit=create>
                <h3>{ctx.tr("list_new")}</h3>
                {field(ctx, "list-create-name", "display_name", name)}
                {field(ctx, "list-create-from-email", "from_email", from_email)}
                {field(ctx, "list-create-from-name", "from_name", from_name)}
                {field(ctx, "list-create-attributes", "attributes_hint", attributes)}
                {check(ctx, "list-create-double", "double_opt_in_hint", double)}
                {error_line("list-create-error", shown)}
                <div class="row-actions"><button id="list-create">{ctx.tr("create")}</button></div>
            </form>
            <Tasks tenant=tenant list=String::new() poll=Poll::new()/>
        </div>
    }
}

#[component]
pub fn ListPage(tenant: String, id: String) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let list = RwSignal::new(None::<Value>);
    run(ctx, "GET", format!("{}/lists/{}", base(&tenant), seg(&id)), None, move |v| list.set(Some(v)));
    let poll = Poll::new();
    let back = tenant.clone();
    let data_id = id.clone();
    let header = move |l: Value| {
        let (url, snippet) = (s(&l, "subscribe_url"), s(&l, "form_html"));
        let (copied, href) = (snippet.clone(), url.clone());
        view! {
            <h3>{ctx.tr("list")} " " <span id="list-name">{s(&l, "name")}</span></h3>
            <p class="meta">{format!("{} <{}> · {}: {}", s(&l, "from_name"), s(&l, "from_email"), ctx.tr("attributes"), joined(&l["attributes"], ", "))}</p>
            <label for="list-subscribe-url">{ctx.tr("subscribe_url")}</label>
            <p><a id="list-subscribe-url" class="meta" href=href target="_blank" rel="noopener">{url}</a></p>
            <label for="list-form-html">{ctx.tr("form_html")}</label>
            <textarea id="list-form-html" class="snippet" readonly prop:value=snippet></textarea>
            <div class="row-actions">
                <button type="button" class="plain" id="list-form-copy" on:click=move |_| copy(ctx, copied.clone())>{ctx.tr("copy")}</button>
            </div>
        }
    };
    view! {
        <div id="admin-list" data-id=data_id>
            <p><a href="#" id="list-back" on:click=move |ev| {
                ev.prevent_default();
                ctx.go(Page::Admin(Admin::Lists(back.clone())));
            }>{"← "}{ctx.tr("lists")}</a></p>
            {move || list.get().map(header)}
            // What runs first, the long table of subscribers (with the import) last.
            <Tasks tenant=tenant.clone() list=id.clone() poll=poll/>
            <Campaigns tenant=tenant.clone() list=id.clone() poll=poll/>
            <Subscribers tenant=tenant list=id poll=poll/>
        </div>
    }
}
