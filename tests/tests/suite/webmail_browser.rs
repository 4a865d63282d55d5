//! The webmail in headless Chromium, used the way a person does: the first sign-in
//! creates the account, a wrong password is refused, a Markdown message with an
//! attachment goes to two recipients separated by `;`, Sent shows the provider, a second
//! user receives a local message, opens it, marks it unread and deletes it, the French
//! interface, a phone-sized screen, the status page, the warning on forged mail from our own
//! domain. A screenshot of each main page is
//! saved in target/screenshots/.

use crate::common;
use crate::webdriver;

use std::time::Duration;

use bitmail_tests::sendgrid::FakeSendGrid;
use common::{Cluster, sendgrid};
use webdriver::Browser;

const CONTROL: &str = "\u{E009}";
const ENTER: &str = "\u{E007}";

async fn sign_in(b: &Browser, name: &str, password: &str) {
    b.find("#login").await;
    b.type_into("#name", name).await;
    b.type_into("#password", password).await;
    b.click("#sign-in").await;
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
