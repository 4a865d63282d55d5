//! The admin console's JSON API and the webmail's own sending limits, over real sockets:
//! backend-server, mta-server (a fake SendGrid behind it) and client-api, each on its
//! own loopback port, client-api holding a `service` key and an `admin` key as a
//! deployment does. The first admin is made the way `client-api create-user --admin`
//! makes one. The services are started in `deployment`.

pub(crate) mod deployment;
mod webhooks;

use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_tests::eventually::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;

use deployment::{Deployment, Session};

/// Every admin endpoint, with a body where it takes one.
fn every_admin_endpoint() -> Vec<(&'static str, &'static str, Option<Value>)> {
    let tenant = json!({ "id": "acme", "display_name": "Acme", "domains": ["acme.test"] });
    vec![
        ("GET", "/api/admin/tenants", None),
        ("POST", "/api/admin/tenants", Some(tenant)),
        ("PATCH", "/api/admin/tenants/default", Some(json!({ "display_name": "x" }))),
        ("GET", "/api/admin/tenants/default/keys", None),
        ("POST", "/api/admin/tenants/default/keys", Some(json!({ "name": "k", "scopes": ["send"] }))),
        ("POST", "/api/admin/keys/abcdefghijkl/revoke", None),
        ("GET", "/api/admin/tenants/default/usage", None),
        ("GET", "/api/admin/tenants/default/webhooks", None),
        ("GET", "/api/admin/providers", None),
        ("POST", "/api/admin/providers/sendgrid/pause", None),
        ("POST", "/api/admin/providers/sendgrid/resume", None),
        ("GET", "/api/admin/suppressions?q=a&limit=10", None),
        ("POST", "/api/admin/suppressions", Some(json!({ "address": "x@example.net" }))),
        ("DELETE", "/api/admin/suppressions/x@example.net", None),
        ("GET", "/api/admin/audit", None),
        ("GET", "/api/admin/audit.csv", None),
    ]
}

#[tokio::test]
async fn a_user_who_is_not_an_admin_gets_403_from_every_admin_endpoint() {
    let d = Deployment::start(|_| {}).await;
    let bob = d.sign_in("bob").await;
    let (status, me) = bob.call("GET", "/api/session", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (me["name"].as_str(), me["tenant"].as_str(), me["role"].as_str()),
        (Some("bob"), Some("default"), Some("user"))
    );

    for (method, path, body) in every_admin_endpoint() {
        let (status, answer) = bob.call(method, path, body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden", "{method} {path}: {answer}");
        // Not signed in: 401, as everywhere.
        let anonymous = Session { cookie: String::new(), csrf: String::new(), ..bob.clone() };
        let (status, _) = anonymous.call(method, path, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} without a session");
    }
    // Nothing was changed by the refused calls.
    let tenants = d.admin_grpc().await.list_tenants(pb::ListTenantsRequest::default()).await.unwrap().into_inner();
    assert_eq!(tenants.tenants.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["default"]);
    assert!(d.fake.received().is_empty());
}

#[tokio::test]
async fn create_user_makes_the_first_admin_and_refuses_a_taken_name_or_a_short_password() {
    let d = Deployment::start(|_| {}).await;
    d.create_user("ops", "default", true).await.unwrap();
    let taken = d.create_user("ops", "default", false).await.unwrap_err();
    assert!(taken.contains("already a user named \"ops\""), "{taken}");
    let args =
        client_api::create_user::CreateUser { config: None, name: "eve".into(), tenant: "default".into(), admin: true };
    let short = client_api::create_user::create_user(&args, &d.edge_config, "short").await.unwrap_err();
    assert!(short.contains("password"), "{short}");
    assert!(d.create_user("eve", "Not A Tenant", true).await.unwrap_err().contains("tenant"));
    assert_eq!(client_api::create_user::password_line("secret words\r\nmore\n"), "secret words");

    let ops = d.sign_in("ops").await;
    let (_, me) = ops.call("GET", "/api/session", None).await;
    assert_eq!(me["role"], "admin");
    // A state change without the CSRF token is refused, admin or not.
    let no_csrf = Session { csrf: String::new(), ..ops.clone() };
    let (status, answer) = no_csrf.call("POST", "/api/admin/providers/sendgrid/pause", None).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("csrf")));
}

#[tokio::test]
async fn without_mta_admin_key_the_console_api_answers_503_saying_so() {
    let d = Deployment::start(|c| c.mta_admin_key = None).await;
    d.create_user("ops", "default", true).await.unwrap();
    let ops = d.sign_in("ops").await;
    let (status, answer) = ops.call("GET", "/api/admin/tenants", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer["error"]["message"].as_str().unwrap().contains("mta_admin_key"), "{answer}");
}

fn message(from: &str) -> pb::SubmitRequest {
    pb::SubmitRequest {
        from: from.into(),
        to: vec!["bob@example.net".into()],
        subject: "Hello".into(),
        text: "Hi".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_admin_creates_a_tenant_and_a_key_sees_it_used_revokes_it_and_finds_it_all_in_the_audit_log() {
    let d = Deployment::start(|_| {}).await;
    d.create_user("ada", "default", true).await.unwrap();
    let ada = d.sign_in("ada").await;
    let console_key = d.admin_grpc().await.who_am_i(pb::WhoAmIRequest {}).await.unwrap().into_inner().key_prefix;
    let actor = format!("user:ada via key:{console_key}");

    // Bad input: 400 naming the field, nothing created.
    let bad = [
        (json!({ "id": "Not A Slug", "display_name": "Acme", "domains": ["acme.test"] }), "id"),
        (json!({ "id": "acme", "display_name": "Acme", "domains": ["not a domain"] }), "domains"),
        (json!({ "id": "acme", "display_name": "Acme" }), "domains"),
        (
            json!({ "id": "acme", "display_name": "Acme", "domains": ["acme.test"],
                    "quotas": { "per_day": -1, "per_second": 1.0, "burst": 1, "max_recipients": 1, "max_message_bytes": 1 } }),
            "quotas.per_day",
        ),
    ];
    for (body, field) in bad {
        let (status, answer) = ada.call("POST", "/api/admin/tenants", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message} does not name {field}");
    }
    let (_, list) = ada.call("GET", "/api/admin/tenants", None).await;
    assert_eq!(list["tenants"].as_array().unwrap().len(), 1, "{list}");

    // A tenant, then an edit.
    let body = json!({ "id": "acme", "display_name": "Acme", "domains": ["acme.test"] });
    let (status, tenant) = ada.call("POST", "/api/admin/tenants", Some(body.clone())).await;
    assert_eq!(status, StatusCode::OK, "{tenant}");
    assert_eq!((tenant["id"].as_str(), tenant["state"].as_str()), (Some("acme"), Some("active")));
    assert!(tenant["quotas"]["per_day"].as_u64().unwrap() > 0 && tenant["created_ms"].as_u64().unwrap() > 0);
    let (status, _) = ada.call("POST", "/api/admin/tenants", Some(body)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let version = tenant["version"].as_u64().unwrap();
    let patch = json!({ "quotas": { "per_day": 500 }, "expected_version": version });
    let (status, edited) = ada.call("PATCH", "/api/admin/tenants/acme", Some(patch.clone())).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["quotas"]["per_day"], 500);
    assert_eq!(edited["quotas"]["burst"], tenant["quotas"]["burst"], "the quotas not given stay");
    let (status, _) = ada.call("PATCH", "/api/admin/tenants/acme", Some(patch)).await;
    assert_eq!(status, StatusCode::CONFLICT, "a stale expected_version");
    let (status, _) = ada.call("PATCH", "/api/admin/tenants/nobody", Some(json!({ "display_name": "x" }))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A key: the secret shown once.
    let (status, created) =
        ada.call("POST", "/api/admin/tenants/acme/keys", Some(json!({ "name": "ci", "scopes": ["send"] }))).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let key = created["key"].clone();
    assert!(secret.starts_with(key["prefix"].as_str().unwrap()) && secret.starts_with("bmk_"), "{created}");
    assert_eq!((key["tenant"].as_str(), key["revoked_ms"].as_u64()), (Some("acme"), Some(0)));
    assert_eq!(key["created_by"].as_str(), Some(actor.as_str()));
    let (_, keys) = ada.call_text("GET", "/api/admin/tenants/acme/keys", None).await;
    assert!(keys.contains(key["prefix"].as_str().unwrap()) && !keys.contains(&secret), "{keys}");
    let (status, answer) =
        ada.call("POST", "/api/admin/tenants/acme/keys", Some(json!({ "name": "x", "scopes": ["root"] }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"]["message"].as_str().unwrap().contains("scopes[0]"), "{answer}");

    // Sending with it over gRPC, and the message in the tenant's usage.
    let mut mta = d.mta_with(&secret).await;
    mta.submit(message("app@acme.test")).await.expect("the new key sends");
    let usage = eventually(
        Duration::from_secs(10),
        "the message counted in acme's usage",
        || async { ada.call("GET", "/api/admin/tenants/acme/usage", None).await.1 },
        |u| u["days"].as_array().and_then(|d| d.last()).and_then(|d| d["messages"].as_u64()) == Some(1),
    )
    .await;
    assert_eq!(usage["days"].as_array().unwrap().len(), 31);
    assert_eq!((usage["tenant"].as_str(), usage["per_day"].as_u64()), (Some("acme"), Some(500)));

    // Revoked: the next send is refused.
    let path = format!("/api/admin/keys/{}/revoke", key["id"].as_str().unwrap());
    let (status, revoked) = ada.call("POST", &path, None).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked_ms"].as_u64().unwrap() > 0);
    let refused = mta.submit(message("app@acme.test")).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let (status, _) = ada.call("POST", &path, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "revoked twice");

    // The audit log: every change, by ada through the console's key.
    let (status, audit) = ada.call("GET", "/api/admin/audit?tenant=acme&limit=50", None).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["tenant.create", "tenant.update", "key.create", "key.revoke"], "{audit}");
    for e in entries {
        assert_eq!(e["actor"].as_str(), Some(actor.as_str()), "{e}");
        assert_eq!(e["address"].as_str(), Some("127.0.0.1"), "{e}");
    }
    assert_eq!(entries[3]["target"].as_str(), key["prefix"].as_str());
    assert!(!audit.to_string().contains(&secret), "the secret is not in the audit log");
    let since = entries[2]["at_ms"].as_u64().unwrap();
    let (_, later) = ada.call("GET", &format!("/api/admin/audit?tenant=acme&since_ms={since}"), None).await;
    assert!(later["entries"].as_array().unwrap().iter().all(|e| e["at_ms"].as_u64().unwrap() >= since), "{later}");
    let (status, answer) = ada.call("GET", "/api/admin/audit?since_ms=yesterday", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"]["message"].as_str().unwrap().contains("since_ms"));

    // And in the CSV export.
    let response = d
        .http
        .get(format!("{}/api/admin/audit.csv?tenant=acme", d.base))
        .header("cookie", &ada.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert_eq!(response.headers()["content-disposition"], "attachment; filename=\"bitmail-audit.csv\"");
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "at,actor,address,action,tenant,target,before,after");
    assert_eq!(lines.len(), 5, "{csv}");
    for (line, action) in lines[1..].iter().zip(["tenant.create", "tenant.update", "key.create", "key.revoke"]) {
        assert!(line.contains(&format!(",{actor},127.0.0.1,{action},acme,")), "{line}");
        assert!(line.as_bytes()[10] == b'T' && line[..30].contains('Z'), "{line}");
    }
    // JSON values are quoted, their quotes doubled.
    assert!(csv.contains(r#","{""addresses"":[],""display_name"":""Acme"","#), "{csv}");
}

#[tokio::test]
async fn an_admin_pauses_and_resumes_a_provider_and_edits_the_suppression_list() {
    let d = Deployment::start(|_| {}).await;
    d.create_user("ada", "default", true).await.unwrap();
    let ada = d.sign_in("ada").await;

    let (status, list) = ada.call("GET", "/api/admin/providers", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["providers"][0]["name"], "sendgrid");
    assert_eq!(list["providers"][0]["circuit"], "closed");
    assert_eq!((list["degraded"].as_bool(), list["backlog"].as_u64()), (Some(false), Some(0)));
    let (_, paused) = ada.call("POST", "/api/admin/providers/sendgrid/pause", None).await;
    assert_eq!(paused["circuit"], "paused", "{paused}");
    let (_, resumed) = ada.call("POST", "/api/admin/providers/sendgrid/resume", None).await;
    assert_eq!(resumed["circuit"], "closed", "{resumed}");
    let (status, _) = ada.call("POST", "/api/admin/providers/nobody/pause", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, added) = ada
        .call("POST", "/api/admin/suppressions", Some(json!({ "address": "Gone@Example.net", "reason": "asked" })))
        .await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!((added["address"].as_str(), added["reason"].as_str()), (Some("gone@example.net"), Some("asked")));
    let (status, answer) =
        ada.call("POST", "/api/admin/suppressions", Some(json!({ "address": "not an address" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (_, found) = ada.call("GET", "/api/admin/suppressions?q=g&limit=10", None).await;
    assert_eq!(found["suppressions"][0]["address"], "gone@example.net", "{found}");
    let (_, after) = ada.call("GET", "/api/admin/suppressions?q=h", None).await;
    assert!(after["suppressions"].as_array().unwrap().is_empty(), "{after}");
    let (status, _) = ada.call_text("DELETE", "/api/admin/suppressions/gone@example.net", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = ada.call_text("DELETE", "/api/admin/suppressions/gone@example.net", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The actor filter is the whole actor, person and key.
    let console_key = d.admin_grpc().await.who_am_i(pb::WhoAmIRequest {}).await.unwrap().into_inner().key_prefix;
    let path = format!("/api/admin/audit?actor=user:ada via key:{console_key}");
    let (_, audit) = ada.call("GET", &path, None).await;
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["provider.pause", "provider.resume", "suppression.add", "suppression.remove"] {
        assert!(actions.contains(&action), "{action} missing from {actions:?}");
    }
}

#[tokio::test]
async fn the_webmail_sends_for_the_users_tenant_within_its_rate_and_recipient_cap() {
    let d = Deployment::start(|c| {
        c.user_sends_per_minute = 2;
        c.user_max_recipients = 3;
    })
    .await;
    // carol's mail goes out for tenant acme, whose domain is the webmail's.
    let admin = d.admin_grpc().await;
    let acme = pb::Tenant {
        id: "acme".into(),
        display_name: "Acme".into(),
        domains: vec!["bitmail.test".into()],
        ..Default::default()
    };
    admin.clone().create_tenant(acme).await.unwrap();
    d.create_user("carol", "acme", false).await.unwrap();
    let carol = d.sign_in("carol").await;
    let (_, me) = carol.call("GET", "/api/session", None).await;
    assert_eq!((me["tenant"].as_str(), me["role"].as_str()), (Some("acme"), Some("user")));

    let send = |to: Vec<String>| json!({ "to": to, "subject": "Hi", "text": "Hello" });
    let many: Vec<String> = (0..4).map(|i| format!("r{i}@example.net")).collect();
    let (status, answer) = carol.call("POST", "/api/messages", Some(send(many))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "bad_request");
    assert!(answer["error"]["message"].as_str().unwrap().contains("more than the 3"), "{answer}");

    let mut ids = Vec::new();
    for n in 0..2 {
        let (status, answer) = carol.call("POST", "/api/messages", Some(send(vec![format!("x{n}@example.net")]))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        ids.push(answer["mta_id"].as_str().unwrap().to_owned());
    }
    let (status, answer) = carol.call("POST", "/api/messages", Some(send(vec!["y@example.net".into()]))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(answer["error"]["code"], "too_many_requests");
    // Another user has a budget of their own.
    let dan = d.sign_in("dan").await;
    let (status, answer) = dan.call("POST", "/api/messages", Some(send(vec!["z@example.net".into()]))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    // Exactly carol's two messages reached mta-server, for acme.
    let mut mta = d.mta_with(&d.admin_key).await;
    for id in &ids {
        let status = mta.get_message(pb::GetMessageRequest { message_id: id.clone() }).await.unwrap().into_inner();
        assert_eq!(status.tenant, "acme");
    }
    d.fake.wait_for(3, Duration::from_secs(10)).await;
    let received: Vec<String> = d.fake.received().iter().map(|r| r.body["personalizations"].to_string()).collect();
    assert_eq!(received.len(), 3, "{received:?}");
    assert!(!received.iter().any(|r| r.contains("y@example.net") || r.contains("r0@example.net")), "{received:?}");
    let usage = eventually(
        Duration::from_secs(10),
        "carol's two messages in acme's usage",
        || {
            let mut admin = admin.clone();
            async move {
                let usage = admin.get_usage(pb::GetUsageRequest { tenant: "acme".into(), days: 1 }).await.unwrap();
                usage.into_inner().days.last().map_or(0, |d| d.messages)
            }
        },
        |n| *n == 2,
    )
    .await;
    assert_eq!(usage, 2);
}
