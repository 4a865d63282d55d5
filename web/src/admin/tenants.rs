//! Tenants: the list (with suspend and resume), creating one, and one tenant's page:
//! its name, sending domains and addresses, quotas and state, then its keys and usage.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use serde_json::{Value, json};

use super::keys::Keys;
use super::ui::{cell, field, head, joined, run, s, seg, split};
use super::usage::Usage;
use super::webhooks::Webhooks;
use crate::state::{Admin, Ctx, Page};

/// The quotas, as the API names them, with their text keys.
const QUOTAS: [(&str, &str); 5] = [
    ("per_day", "q_per_day"),
    ("per_second", "q_per_second"),
    ("burst", "q_burst"),
    ("max_recipients", "q_max_recipients"),
    ("max_message_bytes", "q_max_message_bytes"),
];

fn state_badge(ctx: Ctx, state: &str) -> impl IntoView + use<> {
    let active = state == "active";
    let class = if active { "badge b-sent" } else { "badge b-failed" };
    view! { <span class=class data-state=state.to_owned()>{ctx.tr(if active { "active" } else { "suspended" })}</span> }
}

/// Suspends an active tenant or resumes a suspended one; `done` gets the new tenant.
fn toggle_state(ctx: Ctx, tenant: &Value, done: impl FnOnce(Value) + 'static) {
    let next = if tenant["state"] == "active" { "suspended" } else { "active" };
    let body = json!({ "state": next, "expected_version": tenant["version"] });
    let path = format!("/api/admin/tenants/{}", seg(&s(tenant, "id")));
    run(ctx, "PATCH", path, Some(body), move |v| {
        ctx.notice(if next == "active" { "tenant_resumed" } else { "tenant_suspended" });
        done(v);
    });
}

fn state_button(
    ctx: Ctx,
    id: Option<&'static str>,
    tenant: Value,
    done: impl Fn(Value) + Copy + 'static,
) -> impl IntoView {
    let active = tenant["state"] == "active";
    view! {
        <button type="button" id=id class="plain tenant-state" on:click=move |_| toggle_state(ctx, &tenant, done)>
            {ctx.tr(if active { "suspend" } else { "resume" })}
        </button>
    }
}

#[component]
pub fn TenantList() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let list = RwSignal::new(None::<Vec<Value>>);
    let reload = RwSignal::new(0u32);
    Effect::new(move |_| {
        reload.track();
        run(ctx, "GET", "/api/admin/tenants".into(), None, move |v| {
            list.set(Some(v["tenants"].as_array().cloned().unwrap_or_default()));
        });
    });
    let (id, name, domains) =
        (RwSignal::new(String::new()), RwSignal::new(String::new()), RwSignal::new(String::new()));
    let create = move |ev: SubmitEvent| {
        ev.prevent_default();
        let new_id = id.get_untracked();
        let body =
            json!({ "id": new_id, "display_name": name.get_untracked(), "domains": split(&domains.get_untracked()) });
        run(ctx, "POST", "/api/admin/tenants".into(), Some(body), move |_| {
            ctx.go(Page::Admin(Admin::Tenant(new_id)));
            ctx.notice("tenant_created");
        });
    };
    let row = move |t: Value| {
        let tid = s(&t, "id");
        let (open, data_id) = (tid.clone(), tid.clone());
        view! {
            <tr data-id=data_id>
                {cell(ctx, "tenant_id", view! {
                    <a href="#" class="tenant-open" on:click=move |ev| {
                        ev.prevent_default();
                        ctx.go(Page::Admin(Admin::Tenant(open.clone())));
                    }>{tid}</a>
                })}
                {cell(ctx, "display_name", s(&t, "display_name"))}
                {cell(ctx, "domains", joined(&t["domains"], ", "))}
                {cell(ctx, "state", state_badge(ctx, t["state"].as_str().unwrap_or_default()))}
                {cell(ctx, "actions", state_button(ctx, None, t, move |_| reload.update(|n| *n += 1)))}
            </tr>
        }
    };
    view! {
        <div id="admin-tenants">
            <h3>{ctx.tr("tenants")}</h3>
            {move || match list.get() {
                None => view! { <p class="hint">{ctx.tr("loading")}</p> }.into_any(),
                Some(l) => view! {
                    <table class="stack" id="tenant-list">
                        {head(ctx, &["tenant_id", "display_name", "domains", "state", ""])}
                        <tbody>{l.into_iter().map(row).collect_view()}</tbody>
                    </table>
                }.into_any(),
            }}
            <form id="tenant-new" on:submit=create>
                <h3>{ctx.tr("tenant_new")}</h3>
                {field(ctx, "tenant-new-id", "tenant_id", id)}
                {field(ctx, "tenant-new-name", "display_name", name)}
                {field(ctx, "tenant-new-domains", "domains_hint", domains)}
                <div class="row-actions"><button id="tenant-create">{ctx.tr("create")}</button></div>
            </form>
        </div>
    }
}

/// The form's values, from a tenant.
#[derive(Clone, Copy)]
struct Form {
    name: RwSignal<String>,
    domains: RwSignal<String>,
    addresses: RwSignal<String>,
    quotas: [RwSignal<String>; 5],
}

impl Form {
    fn fill(&self, t: &Value) {
        self.name.set(s(t, "display_name"));
        self.domains.set(joined(&t["domains"], ", "));
        self.addresses.set(joined(&t["addresses"], ", "));
        for (signal, (key, _)) in self.quotas.iter().zip(QUOTAS) {
            signal.set(s(&t["quotas"], key));
        }
    }

    /// The PATCH body, or the text key of the quota that is not a number.
    fn body(&self, version: &Value) -> Result<Value, &'static str> {
        let mut quotas = serde_json::Map::new();
        for (signal, (key, label)) in self.quotas.iter().zip(QUOTAS) {
            // The rate may be fractional (one message every two seconds); the rest are counts.
            let text = signal.get_untracked();
            let n: Value = if key == "per_second" {
                // JavaScript's parser: Rust's float parsing would add ~20 KB to the module.
                Some(js_sys::parse_float(text.trim())).filter(|n| n.is_finite()).map(Value::from)
            } else {
                text.trim().parse::<u64>().ok().map(Value::from)
            }
            .ok_or(label)?;
            quotas.insert(key.into(), n);
        }
        Ok(json!({
            "display_name": self.name.get_untracked(),
            "domains": split(&self.domains.get_untracked()),
            "addresses": split(&self.addresses.get_untracked()),
            "quotas": quotas,
            "expected_version": version,
        }))
    }
}

#[component]
pub fn TenantPage(id: String) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let tenant = RwSignal::new(None::<Value>);
    let new = || RwSignal::new(String::new());
    let form = Form { name: new(), domains: new(), addresses: new(), quotas: [new(), new(), new(), new(), new()] };
    let show = move |t: Value| {
        form.fill(&t);
        tenant.set(Some(t));
    };
    let wanted = id.clone();
    run(ctx, "GET", "/api/admin/tenants".into(), None, move |v| {
        let found = v["tenants"].as_array().and_then(|l| l.iter().find(|t| t["id"] == wanted.as_str()).cloned());
        match found {
            Some(t) => show(t),
            None => ctx.flash.set(Some((true, format!("{} {wanted}", ctx.tr("e_admin_not_found"))))),
        }
    });
    let path = format!("/api/admin/tenants/{}", seg(&id));
    let save = move |ev: SubmitEvent| {
        ev.prevent_default();
        let version = tenant.with_untracked(|t| t.as_ref().map(|t| t["version"].clone()).unwrap_or_default());
        match form.body(&version) {
            Ok(body) => run(ctx, "PATCH", path.clone(), Some(body), move |v| {
                show(v);
                ctx.notice("saved");
            }),
            Err(label) => ctx.flash.set(Some((true, format!("{} {}", ctx.tr("e_bad_request"), ctx.tr(label))))),
        }
    };
    let quota_fields = form
        .quotas
        .into_iter()
        .zip(QUOTAS)
        .map(|(signal, (key, label))| {
            let id = format!("quota-{key}");
            view! {
                <div>
                    <label for=id.clone()>{ctx.tr(label)}</label>
                    <input id=id type="number" min="0" step="any" inputmode="decimal"
                        on:input=move |ev| signal.set(event_target_value(&ev)) prop:value=move || signal.get()/>
                </div>
            }
        })
        .collect_view();
    let (data_id, usage_id, keys_id, hooks_id) = (id.clone(), id.clone(), id.clone(), id.clone());
    view! {
        <div id="admin-tenant" data-id=data_id>
            <h3>{ctx.tr("tenant")} " " <code>{id.clone()}</code> " "
                {move || tenant.get().map(|t| state_badge(ctx, t["state"].as_str().unwrap_or_default()))}</h3>
            <form id="tenant-edit" on:submit=save>
                {field(ctx, "tenant-name", "display_name", form.name)}
                {field(ctx, "tenant-domains", "domains_hint", form.domains)}
                {field(ctx, "tenant-addresses", "addresses_hint", form.addresses)}
                <fieldset class="quotas"><legend>{ctx.tr("quotas")}</legend>{quota_fields}</fieldset>
                <div class="row-actions">
                    <button id="tenant-save">{ctx.tr("save")}</button>
                    {move || tenant.get().map(|t| state_button(ctx, Some("tenant-state"), t, show))}
                </div>
            </form>
            <Usage tenant=usage_id/>
            <Keys tenant=keys_id/>
            <Webhooks tenant=hooks_id/>
        </div>
    }
}
