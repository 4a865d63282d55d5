//! The webmail's JSON API as the browser uses it, and its refusals: local delivery,
//! folders with unread counts, read/unread, delete; another user's mail is invisible;
//! state changes need the CSRF token; hostile HTML is made inert; password guessing is
//! throttled; recipient lists name their bad addresses.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_tests::sendgrid::FakeSendGrid;
use common::{Cluster, Session, sendgrid, sign_in};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn local_mail_is_delivered_read_marked_and_deleted_by_its_owner_only() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))], true).await;
    let ada = Session::new(&cluster, "ada").await;
    let bob = Session::new(&cluster, "bob").await;

    // To bob (local) and carol (external), one string separated by ';'.
    let (status, sent) = ada
        .send(json!({ "to": "Bob <bob@bitmail.test>; carol@example.net", "subject": "Tea", "markdown": "Come at **five**" }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["local_to"], json!(["bob@bitmail.test"]));
    let outside = fake.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(outside[0].body["personalizations"][0]["to"], json!([{ "email": "carol@example.net" }]));

    let (_, inbox) = bob.get("/api/folders/inbox").await;
    assert_eq!(inbox["total"], 1);
    assert_eq!(inbox["unread"], 1);
    let mail = &inbox["messages"][0];
    assert_eq!(mail["from"], "ada@bitmail.test");
    assert_eq!(mail["subject"], "Tea");
    assert_eq!(mail["read"], false);
    let id = mail["id"].as_str().unwrap().to_owned();

    let (status, opened) = bob.get(&format!("/api/mail/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(opened["html"], "<p>Come at <strong>five</strong></p>\n");
    assert_eq!(opened["text"], "Come at **five**");

    // ada cannot list, read, mark or delete bob's message: it does not exist for her.
    let (_, ada_inbox) = ada.get("/api/folders/inbox").await;
    assert_eq!(ada_inbox["total"], 0);
    assert_eq!(ada.get(&format!("/api/mail/{id}")).await.0, StatusCode::NOT_FOUND);
    let mark = Some(json!({ "read": true }));
    assert_eq!(
        ada.call(reqwest::Method::PATCH, &format!("/api/mail/{id}"), mark.clone()).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(ada.call(reqwest::Method::DELETE, &format!("/api/mail/{id}"), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(ada.get(&format!("/api/mail/{id}/attachments/0")).await.0, StatusCode::NOT_FOUND);

    // bob marks it read, then unread.
    let (status, marked) = bob.call(reqwest::Method::PATCH, &format!("/api/mail/{id}"), mark).await;
    assert_eq!((status, &marked["read"]), (StatusCode::OK, &json!(true)));
    assert_eq!(bob.get("/api/folders/inbox").await.1["unread"], 0);
    bob.call(reqwest::Method::PATCH, &format!("/api/mail/{id}"), Some(json!({ "read": false }))).await;
    assert_eq!(bob.get("/api/folders/inbox").await.1["unread"], 1);

    // ada's Sent shows both recipients and the delivery.
    let mut sent_list = Value::Null;
    for _ in 0..100 {
        sent_list = ada.get("/api/folders/sent").await.1;
        if sent_list["messages"][0]["status"]["state"] == "sent" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let entry = &sent_list["messages"][0];
    assert_eq!(entry["to"], json!(["Bob <bob@bitmail.test>", "carol@example.net"]));
    assert_eq!(entry["status"]["provider"], "sendgrid", "{entry}");
    assert_eq!(entry["status"]["local_to"], json!(["bob@bitmail.test"]));

    // Newest first, paged.
    for n in 0..3 {
        ada.send(json!({ "to": ["bob@bitmail.test"], "subject": format!("n{n}"), "text": "x" })).await;
    }
    let (_, page) = bob.get("/api/folders/inbox?page=0&per_page=2").await;
    assert_eq!(page["total"], 4);
    let subjects: Vec<&str> =
        page["messages"].as_array().unwrap().iter().map(|m| m["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, ["n2", "n1"]);
    let (_, page2) = bob.get("/api/folders/inbox?page=1&per_page=2").await;
    assert_eq!(page2["messages"][1]["subject"], "Tea");
    assert_eq!(bob.get("/api/folders/spam").await.0, StatusCode::NOT_FOUND);

    let (status, _) = bob.call(reqwest::Method::DELETE, &format!("/api/mail/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(bob.get(&format!("/api/mail/{id}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(bob.get("/api/folders/inbox").await.1["total"], 3);
}

#[tokio::test]
async fn state_changes_without_the_csrf_token_are_refused() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))], true).await;
    let ada = Session::new(&cluster, "ada").await;
    ada.send(json!({ "to": "ada@bitmail.test", "subject": "self", "text": "note" })).await;
    let id = ada.get("/api/folders/inbox").await.1["messages"][0]["id"].as_str().unwrap().to_owned();

    let without = |method: reqwest::Method, path: &str, token: Option<&str>| {
        let mut r = ada.http.request(method, format!("{}{path}", ada.base)).header("cookie", &ada.cookie);
        if let Some(t) = token {
            r = r.header("x-csrf-token", t);
        }
        r.json(&json!({ "read": true })).send()
    };
    for token in [None, Some("0".repeat(64).as_str())] {
        for (method, path) in [
            (reqwest::Method::PATCH, format!("/api/mail/{id}")),
            (reqwest::Method::DELETE, format!("/api/mail/{id}")),
            (reqwest::Method::POST, "/api/messages".to_owned()),
            (reqwest::Method::DELETE, "/api/session".to_owned()),
        ] {
            let response = without(method.clone(), &path, token).await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "csrf");
        }
    }
    // Nothing changed: still unread, still there, nothing more sent, still signed in.
    let (_, inbox) = ada.get("/api/folders/inbox").await;
    assert_eq!((inbox["total"].clone(), inbox["unread"].clone()), (json!(1), json!(1)));
    assert_eq!(ada.get("/api/session").await.0, StatusCode::OK);
}

#[tokio::test]
async fn hostile_html_is_inert_and_remote_images_wait_for_the_reader() {
    let cluster = Cluster::start(vec![], true).await;
    let bob = Session::new(&cluster, "bob").await;
    let bob_id = bob.get("/api/session").await.1["name"].clone();
    assert_eq!(bob_id, "bob");
    // An inbound message as the store holds it.
    let mut store = cluster.store_client().await;
    let users = store
        .lookup(pb::LookupRequest {
            subset: HashMap::from([("kind".into(), "user".into()), ("name".into(), "bob".into())]),
            limit: 1,
            page_token: String::new(),
            newest_first: false,
        })
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let Some(pb::lookup_response::Item::Document(user)) = users.item else { panic!("bob exists") };
    let fields = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let mail_id = store
        .put(pb::PutRequest {
            fields: fields(&[
                ("kind", "mail"),
                ("owner", &user.id),
                ("folder", "inbox"),
                ("from", "mallory@evil.example"),
                ("to", "[\"bob@bitmail.test\"]"),
                ("subject", "Invoice"),
                ("date_ms", "1"),
                ("read", "false"),
            ]),
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let html = r#"<p onmouseover="steal()">Pay <a href="javascript:alert(document.cookie)">here</a></p>
        <script>fetch('/api/session')</script><img src="https://tracker.evil.example/open.gif" onerror="alert(1)">
        <iframe src="https://evil.example"></iframe><form action="https://evil.example"><input name=p></form>"#;
    store
        .put(pb::PutRequest {
            fields: fields(&[("kind", "body"), ("mail_id", &mail_id), ("owner", &user.id), ("html", html)]),
        })
        .await
        .unwrap();

    let (status, opened) = bob.get(&format!("/api/mail/{mail_id}")).await;
    assert_eq!(status, StatusCode::OK);
    let shown = opened["html"].as_str().unwrap();
    for bad in ["<script", "onmouseover", "onerror", "javascript:", "<iframe", "<form", "<input", "tracker.evil"] {
        assert!(!shown.contains(bad), "{bad} survived: {shown}");
    }
    assert!(shown.contains("Pay"), "{shown}");
    assert_eq!(opened["remote_images_blocked"], true);

    let (_, with_images) = bob.get(&format!("/api/mail/{mail_id}?images=true")).await;
    let shown = with_images["html"].as_str().unwrap();
    assert!(shown.contains(r#"src="https://tracker.evil.example/open.gif""#), "{shown}");
    assert!(!shown.contains("onerror"), "{shown}");
}

#[tokio::test]
async fn recipients_are_checked_and_named_and_attachments_limited() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start_full(
        vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))],
        true,
        |_| {},
        |c| c.max_attachment_bytes = 1000,
    )
    .await;
    let ada = Session::new(&cluster, "ada").await;

    let (status, body) = ada.send(json!({ "to": "ok@example.org; nope, also bad@", "cc": "x@y", "text": "t" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["message"], r#"to: "nope", "also bad@" are not valid addresses"#);

    let (status, body) = ada.send(json!({ "to": "ghost@bitmail.test", "text": "t" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["message"], "to: there is no user ghost@bitmail.test here");

    let (status, body) = ada.send(json!({ "to": "", "text": "t" })).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("to: at least one recipient is needed"))
    );

    let big = "QUFB".repeat(400); // 1200 bytes
    let (status, body) = ada
        .send(json!({ "to": "a@example.org", "text": "t", "attachments": [{ "filename": "big.bin", "content_base64": big }] }))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("attachments: "), "{body}");

    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.requests(), 0, "nothing was sent");
    assert_eq!(ada.get("/api/folders/sent").await.1["total"], 0, "nothing was recorded");
}

#[tokio::test]
async fn repeated_wrong_passwords_are_throttled_without_locking_the_owner_out() {
    let cluster = Cluster::start(vec![], true).await;
    let (http, base) = cluster.https_client();
    sign_in(&http, &base, "ada", "the right password").await;
    let attempt = |http: &reqwest::Client, password: &'static str| {
        http.post(format!("{base}/api/session")).json(&json!({ "name": "ada", "password": password })).send()
    };
    // Five wrong guesses in parallel: each is counted before it is checked.
    let guesses: Vec<_> = (0..5)
        .map(|_| {
            let (http, url) = (http.clone(), format!("{base}/api/session"));
            tokio::spawn(async move {
                http.post(url).json(&json!({ "name": "ada", "password": "a wrong password" })).send().await.unwrap()
            })
        })
        .collect();
    for guess in guesses {
        let r = guess.await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "wrong_password");
    }
    // From here, even the right password waits: guessing slows down.
    let r = attempt(&http, "the right password").await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let message = r.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("try again in 1 s"), "{message}");
    // ada herself, from another address, is not locked out by the guesser.
    let pem = std::fs::read(cluster.cert.as_ref().unwrap()).unwrap();
    let elsewhere = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .resolve("localhost", cluster.edge.unwrap())
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    assert_eq!(attempt(&elsewhere, "the right password").await.unwrap().status(), StatusCode::OK);
    // And after the back-off, the right password works from the first address too.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(attempt(&http, "the right password").await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn first_login_cannot_take_the_domains_role_names() {
    let cluster = Cluster::start(vec![], true).await;
    let (http, base) = cluster.https_client();
    for name in ["postmaster", "abuse", "admin", "hostmaster", "webmaster", "root", "security"] {
        let r = http
            .post(format!("{base}/api/session"))
            .json(&json!({ "name": name, "password": "a password of mine" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("is reserved"), "{name}: {body}");
    }
    // Nothing was made: the store holds no user of those names.
    let mut store = cluster.store_client().await;
    let lookup = pb::LookupRequest {
        subset: [("kind".to_owned(), "user".to_owned()), ("name".to_owned(), "postmaster".to_owned())].into(),
        limit: 10,
        page_token: String::new(),
        newest_first: false,
    };
    let mut found = store.lookup(lookup).await.unwrap().into_inner();
    let mut users = 0;
    while let Some(item) = found.message().await.unwrap() {
        users += usize::from(matches!(item.item, Some(pb::lookup_response::Item::Document(_))));
    }
    assert_eq!(users, 0);
    // Other names still sign up as before.
    sign_in(&http, &base, "postmistress", "a password of mine").await;
}

#[tokio::test]
async fn the_status_page_shows_a_user_only_their_own_deliveries() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))], true).await;
    let ada = Session::new(&cluster, "ada").await;
    let bob = Session::new(&cluster, "bob").await;
    let (status, sent) = ada.send(json!({ "to": "carol@example.net", "subject": "Mine", "markdown": "hi" })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let mta_id = sent["mta_id"].as_str().unwrap().to_owned();
    fake.wait_for(1, Duration::from_secs(10)).await;

    let recent = |page: &Value| -> Vec<String> {
        page["recent"].as_array().unwrap().iter().map(|d| d["message_id"].as_str().unwrap().to_owned()).collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, page) = ada.get("/api/status").await;
        assert_eq!(status, StatusCode::OK);
        if recent(&page) == vec![mta_id.clone()] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "ada never saw her delivery: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, page) = bob.get("/api/status").await;
    assert!(recent(&page).is_empty(), "bob sees none of ada's deliveries: {page}");
    assert_eq!(page["providers"][0]["name"], "sendgrid", "the providers' health is everyone's");
}

#[tokio::test]
async fn a_message_with_a_huge_subject_still_lists_opens_and_deletes() {
    let cluster = Cluster::start(vec![], true).await;
    let ada = Session::new(&cluster, "ada").await;
    let bob = Session::new(&cluster, "bob").await;
    // Over tonic's 4 MiB default: the list entry alone would have made bob's inbox
    // unreadable by the edge (and the message undeletable from it).
    let subject = "S".repeat(5 << 20);
    let (status, sent) =
        ada.send(json!({ "to": "bob@bitmail.test", "subject": subject, "markdown": "the words" })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");

    let (status, inbox) = bob.get("/api/folders/inbox").await;
    assert_eq!(status, StatusCode::OK, "{inbox}");
    assert_eq!(inbox["total"], 1);
    let listed = inbox["messages"][0]["subject"].as_str().unwrap().to_owned();
    assert_eq!(listed.chars().count(), 999, "998 characters and an ellipsis");
    assert!(listed.ends_with('…'));
    let id = inbox["messages"][0]["id"].as_str().unwrap().to_owned();
    let (status, opened) = bob.get(&format!("/api/mail/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(opened["text"], "the words");
    let (status, _) = bob.call(reqwest::Method::DELETE, &format!("/api/mail/{id}"), None).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(bob.get("/api/folders/inbox").await.1["total"], 0);
}

#[tokio::test]
async fn one_address_makes_at_most_ten_accounts_in_fifteen_minutes() {
    let cluster = Cluster::start(vec![], true).await;
    let (http, base) = cluster.https_client();
    for i in 0..10 {
        sign_in(&http, &base, &format!("user{i}"), "a password of mine").await;
    }
    let r = http
        .post(format!("{base}/api/session"))
        .json(&json!({ "name": "user10", "password": "a password of mine" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("too many new accounts from this address"), "{body}");
    // Existing accounts still sign in from there.
    sign_in(&http, &base, "user3", "a password of mine").await;
}

/// The sessions in the store: (name, expires_at) of each.
async fn stored_sessions(cluster: &Cluster) -> Vec<(String, String)> {
    let request = pb::LookupRequest {
        subset: HashMap::from([("kind".to_owned(), "session".to_owned())]),
        limit: 1000,
        page_token: String::new(),
        newest_first: false,
    };
    let mut stream = cluster.store_client().await.lookup(request).await.unwrap().into_inner();
    let mut sessions = Vec::new();
    while let Some(item) = stream.message().await.unwrap() {
        if let Some(pb::lookup_response::Item::Document(d)) = item.item {
            let field = |k: &str| d.fields.get(k).cloned().unwrap_or_default();
            sessions.push((field("name"), field("expires_at")));
        }
    }
    sessions
}

#[tokio::test]
async fn sessions_past_expiry_are_deleted_without_being_presented() {
    let cluster = Cluster::start_full(vec![], true, |_| {}, |c| c.session_sweep_secs = 1).await;
    let ada = Session::new(&cluster, "ada").await;
    // Sessions that expired while nobody presented them again (one without an expiry
    // at all, as a damaged document would be).
    let mut store = cluster.store_client().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for (name, expires_at) in [("old1", Some(now - 10)), ("old2", Some(now - 100_000)), ("old3", None)] {
        let mut fields = HashMap::from([
            ("kind".to_owned(), "session".to_owned()),
            ("token_sha256".to_owned(), format!("{name:0>64}")),
            ("name".to_owned(), name.to_owned()),
        ]);
        if let Some(at) = expires_at {
            fields.insert("expires_at".into(), at.to_string());
        }
        store.put(pb::PutRequest { fields }).await.unwrap();
    }

    let left = bitmail_tests::eventually::eventually(
        Duration::from_secs(10),
        "the expired sessions deleted",
        || stored_sessions(&cluster),
        |sessions| sessions.len() == 1,
    )
    .await;
    assert_eq!(left[0].0, "ada", "the live session stays: {left:?}");
    let (status, me) = ada.get("/api/session").await;
    assert_eq!(status, StatusCode::OK, "{me}");
}

/// The per-address cap on failed sign-ins holds on every edge together: two failures on
/// one edge and two on another use up a cap of four, and then both refuse the address,
/// even with the right password, until the window ends.
#[tokio::test]
async fn failed_sign_ins_count_on_every_edge_together() {
    let cap = |c: &mut client_api::config::Config| c.signin_failures_per_address = 4;
    let cluster = Cluster::start_full(vec![], true, |_| {}, cap).await;
    let (a, base_a) = cluster.https_client();
    let (b, base_b) = cluster.another_edge(cap).await;
    for name in ["ada", "bob", "carol", "dave"] {
        sign_in(&a, &base_a, name, "the right password").await;
    }
    let attempt = |http: &reqwest::Client, base: &str, name: &str, password: &str| {
        let request = http.post(format!("{base}/api/session")).json(&json!({ "name": name, "password": password }));
        async move { request.send().await.unwrap().status() }
    };
    // Different names, so that no (name, address) pair backs off.
    assert_eq!(attempt(&a, &base_a, "ada", "a wrong password").await, StatusCode::UNAUTHORIZED);
    assert_eq!(attempt(&a, &base_a, "bob", "a wrong password").await, StatusCode::UNAUTHORIZED);
    assert_eq!(attempt(&b, &base_b, "carol", "a wrong password").await, StatusCode::UNAUTHORIZED);
    assert_eq!(attempt(&b, &base_b, "dave", "a wrong password").await, StatusCode::UNAUTHORIZED);
    // Edge a saw two failures only; the address has four on the edges together.
    assert_eq!(attempt(&a, &base_a, "ada", "the right password").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(attempt(&b, &base_b, "bob", "the right password").await, StatusCode::TOO_MANY_REQUESTS);
}
