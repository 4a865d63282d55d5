//! The bytes of DATA: checked as RFC 5321/5322 want them, then read into the submission
//! every surface makes.
//!
//! Refused outright: a NUL byte; a CR or LF that is not part of a CRLF (bare line ends
//! are how SMTP smuggling hides a second message); a line over 1000 bytes with its CRLF
//! (RFC 5322 §2.1.1); 8-bit bytes in the header when `MAIL FROM` did not say `SMTPUTF8`
//! (RFC 6531).
//!
//! Read: `From`, `To`, `Cc`, `Reply-To`, `Subject`, the text and HTML bodies, attachments
//! and inline parts (with their `Content-ID`), and every other top-level header that is
//! not BitMail's own (`X-Mailer`, `In-Reply-To`, `List-Unsubscribe`...). The envelope
//! decides who receives: a `To`/`Cc` address that is an envelope recipient stays
//! visible, every other envelope recipient is a Bcc (never in a header), and a header
//! address that is not in the envelope receives nothing. [`spooled_mime`] is the
//! message as providers that take MIME receive it.

use std::collections::HashSet;

use bitmail_proto::v1 as pb;
use mail_parser::{MessageParser, MimeHeaders, PartType};

use crate::inbound::mime::addresses;
use crate::message::is_reserved_header;

/// The longest line: 998 characters and CRLF.
pub(crate) const MAX_LINE: usize = 1000;

/// Why message bytes are refused: an SMTP reply's enhanced code and text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refused {
    pub code: u16,
    pub enhanced: &'static str,
    pub text: String,
}

fn refused(code: u16, enhanced: &'static str, text: impl Into<String>) -> Refused {
    Refused { code, enhanced, text: text.into() }
}

/// The checks of the raw bytes, in one pass.
pub(crate) fn check_bytes(body: &[u8], smtputf8: bool) -> Result<(), Refused> {
    let header_end = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(body.len());
    let mut line_start = 0;
    for (i, &b) in body.iter().enumerate() {
        match b {
            0 => return Err(refused(554, "5.6.0", "the message holds a NUL byte")),
            b'\n' => {
                if i == 0 || body[i - 1] != b'\r' {
                    return Err(refused(554, "5.6.0", "the message holds a bare LF: end every line with CRLF"));
                }
                if i + 1 - line_start > MAX_LINE {
                    return Err(refused(
                        554,
                        "5.6.0",
                        format!("a line of the message is over {MAX_LINE} bytes (RFC 5322 2.1.1)"),
                    ));
                }
                line_start = i + 1;
            }
            b'\r' if body.get(i + 1) != Some(&b'\n') => {
                return Err(refused(554, "5.6.0", "the message holds a bare CR: end every line with CRLF"));
            }
            0x80.. if i < header_end && !smtputf8 => {
                return Err(refused(
                    554,
                    "5.6.7",
                    "the header holds 8-bit characters: send MAIL FROM with SMTPUTF8, or encode them (RFC 2047)",
                ));
            }
            _ => {}
        }
    }
    if body.len() - line_start > MAX_LINE {
        return Err(refused(554, "5.6.0", format!("a line of the message is over {MAX_LINE} bytes (RFC 5322 2.1.1)")));
    }
    Ok(())
}

/// The client's MIME as it is spooled and sent by providers that take MIME: the `Bcc`
/// field removed (the envelope holds those recipients; nobody else may see them), and
/// `Message-ID` and `Date` added when the client left them out (RFC 6409 §8). The rest,
/// header and body, byte for byte as sent. `body` has passed [`check_bytes`].
pub(crate) fn spooled_mime(body: &[u8], hostname: &str, now_ms: u64) -> Vec<u8> {
    let header_end = body.windows(4).position(|w| w == b"\r\n\r\n").map_or(body.len(), |p| p + 2);
    let (header, rest) = body.split_at(header_end);
    let mut kept = Vec::with_capacity(header.len());
    let (mut has_id, mut has_date, mut in_bcc) = (false, false, false);
    for line in header.split_inclusive(|&b| b == b'\n') {
        let continues = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continues {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            in_bcc = name.eq_ignore_ascii_case(b"bcc");
            has_id |= name.eq_ignore_ascii_case(b"message-id");
            has_date |= name.eq_ignore_ascii_case(b"date");
        }
        if !in_bcc {
            kept.extend_from_slice(line);
        }
    }
    let mut out = Vec::with_capacity(body.len() + 128);
    if !has_id {
        out.extend_from_slice(format!("Message-ID: <{}@{hostname}>\r\n", uuid::Uuid::new_v4()).as_bytes());
    }
    if !has_date {
        out.extend_from_slice(format!("Date: {}\r\n", bitmail_runtime::time::rfc5322(now_ms)).as_bytes());
    }
    out.extend_from_slice(&kept);
    out.extend_from_slice(rest);
    out
}

/// `Name <addr>` or `addr` (as [`addresses`] writes them) to `addr`.
fn email_of(mailbox: &str) -> &str {
    match (mailbox.rfind('<'), mailbox.ends_with('>')) {
        (Some(start), true) => &mailbox[start + 1..mailbox.len() - 1],
        _ => mailbox,
    }
}

/// The submission that DATA makes, for envelope sender `mail_from` and `recipients`.
pub(crate) fn to_submission(body: &[u8], mail_from: &str, recipients: &[String]) -> Result<pb::SubmitRequest, Refused> {
    let parsed = MessageParser::default()
        .parse(body)
        .filter(|m| m.headers_raw().next().is_some())
        .ok_or_else(|| refused(554, "5.6.0", "the message has no header"))?;

    let in_envelope: HashSet<String> = recipients.iter().map(|r| r.to_ascii_lowercase()).collect();
    let mut shown = HashSet::new();
    let mut visible = |list: Vec<String>| -> Vec<String> {
        list.into_iter()
            .filter(|m| {
                let email = email_of(m).to_ascii_lowercase();
                in_envelope.contains(&email) && shown.insert(email)
            })
            .collect()
    };
    let to = visible(addresses(parsed.to()));
    let cc = visible(addresses(parsed.cc()));
    let mut bcc = Vec::new();
    for r in recipients {
        if shown.insert(r.to_ascii_lowercase()) {
            bcc.push(r.clone());
        }
    }

    // The raw message goes out as written: a second author in From would be shown to the
    // recipients without being checked against the tenant.
    let from_fields = parsed.headers_raw().filter(|(name, _)| name.eq_ignore_ascii_case("from")).count();
    let authors = addresses(parsed.from());
    if from_fields > 1 || authors.len() > 1 {
        return Err(refused(550, "5.7.1", "From must name one address (put the others in Reply-To)"));
    }
    let from = authors.into_iter().next().unwrap_or_else(|| mail_from.to_owned());
    let text = parsed.text_body.first().and_then(|&i| parsed.part(i)).and_then(|p| match &p.body {
        PartType::Text(t) => Some(t.to_string()),
        _ => None,
    });
    let html = parsed.html_body.first().and_then(|&i| parsed.part(i)).and_then(|p| match &p.body {
        PartType::Html(h) => Some(h.to_string()),
        _ => None,
    });
    let attachments = attachments(&parsed);
    // A message of attachments alone (a scanner's) still needs a body for every
    // provider: an empty line.
    let text = match (&text, &html) {
        (None, None) => Some("\r\n".to_owned()),
        _ => text,
    };
    let subject = parsed.subject().map(str::trim).filter(|s| !s.is_empty()).unwrap_or("(no subject)");
    Ok(pb::SubmitRequest {
        from,
        to,
        cc,
        bcc,
        reply_to: addresses(parsed.reply_to()),
        subject: subject.replace(['\r', '\n'], " "),
        text: text.unwrap_or_default(),
        html: html.unwrap_or_default(),
        headers: custom_headers(&parsed),
        attachments,
        ..Default::default()
    })
}

/// Top-level headers that are neither BitMail's own nor the MIME structure, unfolded.
fn custom_headers(parsed: &mail_parser::Message<'_>) -> Vec<pb::Header> {
    parsed
        .headers_raw()
        .filter(|(name, _)| {
            let lower = name.to_ascii_lowercase();
            !is_reserved_header(name) && !lower.starts_with("content-") && !lower.starts_with("x-bitmail-")
        })
        .map(|(name, value)| pb::Header {
            name: name.to_owned(),
            value: value.replace("\r\n", "").replace(['\r', '\n'], "").trim().to_owned(),
        })
        .filter(|h| !h.value.is_empty())
        .collect()
}

fn attachments(parsed: &mail_parser::Message<'_>) -> Vec<pb::Attachment> {
    let mut out = Vec::new();
    for part in parsed.attachments() {
        if matches!(part.body, PartType::Multipart(_)) {
            continue;
        }
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_owned(),
            })
            .unwrap_or_default();
        let attached = part.content_disposition().is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment"));
        let content_id = if attached { "" } else { part.content_id().unwrap_or_default() };
        let filename = match part.attachment_name() {
            Some(name) if !name.trim().is_empty() => name.replace(['/', '\\'], "_"),
            _ if part.is_message() => format!("message-{}.eml", out.len() + 1),
            _ => format!("attachment-{}", out.len() + 1),
        };
        out.push(pb::Attachment {
            filename,
            content_type,
            content: part.contents().to_vec(),
            content_id: content_id.trim_matches(['<', '>']).to_owned(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_bytes_are_refused_with_the_reason() {
        assert!(check_bytes(b"Subject: a\r\n\r\nbody\r\n", false).is_ok());
        assert_eq!(check_bytes(b"Subject: a\r\n\r\nbo\0dy\r\n", false).unwrap_err().enhanced, "5.6.0");
        assert!(check_bytes(b"Subject: a\r\n\r\nbody\n.\nmore\r\n", false).unwrap_err().text.contains("bare LF"));
        assert!(check_bytes(b"Subject: a\r\n\r\nbo\rdy\r\n", false).unwrap_err().text.contains("bare CR"));
        let long = format!("Subject: a\r\n\r\n{}\r\n", "x".repeat(999));
        assert!(check_bytes(long.as_bytes(), false).unwrap_err().text.contains("over 1000"));
        let fits = format!("Subject: a\r\n\r\n{}\r\n", "x".repeat(998));
        assert!(check_bytes(fits.as_bytes(), false).is_ok());
        let utf8 = "Subject: caf\u{e9}\r\n\r\ncaf\u{e9}\r\n".as_bytes();
        assert_eq!(check_bytes(utf8, false).unwrap_err().enhanced, "5.6.7");
        assert!(check_bytes(utf8, true).is_ok());
        assert!(check_bytes("Subject: a\r\n\r\ncaf\u{e9}\r\n".as_bytes(), false).is_ok(), "8-bit bodies pass");
    }

    #[test]
    fn a_second_author_cannot_ride_along_in_from() {
        let rcpts = vec!["bob@example.net".to_owned()];
        for body in [
            &b"From: ada@example.org, boss@evil.example\r\nTo: bob@example.net\r\n\r\nhi\r\n"[..],
            &b"From: ada@example.org\r\nFrom: boss@evil.example\r\nTo: bob@example.net\r\n\r\nhi\r\n"[..],
        ] {
            let refused = to_submission(body, "ada@example.org", &rcpts).unwrap_err();
            assert_eq!((refused.code, refused.enhanced), (550, "5.7.1"), "{}", refused.text);
        }
    }

    #[test]
    fn the_envelope_decides_who_receives_and_bcc_stays_out_of_headers() {
        let body = b"From: Ada <ada@example.org>\r\nTo: Bob <bob@example.net>, stranger@example.net\r\n\
                     Cc: carol@example.net\r\nSubject: Hi\r\nX-Mailer: cron\r\nMessage-ID: <m1@host>\r\n\r\nhello\r\n";
        let rcpts = vec!["bob@example.net".to_owned(), "dave@example.net".to_owned(), "CAROL@example.net".to_owned()];
        let r = to_submission(body, "ada@example.org", &rcpts).unwrap();
        assert_eq!(r.from, "Ada <ada@example.org>");
        assert_eq!(r.to, vec!["Bob <bob@example.net>"]);
        assert_eq!(r.cc, vec!["carol@example.net"]);
        assert_eq!(r.bcc, vec!["dave@example.net"]);
        assert_eq!(r.subject, "Hi");
        assert_eq!(r.text, "hello\r\n");
        let names: Vec<&str> = r.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, vec!["X-Mailer"], "Message-ID and the address fields are BitMail's own");
    }

    #[test]
    fn the_spooled_mime_loses_bcc_and_gains_what_rfc_6409_adds() {
        let body = b"From: a@example.org\r\nBcc: secret@example.net,\r\n other@example.net\r\nTo: b@example.net\r\n\
                     Subject: s\r\n\r\nBcc: in the body stays\r\n";
        let out = String::from_utf8(spooled_mime(body, "mx.example.org", 1_335_390_565_000)).unwrap();
        assert!(out.starts_with("Message-ID: <"), "{out}");
        assert!(
            out.contains("@mx.example.org>\r\nDate: Wed, 25 Apr 2012 21:49:25 +0000\r\nFrom: a@example.org\r\nTo:")
        );
        assert!(!out.contains("secret") && !out.contains("other@"), "{out}");
        assert!(out.ends_with("\r\n\r\nBcc: in the body stays\r\n"), "{out}");
        let complete = b"Message-ID: <x@y>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: s\r\n\r\nbody\r\n";
        assert_eq!(spooled_mime(complete, "h", 0), complete.to_vec(), "a complete message is kept byte for byte");
    }

    #[test]
    fn attachments_and_inline_parts_are_kept() {
        let body = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: files\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/html\r\n\r\n\
            <img src=\"cid:logo\">\r\n--XX\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\n\
            Content-Disposition: inline; filename=logo.png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw==\r\n\
            --XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n\
            Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--XX--\r\n";
        let r = to_submission(body, "a@example.org", &["b@example.net".to_owned()]).unwrap();
        assert!(r.html.contains("cid:logo"), "{r:?}");
        assert_eq!(r.attachments.len(), 2);
        assert_eq!((r.attachments[0].filename.as_str(), r.attachments[0].content_id.as_str()), ("logo.png", "logo"));
        assert_eq!(r.attachments[0].content, b"\x89PNG");
        assert_eq!(
            (r.attachments[1].filename.as_str(), r.attachments[1].content_type.as_str()),
            ("a.pdf", "application/pdf")
        );
        assert_eq!(r.attachments[1].content, b"%PDF");
    }
}
