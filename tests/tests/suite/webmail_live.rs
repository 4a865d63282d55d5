//! Live updates over HTTP (issue 18): `GET /api/events` streams the signed-in user's own
//! mailbox changes as server-sent events, never another user's; a stream ends after
//! `limits.live_stream_secs` and its reconnect checks the session again (signed out:
//! 401); past `limits.max_live_streams` a stream is refused with 503 and counted.

use crate::common;

use std::time::Duration;

use common::{Cluster, Session};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A server-sent event stream, read as it comes.
struct Events {
    response: reqwest::Response,
    buffer: String,
    /// Every line read, for the assertions on the stream's own fields (`retry`).
    raw: String,
}

impl Events {
    async fn open(s: &Session) -> Result<Events, (StatusCode, String)> {
        let response = s.http.get(format!("{}/api/events", s.base)).header("cookie", &s.cookie).send().await.unwrap();
        if response.status() != StatusCode::OK {
            return Err((response.status(), response.text().await.unwrap_or_default()));
        }
        let kind = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        Ok(Events { response, buffer: String::new(), raw: String::new() })
    }

    /// The next event (name and JSON data), skipping keep-alive comments; None once the
    /// server ended the stream. Panics when nothing comes within 10 s.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field =
                    |name: &str| block.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim_start().to_owned()));
                let Some(data) = field("data:") else { continue };
                let event = field("event:").unwrap_or_else(|| "message".into());
                return Some((event, serde_json::from_str(&data).unwrap()));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event within 10 s")
                .expect("the stream reads");
            let chunk = String::from_utf8(chunk?.to_vec()).unwrap();
            self.raw.push_str(&chunk);
            self.buffer.push_str(&chunk);
        }
    }

    async fn expect(&mut self, event: &str) -> Value {
        let (got, data) = self.next().await.unwrap_or_else(|| panic!("the stream ended before a {event} event"));
        assert_eq!(got, event, "{data}");
        data
    }
}

async fn inbox_ids(s: &Session) -> Vec<String> {
    let (_, page) = s.get("/api/folders/inbox").await;
    page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn each_user_hears_of_their_own_mailbox_changes_only() {
    let cluster = Cluster::start_full(vec![], true, |_| {}, |_| {}).await;
    let ada = Session::new(&cluster, "ada").await;
    let bob = Session::new(&cluster, "bob").await;

    let (http, base) = cluster.https_client();
    let anonymous = http.get(format!("{base}/api/events")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "no stream without a session");

    let mut ada_events = Events::open(&ada).await.unwrap();
    let mut bob_events = Events::open(&bob).await.unwrap();
    assert_eq!(ada_events.expect("ready").await, json!({}));
    assert!(ada_events.raw.contains("retry: 1000"), "the browser is told to reconnect after a second");
    bob_events.expect("ready").await;

    let (status, sent) =
        bob.send(json!({ "to": "ada@bitmail.test", "subject": "Lunch", "markdown": "At noon?" })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let new = ada_events.expect("mail").await;
    let id = inbox_ids(&ada).await.remove(0);
    assert_eq!(new, json!({ "folder": "inbox", "id": id, "change": "new" }));
    let own = bob_events.expect("mail").await;
    assert_eq!((&own["folder"], &own["change"]), (&json!("sent"), &json!("new")), "{own}");

    // Her own changes, in order; nothing of bob's sent copy comes between.
    let (status, _) = ada.call(reqwest::Method::PATCH, &format!("/api/mail/{id}"), Some(json!({ "read": true }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ada_events.expect("mail").await, json!({ "folder": "inbox", "id": id, "change": "changed" }));
    let (status, _) = ada.call(reqwest::Method::DELETE, &format!("/api/mail/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(ada_events.expect("mail").await, json!({ "folder": "inbox", "id": id, "change": "deleted" }));

    // bob hears nothing of ada's read mark and delete: his next event is his own.
    let (status, _) = ada.send(json!({ "to": "bob@bitmail.test", "subject": "Re: Lunch", "markdown": "Yes" })).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let next = bob_events.expect("mail").await;
    assert_eq!((&next["folder"], &next["change"]), (&json!("inbox"), &json!("new")), "{next}");
    assert_eq!(next["id"], json!(inbox_ids(&bob).await[0]));
}

#[tokio::test]
async fn a_stream_ends_on_time_its_reconnect_checks_the_session_and_the_cap_holds() {
    let cluster = Cluster::start_full(vec![], true, |_| {}, |_| {}).await;
    let (http, base) = cluster
        .another_edge(|c| {
            c.limits.live_stream_secs = 1;
            c.limits.max_live_streams = 1;
        })
        .await;
    let (cookie, csrf) = common::sign_in(&http, &base, "ada", "a long password").await;
    let ada = Session { http, base, cookie, csrf };

    let started = tokio::time::Instant::now();
    let mut first = Events::open(&ada).await.unwrap();
    first.expect("ready").await;
    let (status, refused) = Events::open(&ada).await.err().expect("a second stream is over the edge's cap");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert!(refused.contains("live streams"), "{refused}");
    assert_eq!(first.next().await, None, "the stream ends after its second");
    assert!(started.elapsed() < Duration::from_secs(5), "it ended after {:?}", started.elapsed());

    // The browser's reconnect: a new stream, its slot free again.
    let mut again = Events::open(&ada).await.unwrap();
    again.expect("ready").await;
    drop(again);

    let metrics = ada.http.get(format!("{}/metrics", ada.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("bitmail_live_streams_opened_total 2"), "{metrics}");
    assert!(metrics.contains("bitmail_http_shed_total{reason=\"live_streams\"} 1"), "{metrics}");

    // Signed out, the next reconnect is refused.
    let (status, _) = ada.call(reqwest::Method::DELETE, "/api/session", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = Events::open(&ada).await.err().expect("no stream once signed out");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
