//! The delivery status of sent messages, kept in their mail documents.
//!
//! mta-server forgets a message's status some days after it ends (`keep_status_days`,
//! 30 by default) and cannot answer while it is down. So the final status is written
//! into the sender's mail document (`state`, `provider`, `provider_message_id`, `error`,
//! `possible_duplicate`, and `events`: what the providers reported afterwards, such as
//! delivered, bounced or complained):
//! - by the follower of `WatchMessages` ([`crate::status::follow`]), as each final
//!   status and each later event arrives ([`remember`]);
//! - when a sent message is shown while its status is not final yet, from `GetMessage`.
//!
//! A final status is then answered from the document without asking mta-server. A
//! message whose status mta-server cannot give (down, or forgotten) shows its last known
//! state with `degraded: true` and a note, instead of failing the page.

use std::collections::HashMap;

use bitmail_proto::v1 as pb;
use serde_json::{Value, json};

use crate::mailbox::{Mailbox, Summary};
use crate::state::AppState;

/// Events kept per message: the newest are kept when there are more.
pub(crate) const MAX_EVENTS: usize = 50;
/// Bytes of a provider's words kept per event.
const MAX_DETAIL: usize = 300;

/// The name of a delivery state, as the webmail shows it.
pub(crate) fn state_name(state: i32) -> &'static str {
    match pb::DeliveryState::try_from(state).unwrap_or(pb::DeliveryState::Unspecified) {
        pb::DeliveryState::Queued => "queued",
        pb::DeliveryState::Sending => "sending",
        pb::DeliveryState::Sent => "sent",
        pb::DeliveryState::Deferred => "deferred",
        pb::DeliveryState::Failed => "failed",
        pb::DeliveryState::Unspecified => "unknown",
    }
}

fn event_name(kind: i32) -> &'static str {
    match pb::EventKind::try_from(kind).unwrap_or(pb::EventKind::Unspecified) {
        pb::EventKind::Accepted => "accepted",
        pb::EventKind::Delivered => "delivered",
        pb::EventKind::Deferred => "deferred",
        pb::EventKind::Bounced => "bounced",
        pb::EventKind::Dropped => "dropped",
        pb::EventKind::Complained => "complained",
        pb::EventKind::Opened => "opened",
        pb::EventKind::Clicked => "clicked",
        pb::EventKind::Unsubscribed => "unsubscribed",
        pb::EventKind::Unspecified => "unknown",
    }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The events as shown and kept: a JSON list of the newest [`MAX_EVENTS`].
fn events_value(events: &[pb::DeliveryEvent]) -> Value {
    let start = events.len().saturating_sub(MAX_EVENTS);
    let list: Vec<Value> = events[start..]
        .iter()
        .map(|e| {
            json!({
                "kind": event_name(e.kind), "recipient": e.recipient, "at_ms": e.at_unix_ms,
                "provider": e.provider, "detail": cut(&e.detail, MAX_DETAIL), "permanent": e.permanent,
            })
        })
        .collect();
    Value::Array(list)
}

/// The fields a final status leaves in the mail document; `None` while it is not final.
pub(crate) fn final_fields(s: &pb::MessageStatus) -> Option<HashMap<String, String>> {
    let state = state_name(s.state);
    if !matches!(state, "sent" | "failed") {
        return None;
    }
    Some(HashMap::from([
        ("state".to_owned(), state.to_owned()),
        ("provider".to_owned(), s.provider.clone()),
        ("provider_message_id".to_owned(), s.provider_message_id.clone()),
        ("error".to_owned(), s.error.clone()),
        ("possible_duplicate".to_owned(), s.possible_duplicate.to_string()),
        ("events".to_owned(), events_value(&s.events).to_string()),
    ]))
}

/// Writes a final status into every mail document of the message (the sender's copy;
/// one per edge that stored it). Changes nothing when the documents already say it.
pub(crate) async fn remember(mailbox: &Mailbox, s: &pb::MessageStatus) {
    let Some(fields) = final_fields(s) else { return };
    let docs = match mailbox.sent_with_mta_id(&s.message_id).await {
        Ok(docs) => docs,
        Err(e) => {
            tracing::warn!(mta_id = %s.message_id, error = %e, "cannot find the sent message to keep its status");
            return;
        }
    };
    for mail in docs {
        if fields.iter().all(|(k, v)| mail.field(k) == v) {
            continue;
        }
        if let Err(e) = mailbox.update(&mail, fields.clone()).await {
            tracing::warn!(mail = %mail.id, error = %e, "could not keep the final delivery status");
        }
    }
}

/// What the document says of a final status.
fn stored(mail: &Summary) -> Value {
    let non_empty = |k: &str| Some(mail.field(k)).filter(|v| !v.is_empty());
    let events: Value = serde_json::from_str(mail.field("events")).unwrap_or_else(|_| json!([]));
    json!({
        "state": mail.field("state"), "provider": non_empty("provider"),
        "provider_message_id": non_empty("provider_message_id"), "error": non_empty("error"),
        "possible_duplicate": mail.field("possible_duplicate") == "true", "events": events,
        "mta_id": mail.field("mta_id"), "local_to": mail.list("local_to"),
    })
}

/// Where a sent message is: "delivered" for local recipients only; the document's final
/// status; else mta-server's answer (kept once final); else the last known state,
/// marked degraded. Never an error: the page shows whatever is known.
pub(crate) async fn delivery(state: &AppState, mail: &Summary) -> Value {
    let local_to = mail.list("local_to");
    let mta_id = mail.field("mta_id");
    if mta_id.is_empty() {
        return json!({ "state": "delivered", "provider": "local", "local_to": local_to });
    }
    if matches!(mail.field("state"), "sent" | "failed") {
        return stored(mail);
    }
    let took_it = Some(mail.field("mta_node")).filter(|u| !u.is_empty());
    let s = match state.pool.get_message(&state.mta_bearer, mta_id, took_it).await {
        Ok(s) => s,
        Err(e) => return degraded(mail, &e),
    };
    if let Some(fields) = final_fields(&s)
        && let Err(e) = state.mailbox.update(mail, fields).await
    {
        tracing::warn!(mail = %mail.id, error = %e, "could not keep the final delivery status");
    }
    let non_empty = |v: String| (!v.is_empty()).then_some(v);
    let events = events_value(&s.events);
    json!({
        "state": state_name(s.state), "provider": non_empty(s.provider),
        "provider_message_id": non_empty(s.provider_message_id), "error": non_empty(s.error),
        "possible_duplicate": s.possible_duplicate, "attempts": s.attempts.len(),
        "next_attempt_at_ms": (s.next_attempt_at_unix_ms > 0).then_some(s.next_attempt_at_unix_ms),
        "events": events, "mta_id": mta_id, "local_to": local_to,
    })
}

/// The last known state when mta-server cannot say: "queued" as the edge left it.
fn degraded(mail: &Summary, e: &tonic::Status) -> Value {
    let (note, log) = match e.code() {
        tonic::Code::NotFound => ("mta-server no longer keeps this message's status".to_owned(), false),
        // The pool names the nodes that could not be asked.
        _ => (format!("the delivery service cannot say now ({}): this is the last known state", e.message()), true),
    };
    if log {
        tracing::warn!(mail = %mail.id, code = ?e.code(), error = %e.message(), "delivery status unavailable");
    }
    let last = Some(mail.field("state")).filter(|s| !s.is_empty()).unwrap_or("queued");
    json!({
        "state": last, "degraded": true, "note": note,
        "mta_id": mail.field("mta_id"), "local_to": mail.list("local_to"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: pb::DeliveryState, events: usize) -> pb::MessageStatus {
        pb::MessageStatus {
            message_id: "m1".into(),
            state: state as i32,
            provider: "sendgrid".into(),
            events: (0..events)
                .map(|i| pb::DeliveryEvent {
                    kind: pb::EventKind::Delivered as i32,
                    recipient: format!("r{i}@example.net"),
                    detail: "é".repeat(400),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_final_status_is_kept_with_its_newest_events_cut_short() {
        assert_eq!(final_fields(&status(pb::DeliveryState::Queued, 0)), None);
        assert_eq!(final_fields(&status(pb::DeliveryState::Deferred, 1)), None);
        let kept = final_fields(&status(pb::DeliveryState::Sent, MAX_EVENTS + 5)).unwrap();
        assert_eq!(kept["state"], "sent");
        let events: Vec<Value> = serde_json::from_str(&kept["events"]).unwrap();
        assert_eq!(events.len(), MAX_EVENTS);
        assert_eq!(events[0]["recipient"], "r5@example.net", "the oldest are the ones left out");
        assert_eq!(events[0]["kind"], "delivered");
        assert!(events[0]["detail"].as_str().unwrap().len() <= MAX_DETAIL);
    }

    #[test]
    fn an_unreachable_mta_shows_the_last_known_state_and_says_so() {
        let mail = Summary { id: "x".into(), fields: HashMap::from([("mta_id".to_owned(), "m1".to_owned())]) };
        let v = degraded(&mail, &tonic::Status::unavailable("down"));
        assert_eq!(v["state"], "queued");
        assert_eq!(v["degraded"], true);
        assert!(v["note"].as_str().unwrap().contains("cannot say now (down)"));
        let v = degraded(&mail, &tonic::Status::not_found("gone"));
        assert!(v["note"].as_str().unwrap().contains("no longer keeps"));
    }
}
