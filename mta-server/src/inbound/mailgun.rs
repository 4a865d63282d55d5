//! Mailgun route forwards (`forward("https://.../inbound")`): a form POST,
//! `multipart/form-data` when it carries attachments, else
//! `application/x-www-form-urlencoded`, signed like Mailgun's event webhooks with fields
//! `timestamp`, `token` and `signature`.
//!
//! Fully parsed mode gives `recipient` (the envelope recipients, comma-separated), `sender`
//! (the return path), `from`, `To`, `Cc`, `subject`, `body-plain`, `body-html`,
//! `message-headers` (JSON list of `[name, value]`), files `attachment-1..N` and
//! `content-id-map` (JSON `{"<cid>": "attachment-N"}`, the inline ones). A route URL ending
//! in `mime` gets the whole message in `body-mime` instead of the body fields.

use std::collections::{HashMap, HashSet};

use bitmail_proto::v1::InboundMail;
use serde_json::Value;

use super::fields::Fields;
use super::mime::{parse_header_block, parse_mime};
use super::signed::{SignatureFields, signature_fields};
use super::{Form, Refused, attachment, check_body_size, envelope_address, envelope_list, verdict};
use crate::webhook::{MailgunSigningKey, header};

/// Mailgun's headers carrying its verdicts, and the names BitMail records them under.
const VERDICTS: [(&str, &str); 4] = [
    ("X-Mailgun-Sflag", "spam"),
    ("X-Mailgun-Sscore", "spam_score"),
    ("X-Mailgun-Spf", "spf"),
    ("X-Mailgun-Dkim-Check-Result", "dkim"),
];

/// Verifies and parses one route forward received at `received_ms`. Returns the mail and
/// Mailgun's `token`: single-use, the caller refuses a token seen before for other mail.
/// The dedupe key is `mailgun:` + token.
pub fn parse(
    key: &MailgunSigningKey,
    headers: &[(String, String)],
    body: &[u8],
    received_ms: u64,
) -> Result<(InboundMail, String), Refused> {
    // The signature first, from its three fields alone (`signed.rs`): a forged request is
    // refused before the rest of the form, attachments and all, is parsed.
    check_body_size(body.len())?;
    let content_type = header(headers, "content-type")
        .ok_or_else(|| Refused::Malformed("the Content-Type header is missing".into()))?;
    let SignatureFields { timestamp, token, signature } = signature_fields(content_type, body)?;
    key.verify(&timestamp, &token, &signature, received_ms)?;
    let form = Form::read(headers, body)?;

    let mut mail = match form.get("body-mime") {
        Some(mime) => parse_mime(&mime.data, received_ms)?,
        None => parsed(&form, received_ms)?,
    };
    mail.dedupe_key = format!("mailgun:{token}");
    mail.envelope_to = envelope_list(form.text("recipient").as_deref());
    mail.envelope_from = envelope_address(&form.text("sender").unwrap_or_default());
    if let Some(list) = form.text("message-headers") {
        let header_pairs = pairs(&list)?;
        mail.verdicts = VERDICTS
            .iter()
            .filter_map(|(header, name)| {
                let (_, value) = header_pairs.iter().find(|(n, _)| n.eq_ignore_ascii_case(header))?;
                verdict(name, value)
            })
            .collect();
    }
    Ok((mail, token))
}

/// The fully parsed mode.
fn parsed(form: &Form, received_ms: u64) -> Result<InboundMail, Refused> {
    let field = |name: &str| {
        form.parts
            .iter()
            .find(|p| p.filename.is_none() && p.name.eq_ignore_ascii_case(name))
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
    };
    let header_block = match field("message-headers") {
        Some(list) => pairs(&list)?
            .iter()
            .map(|(name, value)| format!("{name}: {}\r\n", value.replace(['\r', '\n'], " ")))
            .collect::<String>(),
        None => String::new(),
    };
    let inline: HashMap<String, String> = match field("content-id-map") {
        Some(map) if !map.trim().is_empty() => serde_json::from_str::<HashMap<String, String>>(&map)
            .map_err(|e| Refused::Malformed(format!("`content-id-map` is not a JSON object of strings: {e}")))?
            .into_iter()
            .map(|(cid, part)| (part, cid))
            .collect(),
        _ => HashMap::new(),
    };
    let mut seen = HashSet::new();
    let attachments = form
        .numbered("attachment-")
        .into_iter()
        .map(|(n, p)| {
            attachment(
                p.filename.as_deref().unwrap_or_default(),
                p.content_type.as_deref().unwrap_or_default(),
                p.data.clone(),
                inline.get(&p.name).map(String::as_str).unwrap_or_default(),
                &format!("attachment-{n}"),
                &mut seen,
            )
        })
        .collect();
    Fields {
        headers: parse_header_block(header_block.as_bytes()),
        from: field("from"),
        to: field("To"),
        cc: field("Cc"),
        subject: field("subject"),
        text: field("body-plain"),
        html: field("body-html"),
        attachments,
    }
    .into_mail(received_ms)
}

/// `message-headers`: a JSON list of `[name, value]` pairs.
fn pairs(list: &str) -> Result<Vec<(String, String)>, Refused> {
    let malformed = || Refused::Malformed("`message-headers` is not a JSON list of [name, value] pairs".into());
    let value: Value = serde_json::from_str(list).map_err(|_| malformed())?;
    value
        .as_array()
        .ok_or_else(malformed)?
        .iter()
        .map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([Value::String(name), Value::String(value)]) => Ok((name.clone(), value.clone())),
            _ => Err(malformed()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::hmac;
    use serde_json::json;

    use super::super::testing::{Part, headers, multipart};
    use super::*;

    const KEY: &str = "key-signing-0123456789";
    const NOW_MS: u64 = 1_790_000_000_000;
    const TOKEN: &str = "9f1c0e2f8b6d4a0c9e3b7a5d1f2e4c6b8a0d2f4e6c8b0a1e3d";

    fn sign(timestamp: &str, token: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, KEY.as_bytes());
        hmac::sign(&key, format!("{timestamp}{token}").as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn signature_fields(timestamp_secs: u64) -> Vec<(String, String)> {
        let ts = timestamp_secs.to_string();
        vec![("timestamp".into(), ts.clone()), ("token".into(), TOKEN.into()), ("signature".into(), sign(&ts, TOKEN))]
    }

    fn message_headers() -> String {
        json!([
            ["Received", "by mxa.mailgun.org"],
            ["Message-Id", "<mg-1@example.com>"],
            ["Date", "Tue, 01 Sep 2026 08:00:00 +0000"],
            ["From", "Bob <bob@example.com>"],
            ["To", "Info <info@bitmail.test>"],
            ["Reply-To", "\"Bob (replies)\" <replies@example.com>"],
            ["Subject", "Hello"],
            ["X-Mailgun-Sflag", "No"],
            ["X-Mailgun-Sscore", "0.3"],
            ["X-Mailgun-Spf", "Pass"]
        ])
        .to_string()
    }

    fn urlencoded(fields: &[(String, String)]) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish().into_bytes()
    }

    fn parse_urlencoded(fields: &[(String, String)]) -> Result<(InboundMail, String), Refused> {
        parse(&MailgunSigningKey::new(KEY), &headers("application/x-www-form-urlencoded"), &urlencoded(fields), NOW_MS)
    }

    fn parsed_fields() -> Vec<(String, String)> {
        let mut fields: Vec<(String, String)> = [
            ("recipient", "Info@BitMail.test, sales@bitmail.test"),
            ("sender", "Bounce+x@Example.com"),
            ("from", "Bob <bob@example.com>"),
            ("To", "Info <info@bitmail.test>, sales@bitmail.test"),
            ("Cc", "\"Smith, Carol\" <carol@example.com>"),
            ("subject", "Caf\u{e9} menu"),
            ("body-plain", "Hi there\n"),
            ("body-html", "<p>Hi there</p>"),
            ("stripped-text", "Hi there"),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
        fields.push(("message-headers".into(), message_headers()));
        fields.extend(signature_fields(NOW_MS / 1000 - 30));
        fields
    }

    #[test]
    fn a_urlencoded_forward_is_parsed() {
        let (mail, token) = parse_urlencoded(&parsed_fields()).unwrap();
        assert_eq!(token, TOKEN);
        assert_eq!(mail.dedupe_key, format!("mailgun:{TOKEN}"));
        assert_eq!(mail.envelope_to, vec!["info@bitmail.test", "sales@bitmail.test"]);
        assert_eq!(mail.envelope_from, "bounce+x@example.com");
        assert_eq!(mail.from, "Bob <bob@example.com>");
        assert_eq!(mail.to, vec!["Info <info@bitmail.test>", "sales@bitmail.test"]);
        assert_eq!(mail.cc, vec!["\"Smith, Carol\" <carol@example.com>"]);
        assert_eq!(mail.reply_to, vec!["\"Bob (replies)\" <replies@example.com>"]);
        assert_eq!(mail.subject, "Café menu");
        assert_eq!(mail.message_id, "mg-1@example.com");
        assert_eq!(mail.date_ms, 1_788_249_600_000);
        assert_eq!((mail.text.as_str(), mail.html.as_str()), ("Hi there\n", "<p>Hi there</p>"));
        let verdicts: Vec<(&str, &str)> = mail.verdicts.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
        assert_eq!(verdicts, [("spam", "no"), ("spam_score", "0.3"), ("spf", "pass")]);
        assert!(mail.attachments.is_empty());
    }

    #[test]
    fn a_multipart_forward_with_attachment_and_inline_image() {
        let png = [0x89u8, b'P', b'N', b'G', 0, 0xff];
        let fields = parsed_fields();
        let cid_map = json!({"<logo@example.com>": "attachment-2"}).to_string();
        let mut parts: Vec<Part<'_>> = fields.iter().map(|(n, v)| (n.as_str(), None, None, v.as_bytes())).collect();
        parts.push(("attachment-count", None, None, b"2"));
        parts.push(("content-id-map", None, None, cid_map.as_bytes()));
        parts.push(("attachment-2", Some("logo.png"), Some("image/png"), &png));
        parts.push(("attachment-1", Some("notes.txt"), Some("text/plain"), b"line 1\r\nline 2"));
        let body = multipart("mgBoundary", &parts);
        let (mail, _) =
            parse(&MailgunSigningKey::new(KEY), &headers("multipart/form-data; boundary=mgBoundary"), &body, NOW_MS)
                .unwrap();
        assert_eq!(mail.subject, "Café menu");
        assert_eq!(mail.attachments.len(), 2);
        let notes = &mail.attachments[0];
        assert_eq!((notes.filename.as_str(), notes.content_type.as_str()), ("notes.txt", "text/plain"));
        assert_eq!((notes.content.as_slice(), notes.content_id.as_str()), (&b"line 1\r\nline 2"[..], ""));
        let logo = &mail.attachments[1];
        assert_eq!((logo.filename.as_str(), logo.content_type.as_str()), ("logo.png", "image/png"));
        assert_eq!((logo.content.as_slice(), logo.content_id.as_str()), (&png[..], "logo@example.com"));
    }

    #[test]
    fn a_mime_forward_is_parsed_from_body_mime() {
        let raw = "From: Bob <bob@example.com>\r\nTo: info@bitmail.test\r\nSubject: =?UTF-8?Q?R=C3=A9sum=C3=A9?=\r\n\
                   Message-ID: <mime-1@example.com>\r\nContent-Type: text/plain\r\n\r\nIn MIME\r\n";
        let mut fields: Vec<(String, String)> = vec![
            ("recipient".into(), "info@bitmail.test".into()),
            ("sender".into(), "bob@example.com".into()),
            ("body-mime".into(), raw.into()),
        ];
        fields.extend(signature_fields(NOW_MS / 1000));
        let (mail, token) = parse_urlencoded(&fields).unwrap();
        assert_eq!(token, TOKEN);
        assert_eq!((mail.subject.as_str(), mail.message_id.as_str()), ("Résumé", "mime-1@example.com"));
        assert_eq!(mail.text.trim_end(), "In MIME");
        assert_eq!(mail.envelope_to, vec!["info@bitmail.test"]);
        assert_eq!(mail.envelope_from, "bob@example.com");
        assert_eq!(mail.dedupe_key, format!("mailgun:{TOKEN}"));
    }

    #[test]
    fn bad_missing_or_stale_signatures_are_unauthorized() {
        let mut forged = parsed_fields();
        forged.iter_mut().find(|(n, _)| n == "signature").unwrap().1 = sign("1", "other");
        let e = parse_urlencoded(&forged).unwrap_err();
        assert!(matches!(&e, Refused::Unauthorized(m) if m.contains("does not match")), "{e}");

        let mut tampered = parsed_fields();
        tampered.iter_mut().find(|(n, _)| n == "token").unwrap().1 = "another-token".into();
        assert!(matches!(parse_urlencoded(&tampered), Err(Refused::Unauthorized(_))));

        let unsigned: Vec<_> = parsed_fields().into_iter().filter(|(n, _)| n != "signature").collect();
        assert!(matches!(parse_urlencoded(&unsigned), Err(Refused::Unauthorized(m)) if m.contains("signature")));

        let mut stale: Vec<_> = parsed_fields()
            .into_iter()
            .filter(|(n, _)| !["timestamp", "token", "signature"].contains(&n.as_str()))
            .collect();
        stale.extend(signature_fields(NOW_MS / 1000 - 3600));
        assert!(matches!(parse_urlencoded(&stale), Err(Refused::Unauthorized(m)) if m.contains("from now")));
    }

    #[test]
    fn a_forged_forward_is_refused_before_its_attachments_are_parsed() {
        let mut fields: Vec<(String, String)> = signature_fields(NOW_MS / 1000);
        fields.iter_mut().find(|(n, _)| n == "signature").unwrap().1 = sign("1", "forged");
        let parts: Vec<Part<'_>> = fields.iter().map(|(n, v)| (n.as_str(), None, None, v.as_bytes())).collect();
        let mut body = multipart("mgBoundary", &parts);
        // An attachment that is never finished: parsing the whole form would answer 400.
        body.truncate(body.len() - "--mgBoundary--\r\n".len());
        body.extend_from_slice(
            b"--mgBoundary\r\nContent-Disposition: form-data; name=\"attachment-1\"; filename=\"big.bin\"\r\n\r\n",
        );
        body.extend_from_slice(&[0x55; 64 * 1024]);
        let e =
            parse(&MailgunSigningKey::new(KEY), &headers("multipart/form-data; boundary=mgBoundary"), &body, NOW_MS)
                .unwrap_err();
        assert!(matches!(&e, Refused::Unauthorized(m) if m.contains("does not match")), "{e}");
    }

    #[test]
    fn signature_fields_after_the_attachments_are_found() {
        let mut fields = parsed_fields();
        let signed: Vec<_> =
            fields.iter().filter(|(n, _)| ["timestamp", "token", "signature"].contains(&n.as_str())).cloned().collect();
        fields.retain(|(n, _)| !["timestamp", "token", "signature"].contains(&n.as_str()));
        let mut parts: Vec<Part<'_>> = fields.iter().map(|(n, v)| (n.as_str(), None, None, v.as_bytes())).collect();
        parts.push(("attachment-1", Some("notes.txt"), Some("text/plain"), b"line 1"));
        parts.extend(signed.iter().map(|(n, v)| (n.as_str(), None, None, v.as_bytes())));
        let body = multipart("mgBoundary", &parts);
        let (mail, token) =
            parse(&MailgunSigningKey::new(KEY), &headers("multipart/form-data; boundary=mgBoundary"), &body, NOW_MS)
                .unwrap();
        assert_eq!((token.as_str(), mail.attachments.len()), (TOKEN, 1));
    }

    #[test]
    fn malformed_forms_are_refused() {
        let fields = parsed_fields();
        let parts: Vec<Part<'_>> = fields.iter().map(|(n, v)| (n.as_str(), None, None, v.as_bytes())).collect();
        let body = multipart("mgBoundary", &parts);
        let verifier = MailgunSigningKey::new(KEY);
        let wrong_boundary = parse(&verifier, &headers("multipart/form-data; boundary=nope"), &body, NOW_MS);
        assert!(matches!(wrong_boundary, Err(Refused::Malformed(_))));
        let truncated =
            parse(&verifier, &headers("multipart/form-data; boundary=mgBoundary"), &body[..body.len() - 40], NOW_MS);
        assert!(matches!(truncated, Err(Refused::Malformed(_))));

        let mut bad_headers = parsed_fields();
        bad_headers.iter_mut().find(|(n, _)| n == "message-headers").unwrap().1 = "{not json".into();
        assert!(matches!(parse_urlencoded(&bad_headers), Err(Refused::Malformed(m)) if m.contains("message-headers")));
    }
}
