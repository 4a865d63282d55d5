//! The admin console's mailing lists in headless Chromium, against backend-server,
//! mta-server (a fake SendGrid behind it, `[lists] public_url` set) and an edge holding
//! the console's admin key and serving the built console (`lists_pages::start`): an
//! admin creates a list, imports a CSV of 300 good rows and 2 bad ones as confirmed
//! (the report names the bad lines; a file that is not UTF-8 is refused next to the
//! import's form) and 5 more unconfirmed, sees the subscribers, exports
//! them and downloads the CSV, sees a campaign with an unknown variable refused next to
//! its form, sends a campaign and watches its task's progress bar move to the end;
//! the fake provider got exactly one copy per confirmed subscriber, rendered for each;
//! a campaign scheduled for tomorrow is paused, resumed and cancelled. Then the same
//! page in French and 360 px wide. Screenshots in target/screenshots/ (lists-*.png).

use crate::lists_pages::start;
use crate::webdriver;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use bitmail_runtime::config::Secret;
use serde_json::{Value, json};
use tokio::time::Instant;
use webdriver::Browser;

const PASSWORD: &str = "a long console password";

/// Confirmed subscribers imported: each must get exactly one copy of the campaign.
const CONFIRMED: usize = 300;
/// The CSV lines (the header is line 1) that are not subscribers.
const BAD_LINES: [u64; 2] = [52, 203];

/// The built webmail: `BITMAIL_WEB_DIR`, else `target/web` (both written by `cargo xtask web`).
fn web_dir() -> PathBuf {
    let dir = std::env::var_os("BITMAIL_WEB_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/web"), PathBuf::from);
    assert!(dir.join("admin/index.html").is_file(), "no console build in {}: run `cargo xtask web`", dir.display());
    dir
}

/// The page is no wider than the window.
async fn fits(b: &Browser, what: &str) {
    let width = b.script("return document.documentElement.scrollWidth", json!([])).await;
    let viewport = b.script("return window.innerWidth", json!([])).await;
    assert!(width.as_u64().unwrap() <= viewport.as_u64().unwrap(), "{what}: {width} px wide in a {viewport} px window");
}

/// The CSV of the confirmed import: `CONFIRMED` good rows and, at `BAD_LINES`, two
/// addresses that are not.
fn confirmed_csv() -> String {
    let mut csv = String::from("email,name,area\n");
    let mut good = 0;
    for line in 2.. {
        if BAD_LINES.contains(&line) {
            let bad = if line == BAD_LINES[0] { "not-an-address" } else { "two@@example.net" };
            csv.push_str(&format!("{bad},Bad {line},Colombo 1\n"));
        } else if good < CONFIRMED {
            csv.push_str(&format!("person{good}@example.net,Person {good},Colombo {}\n", good % 10));
            good += 1;
        } else {
            break;
        }
    }
    csv
}

/// Waits until `script` answers `expected`.
async fn wait_script(b: &Browser, script: &str, expected: Value) {
    wait_script_for(b, script, expected, Duration::from_secs(15)).await;
}

async fn wait_script_for(b: &Browser, script: &str, expected: Value, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = b.script(script, json!([])).await;
        if got == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{script} answers {got}, not {expected}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The id of the newest task of `kind` in the panel, once it is there.
async fn newest_task(b: &Browser, kind: &str) -> String {
    b.find(&format!("#task-list li[data-kind={kind}]")).await;
    let id = b.script(&format!("return document.querySelector('#task-list li[data-kind={kind}]').id"), json!([])).await;
    id.as_str().unwrap().trim_start_matches("task-").to_owned()
}

/// Waits until `css` is on the page, for what background work brings: up to 60 s, not
/// `find`'s 10 (an import or a campaign on a machine busy with the whole suite).
async fn shows_within_a_minute(b: &Browser, css: &str) {
    let script = format!("return document.querySelector({css:?}) !== null");
    wait_script_for(b, &script, json!(true), Duration::from_secs(60)).await;
}

/// Waits until the task's badge shows `state`.
async fn task_state(b: &Browser, id: &str, state: &str) {
    shows_within_a_minute(b, &format!("#task-{id} .badge[data-state={state}]")).await;
}

/// The progress bar of a task: (value, max), as the page has it.
async fn progress(b: &Browser, id: &str) -> Option<(u64, u64)> {
    let script =
        format!("const p = document.getElementById('task-progress-{id}'); return p ? [p.value, p.max] : null;");
    let v = b.script(&script, json!([])).await;
    Some((v[0].as_f64()? as u64, v[1].as_f64()? as u64))
}

/// A figure of a campaign's row.
async fn stat(b: &Browser, campaign: &str, key: &str) -> String {
    let script = format!("return document.querySelector('#campaign-{campaign} [data-stat={key}]')?.innerText");
    b.script(&script, json!([])).await.as_str().unwrap_or_default().to_owned()
}

/// The recipient of a copy the fake SendGrid took.
fn recipient(body: &Value) -> String {
    body["personalizations"][0]["to"][0]["email"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_admin_imports_a_list_sends_a_campaign_and_watches_it_reach_every_subscriber() {
    let dir = web_dir();
    let app = start().await;
    let key = app.cluster.admin_key.clone();
    let (http, base) = app
        .cluster
        .another_edge(|c| {
            c.mta_admin_key = Some(Secret::new(key));
            c.web_dir = Some(dir);
        })
        .await;
    let config = client_api::config::Config {
        backend_url: format!("http://{}", app.cluster.backend),
        mail_domain: "bitmail.test".into(),
        ..Default::default()
    };
    let ada =
        client_api::create_user::CreateUser { config: None, name: "ada".into(), tenant: "default".into(), admin: true };
    client_api::create_user::create_user(&ada, &config, PASSWORD).await.unwrap();
    let b = Browser::start().await;
    b.goto(&format!("{}/admin/", base.replace("localhost", "127.0.0.1"))).await;
    b.find("#login").await;
    b.type_into("#name", "ada").await;
    b.type_into("#password", PASSWORD).await;
    b.click("#sign-in").await;
    b.wait_text("#tenant-list", "default").await;

    // The lists tab, on the admin's own tenant; a list with one attribute.
    b.click("#admin-tab-lists").await;
    b.wait_text("#lists-tenant", "default").await;
    assert_eq!(b.script("return document.querySelector('#lists-tenant').value", json!([])).await, "default");
    b.find("#lists-empty").await;
    b.type_into("#list-create-name", "Power cuts").await;
    b.type_into("#list-create-from-email", "outages@bitmail.test").await;
    b.type_into("#list-create-from-name", "Outages").await;
    b.type_into("#list-create-attributes", "area").await;
    b.click("#list-create-double").await; // single opt-in
    b.click("#list-create").await;
    b.wait_text(".flash.ok", "List created.").await;
    let list = b.script("return document.querySelector('#admin-list').dataset.id", json!([])).await;
    let list = list.as_str().unwrap().to_owned();
    b.wait_text("#list-name", "Power cuts").await;
    let url = b.script("return document.querySelector('#list-subscribe-url').href", json!([])).await;
    assert_eq!(url.as_str().unwrap(), format!("https://edge.test/lists/{list}/subscribe"), "the subscribe page");
    let form = b.script("return document.querySelector('#list-form-html').value", json!([])).await;
    assert!(form.as_str().unwrap().contains("<form"), "the form to paste: {form}");
    b.find("#subscribers-empty").await;
    b.find("#tasks-empty").await;

    // The import: 300 confirmed subscribers, and the two bad lines reported.
    let files = std::env::temp_dir().join(format!("bitmail-lists-browser-{}", std::process::id()));
    std::fs::create_dir_all(&files).unwrap();
    let csv = files.join("subscribers.csv");
    std::fs::write(&csv, confirmed_csv()).unwrap();
    b.click("#import-start").await;
    b.wait_text("#import-error", "Choose a CSV file first.").await;
    let latin1 = files.join("latin1.csv");
    std::fs::write(&latin1, b"email,name\ncaf\xe9@example.net,Caf\xe9\n").unwrap();
    b.type_into_file("#import-file", &latin1).await;
    b.click("#import-start").await;
    let refused = b.wait_text("#import-error", "UTF-8").await;
    assert!(refused.starts_with("Please check: csv: line 2"), "the file refused whole, next to its form: {refused}");
    b.type_into_file("#import-file", &csv).await;
    b.click("#import-confirmed").await;
    b.click("#import-start").await;
    b.wait_text(".flash.ok", "Import started.").await;
    let import = newest_task(&b, "import").await;
    task_state(&b, &import, "done").await;
    let report = b.wait_text(&format!("#task-result-{import}"), "Rejected").await;
    assert!(report.contains(&format!("Added: {CONFIRMED}")), "{report}");
    assert!(report.contains("Rejected: 2"), "{report}");
    for line in BAD_LINES {
        b.find(&format!("#task-rejected-{import} li[data-line='{line}']")).await;
    }
    let (done, max) = progress(&b, &import).await.unwrap();
    assert_eq!((done, max), (302, 302), "a finished import's bar is full");
    assert_eq!(b.script("return document.querySelector('#import-error') === null", json!([])).await, true);

    // Five more, unconfirmed: the campaign is not for them.
    let unconfirmed = files.join("unconfirmed.csv");
    let rows: String = (0..5).map(|i| format!("later{i}@example.net,Later {i},Colombo 7\n")).collect();
    std::fs::write(&unconfirmed, format!("email,name,area\n{rows}")).unwrap();
    b.type_into_file("#import-file", &unconfirmed).await;
    b.click("#import-confirmed").await;
    b.click("#import-start").await;
    wait_script(&b, "return document.querySelectorAll('#task-list li[data-kind=import]').length", json!(2)).await;
    let second = newest_task(&b, "import").await;
    assert_ne!(second, import);
    task_state(&b, &second, "done").await;
    b.wait_text(&format!("#task-result-{second}"), "Added: 5").await;

    // The subscribers, read again once the imports ended; filtered by state.
    b.wait_text("#subscriber-list", "@example.net").await;
    b.script(
        "const s = document.querySelector('#subscribers-state'); s.value = 'unconfirmed'; s.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    wait_script(&b, "return document.querySelectorAll('#subscriber-list tbody tr').length", json!(5)).await;
    b.wait_text("#subscriber-list", "later0@example.net").await;
    b.find("#subscriber-list tr[data-email='later4@example.net'] .badge[data-state=unconfirmed]").await;
    b.script(
        "const s = document.querySelector('#subscribers-state'); s.value = ''; s.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    b.click("#subscribers-next").await;
    b.find("#subscribers-prev:not([disabled])").await;
    b.click("#subscribers-prev").await;
    b.find("#subscribers-prev[disabled]").await;

    // The export: a task, then a download of every subscriber.
    b.click("#export-start").await;
    b.wait_text(".flash.ok", "Export started.").await;
    let export = newest_task(&b, "export").await;
    task_state(&b, &export, "done").await;
    let href = b
        .script(&format!("return document.querySelector('#task-download-{export}').getAttribute('href')"), json!([]))
        .await;
    let (cookie, _) = crate::common::sign_in(&http, &base, "ada", PASSWORD).await;
    let download = http.get(format!("{base}{}", href.as_str().unwrap())).header("cookie", cookie).send().await.unwrap();
    assert_eq!(download.status(), 200);
    let text = download.text().await.unwrap();
    let exported: Vec<&str> = text.lines().skip(1).filter(|l| !l.is_empty()).collect();
    for address in ["person0@example.net", "person299@example.net"] {
        assert_eq!(exported.iter().filter(|l| l.starts_with(address)).count(), 1, "{address} exported once");
    }
    let shown = b.wait_text(&format!("#task-result-{export}"), "Rows exported: ").await;
    assert_eq!(shown, format!("Rows exported: {}", exported.len()), "the page tells what the file holds");
    assert!(exported.len() >= CONFIRMED, "{text:.300}");

    // A campaign that names no attribute of the list: refused next to its form, nothing sent.
    b.type_into("#campaign-name", "Typo").await;
    b.type_into("#campaign-subject", "Power cut in {{ region }}").await;
    b.type_into("#campaign-markdown", "Hello {{ name }}").await;
    b.click("#campaign-send").await;
    let refused = b.wait_text("#campaign-error", "region").await;
    assert!(refused.contains("Please check"), "{refused}");
    b.find("#campaigns-empty").await;

    // The campaign: the task's bar moves and ends full, and every confirmed subscriber
    // got one copy, rendered with their own name and area.
    b.type_into("#campaign-name", "Schedule of 2 December").await;
    b.type_into("#campaign-subject", "Power cut in {{ area }}").await;
    b.type_into("#campaign-markdown", "Hello {{ name }},\n\nthe power will be cut in **{{ area }}** tomorrow.").await;
    b.type_into("#campaign-rate", "60").await;
    b.click("#campaign-send").await;
    b.wait_text(".flash.ok", "Campaign created.").await;
    let error_gone = b.script("return document.querySelector('#campaign-error') === null", json!([])).await;
    assert_eq!(error_gone, true, "the form's error is gone once it succeeds");
    let task = newest_task(&b, "campaign").await;
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((value, max)) = progress(&b, &task).await {
            seen.insert(value);
            if value == max && max == CONFIRMED as u64 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the bar never reached the end; values seen: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.screenshot("lists-campaign-done").await;
    assert!(seen.iter().any(|v| *v > 0 && *v < CONFIRMED as u64), "the bar moved on its way: {seen:?}");
    let count = b.wait_text(&format!("#task-count-{task}"), &format!("{CONFIRMED} / {CONFIRMED}")).await;
    assert_eq!(count, format!("{CONFIRMED} / {CONFIRMED}"));
    task_state(&b, &task, "done").await;
    let campaign = b.script("return document.querySelector('#campaign-list tbody tr').id", json!([])).await;
    let campaign = campaign.as_str().unwrap().trim_start_matches("campaign-").to_owned();
    shows_within_a_minute(&b, &format!("#campaign-{campaign} .badge[data-state=done]")).await;
    for key in ["total", "submitted"] {
        assert_eq!(stat(&b, &campaign, key).await, CONFIRMED.to_string(), "{key}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while stat(&b, &campaign, "sent").await != CONFIRMED.to_string() {
        assert!(Instant::now() < deadline, "sent: {}", stat(&b, &campaign, "sent").await);
        b.click("#campaigns-refresh").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(stat(&b, &campaign, "possible_duplicates").await, "0");

    app.fake.wait_for(CONFIRMED, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let copies = app.fake.received();
    let mut per_address: HashMap<String, Vec<Value>> = HashMap::new();
    for copy in &copies {
        per_address.entry(recipient(&copy.body)).or_default().push(copy.body.clone());
    }
    assert_eq!(copies.len(), CONFIRMED, "one copy per confirmed subscriber, no more");
    for i in 0..CONFIRMED {
        let address = format!("person{i}@example.net");
        let got = per_address.get(&address).map_or(0, Vec::len);
        assert_eq!(got, 1, "{address} got {got} copies");
    }
    assert!(per_address.keys().all(|a| !a.starts_with("later")), "no copy to an unconfirmed subscriber");
    let seventh = per_address["person7@example.net"][0].to_string();
    assert!(seventh.contains("Power cut in Colombo 7") && seventh.contains("Hello Person 7"), "{seventh:.600}");

    // A campaign for tomorrow: paused, resumed, cancelled; nothing more sent.
    b.type_into("#campaign-name", "Tomorrow").await;
    b.type_into("#campaign-subject", "Later in {{ area }}").await;
    b.type_into("#campaign-markdown", "Hello {{ name }}").await;
    b.script(
        "const d = new Date(Date.now() + 86400000); d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
         const e = document.querySelector('#campaign-start'); e.value = d.toISOString().slice(0, 16);
         e.dispatchEvent(new Event('input'));",
        json!([]),
    )
    .await;
    b.click("#campaign-send").await;
    b.wait_text(".flash.ok", "Campaign created.").await;
    b.find("#campaign-list tbody tr:nth-child(2)").await;
    let later = b.script("return document.querySelector('#campaign-list tbody tr').id", json!([])).await;
    let later = later.as_str().unwrap().to_owned();
    assert_ne!(later, format!("campaign-{campaign}"), "the newest first");
    b.find(&format!("#{later} .badge[data-state=scheduled]")).await;
    b.wait_text(&format!("#{later}"), "Starts ").await;
    b.click(&format!("#{later} .campaign-pause")).await;
    b.wait_text(".flash.ok", "Campaign paused.").await;
    b.find(&format!("#{later} .badge[data-state=paused]")).await;
    b.click(&format!("#{later} .campaign-resume")).await;
    b.wait_text(".flash.ok", "Campaign resumed.").await;
    b.find(&format!("#{later} .campaign-pause")).await;
    b.click(&format!("#{later} .campaign-cancel")).await;
    b.wait_text(".flash.ok", "Campaign cancelled.").await;
    b.find(&format!("#{later} .badge[data-state=cancelled]")).await;
    let buttons = b.script(&format!("return document.querySelectorAll('#{later} button').length"), json!([])).await;
    assert_eq!(buttons, 0, "a cancelled campaign has no buttons");
    assert_eq!(app.fake.received().len(), CONFIRMED, "nothing sent for the cancelled campaign");

    // The list among the tenant's lists, and back.
    b.click("#list-back").await;
    b.wait_text("#list-list", "Power cuts").await;
    b.click(&format!("#list-{list}")).await;
    b.wait_text("#list-name", "Power cuts").await;

    // French, then a phone: 360 px wide, nothing wider than the screen.
    b.script(
        "const s = document.querySelector('header select'); s.value = 'fr'; s.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    b.wait_text("#admin-tabs", "Listes").await;
    b.wait_text("#tasks", "Tâches de fond").await;
    b.wait_text(&format!("#task-{task}"), "terminée").await;
    b.wait_text(&format!("#task-result-{import}"), "Rejetés: 2").await;
    b.wait_text("#campaign-list", "Doublons possibles").await;
    b.resize(360, 740).await;
    b.wait_text("#subscriber-list", "@example.net").await;
    fits(&b, "a list's page").await;
    b.screenshot("lists-list-phone").await;
    b.click("#list-back").await;
    b.wait_text("#list-list", "Power cuts").await;
    fits(&b, "the lists").await;
    b.screenshot("lists-phone").await;
    let _ = std::fs::remove_dir_all(&files);
}
