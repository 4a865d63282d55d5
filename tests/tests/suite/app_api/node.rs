//! Both shapes through the official Node SDKs, `@sendgrid/mail` 8.1 and `mailgun.js` 14.

use serde_json::{Value, json};

use super::App;

fn to_of(body: &Value) -> &str {
    body["personalizations"][0]["to"][0]["email"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn sendgrid_mail_for_node_sends_each_personalization_and_sees_sendgrids_errors() {
    let app = App::start().await;
    let answer = app.node("sendgrid_rich", json!({})).await;
    assert_eq!((answer.status, answer.raised.as_deref()), (202, None), "{answer:?}");
    let ids = answer.ids();
    assert_eq!(ids.len(), 2, "{answer:?}");
    assert_eq!(answer.header("x-message-id"), ids[0]);
    let bob = app.delivered(&ids[0]).await;
    assert_eq!(to_of(&bob), "bob@example.net");
    assert_eq!(bob["personalizations"][0]["cc"][0]["email"], "carol@example.net");
    assert_eq!(
        (bob["custom_args"]["user"].as_str(), bob["custom_args"]["app"].as_str()),
        (Some("bob"), Some("billing"))
    );
    let logo = bob["attachments"].as_array().unwrap().iter().find(|a| a["filename"] == "logo.png").cloned().unwrap();
    assert_eq!((logo["disposition"].as_str(), logo["content_id"].as_str()), (Some("inline"), Some("logo")));
    let eve = app.delivered(&ids[1]).await;
    assert_eq!((to_of(&eve), eve["subject"].as_str()), ("eve@example.net", Some("Eve's report")));

    let sandbox = app.node("sendgrid_plain", json!({ "sandbox": true })).await;
    assert_eq!(sandbox.status, 200, "{sandbox:?}");
    let wrong = app.node("sendgrid_plain", json!({ "key": "bmk_000000000000_wrongsecretwrongsecret" })).await;
    assert_eq!((wrong.status, wrong.raised.as_deref()), (401, Some("ResponseError")), "{wrong:?}");
    let outside = app.node("sendgrid_plain", json!({ "from": "ada@elsewhere.test" })).await;
    assert_eq!(outside.status, 403, "{outside:?}");
    assert_eq!(outside.json()["errors"][0]["field"], "from.email", "{outside:?}");
    assert_eq!(app.received_after_a_moment().await, 2, "only the two personalizations were sent");
}

#[tokio::test]
async fn mailgun_js_sends_a_copy_per_recipient_and_sees_mailguns_errors() {
    let app = App::start().await;
    let answer = app.node("mailgun_rich", json!({})).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = answer.json();
    assert_eq!(body["message"], "Queued. Thank you.");
    let id = body["id"].as_str().unwrap().trim_start_matches('<').split('@').next().unwrap().to_owned();
    let bob = app.delivered(&id).await;
    assert_eq!((to_of(&bob), bob["subject"].as_str()), ("bob@example.net", Some("Hello Bob")));
    assert_eq!(bob["custom_args"]["order"], "11");
    let files: Vec<&str> =
        bob["attachments"].as_array().unwrap().iter().map(|a| a["filename"].as_str().unwrap()).collect();
    assert_eq!(files, ["report.pdf", "logo.png"]);
    // mailgun.js sends booleans as yes/no.
    let test = app.node("mailgun_plain", json!({ "extra": { "o:testmode": true } })).await;
    assert_eq!(test.status, 200, "{test:?}");

    let unknown = app.node("mailgun_plain", json!({ "domain": "not-ours.test" })).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(unknown.body.contains("Domain not found"), "{unknown:?}");
    let wrong = app.node("mailgun_plain", json!({ "key": "bmk_000000000000_wrongsecretwrongsecret" })).await;
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert_eq!(app.received_after_a_moment().await, 2, "the two recipients' copies, nothing else");
}
