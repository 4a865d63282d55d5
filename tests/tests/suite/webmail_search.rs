//! Searching one's own mail, and the folder counts and pages read from the index
//! (issue 18): by each field, in English and French word forms, newest first, never
//! another user's mail; bad queries refused by name; a mailbox written before the index
//! (list entries without `box`, bodies with `text`) lists and is found after its first
//! page load.

use crate::common;

use std::collections::HashMap;

use common::{Cluster, Session};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn subjects(v: &Value) -> Vec<String> {
    v["messages"].as_array().unwrap().iter().map(|m| m["subject"].as_str().unwrap().to_owned()).collect()
}

async fn search(s: &Session, q: &str) -> Vec<String> {
    let (status, found) = s.get(&format!("/api/search?q={}", urlencode(q))).await;
    assert_eq!(status, StatusCode::OK, "{q:?}: {found}");
    subjects(&found)
}

fn urlencode(q: &str) -> String {
    q.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn search_finds_own_mail_by_each_field_and_word_form() {
    let cluster = Cluster::start_webmail(vec![]).await;
    let ada = Session::new(&cluster, "ada").await;
    let bob = Session::new(&cluster, "bob").await;
    let eve = Session::new(&cluster, "eve").await;
    for (from, to, subject, body) in [
        (&ada, "bob@bitmail.test", "Engines", "The engine runs all night"),
        (&eve, "bob@bitmail.test", "Réunion du conseil", "Nous avons mangé à l'école"),
        (&ada, "bob@bitmail.test, eve@bitmail.test", "Budget", "Running numbers for next year"),
    ] {
        let (status, sent) = from.send(json!({ "to": to, "subject": subject, "markdown": body })).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    }

    assert_eq!(search(&bob, "running").await, ["Budget", "Engines"], "English forms, newest first");
    assert_eq!(search(&bob, "manger").await, ["Réunion du conseil"], "French forms");
    assert_eq!(search(&bob, "ECOLE").await, ["Réunion du conseil"], "case and accents");
    assert_eq!(search(&bob, "from:ada").await, ["Budget", "Engines"]);
    assert_eq!(search(&bob, "to:eve").await, ["Budget"]);
    assert_eq!(search(&bob, r#"subject:"conseil réunion""#).await, ["Réunion du conseil"]);
    assert_eq!(search(&bob, "subject:engine body:night").await, ["Engines"]);
    assert_eq!(search(&bob, "from:eve running").await, Vec::<String>::new());
    // Sent mail is the sender's own: ada finds hers, never bob's inbox.
    assert_eq!(search(&ada, "running").await, ["Budget", "Engines"]);
    assert_eq!(search(&ada, "manger").await, Vec::<String>::new());
    let (_, found) = ada.get("/api/search?q=budget").await;
    assert_eq!(found["messages"][0]["folder"], "sent");

    // Paged.
    let (_, first) = bob.get("/api/search?q=bob&limit=2").await;
    assert_eq!(subjects(&first).len(), 2);
    let cursor = first["next_cursor"].as_str().expect("a second page").to_owned();
    let (_, second) = bob.get(&format!("/api/search?q=bob&limit=2&cursor={cursor}")).await;
    assert_eq!(subjects(&second), ["Engines"]);
    assert!(second["next_cursor"].is_null());

    // Bad queries name what is wrong.
    for (q, says) in [
        ("a".repeat(10 * 1024), "bytes, at most 1000"),
        ("hello%00world".into(), "control characters"),
        ("%21%21".into(), "nothing to search"),
    ] {
        let (status, body) = bob.get(&format!("/api/search?q={q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"]["message"].as_str().unwrap_or_default().contains(says), "{body}");
    }
    assert_eq!(bob.get("/api/search?q=x&cursor=zz%27").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(bob.get("/api/search").await.0, StatusCode::BAD_REQUEST);

    // The counts come from the index and follow read marks and deletes.
    let (_, inbox) = bob.get("/api/folders/inbox").await;
    assert_eq!((inbox["total"].as_u64(), inbox["unread"].as_u64()), (Some(3), Some(3)));
    assert_eq!(subjects(&inbox), ["Budget", "Réunion du conseil", "Engines"]);
    let id = inbox["messages"][1]["id"].as_str().unwrap().to_owned();
    bob.call(reqwest::Method::PATCH, &format!("/api/mail/{id}"), Some(json!({ "read": true }))).await;
    let (_, inbox) = bob.get("/api/folders/inbox?per_page=2&page=1").await;
    assert_eq!((inbox["total"].as_u64(), inbox["unread"].as_u64()), (Some(3), Some(2)));
    assert_eq!(subjects(&inbox), ["Engines"], "the second page of two");
    bob.call(reqwest::Method::DELETE, &format!("/api/mail/{id}"), None).await;
    let (_, inbox) = bob.get("/api/folders/inbox").await;
    assert_eq!((inbox["total"].as_u64(), inbox["unread"].as_u64()), (Some(2), Some(2)));
    assert_eq!(search(&bob, "manger").await, Vec::<String>::new(), "a deleted message is not found");
}

#[tokio::test]
async fn a_mailbox_written_before_the_index_lists_and_is_found() {
    let cluster = Cluster::start_webmail(vec![]).await;
    let carol = Session::new(&cluster, "carol").await;
    let mut store = cluster.store_client().await;
    // carol's id, from her session's user document.
    let request = bitmail_proto::v1::LookupRequest {
        subset: HashMap::from([("kind".to_owned(), "user".to_owned()), ("name".to_owned(), "carol".to_owned())]),
        limit: 1,
        page_token: String::new(),
        newest_first: false,
    };
    let mut users = store.lookup(request).await.unwrap().into_inner();
    let owner = match users.message().await.unwrap().and_then(|m| m.item) {
        Some(bitmail_proto::v1::lookup_response::Item::Document(d)) => d.id,
        other => panic!("no user carol: {other:?}"),
    };
    // Two messages as an older edge stored them: no `box`, no `content_ref`, the body's
    // text in `text`, its `mail_id` the entry's id.
    for (subject, read) in [("Old harvest report", "false"), ("Older minutes", "true")] {
        let entry = HashMap::from([
            ("kind", "mail"),
            ("owner", owner.as_str()),
            ("folder", "inbox"),
            ("from", "dan@example.net"),
            ("to", "[\"carol@bitmail.test\"]"),
            ("subject", subject),
            ("date_ms", "1700000000000"),
            ("read", read),
            ("attachments", "[]"),
        ]);
        let fields = entry.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let id = store.put(bitmail_proto::v1::PutRequest { fields }).await.unwrap().into_inner().id;
        let body = HashMap::from([
            ("kind", "body"),
            ("mail_id", id.as_str()),
            ("owner", owner.as_str()),
            ("text", "The harvests were good this year"),
            ("html", ""),
        ]);
        let fields = body.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        store.put(bitmail_proto::v1::PutRequest { fields }).await.unwrap();
    }
    let (_, inbox) = carol.get("/api/folders/inbox").await;
    assert_eq!((inbox["total"].as_u64(), inbox["unread"].as_u64()), (Some(2), Some(1)), "{inbox}");
    assert_eq!(subjects(&inbox), ["Older minutes", "Old harvest report"]);
    assert_eq!(search(&carol, "harvest").await, ["Older minutes", "Old harvest report"]);
    let id = inbox["messages"][1]["id"].as_str().unwrap();
    let (status, opened) = carol.get(&format!("/api/mail/{id}")).await;
    assert_eq!((status, opened["text"].as_str()), (StatusCode::OK, Some("The harvests were good this year")));
}
