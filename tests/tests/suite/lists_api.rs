//! The lists JSON API, both ways in: the admin console (`/api/admin/tenants/{id}/...`,
//! a signed-in admin, CSRF, for any tenant) and apps (`/app/v1/...`, their own key, their
//! own tenant): lists and their edits, subscribers, a CSV import with a rejected row, an
//! export downloaded as CSV, and a trigger that notifies once per idempotency key.

use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_runtime::config::Secret;
use bitmail_tests::eventually::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::app_api::App;
use crate::lists_pages::{api, new_list, start, subscriber, wait_for_mails};

const PASSWORD: &str = "a long console password";

/// A signed-in browser of the console's edge.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Browser {
    async fn call(&self, method: &str, path: &str, body: Option<Value>, csrf: bool) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base)).header("cookie", &self.cookie);
        if csrf {
            request = request.header("x-csrf-token", &self.csrf);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// An edge holding `mta_admin_key`, and `name` signed in on it (an admin or not).
async fn browser(app: &App, name: &str, admin: bool) -> Browser {
    let key = app.cluster.admin_key.clone();
    let (http, base) = app.cluster.another_edge(|c| c.mta_admin_key = Some(Secret::new(key))).await;
    let config = client_api::config::Config {
        backend_url: format!("http://{}", app.cluster.backend),
        mail_domain: "bitmail.test".into(),
        ..Default::default()
    };
    let args = client_api::create_user::CreateUser { config: None, name: name.into(), tenant: "default".into(), admin };
    client_api::create_user::create_user(&args, &config, PASSWORD).await.unwrap();
    let (cookie, csrf) = crate::common::sign_in(&http, &base, name, PASSWORD).await;
    Browser { http, base, cookie, csrf }
}

fn roomy() -> pb::Quotas {
    pb::Quotas { per_day: 1000, per_second: 50.0, burst: 100, max_recipients: 100, max_message_bytes: 10 << 20 }
}

#[tokio::test]
async fn the_console_manages_any_tenants_lists_as_an_admin_with_csrf() {
    let app = start().await;
    app.tenant("acme", "acme.test", roomy()).await;
    let ops = browser(&app, "ops", true).await;
    let p = "/api/admin/tenants/acme";
    let body = json!({ "name": "Field staff", "from_email": "staff@acme.test", "attributes": ["region"] });
    let (status, refused) = ops.call("POST", &format!("{p}/lists"), Some(body.clone()), false).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("csrf")), "{refused}");
    let (status, list) = ops.call("POST", &format!("{p}/lists"), Some(body), true).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!((list["tenant"].as_str(), list["double_opt_in"].as_bool()), (Some("acme"), Some(false)));
    let id = list["id"].as_str().unwrap();

    let (_, listed) = ops.call("GET", &format!("{p}/lists"), None, true).await;
    assert_eq!(listed["lists"].as_array().unwrap().len(), 1, "{listed}");
    let (_, theirs) = ops.call("GET", "/api/admin/tenants/default/lists", None, true).await;
    assert_eq!(theirs["lists"], json!([]), "another tenant's lists are not these: {theirs}");

    // An edit replaces the fields present, and only those.
    let (status, edited) =
        ops.call("PATCH", &format!("{p}/lists/{id}"), Some(json!({ "description": "Regional staff" })), true).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(
        (edited["description"].as_str(), edited["name"].as_str()),
        (Some("Regional staff"), Some("Field staff"))
    );
    assert_eq!(edited["attributes"], json!(["region"]));
    for bad in [json!({}), json!({ "nmae": "x" }), json!({ "name": null })] {
        let (status, answer) = ops.call("PATCH", &format!("{p}/lists/{id}"), Some(bad), true).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    }
    let (status, answer) = ops.call("PATCH", &format!("{p}/lists/{id}"), Some(json!({ "name": "" })), true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "mta-server's check, passed on: {answer}");

    let add = json!({ "email": "Kofi@Example.NET", "attributes": { "region": "Ashanti" }, "confirmed": true });
    let (status, added) = ops.call("POST", &format!("{p}/lists/{id}/subscribers"), Some(add), true).await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(
        (added["subscriber"]["email"].as_str(), added["subscriber"]["state"].as_str()),
        (Some("kofi@example.net"), Some("confirmed"))
    );
    let (_, page) = ops.call("GET", &format!("{p}/lists/{id}/subscribers?state=confirmed&limit=10"), None, true).await;
    assert_eq!(page["subscribers"][0]["attributes"]["region"], "Ashanti", "{page}");
    let (status, _) = ops.call("GET", &format!("{p}/lists/{id}/subscribers?state=gone"), None, true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Tenant default's app does not see acme's list; a user who is no admin gets nothing.
    let (status, _) = api(&app, "GET", &format!("/lists/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let eve = browser(&app, "eve", false).await;
    let (status, _) = eve.call("GET", &format!("{p}/lists"), None, true).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// Polls a task until it is finished, and answers it.
async fn finished(app: &App, task: &Value) -> Value {
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());
    let done =
        |(_, t): &(StatusCode, Value)| ["done", "failed", "cancelled"].contains(&t["state"].as_str().unwrap_or(""));
    eventually(Duration::from_secs(30), "the task finished", || api(app, "GET", &path, None), done).await.1
}

async fn import(app: &App, list: &str, content_type: &str, csv: Vec<u8>) -> (StatusCode, Value) {
    let (http, base) = app.cluster.https_client();
    let response = http
        .post(format!("{base}/app/v1/lists/{list}/import?confirmed=true"))
        .bearer_auth(&app.key)
        .header("content-type", content_type)
        .body(csv)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_app_imports_exports_and_triggers_a_notification_once() {
    let app = start().await;
    let list = new_list(&app, "Power cuts").await;
    let templates =
        json!({ "templates": { "cut": { "subject": "Cut in {{ area }}", "markdown": "Hello {{ name }}" } } });
    let (status, edited) = api(&app, "PATCH", &format!("/lists/{list}"), Some(templates)).await;
    assert_eq!(status, StatusCode::OK, "{edited}");

    // A bad request is refused before anything is read or stored.
    let csv = "email,name,area\nada@example.net,Ada,North\nnot-an-address,Bad,North\nbob@example.net,Bob,South\n";
    let (status, answer) = import(&app, &list, "application/json", csv.into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = import(&app, &list, "text/csv", vec![b'a'; (16 << 20) + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("16 MiB"), "{answer}");
    let (status, answer) = import(&app, &list, "text/csv", b"email\n\xff\xfe@example.net\n".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not UTF-8: {answer}");

    let (status, task) = import(&app, &list, "text/csv; charset=utf-8", csv.into()).await;
    assert_eq!((status, task["kind"].as_str()), (StatusCode::OK, Some("import")), "{task}");
    let task = finished(&app, &task).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!((task["result"]["added"].as_u64(), task["result"]["rejected"].as_u64()), (Some(2), Some(1)), "{task}");
    assert_eq!(task["result"]["rejected_rows"][0]["line"], 3, "{task}");
    assert_eq!(subscriber(&app, &list, "ada@example.net").await["state"], "confirmed");

    let (status, export) = api(&app, "POST", &format!("/lists/{list}/export"), None).await;
    assert_eq!(status, StatusCode::OK, "{export}");
    let export = finished(&app, &export).await;
    assert_eq!((export["state"].as_str(), export["result"]["exported"].as_u64()), (Some("done"), Some(2)), "{export}");
    let (http, base) = app.cluster.https_client();
    let path = format!("{base}/app/v1/tasks/{}/export.csv", export["id"].as_str().unwrap());
    let response = http.get(&path).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(response.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let csv = response.text().await.unwrap();
    assert!(
        csv.contains("ada@example.net") && csv.contains("bob@example.net") && !csv.contains("not-an-address"),
        "{csv}"
    );
    let (_, tasks) = api(&app, "GET", "/tasks", None).await;
    assert!(tasks["tasks"].as_array().unwrap().len() >= 2, "{tasks}");
    let (status, _) = api(&app, "POST", &format!("/tasks/{}/cancel", export["id"].as_str().unwrap()), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "a finished task");

    // A trigger: the key is required; sent twice (body, then header), one campaign.
    let trigger = json!({ "template": "cut", "filter": { "area": "North" } });
    let (status, answer) = api(&app, "POST", &format!("/lists/{list}/trigger"), Some(trigger.clone())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let keyed = json!({ "template": "cut", "filter": { "area": "North" }, "idempotency_key": "schedule-2026-06-01" });
    let (status, first) = api(&app, "POST", &format!("/lists/{list}/trigger"), Some(keyed)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let again = http
        .post(format!("{base}/app/v1/lists/{list}/trigger"))
        .bearer_auth(&app.key)
        .header("idempotency-key", "schedule-2026-06-01")
        .json(&trigger)
        .send()
        .await
        .unwrap();
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"], "{again}");
    let mails = wait_for_mails(&app, "ada@example.net", 1).await;
    assert!(mails[0].to_string().contains("Cut in North"), "{}", mails[0]);
    let path = format!("/campaigns/{}", first["id"].as_str().unwrap());
    let campaign = eventually(
        Duration::from_secs(20),
        "the trigger's campaign done",
        || api(&app, "GET", &path, None),
        |(_, c)| c["state"] == "done",
    )
    .await
    .1;
    assert_eq!(campaign["stats"]["submitted"], 1, "only the North subscriber: {campaign}");
    assert!(!app.fake.received().iter().any(|r| r.body.to_string().contains("bob@example.net")));
    let (status, _) = api(&app, "POST", &format!("{path}/pause"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "a finished campaign");
    let (_, listed) = api(&app, "GET", &format!("/campaigns?list_id={list}"), None).await;
    assert_eq!(listed["campaigns"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test]
async fn an_import_over_grpcs_usual_4_mib_is_taken_whole() {
    let app = start().await;
    let list = new_list(&app, "Power cuts").await;
    // Under the 16 MiB limit; its rows are all bad, so it stores no subscriber.
    let mut big = String::from("email,name\n");
    while big.len() < 5 << 20 {
        big.push_str("this-is-not-an-address-at-all,Someone with a long name\n");
    }
    let rows = big.lines().count() as u64 - 1;
    let (status, task) = import(&app, &list, "text/csv", big.into_bytes()).await;
    assert_eq!(
        (status, task["total"].as_u64(), task["kind"].as_str()),
        (StatusCode::OK, Some(rows), Some("import")),
        "{task}"
    );
    let (status, cancelled) = api(&app, "POST", &format!("/tasks/{}/cancel", task["id"].as_str().unwrap()), None).await;
    assert!(status == StatusCode::OK || status == StatusCode::CONFLICT, "{cancelled}");
    let (_, page) = api(&app, "GET", &format!("/lists/{list}/subscribers"), None).await;
    assert_eq!(page["subscribers"], json!([]), "{page}");
}
