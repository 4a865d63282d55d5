//! The read API for apps that poll: one message's status, and the tenant's event log
//! after a cursor, with the key the app sends with.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{App, one_a_day};

/// `GET path` with `Authorization: Bearer key`.
async fn get(app: &App, key: &str, path: &str) -> (StatusCode, Value) {
    let (http, base) = app.cluster.https_client();
    let response = http.get(format!("{base}{path}")).bearer_auth(key).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_app_polls_its_messages_status_and_its_event_log_from_a_cursor() {
    let app = App::start().await;
    let answer = app.sdk("sendgrid_rich", json!({})).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let ids = answer.ids();
    for id in &ids {
        app.delivered(id).await;
    }

    let mut states = Vec::new();
    for id in &ids {
        let path = format!("/app/v1/messages/{id}");
        let seen = bitmail_tests::eventually::eventually(
            std::time::Duration::from_secs(10),
            "sent",
            || get(&app, &app.key, &path),
            |(_, body)| body["state"] == "sent",
        )
        .await;
        states.push(seen.1);
    }
    let sent = &states[0];
    assert_eq!((sent["id"].as_str(), sent["tenant"].as_str()), (Some(ids[0].as_str()), Some("default")));
    assert_eq!(
        (sent["provider"].as_str(), sent["attempts"][0]["outcome"].as_str()),
        (Some("sendgrid"), Some("accepted"))
    );

    // The log names each message and its custom_args; BitMail's own states in order.
    let (status, page) = get(&app, &app.key, "/app/v1/events").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let events = page["events"].as_array().unwrap();
    for id in &ids {
        let of: Vec<&str> =
            events.iter().filter(|e| e["message_id"] == id.as_str()).map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(of, ["queued", "sent"], "{page}");
    }
    let users: Vec<&str> = events.iter().filter_map(|e| e["metadata"]["user"].as_str()).collect();
    assert!(users.contains(&"bob") && users.contains(&"eve"), "{page}");
    let sent_event = events.iter().find(|e| e["event"] == "sent").unwrap();
    assert_eq!(sent_event["source"], "sendgrid");

    // From the cursor on: nothing until something new happens, then only that.
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, empty) = get(&app, &app.key, &format!("/app/v1/events?after={cursor}")).await;
    assert_eq!((empty["events"].as_array().unwrap().len(), empty["next_cursor"].as_str()), (0, Some(cursor.as_str())));
    let next = app.sdk("sendgrid_plain", json!({})).await;
    let new_id = next.header("x-message-id").to_owned();
    let (_, page) = get(&app, &app.key, &format!("/app/v1/events?after={cursor}&limit=1")).await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(
        (events[0]["message_id"].as_str(), events[0]["event"].as_str()),
        (Some(new_id.as_str()), Some("queued"))
    );

    // Another tenant sees none of it; a wrong key, a key without `read`, a bad cursor.
    let other = app.tenant("other", "other.test", one_a_day()).await;
    let other_reader = app.key_for("other", &["read"]).await;
    let (status, _) = get(&app, &other_reader, &format!("/app/v1/messages/{}", ids[0])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, theirs) = get(&app, &other_reader, "/app/v1/events").await;
    assert_eq!(theirs["events"], json!([]), "{theirs}");
    let (status, body) = get(&app, &other, "/app/v1/events").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a send-only key: {body}");
    let (status, _) = get(&app, "bmk_000000000000_wrongsecretwrongsecret", "/app/v1/events").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = get(&app, &app.key, "/app/v1/events?after=nonsense").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("after"), "{body}");
}
