//! The admin console, shown only to users whose session role is `admin` (the shell
//! checks; the API refuses everyone else with 403 anyway).
//!
//! - `ui`: what the pages share (fields, stacking table cells, dates, errors);
//! - `tenants`: the list, creating one, and one tenant's page (its settings and state),
//!   which holds `keys` (list, create with the secret shown once, revoke), `usage`
//!   (31 days as SVG bars) and `webhooks` (the apps' webhooks and their delivery);
//! - `providers`: health, pause and resume;
//! - `suppressions`: search, add, remove;
//! - `audit`: the audit log, filtered and paged, with its CSV export;
//! - `lists`: a tenant's mailing lists and one list's page, which holds `subscribers`
//!   (paged, CSV import and export), `campaigns` (create, follow, pause, resume,
//!   cancel) and `tasks` (the background tasks with their progress, polled while they
//!   run); its `//!` lists the element ids the tests use.
//!
//! Pages import `ui` and the crate's `state`, `api` and `i18n`; only this file,
//! `tenants` (for its tenant page) and `lists` (for its list page) import other pages.

mod audit;
mod campaigns;
mod keys;
mod lists;
mod providers;
mod subscribers;
mod suppressions;
mod tasks;
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
    // The lists tab stays on the tenant whose lists are shown.
    let lists_of = match &page {
        Admin::Lists(t) | Admin::List(t, _) => t.clone(),
        _ => String::new(),
    };
    let tab = move |target: Admin, id: &'static str, key: &'static str| {
        let on = match (&here, &target) {
            (Admin::Tenant(_), Admin::Tenants) | (Admin::Lists(_) | Admin::List(..), Admin::Lists(_)) => true,
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
        Admin::Lists(tenant) => view! { <lists::ListsPage tenant=tenant/> }.into_any(),
        Admin::List(tenant, id) => view! { <lists::ListPage tenant=tenant id=id/> }.into_any(),
    };
    view! {
        <section class="card admin" id="admin">
            <h2>{ctx.tr("admin")}</h2>
            <nav class="tabs" id="admin-tabs" aria-label=ctx.tr("admin")>
                {tab(Admin::Tenants, "admin-tab-tenants", "tenants")}
                {tab(Admin::Providers, "admin-tab-providers", "providers")}
                {tab(Admin::Suppressions, "admin-tab-suppressions", "suppressions")}
                {tab(Admin::Lists(lists_of), "admin-tab-lists", "lists")}
                {tab(Admin::Audit, "admin-tab-audit", "audit")}
            </nav>
            {body}
        </section>
    }
}
