//! The admin console in headless Chromium, against backend-server, mta-server (a fake
//! SendGrid behind it) and client-api serving the built webmail: an admin follows the
//! webmail's link to `/admin/`, a page load of the console's own bundle, creates a
//! tenant and a key in the console, the test sends with that key over gRPC, the console
//! shows it in the tenant's usage, the admin revokes the key and the next send is
//! refused, the tenant's domains and quota edited, the tenant suspended and resumed,
//! and the audit log page shows the changes; a provider paused and
//! resumed, an address suppressed, found and removed. A user who is not an admin
//! sees no console, not even at `/admin/`, and gets 403 from its API. Screenshots in target/screenshots/
//! (admin-*.png), one at 360 px wide.

use crate::admin_api::deployment;
use crate::webdriver;

use std::path::PathBuf;
use std::time::Duration;

use bitmail_proto::v1 as pb;
use deployment::{Deployment, PASSWORD};
use reqwest::StatusCode;
use serde_json::json;
use tonic::Code;
use webdriver::Browser;

/// The built webmail: `BITMAIL_WEB_DIR`, else `target/web` (both written by `cargo xtask web`).
fn web_dir() -> PathBuf {
    let dir = std::env::var_os("BITMAIL_WEB_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/web"), PathBuf::from);
    assert!(dir.join("index.html").is_file(), "no webmail build in {}: run `cargo xtask web`", dir.display());
    dir
}

async fn sign_in(b: &Browser, name: &str) {
    b.find("#login").await;
    b.type_into("#name", name).await;
    b.type_into("#password", PASSWORD).await;
    b.click("#sign-in").await;
    b.find("#folder-inbox").await;
}

fn message() -> pb::SubmitRequest {
    pb::SubmitRequest {
        from: "app@acme.test".into(),
        to: vec!["someone@example.net".into()],
        subject: "Hello".into(),
        text: "Hi".into(),
        ..Default::default()
    }
}

/// The page is no wider than the window.
async fn fits(b: &Browser, what: &str) {
    let width = b.script("return document.documentElement.scrollWidth", json!([])).await;
    let viewport = b.script("return window.innerWidth", json!([])).await;
    assert!(width.as_u64().unwrap() <= viewport.as_u64().unwrap(), "{what}: {width} px wide in a {viewport} px window");
}

#[tokio::test]
async fn an_admin_runs_tenants_and_keys_from_the_console_and_a_user_sees_none_of_it() {
    let dir = web_dir();
    let d = Deployment::start(move |c| c.web_dir = Some(dir)).await;
    d.create_user("ada", "default", true).await.unwrap();
    d.create_user("bob", "default", false).await.unwrap();
    let b = Browser::start().await;
    b.goto(&format!("{}/", d.base.replace("localhost", "127.0.0.1"))).await;

    // The console, from the navigation: the webmail has none of it, only a link to
    // `/admin/`, the bundle with the console, which opens on it.
    sign_in(&b, "ada").await;
    let href = b.script("return document.querySelector('#admin-nav').getAttribute('href')", json!([])).await;
    assert_eq!(href, "/admin/", "the webmail links to the console's bundle");
    b.click("#admin-nav").await;
    b.wait_text("#tenant-list", "default").await;
    let path = b.script("return location.pathname", json!([])).await;
    assert_eq!(path, "/admin/");
    let script = b.script("return document.querySelector('script[type=module]').getAttribute('src')", json!([])).await;
    assert!(script.as_str().unwrap().starts_with("/admin/assets/"), "the console's own bundle: {script}");

    // A tenant: created, then its page.
    b.type_into("#tenant-new-id", "acme").await;
    b.type_into("#tenant-new-name", "Acme").await;
    b.type_into("#tenant-new-domains", "acme.test").await;
    b.click("#tenant-create").await;
    b.find("#admin-tenant[data-id=acme]").await;
    b.wait_text(".flash.ok", "Tenant created.").await;
    b.find("#admin-tenant h3 .badge[data-state=active]").await;
    let domains = b.script("return document.querySelector('#tenant-domains').value", json!([])).await;
    assert_eq!(domains, "acme.test");

    // A key: the secret shown once, with a copy button.
    b.type_into("#key-new-name", "ci").await;
    b.click("#key-create").await;
    let secret = b.wait_text("#key-secret-value", "bmk_").await;
    b.wait_text("#key-secret", "you will not see it again").await;
    b.find("#key-copy").await;
    b.wait_text("#key-list", "ci").await;
    b.screenshot("admin-key-created").await;
    let listed = b.wait_text("#key-list", "send").await;
    assert!(!listed.contains(&secret), "the list shows the prefix only: {listed}");

    // Sending with it over gRPC, and the console shows it in the tenant's usage.
    let mut mta = d.mta_with(&secret).await;
    mta.submit(message()).await.expect("the new key sends");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        b.click("#usage-refresh").await;
        let today = b.script("return document.querySelector('#usage-today')?.innerText", json!([])).await;
        if today == "1" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "usage never showed the message: {today}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    b.find("#usage-chart rect").await;

    // Revoked, after a confirmation: the next send is refused.
    b.click("#key-list .key-revoke").await;
    b.wait_text("#key-list", "Revoke this key?").await;
    b.click("#key-list .key-revoke-confirm").await;
    b.wait_text(".flash.ok", "Key revoked.").await;
    b.find("#key-list tr.revoked").await;
    let refused = mta.submit(message()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    // Edited: another domain and a daily quota; then suspended and resumed.
    b.type_into("#tenant-domains", "acme.test, mail.acme.test").await;
    b.type_into("#quota-per_day", "500").await;
    b.click("#tenant-save").await;
    b.wait_text(".flash.ok", "Saved.").await;
    let (_, list) = d.sign_in("ada").await.call("GET", "/api/admin/tenants", None).await;
    let acme = list["tenants"].as_array().unwrap().iter().find(|t| t["id"] == "acme").unwrap().clone();
    assert_eq!(acme["domains"], json!(["acme.test", "mail.acme.test"]), "{acme}");
    assert_eq!(acme["quotas"]["per_day"], 500, "{acme}");
    b.click("#tenant-state").await;
    b.wait_text(".flash.ok", "Tenant suspended").await;
    b.find("#admin-tenant h3 .badge[data-state=suspended]").await;
    b.click("#tenant-state").await;
    b.wait_text(".flash.ok", "Tenant resumed.").await;
    b.find("#admin-tenant h3 .badge[data-state=active]").await;

    // The audit log page shows the three changes, and exports them.
    b.click("#admin-tab-audit").await;
    b.type_into("#audit-tenant", "acme").await;
    b.click("#audit-apply").await;
    for action in ["tenant.create", "key.create", "key.revoke"] {
        b.wait_text("#audit-list", action).await;
    }
    b.wait_text("#audit-list", "user:ada").await;
    let csv = b.script("return document.querySelector('#audit-csv').getAttribute('href')", json!([])).await;
    assert_eq!(csv, "/api/admin/audit.csv?tenant=acme");
    b.screenshot("admin-audit").await;

    // Providers: pause and resume.
    b.click("#admin-tab-providers").await;
    b.wait_text("#admin-provider-list", "sendgrid").await;
    b.click("#admin-provider-list .provider-pause").await;
    b.wait_text(".flash.ok", "Provider paused.").await;
    b.wait_text("#admin-provider-list", "paused").await;
    b.click("#admin-provider-list .provider-resume").await;
    b.wait_text(".flash.ok", "Provider resumed.").await;
    b.find("#admin-provider-list .provider-pause").await;

    // Suppressions: add, search, remove.
    b.click("#admin-tab-suppressions").await;
    b.type_into("#supp-new-address", "gone@example.net").await;
    b.type_into("#supp-new-reason", "asked to stop").await;
    b.click("#supp-add").await;
    b.wait_text("#supp-list", "gone@example.net").await;
    b.type_into("#supp-q", "gone").await;
    b.click("#supp-search").await;
    b.wait_text("#supp-list", "asked to stop").await;
    b.click("#supp-list tr[data-address='gone@example.net'] .supp-remove").await;
    b.wait_text(".flash.ok", "Address removed from the list.").await;
    b.find("#supp-empty").await;

    // French, then a phone: 360 px wide, nothing wider than the screen.
    b.script(
        "const s = document.querySelector('header select'); s.value = 'fr'; s.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    b.wait_text("#admin-tabs", "Locataires").await;
    b.resize(360, 740).await;
    fits(&b, "the audit log").await;
    b.click("#admin-tab-tenants").await;
    b.wait_text("#tenant-list", "acme").await;
    b.click("#tenant-list tr[data-id=acme] .tenant-open").await;
    b.wait_text("#key-list", "Révoquée").await;
    fits(&b, "a tenant's page").await;
    b.screenshot("admin-tenant-phone").await;
    b.click("#admin-tab-tenants").await;
    b.wait_text("#tenant-list", "acme").await;
    fits(&b, "the tenants").await;
    b.screenshot("admin-tenants-phone").await;
    b.script(
        "const s = document.querySelector('header select'); s.value = 'en'; s.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    b.resize(1280, 900).await;

    // bob is not an admin: no console in the navigation, not even signed in at
    // `/admin/` (the console's bundle), and 403 from its API.
    b.click("header > button").await;
    sign_in(&b, "bob").await;
    assert_eq!(b.script("return location.pathname", json!([])).await, "/admin/");
    b.wait_text("header nav", "Status").await;
    let link = b.script("return document.querySelector('#admin-nav, #admin') === null", json!([])).await;
    assert_eq!(link, true, "bob sees no console");
    let bob = d.sign_in("bob").await;
    for (method, path) in [("GET", "/api/admin/tenants"), ("GET", "/api/admin/audit"), ("POST", "/api/admin/tenants")] {
        let body =
            (method == "POST").then(|| json!({ "id": "evil", "display_name": "Evil", "domains": ["evil.test"] }));
        let (status, answer) = bob.call(method, path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden");
    }
}
