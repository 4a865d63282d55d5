//! SES Receiving: a receipt rule's SNS action publishes a notification whose `Message` is
//! JSON `{"notificationType": "Received", "mail": {...}, "receipt": {...}, "content": "..."}`.
//! `content` is the whole MIME message, base64 when the action's `encoding` is `BASE64`,
//! else UTF-8 text. SES includes it only for mail under 150 KB; larger mail needs an S3
//! action, which BitMail does not read. The SNS signature is the caller's to check.
//!
//! Mail without `content` (over 150 KB, stored in S3 by the receipt rule) is refused as
//! `Refused::Malformed` (400), the reason naming S3, and logged.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bitmail_proto::v1::InboundMail;
use serde_json::Value;

use super::mime::parse_mime;
use super::{Refused, envelope_address, envelope_list, verdict};

/// The verdicts SES gives in `receipt`, and the names BitMail records them under.
const VERDICTS: [(&str, &str); 5] = [
    ("spamVerdict", "spam"),
    ("virusVerdict", "virus"),
    ("spfVerdict", "spf"),
    ("dkimVerdict", "dkim"),
    ("dmarcVerdict", "dmarc"),
];

/// Parses the SNS `Message` (already decoded from its JSON string) of a `Received`
/// notification; `received_ms` is the date of a message without a Date header.
pub fn parse(message: &Value, received_ms: u64) -> Result<InboundMail, Refused> {
    let kind = message.get("notificationType").and_then(Value::as_str).unwrap_or_default();
    if kind != "Received" {
        return Err(Refused::Malformed(format!("notificationType {kind:?}: expected \"Received\"")));
    }
    let message_id = message
        .pointer("/mail/messageId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Refused::Malformed("`mail.messageId` is missing".into()))?;
    let receipt = message.get("receipt").ok_or_else(|| Refused::Malformed("`receipt` is missing".into()))?;
    let content = message.get("content").and_then(Value::as_str).ok_or_else(|| {
        Refused::Malformed(
            "the notification has no `content`: SES includes the message only under 150 KB; larger mail is \
             stored in S3 by the receipt rule; BitMail reads mail only from the notification"
                .into(),
        )
    })?;
    let encoding = receipt.pointer("/action/encoding").and_then(Value::as_str).unwrap_or("UTF8");
    let raw = if encoding.eq_ignore_ascii_case("BASE64") {
        let compact: Vec<u8> = content.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        STANDARD.decode(compact).map_err(|e| Refused::Malformed(format!("`content` is not base64: {e}")))?
    } else {
        content.as_bytes().to_vec()
    };

    let mut mail = parse_mime(&raw, received_ms)?;
    mail.dedupe_key = format!("ses:{message_id}");
    let recipients = receipt.get("recipients").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    mail.envelope_to = envelope_list(recipients.iter().filter_map(Value::as_str));
    mail.envelope_from = envelope_address(message.pointer("/mail/source").and_then(Value::as_str).unwrap_or_default());
    mail.verdicts = VERDICTS
        .iter()
        .filter_map(|(field, name)| verdict(name, receipt.get(field)?.get("status")?.as_str()?))
        .collect();
    Ok(mail)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const RAW: &str = "From: Sender <sender@example.com>\r\nTo: Info@BitMail.test\r\n\
        Subject: Hello from SES\r\nMessage-ID: <ses-1@example.com>\r\n\
        Date: Tue, 1 Sep 2026 08:00:00 +0000\r\n\r\nBody line\r\n";

    fn notification(encoding: &str, content: Option<String>) -> Value {
        let mut message = json!({
            "notificationType": "Received",
            "mail": {
                "timestamp": "2026-09-01T08:00:01.000Z",
                "source": "Bounces@Example.com",
                "messageId": "o3vrnil0e2ic28trm7dfhrc2v0clambr7nop6ce1",
                "destination": ["info@bitmail.test"]
            },
            "receipt": {
                "recipients": ["Info@BitMail.test", "other@bitmail.test"],
                "spamVerdict": {"status": "PASS"},
                "virusVerdict": {"status": "PASS"},
                "spfVerdict": {"status": "GRAY"},
                "dkimVerdict": {"status": "FAIL"},
                "dmarcVerdict": {"status": "PASS"},
                "action": {"type": "SNS", "topicArn": "arn:aws:sns:eu-west-1:123456789012:inbound", "encoding": encoding}
            }
        });
        if let Some(content) = content {
            message["content"] = Value::String(content);
        }
        message
    }

    fn check(mail: &InboundMail) {
        assert_eq!(mail.dedupe_key, "ses:o3vrnil0e2ic28trm7dfhrc2v0clambr7nop6ce1");
        assert_eq!(mail.envelope_to, vec!["info@bitmail.test", "other@bitmail.test"]);
        assert_eq!(mail.envelope_from, "bounces@example.com");
        assert_eq!(mail.from, "Sender <sender@example.com>");
        assert_eq!(mail.to, vec!["Info@BitMail.test"]);
        assert_eq!(mail.subject, "Hello from SES");
        assert_eq!(mail.message_id, "ses-1@example.com");
        assert_eq!(mail.date_ms, 1_788_249_600_000);
        assert_eq!(mail.text.trim_end(), "Body line");
        let verdicts: Vec<(&str, &str)> = mail.verdicts.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
        assert_eq!(
            verdicts,
            [("spam", "pass"), ("virus", "pass"), ("spf", "gray"), ("dkim", "fail"), ("dmarc", "pass")]
        );
    }

    #[test]
    fn base64_content() {
        check(&parse(&notification("BASE64", Some(STANDARD.encode(RAW))), 5).unwrap());
    }

    #[test]
    fn utf8_content() {
        check(&parse(&notification("UTF8", Some(RAW.into())), 5).unwrap());
    }

    #[test]
    fn missing_content_says_why() {
        let e = parse(&notification("UTF8", None), 5).unwrap_err();
        assert!(matches!(&e, Refused::Malformed(m) if m.contains("stored in S3") && m.contains("150 KB")), "{e}");
    }

    #[test]
    fn other_notifications_and_bad_content_are_malformed() {
        let mut bounce = notification("UTF8", Some(RAW.into()));
        bounce["notificationType"] = json!("Bounce");
        assert!(matches!(parse(&bounce, 5), Err(Refused::Malformed(m)) if m.contains("Bounce")));
        let bad = notification("BASE64", Some("%%% not base64".into()));
        assert!(matches!(parse(&bad, 5), Err(Refused::Malformed(m)) if m.contains("base64")));
        let mut no_id = notification("UTF8", Some(RAW.into()));
        no_id["mail"].as_object_mut().unwrap().remove("messageId");
        assert!(matches!(parse(&no_id, 5), Err(Refused::Malformed(m)) if m.contains("messageId")));
    }
}
