//! The admin console, shown only to users whose session role is `admin` (the shell
//! checks; the API refuses everyone else with 403 anyway).
//!
//! - `ui`: what the pages share (fields, stacking table cells, dates, errors);
//! - `tenants`: the list, creating one, and one tenant's page (its settings and state),
//!   which holds `keys` (list, create with the secret shown once, revoke), `usage`
//!   (31 days as SVG bars) and `webhooks` (the apps' webhooks and their delivery);
//! - `providers`: health, pause and resume;
//! - `suppressions`: search, add, remove;
//! - `audit`: the audit log, filtered and paged, with its CSV export.
//!
//! Pages import `ui` and the crate's `state`, `api` and `i18n`; only this file and
//! `tenants` (for its tenant page) import other pages.

mod audit;
mod keys;
mod providers;
mod suppressions;
mod tenants;
mod ui;
mod usage;
mod webhooks;

use leptos::prelude::*;

use crate::state::{Admin, Ctx, Page};

#[component]
pub fn AdminView(page: Admin) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let here = page.clone();
    let tab = move |target: Admin, id: &'static str, key: &'static str| {
        let on = match (&here, &target) {
            (Admin::Tenant(_), Admin::Tenants) => true,
            (a, b) => a == b,
        };
        view! {
            <button id=id class:on=on aria-current=on.then_some("page")
                on:click=move |_| ctx.go(Page::Admin(target.clone()))>{ctx.tr(key)}</button>
        }
    };
    let body = match page {
        Admin::Tenants => view! { <tenants::TenantList/> }.into_any(),
        Admin::Tenant(id) => view! { <tenants::TenantPage id=id/> }.into_any(),
        Admin::Providers => view! { <providers::Providers/> }.into_any(),
        Admin::Suppressions => view! { <suppressions::Suppressions/> }.into_any(),
        Admin::Audit => view! { <audit::AuditLog/> }.into_any(),
    };
    view! {
        <section class="card admin" id="admin">
            <h2>{ctx.tr("admin")}</h2>
            <nav class="tabs" id="admin-tabs" aria-label=ctx.tr("admin")>
                {tab(Admin::Tenants, "admin-tab-tenants", "tenants")}
                {tab(Admin::Providers, "admin-tab-providers", "providers")}
                {tab(Admin::Suppressions, "admin-tab-suppressions", "suppressions")}
                {tab(Admin::Audit, "admin-tab-audit", "audit")}
            </nav>
            {body}
        </section>
    }
}
