//! The MIME form of a message, built with lettre's builder (never by concatenating
//! strings), for the providers that take a whole MIME message: SMTP relays, SES `Raw`,
//! Mailgun `messages.mime`.
//!
//! Shape: the text and HTML bodies as `multipart/alternative` (text first); inline parts
//! beside the HTML in `multipart/related`; attachments after it all in
//! `multipart/mixed`. A part that is alone is not wrapped. `Message-ID` is
//! `<{bitmail id}@bitmail>` and `X-BitMail-Id` carries the id too, so that bounces and
//! replies can be matched. Bcc recipients are in the envelope only.

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment as LettreAttachment, Mailbox as LettreMailbox, MultiPart, SinglePart};

use crate::message::{Attachment, Mailbox, Message};

pub(crate) fn lettre_mailbox(m: &Mailbox) -> Result<LettreMailbox, String> {
    let address = m.email.parse().map_err(|e| format!("`{}`: {e}", m.email))?;
    Ok(LettreMailbox::new(m.name.clone(), address))
}

fn part(a: &Attachment) -> Result<SinglePart, String> {
    let content_type =
        ContentType::parse(&a.content_type).map_err(|e| format!("content type `{}`: {e}", a.content_type))?;
    let attachment = match &a.content_id {
        Some(cid) => LettreAttachment::new_inline_with_name(cid.clone(), a.filename.clone()),
        None => LettreAttachment::new(a.filename.clone()),
    };
    Ok(attachment.body(a.content.clone(), content_type))
}

/// A body made of parts, or one part alone.
enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

impl Body {
    fn into_multi(self, mut multi: MultiPart) -> MultiPart {
        match self {
            Body::Single(p) => multi = multi.singlepart(p),
            Body::Multi(m) => multi = multi.multipart(m),
        }
        multi
    }
}

/// The MIME bytes for `message`: the client's own when it came as MIME (SMTP
/// submission), with `X-BitMail-Id` in front, else built by [`build`].
pub(crate) fn bytes(message: &Message) -> Result<Vec<u8>, String> {
    match &message.raw {
        Some(raw) => {
            let mut out = format!("X-BitMail-Id: {}\r\n", message.id).into_bytes();
            out.extend_from_slice(raw);
            Ok(out)
        }
        None => Ok(build(message)?.formatted()),
    }
}

/// The MIME message for `message`, or why it cannot be expressed (which every relay
/// would refuse too).
pub(crate) fn build(message: &Message) -> Result<lettre::Message, String> {
    let mut builder = lettre::Message::builder()
        .from(lettre_mailbox(&message.from)?)
        .subject(message.subject.clone())
        .message_id(Some(format!("<{}@bitmail>", message.id)));
    for m in &message.to {
        builder = builder.to(lettre_mailbox(m)?);
    }
    for m in &message.cc {
        builder = builder.cc(lettre_mailbox(m)?);
    }
    for m in &message.bcc {
        builder = builder.bcc(lettre_mailbox(m)?);
    }
    for m in &message.reply_to {
        builder = builder.reply_to(lettre_mailbox(m)?);
    }
    let mut headers: Vec<(String, String)> = vec![("X-BitMail-Id".into(), message.id.clone())];
    headers.extend(message.headers.iter().cloned());
    for (name, value) in headers {
        let name = HeaderName::new_from_ascii(name).map_err(|e| format!("header name: {e}"))?;
        builder = builder.raw_header(HeaderValue::new(name, value));
    }

    let text = message.text.clone().map(SinglePart::plain);
    let mut html = message.html.clone().map(|h| Body::Single(SinglePart::html(h)));
    let (inline, attached): (Vec<&Attachment>, Vec<&Attachment>) =
        message.attachments.iter().partition(|a| a.content_id.is_some() && message.html.is_some());
    if let Some(h) = html.take() {
        html = Some(if inline.is_empty() {
            h
        } else {
            let mut related = h.into_multi(MultiPart::related().build());
            for a in inline {
                related = related.singlepart(part(a)?);
            }
            Body::Multi(related)
        });
    }
    let body = match (text, html) {
        (Some(t), Some(h)) => Body::Multi(h.into_multi(MultiPart::alternative().singlepart(t))),
        (Some(t), None) => Body::Single(t),
        (None, Some(h)) => h,
        (None, None) => Body::Single(SinglePart::plain(String::new())),
    };
    let body = if attached.is_empty() {
        body
    } else {
        let mut mixed = body.into_multi(MultiPart::mixed().build());
        for a in attached {
            mixed = mixed.singlepart(part(a)?);
        }
        Body::Multi(mixed)
    };
    match body {
        Body::Single(p) => builder.singlepart(p),
        Body::Multi(m) => builder.multipart(m),
    }
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn mb(email: &str) -> Mailbox {
        Mailbox { name: None, email: email.into() }
    }

    fn message() -> Message {
        Message {
            id: "m-1".into(),
            from: Mailbox { name: Some("Ada".into()), email: "ada@example.org".into() },
            to: vec![mb("bob@example.net")],
            cc: vec![mb("carol@example.net")],
            bcc: vec![mb("secret@example.net")],
            reply_to: vec![mb("replies@example.org")],
            subject: "Héllo".into(),
            text: Some("plain".into()),
            html: Some("<p>html</p>".into()),
            headers: vec![("X-Campaign".into(), "c1".into())],
            attachments: vec![],
            tags: vec![],
            metadata: BTreeMap::new(),
            submitted_at: std::time::SystemTime::now(),
            raw: None,
            already_sent_to: Default::default(),
        }
    }

    #[test]
    fn both_bodies_headers_and_no_bcc() {
        let mime = build(&message()).unwrap();
        let envelope: Vec<String> = mime.envelope().to().iter().map(ToString::to_string).collect();
        assert_eq!(envelope, ["bob@example.net", "carol@example.net", "secret@example.net"]);
        let text = String::from_utf8(mime.formatted()).unwrap();
        assert!(text.contains("Message-ID: <m-1@bitmail>"), "{text}");
        assert!(text.contains("X-BitMail-Id: m-1"), "{text}");
        assert!(text.contains("X-Campaign: c1"), "{text}");
        assert!(text.contains("Reply-To: replies@example.org"), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(!text.contains("multipart/mixed"), "{text}");
        assert!(text.find("text/plain").unwrap() < text.find("text/html").unwrap());
        assert!(!text.contains("secret@example.net"), "Bcc stays out of the headers:\n{text}");
        assert!(text.contains("Subject: =?utf-8?"), "a non-ASCII subject is encoded:\n{text}");
    }

    #[test]
    fn inline_parts_are_related_to_the_html_and_files_are_mixed_in() {
        let mut m = message();
        m.attachments = vec![
            Attachment {
                filename: "logo.png".into(),
                content_type: "image/png".into(),
                content: vec![0x89, b'P', b'N', b'G'],
                content_id: Some("logo".into()),
            },
            Attachment {
                filename: "report.csv".into(),
                content_type: "text/csv".into(),
                content: b"a,b\n1,2\n".to_vec(),
                content_id: None,
            },
        ];
        let text = String::from_utf8(build(&m).unwrap().formatted()).unwrap();
        let at = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("no {needle} in\n{text}"));
        assert!(at("multipart/mixed") < at("multipart/alternative"));
        assert!(at("multipart/alternative") < at("multipart/related"));
        assert!(at("multipart/related") < at("Content-ID: <logo>"));
        assert!(at("Content-ID: <logo>") < at("filename=\"report.csv\""));
        assert!(text.contains("Content-Disposition: inline"), "{text}");
    }
}
