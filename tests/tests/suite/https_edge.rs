//! The HTTPS edge as a browser or script uses it: sign in (the first login creates the
//! account), send, see the message's status; and the refusals: no session, wrong
//! password, bad addresses, malformed JSON, another user's message, cross-origin writes.

use crate::common;

use std::time::Duration;

use bitmail_tests::sendgrid::FakeSendGrid;
use common::{Cluster, sendgrid};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The `name=value` part of the session cookie the answer sets, after checking its
/// attributes.
fn session_cookie(response: &reqwest::Response) -> String {
    let set = response.headers().get("set-cookie").expect("a session cookie").to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set} lacks {attribute}");
    }
    // `__Host-`: no other host can set or shadow it (and it may carry no Domain).
    assert!(set.starts_with("__Host-bitmail_session=") && !set.contains("Domain"), "{set}");
    set.split(';').next().unwrap().to_owned()
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("errors are JSON");
    (status, body["error"]["message"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn sign_in_send_and_follow_a_message_over_https() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))], true).await;
    let (http, base) = cluster.https_client();

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");

    // No session: 401, and nothing is sent.
    let anonymous =
        http.post(format!("{base}/api/messages")).json(&json!({ "to": ["bob@example.net"] })).send().await.unwrap();
    assert_eq!(error_of(anonymous).await.0, StatusCode::UNAUTHORIZED);

    let login = json!({ "name": "ada", "password": "analytical engine" });
    let first = http.post(format!("{base}/api/session")).json(&login).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let cookie = session_cookie(&first);
    let me: Value = first.json().await.unwrap();
    assert_eq!(me["address"], "ada@bitmail.test");
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();

    let wrong = json!({ "name": "ada", "password": "difference engine" });
    let refused = http.post(format!("{base}/api/session")).json(&wrong).send().await.unwrap();
    assert_eq!(error_of(refused).await.0, StatusCode::UNAUTHORIZED);

    let me = http.get(format!("{base}/api/session")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(me.json::<Value>().await.unwrap()["name"], "ada");

    let compose = json!({
        "to": ["Bob <bob@example.net>"], "cc": ["carol@example.net"],
        "subject": "Notes", "text": "Plain notes", "html": "<p>Notes</p>"
    });
    let sent = http
        .post(format!("{base}/api/messages"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&compose)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let id = sent.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let got = fake.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["from"]["email"], "ada@bitmail.test");
    assert_eq!(got[0].body["personalizations"][0]["to"][0], json!({ "email": "bob@example.net", "name": "Bob" }));
    assert_eq!(got[0].body["personalizations"][0]["cc"][0]["email"], "carol@example.net");

    let mut status = Value::Null;
    for _ in 0..100 {
        status = http
            .get(format!("{base}/api/mail/{id}"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["status"]["state"] == "sent" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status["status"]["state"], "sent", "{status}");
    assert_eq!(status["status"]["provider"], "sendgrid");
    assert_eq!(status["status"]["provider_message_id"], got[0].message_id.as_str());
    assert_eq!(status["html"], "<p>Notes</p>");

    let list: Value = http
        .get(format!("{base}/api/folders/sent"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["messages"][0]["id"], id.as_str());
    assert_eq!(list["messages"][0]["subject"], "Notes");
    assert_eq!(list["messages"][0]["status"]["state"], "sent");

    // Another user cannot see ada's message.
    let bob = http
        .post(format!("{base}/api/session"))
        .json(&json!({ "name": "bob", "password": "bob's password" }))
        .send()
        .await
        .unwrap();
    let bob_cookie = session_cookie(&bob);
    let peek = http.get(format!("{base}/api/mail/{id}")).header("cookie", &bob_cookie).send().await.unwrap();
    assert_eq!(peek.status(), StatusCode::NOT_FOUND);

    // Signing out ends the session.
    let out = http
        .delete(format!("{base}/api/session"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let after = http.get(format!("{base}/api/session")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_requests_get_clear_json_errors_and_send_nothing() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))], true).await;
    let (http, base) = cluster.https_client();
    let login = http
        .post(format!("{base}/api/session"))
        .json(&json!({ "name": "grace", "password": "cobol forever" }))
        .send()
        .await
        .unwrap();
    let cookie = session_cookie(&login);
    let csrf = login.json::<Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_owned();
    let post = |body: String| {
        http.post(format!("{base}/api/messages"))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let (status, message) =
        error_of(post(json!({ "to": ["not an address"], "subject": "s", "text": "t" }).to_string()).await.unwrap())
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message, "to: \"not an address\" is not a valid address");

    let (status, message) = error_of(
        post(json!({ "to": ["a@b.org"], "subject": "a\r\nBcc: c@d.org", "text": "t" }).to_string()).await.unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.starts_with("subject: "), "{message}");

    let (status, message) = error_of(post("{\"to\": [".into()).await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!message.is_empty());

    let (status, message) =
        error_of(post(json!({ "to": ["a@b.org"], "subjet": "typo" }).to_string()).await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("subjet"), "{message}");

    let huge = json!({ "to": ["a@b.org"], "subject": "s", "text": "x".repeat(12 * 1024 * 1024) });
    let (status, message) = error_of(post(huge.to_string()).await.unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(message.contains("larger"), "{message}");

    let cross = http
        .post(format!("{base}/api/messages"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .header("origin", "https://evil.example")
        .json(&json!({ "to": ["a@b.org"], "subject": "s", "text": "t" }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(cross).await.0, StatusCode::FORBIDDEN);

    let short = http
        .post(format!("{base}/api/session"))
        .json(&json!({ "name": "x", "password": "short" }))
        .send()
        .await
        .unwrap();
    let (status, message) = error_of(short).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.starts_with("password"), "{message}");

    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.requests(), 0, "nothing reached the provider");
}

#[tokio::test]
async fn every_answer_asks_for_https_and_the_bare_page_runs_only_its_own_code() {
    let cluster = Cluster::start(vec![], true).await;
    let (http, base) = cluster.https_client();
    for path in ["/", "/healthz", "/api/session", "/no/such/file"] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.headers()["strict-transport-security"], "max-age=31536000", "{path}");
    }
    // Without a webmail build, `/` is the bare page: its inline script and style are
    // allowed by hash, nothing else.
    let page = http.get(format!("{base}/")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let inline = |open: &str, close: &str| {
        let start = html.find(open).unwrap() + open.len();
        let end = start + html[start..].find(close).unwrap();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &html.as_bytes()[start..end]);
        use base64::Engine as _;
        format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
    };
    assert!(csp.contains(&format!("script-src {}", inline("<script>", "</script>"))), "{csp}");
    assert!(csp.contains(&format!("style-src {}", inline("<style>", "</style>"))), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{csp}");
}
