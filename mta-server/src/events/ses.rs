//! Amazon SES's events, as the `Message` of a verified SNS notification
//! ([`super::sns`]): configuration-set event publishing (`eventType`) and identity
//! notifications (`notificationType`), normalized to one [`Event`] per recipient.
//!
//! BitMail's id comes back in the `bitmail_id` email tag (`mail.tags.bitmail_id[0]`);
//! identity notifications carry no tags, so the `X-BitMail-Id` header of `mail.headers`
//! is used when SES includes the original headers. An event with neither is not about a
//! BitMail message and is skipped. Each event's id is `{SNS MessageId}:{recipient}`, so a
//! notification SNS delivers twice is stored once.
//!
//! `notificationType: "Received"` (mail SES received) is not an event: it gives no events
//! here and is read by the inbound parser.
//!
//! Kinds: Send, Reject and Rendering Failure (dropped), Bounce (Permanent: hard; other:
//! soft), Complaint, Delivery, DeliveryDelay (deferred), Open, Click, Subscription
//! opting the contact out (unsubscribed).

use bitmail_proto::v1::EventKind;
use serde_json::Value;

use super::sns::{SnsMessage, parse_timestamp_ms};
use super::{Event, EventDetails, Refused};
use crate::provider::ses::{ID_HEADER, ID_TAG};

/// The events in one SES notification. `provider` is the configured provider name,
/// recorded with each event.
pub fn events(provider: &str, sns: &SnsMessage) -> Result<Vec<Event>, Refused> {
    let n: Value = serde_json::from_str(&sns.message)
        .map_err(|e| Refused::Malformed(format!("the SNS Message is not a JSON SES notification: {e}")))?;
    let type_name =
        n.get("eventType").or_else(|| n.get("notificationType")).and_then(Value::as_str).ok_or_else(|| {
            Refused::Malformed("the SES notification has no `eventType` or `notificationType`".into())
        })?;
    if type_name == "Received" || type_name == "AmazonSnsSubscriptionSucceeded" {
        return Ok(Vec::new());
    }
    let mail = n.get("mail").ok_or_else(|| Refused::Malformed("the SES notification has no `mail`".into()))?;
    let Some(message_id) = bitmail_id(mail) else {
        tracing::debug!(sns_message = %sns.message_id, kind = type_name, "an SES event about no BitMail message");
        return Ok(Vec::new());
    };
    let mail_time = time(mail.get("timestamp")).unwrap_or(sns.timestamp_ms);

    // Each recipient the event is about, with its own detail (a bounce's diagnostic code).
    let mut recipients: Vec<(String, String)> = Vec::new();
    let (kind, permanent, part, detail): (EventKind, bool, &str, Vec<String>) = match type_name {
        "Send" => (EventKind::Accepted, false, "send", Vec::new()),
        "Reject" => (EventKind::Dropped, false, "reject", vec![text(n.pointer("/reject/reason"))]),
        "Rendering Failure" => (
            EventKind::Dropped,
            false,
            "failure",
            vec![text(n.pointer("/failure/errorMessage")), text(n.pointer("/failure/templateName"))],
        ),
        "Bounce" => {
            let bounce_type = text(n.pointer("/bounce/bounceType"));
            recipients = listed(n.pointer("/bounce/bouncedRecipients"));
            let detail = vec![format!("{bounce_type} {}", text(n.pointer("/bounce/bounceSubType"))).trim().to_owned()];
            (EventKind::Bounced, bounce_type == "Permanent", "bounce", detail)
        }
        "Complaint" => {
            recipients = listed(n.pointer("/complaint/complainedRecipients"));
            let detail = vec![
                text(n.pointer("/complaint/complaintFeedbackType")),
                text(n.pointer("/complaint/complaintSubType")),
            ];
            (EventKind::Complained, false, "complaint", detail)
        }
        "Delivery" => {
            recipients = plain(n.pointer("/delivery/recipients"));
            (EventKind::Delivered, false, "delivery", vec![text(n.pointer("/delivery/smtpResponse"))])
        }
        "DeliveryDelay" => {
            recipients = listed(n.pointer("/deliveryDelay/delayedRecipients"));
            (EventKind::Deferred, false, "deliveryDelay", vec![text(n.pointer("/deliveryDelay/delayType"))])
        }
        "Open" => (EventKind::Opened, false, "open", Vec::new()),
        "Click" => (EventKind::Clicked, false, "click", vec![text(n.pointer("/click/link"))]),
        "Subscription" => {
            if !unsubscribed(n.get("subscription")) {
                return Ok(Vec::new());
            }
            (EventKind::Unsubscribed, false, "subscription", vec![text(n.pointer("/subscription/contactList"))])
        }
        other => {
            tracing::debug!(sns_message = %sns.message_id, kind = other, "an SES event kind BitMail does not keep");
            return Ok(Vec::new());
        }
    };
    if recipients.is_empty() {
        recipients = plain(mail.get("destination"));
    }
    let at_ms = n.get(part).and_then(|p| time(p.get("timestamp"))).unwrap_or(mail_time);
    Ok(recipients
        .into_iter()
        .map(|(recipient, own)| {
            let detail = std::iter::once(own).chain(detail.iter().cloned()).filter(|s| !s.is_empty());
            Event {
                message_id: message_id.clone(),
                record: EventDetails {
                    kind: kind as i32,
                    event_id: format!("{}:{recipient}", sns.message_id),
                    recipient,
                    at_ms,
                    provider: provider.to_owned(),
                    detail: detail.collect::<Vec<_>>().join("; "),
                    permanent,
                },
            }
        })
        .collect())
}

/// BitMail's id: the `bitmail_id` tag, else the `X-BitMail-Id` header.
fn bitmail_id(mail: &Value) -> Option<String> {
    let tag = mail.get("tags").and_then(|t| t.get(ID_TAG)).and_then(|v| v.get(0)).and_then(Value::as_str);
    let header = || {
        mail.get("headers")?
            .as_array()?
            .iter()
            .find(|h| h.get("name").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case(ID_HEADER)))?
            .get("value")?
            .as_str()
    };
    tag.or_else(header).map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned)
}

/// `[{"emailAddress": ..., "diagnosticCode": ..., "status": ...}]` as (address, detail).
fn listed(list: Option<&Value>) -> Vec<(String, String)> {
    let entries = list.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .filter_map(|r| {
            let address = r.get("emailAddress")?.as_str()?;
            let detail = text(r.get("diagnosticCode"));
            let detail = if detail.is_empty() { text(r.get("status")) } else { detail };
            Some((address.trim().to_ascii_lowercase(), detail))
        })
        .collect()
}

/// `["a@example.com", ...]` as (address, no detail).
fn plain(list: Option<&Value>) -> Vec<(String, String)> {
    let entries = list.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    entries.iter().filter_map(Value::as_str).map(|a| (a.trim().to_ascii_lowercase(), String::new())).collect()
}

/// Whether a Subscription event opts the contact out (of everything or of a topic).
fn unsubscribed(subscription: Option<&Value>) -> bool {
    let Some(new) = subscription.and_then(|s| s.get("newTopicPreferences")) else { return false };
    new.get("unsubscribeAll").and_then(Value::as_bool) == Some(true)
        || new.get("topicSubscriptionStatus").and_then(Value::as_array).is_some_and(|topics| {
            topics.iter().any(|t| t.get("subscriptionStatus").and_then(Value::as_str) == Some("OptOut"))
        })
}

fn text(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().trim().to_owned()
}

fn time(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_str).and_then(parse_timestamp_ms)
}
