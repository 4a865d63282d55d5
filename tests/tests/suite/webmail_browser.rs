//! The webmail in headless Chromium, used the way a person does: the first sign-in
//! creates the account, a wrong password is refused, a Markdown message with an
//! attachment goes to two recipients separated by `;`, Sent shows the provider, a second
//! user receives a local message, opens it, marks it unread and deletes it, the French
//! interface, a phone-sized screen, the status page, the warning on forged mail from our own
//! domain; each page at its own URL with back, forward and reload, and on a phone one bar
//! with a menu. A screenshot of each main page is saved in target/screenshots/.

use crate::common;
use crate::webdriver;

use std::time::Duration;

use bitmail_tests::sendgrid::FakeSendGrid;
use common::{Cluster, Session, sendgrid};
use serde_json::json;
use webdriver::Browser;

const CONTROL: &str = "\u{E009}";
const ENTER: &str = "\u{E007}";

async fn sign_in(b: &Browser, name: &str, password: &str) {
    b.find("#login").await;
    b.type_into("#name", name).await;
    b.type_into("#password", password).await;
    b.click("#sign-in").await;
}

/// The path and query in the address bar.
async fn here(b: &Browser) -> String {
    b.script("return location.pathname + location.search", json!([])).await.as_str().unwrap().to_owned()
}

/// Runs `script` (a click or a history move) and waits until `css` shows `needle`; then
/// the address bar must show `url`.
async fn moved(b: &Browser, script: &str, css: &str, needle: &str, url: &str) {
    b.script(script, json!([])).await;
    b.wait_text(css, needle).await;
    assert_eq!(here(b).await, url, "after {script}");
}

/// Reloads the page and waits until the new one shows `needle` in `css`; then the
/// address bar must still show `url`.
async fn reloaded(b: &Browser, css: &str, needle: &str, url: &str) {
    b.script("document.documentElement.dataset.before = '1'; location.reload()", json!([])).await;
    for _ in 0..150 {
        let script = "const e = document.querySelector(arguments[0]); \
                      return !document.documentElement.dataset.before && !!e && e.innerText.includes(arguments[1])";
        if b.script(script, json!([css, needle])).await == true {
            assert_eq!(here(b).await, url, "after the reload");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("after the reload, {css} never showed {needle:?}; the page: {}", b.body_text().await);
}

/// The entries of the header a person can see (ids, or their text).
async fn header_entries(b: &Browser) -> Vec<String> {
    let shown = b
        .script(
            "return [...document.querySelectorAll('header button, header a, header select')] \
                .filter(e => e.offsetWidth > 0).map(e => e.id || e.innerText.trim())",
            json!([]),
        )
        .await;
    serde_json::from_value(shown).unwrap()
}

async fn sign_out(b: &Browser) {
    b.click("header > button").await;
    b.find("#login").await;
}

#[tokio::test]
async fn a_person_uses_the_webmail_in_chromium() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start_webmail(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))]).await;
    let base = format!("https://127.0.0.1:{}", cluster.edge.unwrap().port());
    let b = Browser::start().await;

    // bob exists already; ada does not.
    let (http, api) = cluster.https_client();
    common::sign_in(&http, &api, "bob", "bob's password").await;

    b.goto(&format!("{base}/")).await;
    b.find("#login").await;
    b.screenshot("login").await;
    sign_in(&b, "ada", "ada's long password").await;
    b.find("#folder-inbox").await;
    b.wait_text("header", "ada@bitmail.test").await;
    b.wait_text("#folder-inbox", "No messages.").await;
    b.screenshot("inbox-empty").await;

    // A wrong password is refused with words, and changes nothing.
    sign_out(&b).await;
    sign_in(&b, "ada", "not her password").await;
    b.wait_text(".flash.err", "Wrong name or password.").await;
    sign_in(&b, "ada", "ada's long password").await;
    b.find("#folder-inbox").await;

    // Compose (the `c` key): two recipients separated by ';', Markdown, an attachment.
    b.keys(&["c"]).await;
    b.find("#compose").await;
    b.type_into("#to", "carol@example.net; dave@example.org").await;
    b.type_into("#subject", "Minutes").await;
    b.type_into("#body", "The **budget** is approved.").await;
    let file = std::env::temp_dir().join(format!("bitmail-minutes-{}.txt", std::process::id()));
    std::fs::write(&file, "item 1: approved\n").unwrap();
    b.type_into_file("#files", &file).await;
    b.wait_text("#picked", "bitmail-minutes").await;
    b.click("#show-preview").await;
    b.wait_text("#preview", "budget").await;
    let bold = b.script("return document.querySelector('#preview strong').innerText", serde_json::json!([])).await;
    assert_eq!(bold, "budget");
    b.screenshot("compose").await;
    b.click("#body").await;
    b.keys(&[CONTROL, ENTER]).await;
    b.find("#folder-sent").await;
    let _ = std::fs::remove_file(&file);

    let got = fake.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    let mail = &got[0].body;
    let to: Vec<&str> =
        mail["personalizations"][0]["to"].as_array().unwrap().iter().map(|t| t["email"].as_str().unwrap()).collect();
    assert_eq!(to, ["carol@example.net", "dave@example.org"]);
    let html = mail["content"].as_array().unwrap().iter().find(|c| c["type"] == "text/html").unwrap();
    assert!(html["value"].as_str().unwrap().contains("<strong>budget</strong>"), "{mail}");
    let attachment = &mail["attachments"][0];
    assert!(attachment["filename"].as_str().unwrap().starts_with("bitmail-minutes-"), "{mail}");
    assert_eq!(attachment["type"], "text/plain");
    assert_eq!(attachment["content"], "aXRlbSAxOiBhcHByb3ZlZAo=", "base64 of the file");

    // Sent shows the provider that took it.
    b.wait_text("#folder-sent .badge", "via sendgrid").await;
    b.screenshot("sent").await;

    // A local message to bob.
    b.keys(&["c"]).await;
    b.type_into("#to", "bob@bitmail.test").await;
    b.type_into("#subject", "Lunch").await;
    b.type_into("#body", "At *noon*?").await;
    b.click("#send").await;
    b.wait_text("#folder-sent", "Lunch").await;
    b.wait_text("#folder-sent", "delivered via local").await;

    // The status page.
    b.click("header nav button:nth-child(4)").await;
    b.wait_text("#providers", "sendgrid").await;
    b.find("#chart").await;
    b.wait_text("#recent", "sendgrid").await;
    b.screenshot("status").await;

    // bob reads it, marks it unread, deletes it (with the keyboard: Enter, then #).
    sign_out(&b).await;
    sign_in(&b, "bob", "bob's password").await;
    b.wait_text("#folder-inbox", "Lunch").await;
    b.wait_text("#unread-count", "1").await;
    b.find("#folder-inbox li.unread.sel").await;
    b.keys(&[ENTER]).await;
    b.wait_text("#subject", "Lunch").await;
    b.wait_text("#body", "noon").await;
    b.wait_text("#toggle-read", "Mark unread").await;
    b.screenshot("message").await;
    b.click("#toggle-read").await;
    b.wait_text("#toggle-read", "Mark read").await;
    b.wait_text("header nav", "Inbox (1)").await;
    b.keys(&["#"]).await;
    b.wait_text(".flash.ok", "Message deleted.").await;
    b.wait_text("#folder-inbox", "No messages.").await;

    // French.
    b.script(
        "const s = document.querySelector('header select'); s.value = 'fr'; s.dispatchEvent(new Event('change'));",
        serde_json::json!([]),
    )
    .await;
    b.wait_text("header nav", "Boîte de réception").await;
    b.wait_text("#folder-inbox", "Aucun message.").await;
    b.screenshot("inbox-fr").await;

    // A phone: 360 px wide, nothing wider than the screen.
    b.resize(360, 740).await;
    b.keys(&["c"]).await;
    b.find("#compose").await;
    let width = b.script("return document.documentElement.scrollWidth", serde_json::json!([])).await;
    let viewport = b.script("return window.innerWidth", serde_json::json!([])).await;
    assert!(width.as_u64().unwrap() <= viewport.as_u64().unwrap(), "page {width} px wide in a {viewport} px window");
    b.screenshot("compose-phone").await;
}

/// The bare page (no webmail build) under its hash-only Content-Security-Policy: its
/// inline script still runs in a real browser (a wrong hash would block it, and the
/// form would then do nothing).
#[tokio::test]
async fn the_bare_page_runs_under_its_content_security_policy() {
    let cluster = Cluster::start(vec![], true).await;
    let base = format!("https://127.0.0.1:{}", cluster.edge.unwrap().port());
    let b = Browser::start().await;
    b.goto(&format!("{base}/")).await;
    b.type_into("#name", "ada").await;
    b.type_into("#password", "ada's long password").await;
    b.click("#login button").await;
    b.wait_text("#me", "ada@bitmail.test").await;
}

/// In Chromium, mail from outside that claims our own domain and fails SPF opens with a
/// warning above it and the checks below it; mail from a user of the webmail has none.
#[tokio::test]
async fn a_forged_message_from_our_own_domain_opens_with_a_warning() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let mut provider = sendgrid("sendgrid", &fake, Duration::from_secs(5));
    if let mta_server::config::ProviderConfig::Sendgrid(c) = &mut provider {
        c.inbound_password = Some(bitmail_runtime::config::Secret::new("browser-inbound-password"));
    }
    let dir = common::web_dir();
    let cluster = Cluster::start_full(vec![provider], true, |_| {}, move |c| c.web_dir = Some(dir)).await;
    let base = format!("https://127.0.0.1:{}", cluster.edge.unwrap().port());
    let (http, api) = cluster.https_client();
    common::sign_in(&http, &api, "ada", "ada's long password").await;
    let forged = "From: The Boss <boss@bitmail.test>\r\nTo: ada@bitmail.test\r\nSubject: Wire the money\r\n\
                  Message-ID: <forged-2@evil.example>\r\n\r\nToday please.\r\n";
    let form = reqwest::multipart::Form::new()
        .text("email", forged)
        .text("envelope", r#"{"to":["ada@bitmail.test"],"from":"x@evil.example"}"#)
        .text("SPF", "fail");
    let answer = http
        .post(format!("{api}/webhooks/sendgrid/inbound"))
        .basic_auth("bitmail", Some("browser-inbound-password"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{:?}", answer.text().await);

    let b = Browser::start().await;
    b.goto(&format!("{base}/")).await;
    sign_in(&b, "ada", "ada's long password").await;
    b.wait_text("#folder-inbox", "Wire the money").await;
    b.keys(&[ENTER]).await;
    b.wait_text("#subject", "Wire the money").await;
    b.wait_text("#origin-warnings", "It may be forged").await;
    b.wait_text("#origin-warnings", "SPF or DKIM failed").await;
    b.wait_text("#verdicts", "SPF: fail").await;
    b.screenshot("forged-warning").await;
}

/// Each page has its own URL in Chromium: a sign-in on a message's address lands on that
/// message; back and forward through the history show the page each address names, and
/// so does a reload; `?page=N` is a folder's page. Then a phone: one bar above the mail,
/// and a menu with the other entries.
#[tokio::test]
async fn each_page_has_its_url_with_back_forward_and_reload_and_a_phone_has_one_bar() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start_webmail(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))]).await;
    let base = format!("https://127.0.0.1:{}", cluster.edge.unwrap().port());
    let ada = Session::new(&cluster, "ada").await;
    let bob = Session::new(&cluster, "bob").await;
    for subject in ["Agenda", "Minutes"] {
        let (status, answer) =
            bob.send(json!({ "to": "ada@bitmail.test", "subject": subject, "markdown": "See you." })).await;
        assert!(status.is_success(), "{answer}");
    }
    let (_, inbox) = ada.get("/api/folders/inbox").await;
    let id_of = |subject: &str| {
        let m = inbox["messages"].as_array().unwrap().iter().find(|m| m["subject"] == subject);
        m.unwrap_or_else(|| panic!("no {subject} in {inbox}"))["id"].as_str().unwrap().to_owned()
    };
    let (agenda, minutes) = (id_of("Agenda"), id_of("Minutes"));

    // Signed out on a message's address: the sign-in keeps it, and lands on the message.
    let b = Browser::start().await;
    b.goto(&format!("{base}/mail/{agenda}")).await;
    sign_in(&b, "ada", "a long password").await;
    b.wait_text("#subject", "Agenda").await;
    assert_eq!(here(&b).await, format!("/mail/{agenda}"));

    // The inbox, then a message: each a new entry in the history.
    moved(&b, "document.querySelector('header nav button').click()", "#folder-inbox", "Minutes", "/inbox").await;
    let row = format!("#folder-inbox li[data-id='{minutes}']");
    moved(&b, &format!("document.querySelector({row:?}).click()"), "#subject", "Minutes", &format!("/mail/{minutes}"))
        .await;
    moved(&b, "history.back()", "#folder-inbox", "Agenda", "/inbox").await;
    moved(&b, "history.back()", "#subject", "Agenda", &format!("/mail/{agenda}")).await;
    moved(&b, "history.forward()", "#folder-inbox", "Minutes", "/inbox").await;
    moved(&b, "history.forward()", "#subject", "Minutes", &format!("/mail/{minutes}")).await;
    // A reload keeps the place.
    reloaded(&b, "#subject", "Minutes", &format!("/mail/{minutes}")).await;

    // The status page and compose have theirs; back returns from one to the other.
    moved(&b, "document.querySelector('header nav button:nth-child(4)').click()", "#status", "Status", "/status").await;
    b.keys(&["c"]).await;
    b.find("#compose").await;
    assert_eq!(here(&b).await, "/compose");
    reloaded(&b, "#compose", "Subject", "/compose").await;
    moved(&b, "history.back()", "#status", "Status", "/status").await;

    // A folder's second page, by its address (two messages: it is empty), and back to
    // the first from it.
    b.goto(&format!("{base}/inbox?page=2")).await;
    b.wait_text("#folder-inbox", "No messages.").await;
    assert_eq!(here(&b).await, "/inbox?page=2");
    moved(&b, "document.querySelector('#newer').click()", "#folder-inbox", "Agenda", "/inbox").await;
    moved(&b, "history.back()", "#folder-inbox", "No messages.", "/inbox?page=2").await;

    // A phone, 360 x 740: one bar (inbox, compose, the menu) and the first mail right
    // below it.
    b.resize(360, 740).await;
    b.goto(&format!("{base}/inbox")).await;
    b.wait_text("#folder-inbox", "Minutes").await;
    assert_eq!(header_entries(&b).await, ["Inbox", "Compose", "menu-btn"]);
    let header = b.script("return document.querySelector('header').getBoundingClientRect().height", json!([])).await;
    assert!(header.as_f64().unwrap() <= 60.0, "the bar is {header} px high");
    let top =
        b.script("return document.querySelector('#folder-inbox li').getBoundingClientRect().top", json!([])).await;
    assert!(top.as_f64().unwrap() <= 120.0, "the first mail begins {top} px down");
    let width = b.script("return document.documentElement.scrollWidth - window.innerWidth", json!([])).await;
    assert!(width.as_i64().unwrap() <= 0, "the page is {width} px wider than the screen");
    b.screenshot("inbox-phone").await;

    // The menu holds the rest; an entry taken closes it.
    b.click("#menu-btn").await;
    let open = header_entries(&b).await;
    for entry in ["Sent", "Status", "Sign out"] {
        assert!(open.iter().any(|e| e == entry), "{entry} in the open menu: {open:?}");
    }
    let languages = b.script("return document.querySelector('header select').offsetWidth", json!([])).await;
    assert!(languages.as_u64().unwrap() > 0, "the language menu is in the open menu");
    b.screenshot("menu-phone").await;
    moved(&b, "document.querySelector('header nav button:nth-child(4)').click()", "#status", "Status", "/status").await;
    assert_eq!(header_entries(&b).await, ["Inbox", "Compose", "menu-btn"], "the menu closed");
    b.click("#menu-btn").await;
    b.click("header > button").await;
    b.find("#login").await;
    assert_eq!(here(&b).await, "/", "signed out, the next sign-in starts at the inbox");
}
