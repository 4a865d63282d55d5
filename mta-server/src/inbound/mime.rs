//! A whole MIME message (RFC 5322 + 2045..2049) to an [`InboundMail`], with mail-parser:
//! header fields decoded (RFC 2047 words, any charset), bodies decoded to UTF-8, attachments
//! decoded from their transfer encoding. The envelope, the verdicts and the dedupe key are
//! the provider's and are left to the caller.
//!
//! Mailboxes as `Name <addr>`; Message-ID without angle brackets; the Date header, or the
//! time of receipt when it has none valid; a text body derived from the HTML when only
//! HTML came; the HTML as sent (the edge sanitizes it when read); `content_id` on inline
//! parts.

use std::collections::HashSet;

use bitmail_proto::v1::InboundMail;
use mail_parser::{Address, Message, MessageParser, MimeHeaders, PartType};

use super::{Refused, attachment, check_body_size, check_decoded_size};

/// Parses a MIME message received at `received_ms` (the date when it has no valid Date).
pub fn parse_mime(raw: &[u8], received_ms: u64) -> Result<InboundMail, Refused> {
    check_body_size(raw.len())?;
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(Refused::Malformed("the message is empty".into()));
    }
    let message = MessageParser::default()
        .parse(raw)
        .filter(has_message_headers)
        .ok_or_else(|| Refused::Malformed("not a MIME message: it has no header fields".into()))?;

    let text = message.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    // `body_html` would make HTML out of a text body; only HTML as sent is wanted.
    let html = message
        .html_body
        .first()
        .and_then(|&i| message.part(i))
        .and_then(|p| match &p.body {
            PartType::Html(html) => Some(html.to_string()),
            _ => None,
        })
        .unwrap_or_default();

    let mut seen = HashSet::new();
    let mut attachments = Vec::new();
    for part in message.attachments() {
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
        let fallback = if part.is_message() {
            format!("message-{}.eml", attachments.len() + 1)
        } else {
            format!("attachment-{}", attachments.len() + 1)
        };
        attachments.push(attachment(
            part.attachment_name().unwrap_or_default(),
            &content_type,
            part.contents().to_vec(),
            content_id,
            &fallback,
            &mut seen,
        ));
    }

    let mail = InboundMail {
        from: addresses(message.from()).into_iter().next().unwrap_or_default(),
        to: addresses(message.to()),
        cc: addresses(message.cc()),
        reply_to: addresses(message.reply_to()),
        subject: message.subject().unwrap_or_default().to_owned(),
        date_ms: date_ms(&message).unwrap_or(received_ms),
        message_id: message.message_id().unwrap_or_default().to_owned(),
        references: references(&message),
        text,
        html,
        attachments,
        ..Default::default()
    };
    check_decoded_size(&mail)?;
    Ok(mail)
}

/// References kept per message, and the longest message id kept.
const MAX_REFERENCES: usize = 20;
const MAX_ID_BYTES: usize = 250;

/// The message ids of References then In-Reply-To (when not among them), the parent
/// last: the newest [`MAX_REFERENCES`], each at most [`MAX_ID_BYTES`] and shaped like
/// one (`left@right`, no spaces), without the message's own id or repeats (a header
/// that names a message twice, or itself, makes no loop).
pub(crate) fn references(message: &Message<'_>) -> Vec<String> {
    let own = message.message_id().unwrap_or_default();
    let mut ids: Vec<String> = Vec::new();
    let listed = message.references().as_text_list().into_iter().flatten();
    let parent = message.in_reply_to().as_text_list().into_iter().flatten();
    for id in listed.chain(parent) {
        let id = id.trim();
        let shaped = id.contains('@') && !id.chars().any(|c| c.is_whitespace() || c.is_control());
        if !shaped || id.len() > MAX_ID_BYTES || id == own {
            continue;
        }
        ids.retain(|seen| seen != id);
        ids.push(id.to_owned());
    }
    let extra = ids.len().saturating_sub(MAX_REFERENCES);
    ids.drain(..extra);
    ids
}

/// Whether a parse found any header field a message has: mail-parser reads almost any
/// bytes as a message, so plain text would pass as one without this.
fn has_message_headers(message: &Message<'_>) -> bool {
    message.from().is_some()
        || message.to().is_some()
        || message.subject().is_some()
        || message.date().is_some()
        || message.message_id().is_some()
        || message.content_type().is_some()
}

/// The Date header in milliseconds since the epoch, when valid and after 1970.
pub(crate) fn date_ms(message: &Message<'_>) -> Option<u64> {
    let secs = message.date()?.to_timestamp();
    (secs > 0).then(|| secs as u64 * 1000)
}

/// Parses a block of header fields (no body) as a message's header.
pub(crate) fn parse_header_block(block: &[u8]) -> Option<Message<'static>> {
    let mut raw = block.to_vec();
    raw.extend_from_slice(b"\r\n\r\n");
    MessageParser::default().parse_headers(&raw).map(Message::into_owned)
}

/// A header field's address list (`"Bob" <bob@example.com>, carol@example.com`) as
/// `Name <addr>` / `addr` strings.
pub(crate) fn address_list(value: &str) -> Vec<String> {
    let value = value.replace(['\r', '\n'], " ");
    parse_header_block(format!("To: {value}").as_bytes()).map(|m| addresses(m.to())).unwrap_or_default()
}

/// An address header's mailboxes, groups flattened: `Name <addr>` or `addr`.
pub(crate) fn addresses(address: Option<&Address<'_>>) -> Vec<String> {
    let Some(address) = address else { return Vec::new() };
    address
        .iter()
        .filter_map(|a| {
            let addr = a.address()?.trim();
            if addr.is_empty() {
                return None;
            }
            Some(match a.name().map(str::trim).filter(|n| !n.is_empty() && *n != addr) {
                Some(name) if name.contains(['.', ',', ';', '<', '>', '"', '@', ':', '(', ')', '[', ']', '\\']) => {
                    format!("\"{}\" <{addr}>", name.replace('\\', "\\\\").replace('"', "\\\""))
                }
                Some(name) => format!("{name} <{addr}>"),
                None => addr.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    const RECEIVED: u64 = 1_790_000_000_000;

    fn refs(header: &str) -> Vec<String> {
        let raw = format!("From: a@example.com\r\nMessage-ID: <self@x>\r\n{header}\r\n");
        references(&parse_header_block(raw.as_bytes()).unwrap())
    }

    #[test]
    fn references_as_mail_programs_write_them_and_as_they_break() {
        // Thunderbird: References folded over lines, In-Reply-To the last of them.
        let thunderbird = refs("References: <a@x> <b@x>\r\n <c@x>\r\nIn-Reply-To: <c@x>");
        assert_eq!(thunderbird, ["a@x", "b@x", "c@x"]);
        // Outlook: In-Reply-To only.
        assert_eq!(refs("In-Reply-To: <p@mail.outlook.com>"), ["p@mail.outlook.com"]);
        // A parent missing from References goes last; repeats and the message itself go.
        assert_eq!(refs("References: <a@x> <self@x> <a@x>\r\nIn-Reply-To: <z@x>"), ["a@x", "z@x"]);
        // No angle brackets, or garbage: what is left is kept, nothing is invented.
        assert_eq!(refs("In-Reply-To: not an id at all"), Vec::<String>::new());
        // A loop of 500 references keeps the newest 20.
        let many: String = (0..500).map(|i| format!("<m{i}@x> ")).collect();
        let kept = refs(&format!("References: {many}"));
        assert_eq!(kept.len(), 20);
        assert_eq!(kept.last().unwrap(), "m499@x");
    }

    #[test]
    fn a_multipart_message_with_attachment_and_inline_image() {
        let png = [0x89u8, b'P', b'N', b'G', 0, 1, 2, 255];
        let pdf = b"%PDF-1.4 binary \x00\x01";
        let raw = format!(
            "From: \"Smith, Bob\" <Bob@Example.com>\r\n\
             To: alice@example.org, Carol <carol@example.org>\r\n\
             Cc: dave@example.net\r\n\
             Reply-To: replies@example.com\r\n\
             Subject: =?UTF-8?B?SMOpbGxvIHfDtnJsZA==?=\r\n\
             Date: Tue, 1 Sep 2026 10:00:00 +0200\r\n\
             Message-ID: <abc.123@example.com>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
             \r\n\
             --outer\r\n\
             Content-Type: multipart/related; boundary=\"rel\"\r\n\
             \r\n\
             --rel\r\n\
             Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
             \r\n\
             --alt\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\
             \r\n\
             Caf=C3=A9 plain\r\n\
             --alt\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             \r\n\
             <p>Caf\u{e9} <img src=\"cid:logo@example.com\"></p>\r\n\
             --alt--\r\n\
             --rel\r\n\
             Content-Type: image/png\r\n\
             Content-Transfer-Encoding: base64\r\n\
             Content-ID: <logo@example.com>\r\n\
             Content-Disposition: inline; filename=\"logo.png\"\r\n\
             \r\n\
             {}\r\n\
             --rel--\r\n\
             --outer\r\n\
             Content-Type: application/pdf; name=\"report.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"report.pdf\"\r\n\
             \r\n\
             {}\r\n\
             --outer--\r\n",
            STANDARD.encode(png),
            STANDARD.encode(pdf)
        );
        let mail = parse_mime(raw.as_bytes(), RECEIVED).unwrap();
        assert_eq!(mail.from, "\"Smith, Bob\" <Bob@Example.com>");
        assert_eq!(mail.to, vec!["alice@example.org", "Carol <carol@example.org>"]);
        assert_eq!(mail.cc, vec!["dave@example.net"]);
        assert_eq!(mail.reply_to, vec!["replies@example.com"]);
        assert_eq!(mail.subject, "Héllo wörld");
        assert_eq!(mail.date_ms, 1_788_249_600_000);
        assert_eq!(mail.message_id, "abc.123@example.com");
        assert_eq!(mail.text.trim_end(), "Café plain");
        assert!(mail.html.contains("<p>Café <img src=\"cid:logo@example.com\"></p>"), "{}", mail.html);
        assert_eq!(mail.attachments.len(), 2, "{:?}", mail.attachments);
        let logo = &mail.attachments[0];
        assert_eq!((logo.filename.as_str(), logo.content_type.as_str()), ("logo.png", "image/png"));
        assert_eq!((logo.content.as_slice(), logo.content_id.as_str()), (&png[..], "logo@example.com"));
        let report = &mail.attachments[1];
        assert_eq!((report.filename.as_str(), report.content_type.as_str()), ("report.pdf", "application/pdf"));
        assert_eq!((report.content.as_slice(), report.content_id.as_str()), (&pdf[..], ""));
    }

    #[test]
    fn latin1_bodies_and_encoded_words_are_decoded() {
        let mut raw = b"From: =?ISO-8859-1?Q?Ren=E9?= <rene@example.fr>\r\n\
            To: a@example.com\r\n\
            Subject: =?iso-8859-1?q?Caf=E9_cr=E8me?=\r\n\
            Content-Type: text/plain; charset=ISO-8859-1\r\n\
            Content-Transfer-Encoding: 8bit\r\n\r\n"
            .to_vec();
        raw.extend_from_slice(b"Cr\xe8me br\xfbl\xe9e\r\n");
        let mail = parse_mime(&raw, RECEIVED).unwrap();
        assert_eq!(mail.from, "René <rene@example.fr>");
        assert_eq!(mail.subject, "Café crème");
        assert_eq!(mail.text.trim_end(), "Crème brûlée");
        assert_eq!(mail.html, "");
        // No Date header: the time of receipt.
        assert_eq!(mail.date_ms, RECEIVED);
        assert_eq!(mail.message_id, "");
    }

    #[test]
    fn an_html_only_message_gets_text_derived_from_it() {
        let raw = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: html\r\n\
            Content-Type: text/html; charset=utf-8\r\n\r\n\
            <html><body><h1>Title</h1><p>Hello <b>there</b></p></body></html>\r\n";
        let mail = parse_mime(raw, RECEIVED).unwrap();
        assert!(mail.html.contains("<h1>Title</h1>"));
        assert!(mail.text.contains("Title") && mail.text.contains("Hello there"), "{:?}", mail.text);
        assert!(!mail.text.contains('<'), "{:?}", mail.text);
        assert!(mail.attachments.is_empty());
    }

    #[test]
    fn empty_or_non_mime_input_is_malformed() {
        for raw in [&b""[..], b"  \r\n", b"just some words, no header at all\n"] {
            let e = parse_mime(raw, RECEIVED).unwrap_err();
            assert!(matches!(e, Refused::Malformed(_)), "{raw:?}: {e}");
        }
    }

    #[test]
    fn address_lists_from_header_values() {
        assert_eq!(
            address_list("\"Bob B.\" <bob@example.com>, carol@example.com,\r\n Team: dave@example.com;"),
            vec!["\"Bob B.\" <bob@example.com>", "carol@example.com", "dave@example.com"]
        );
        assert!(address_list("").is_empty());
    }
}
