//! SendGrid Inbound Parse: a `multipart/form-data` POST per received message.
//!
//! Raw mode sends the whole MIME message in field `email`. Parsed mode sends `headers`
//! (the raw header block), `from`, `to`, `cc`, `subject`, `text`, `html` (each in the
//! charset that `charsets`, a JSON object of field → charset, names), `attachments` (a
//! count), `attachment-info` (JSON per `attachmentN`: `filename`, `name`, `type`,
//! `content-id`), `content-ids` (JSON cid → `attachmentN`) and files `attachment1..N`.
//! Both modes send `envelope` (JSON `{"to": [..], "from": ".."}`), `spam_score`, `SPF` and
//! `dkim`.
//!
//! SendGrid signs nothing here: the only authentication is HTTP Basic auth in the URL it
//! is configured to post to, checked by [`check_basic_auth`].
//!
//! [`check_basic_auth`] takes any user name and compares the password in constant time.

use std::collections::{HashMap, HashSet};

use aws_lc_rs::{constant_time, digest};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bitmail_proto::v1::InboundMail;
use serde_json::Value;

use super::fields::Fields;
use super::mime::{parse_header_block, parse_mime};
use super::{Form, Refused, attachment, envelope_address, envelope_list, sha256_hex, verdict};
use crate::webhook::header;

/// Checks the request's `Authorization: Basic ...` against `password` (any user name),
/// in constant time. The error never repeats what was sent.
pub fn check_basic_auth(headers: &[(String, String)], password: &str) -> Result<(), Refused> {
    let value = header(headers, "authorization")
        .ok_or_else(|| Refused::Unauthorized("HTTP Basic credentials are missing".into()))?;
    let (scheme, encoded) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Refused::Unauthorized("the Authorization header is not HTTP Basic".into()));
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| Refused::Unauthorized("the HTTP Basic credentials are not base64".into()))?;
    let given = decoded.iter().position(|&b| b == b':').map_or(&[][..], |colon| &decoded[colon + 1..]);
    // Digests first, so the comparison takes the same time whatever the lengths.
    let given = digest::digest(&digest::SHA256, given);
    let expected = digest::digest(&digest::SHA256, password.as_bytes());
    constant_time::verify_slices_are_equal(given.as_ref(), expected.as_ref())
        .map_err(|_| Refused::Unauthorized("wrong HTTP Basic credentials".into()))
}

/// The SHA-256 of a parsed message's content, each field ended by a NUL (no field can
/// run into the next).
fn content_digest(mail: &InboundMail) -> String {
    let mut bytes = Vec::with_capacity(mail.text.len() + mail.html.len() + 256);
    let mut add = |field: &[u8]| {
        bytes.extend_from_slice(field);
        bytes.push(0);
    };
    for field in [&mail.message_id, &mail.from, &mail.subject, &mail.text, &mail.html] {
        add(field.as_bytes());
    }
    for list in [&mail.to, &mail.cc, &mail.reply_to] {
        add(list.join("\n").as_bytes());
    }
    for a in &mail.attachments {
        add(a.filename.as_bytes());
        add(a.content_id.as_bytes());
        add(&a.content);
    }
    sha256_hex(&bytes)
}

/// Parses one Inbound Parse request received at `received_ms` (raw or parsed mode). The
/// dedupe key is `sendgrid:sha256:` + a digest of what the message says (its
/// Message-ID, addresses, subject, bodies and files): SendGrid gives no id of its own,
/// and a retry repeats the content, not the multipart boundary. The sender's
/// Message-ID alone would let anyone who knows it make the real message drop as a
/// duplicate.
pub fn parse(headers: &[(String, String)], body: &[u8], received_ms: u64) -> Result<InboundMail, Refused> {
    let form = Form::read(headers, body)?;
    let charsets: HashMap<String, String> = match form.text("charsets") {
        Some(json) if !json.trim().is_empty() => serde_json::from_str(&json)
            .map_err(|e| Refused::Malformed(format!("`charsets` is not a JSON object of strings: {e}")))?,
        _ => HashMap::new(),
    };
    let field = |name: &str| -> Option<String> {
        let part = form.parts.iter().find(|p| p.name == name && p.filename.is_none())?;
        Some(decode(&part.data, charsets.get(name).map(String::as_str)))
    };

    let mut mail = match form.get("email") {
        Some(raw) => parse_mime(&raw.data, received_ms)?,
        None => parsed(&form, &field, received_ms)?,
    };
    mail.dedupe_key = format!("sendgrid:sha256:{}", content_digest(&mail));
    if let Some(envelope) = field("envelope").filter(|e| !e.trim().is_empty()) {
        let envelope: Value =
            serde_json::from_str(&envelope).map_err(|e| Refused::Malformed(format!("`envelope` is not JSON: {e}")))?;
        let to = envelope.get("to").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        mail.envelope_to = envelope_list(to.iter().filter_map(Value::as_str));
        mail.envelope_from = envelope_address(envelope.get("from").and_then(Value::as_str).unwrap_or_default());
    }
    mail.verdicts = [("spam_score", "spam_score"), ("SPF", "spf"), ("dkim", "dkim")]
        .iter()
        .filter_map(|(field_name, name)| verdict(name, &field(field_name)?))
        .collect();
    Ok(mail)
}

/// The parsed mode.
fn parsed(form: &Form, field: &dyn Fn(&str) -> Option<String>, received_ms: u64) -> Result<InboundMail, Refused> {
    let headers = field("headers").and_then(|block| parse_header_block(block.trim_end().as_bytes()));
    let json_field = |name: &str| -> Result<Value, Refused> {
        match field(name) {
            Some(json) if !json.trim().is_empty() => {
                serde_json::from_str(&json).map_err(|e| Refused::Malformed(format!("`{name}` is not JSON: {e}")))
            }
            _ => Ok(Value::Null),
        }
    };
    let info = json_field("attachment-info")?;
    let content_ids: HashMap<String, String> = json_field("content-ids")?
        .as_object()
        .map(|map| map.iter().filter_map(|(cid, part)| Some((part.as_str()?.to_owned(), cid.clone()))).collect())
        .unwrap_or_default();
    let mut seen = HashSet::new();
    let attachments = form
        .numbered("attachment")
        .into_iter()
        .map(|(n, p)| {
            let meta = |key: &str| info.get(&p.name).and_then(|i| i.get(key)).and_then(Value::as_str);
            let filename = meta("filename").or(p.filename.as_deref()).or(meta("name")).unwrap_or_default();
            let content_type = meta("type").or(p.content_type.as_deref()).unwrap_or_default();
            let content_id = meta("content-id").or(content_ids.get(&p.name).map(String::as_str)).unwrap_or_default();
            attachment(filename, content_type, p.data.clone(), content_id, &format!("attachment{n}"), &mut seen)
        })
        .collect();
    Fields {
        headers,
        from: field("from"),
        to: field("to"),
        cc: field("cc"),
        subject: field("subject"),
        text: field("text"),
        html: field("html"),
        attachments,
    }
    .into_mail(received_ms)
}

/// A field's bytes in the charset `charsets` names for it; UTF-8 when it names none or
/// one not known (invalid sequences replaced).
fn decode(bytes: &[u8], charset: Option<&str>) -> String {
    match charset.and_then(|c| encoding_rs::Encoding::for_label(c.trim().as_bytes())) {
        Some(encoding) => encoding.decode_without_bom_handling(bytes).0.into_owned(),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{Part, headers, multipart};
    use super::*;

    const RECEIVED: u64 = 1_790_000_000_000;
    const CT: &str = "multipart/form-data; boundary=xYzZY";

    fn auth(value: &str) -> Vec<(String, String)> {
        vec![("Authorization".into(), value.into())]
    }

    #[test]
    fn basic_auth_takes_the_right_password_with_any_user() {
        let password = "s3cret:with:colons";
        let ok = format!("Basic {}", STANDARD.encode(format!("sendgrid:{password}")));
        assert_eq!(check_basic_auth(&auth(&ok), password), Ok(()));
        let other_user = format!("basic {}", STANDARD.encode(format!("x:{password}")));
        assert_eq!(check_basic_auth(&auth(&other_user), password), Ok(()));

        let wrong = format!("Basic {}", STANDARD.encode("sendgrid:guess-one"));
        let no_colon = format!("Basic {}", STANDARD.encode(password));
        let bearer = format!("Bearer {password}");
        for headers in [vec![], auth(&wrong), auth(&no_colon), auth("Basic %%%"), auth(&bearer)] {
            let e = check_basic_auth(&headers, password).unwrap_err();
            assert!(matches!(e, Refused::Unauthorized(_)), "{e}");
            assert!(!e.to_string().contains("guess-one") && !e.to_string().contains(password), "{e}");
        }
    }

    #[test]
    fn raw_mode_parses_the_email_field() {
        let raw = b"From: Bob <bob@example.com>\r\nTo: Info <info@bitmail.test>\r\n\
            Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <raw-1@example.com>\r\n\
            Date: Tue, 1 Sep 2026 08:00:00 +0000\r\nContent-Type: text/plain\r\n\r\nRaw body\r\n";
        let envelope = json!({"to": ["Info@BitMail.test"], "from": "Bob@Example.com"}).to_string();
        let body = multipart(
            "xYzZY",
            &[
                ("email", None, None, raw),
                ("envelope", None, None, envelope.as_bytes()),
                ("spam_score", None, None, b"0.1"),
                ("SPF", None, None, b"pass"),
                ("dkim", None, None, b"{@example.com : pass}"),
                ("charsets", None, None, br#"{"to":"UTF-8","from":"UTF-8","subject":"UTF-8"}"#),
            ],
        );
        let mail = parse(&headers(CT), &body, RECEIVED).unwrap();
        assert!(mail.dedupe_key.starts_with("sendgrid:sha256:"), "{}", mail.dedupe_key);
        assert_eq!(mail.envelope_to, vec!["info@bitmail.test"]);
        assert_eq!(mail.envelope_from, "bob@example.com");
        assert_eq!(mail.from, "Bob <bob@example.com>");
        assert_eq!(mail.subject, "Grüße");
        assert_eq!(mail.date_ms, 1_788_249_600_000);
        assert_eq!(mail.text.trim_end(), "Raw body");
        let verdicts: Vec<(&str, &str)> = mail.verdicts.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
        assert_eq!(verdicts, [("spam_score", "0.1"), ("spf", "pass"), ("dkim", "{@example.com : pass}")]);
    }

    #[test]
    fn parsed_mode_with_charsets_attachment_and_inline_image() {
        let header_block = "Received: by mx.sendgrid.net\r\nMessage-ID: <parsed-1@example.com>\r\n\
            Date: Tue, 1 Sep 2026 10:00:00 +0200\r\nReply-To: Help Desk <help@example.com>\r\n\
            From: Bob <bob@example.com>\r\nTo: info@bitmail.test\r\n";
        let envelope = json!({"to": ["info@bitmail.test"], "from": "bob@example.com"}).to_string();
        let charsets =
            json!({"subject": "iso-8859-1", "text": "iso-8859-1", "from": "UTF-8", "to": "UTF-8", "html": "UTF-8"});
        let info = json!({
            "attachment1": {"filename": "menu.pdf", "name": "menu.pdf", "type": "application/pdf"},
            "attachment2": {"filename": "logo.png", "name": "logo.png", "type": "image/png", "content-id": "ii_logo1"}
        });
        let png = [0x89u8, b'P', b'N', b'G', 0, 7];
        let (charsets, info) = (charsets.to_string(), info.to_string());
        let body = multipart(
            "xYzZY",
            &[
                ("headers", None, None, header_block.as_bytes()),
                ("from", None, None, b"Bob <bob@example.com>"),
                ("to", None, None, b"info@bitmail.test, \"Sales, EU\" <sales@bitmail.test>"),
                ("cc", None, None, b"carol@example.com"),
                ("subject", None, None, b"Caf\xe9 cr\xe8me"),
                ("text", None, None, b"Cr\xe8me br\xfbl\xe9e\n"),
                ("html", None, None, "<p>Crème <img src=\"cid:ii_logo1\"></p>".as_bytes()),
                ("envelope", None, None, envelope.as_bytes()),
                ("charsets", None, None, charsets.as_bytes()),
                ("spam_score", None, None, b"2.5"),
                ("SPF", None, None, b"softfail"),
                ("attachments", None, None, b"2"),
                ("attachment-info", None, None, info.as_bytes()),
                ("attachment1", Some("menu.pdf"), Some("application/pdf"), b"%PDF-1.7"),
                ("attachment2", Some("logo.png"), Some("image/png"), &png),
            ],
        );
        let mail = parse(&headers(CT), &body, RECEIVED).unwrap();
        assert!(mail.dedupe_key.starts_with("sendgrid:sha256:"), "{}", mail.dedupe_key);
        assert_eq!(mail.message_id, "parsed-1@example.com");
        assert_eq!(mail.date_ms, 1_788_249_600_000);
        assert_eq!(mail.reply_to, vec!["Help Desk <help@example.com>"]);
        assert_eq!(mail.from, "Bob <bob@example.com>");
        assert_eq!(mail.to, vec!["info@bitmail.test", "\"Sales, EU\" <sales@bitmail.test>"]);
        assert_eq!(mail.cc, vec!["carol@example.com"]);
        assert_eq!(mail.subject, "Café crème");
        assert_eq!(mail.text, "Crème brûlée\n");
        assert_eq!(mail.html, "<p>Crème <img src=\"cid:ii_logo1\"></p>");
        assert_eq!(mail.envelope_to, vec!["info@bitmail.test"]);
        assert_eq!(mail.envelope_from, "bob@example.com");
        let verdicts: Vec<(&str, &str)> = mail.verdicts.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
        assert_eq!(verdicts, [("spam_score", "2.5"), ("spf", "softfail")]);
        assert_eq!(mail.attachments.len(), 2);
        let menu = &mail.attachments[0];
        assert_eq!((menu.filename.as_str(), menu.content_type.as_str()), ("menu.pdf", "application/pdf"));
        assert_eq!((menu.content.as_slice(), menu.content_id.as_str()), (&b"%PDF-1.7"[..], ""));
        let logo = &mail.attachments[1];
        assert_eq!((logo.filename.as_str(), logo.content_type.as_str()), ("logo.png", "image/png"));
        assert_eq!((logo.content.as_slice(), logo.content_id.as_str()), (&png[..], "ii_logo1"));
    }

    #[test]
    fn a_retry_dedupes_and_a_forged_message_id_does_not() {
        let fields = |text: &'static [u8]| -> Vec<Part<'static>> {
            vec![
                ("headers", None, None, b"Message-ID: <real-1@example.com>\r\nFrom: a@example.com\r\n"),
                ("from", None, None, b"a@example.com"),
                ("text", None, None, text),
            ]
        };
        let real = parse(&headers(CT), &multipart("xYzZY", &fields(b"the real one")), RECEIVED).unwrap();
        assert_eq!(real.message_id, "real-1@example.com");
        // SendGrid's retry: the same content, another boundary, later.
        let other_ct = "multipart/form-data; boundary=AbCdE";
        let retry =
            parse(&headers(other_ct), &multipart("AbCdE", &fields(b"the real one")), RECEIVED + 60_000).unwrap();
        assert_eq!(retry.dedupe_key, real.dedupe_key);
        // Someone who knows the Message-ID sends first: not a duplicate of the real one.
        let forged = parse(&headers(CT), &multipart("xYzZY", &fields(b"a forgery")), RECEIVED).unwrap();
        assert_eq!(forged.message_id, real.message_id);
        assert_ne!(forged.dedupe_key, real.dedupe_key);
        // Without a Message-ID (or a Date), the content still decides.
        let body = multipart("xYzZY", &[("from", None, None, b"a@example.com"), ("html", None, None, b"<b>Hi</b>")]);
        let mail = parse(&headers(CT), &body, RECEIVED).unwrap();
        assert_eq!((mail.text.trim(), mail.date_ms), ("Hi", RECEIVED));
        let again = parse(&headers(CT), &body, RECEIVED + 1).unwrap();
        assert_eq!(again.dedupe_key, mail.dedupe_key);
    }

    #[test]
    fn malformed_requests_are_refused() {
        let body = multipart("xYzZY", &[("from", None, None, b"a@example.com")]);
        for (content_type, body) in [
            ("multipart/form-data; boundary=other", &body[..]),
            (CT, &body[..body.len() - 10]),
            ("application/json", &body[..]),
        ] {
            assert!(
                matches!(parse(&headers(content_type), body, RECEIVED), Err(Refused::Malformed(_))),
                "{content_type}"
            );
        }
        let bad_envelope =
            multipart("xYzZY", &[("from", None, None, b"a@example.com"), ("envelope", None, None, b"{")]);
        assert!(
            matches!(parse(&headers(CT), &bad_envelope, RECEIVED), Err(Refused::Malformed(m)) if m.contains("envelope"))
        );
        let not_mime = multipart("xYzZY", &[("email", None, None, b"no headers here")]);
        assert!(matches!(parse(&headers(CT), &not_mime, RECEIVED), Err(Refused::Malformed(_))));
    }
}
