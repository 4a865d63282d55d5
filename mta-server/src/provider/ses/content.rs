//! What SES receives for one message: `Simple` content when SES can express it (it
//! builds the MIME itself; attachments and inline parts included), `Raw` MIME built by
//! lettre ([`crate::provider::mime`]) otherwise, plus Reply-To, the destination of each
//! call, and the email tags.
//!
//! Tags: `bitmail_id` = BitMail's id; each metadata pair whose value is a valid tag value
//! as itself; each label as `{label}=true` (metadata wins a clash of names). SES events
//! carry them back in `mail.tags`. A metadata value SES cannot take as a tag (spaces,
//! punctuation) is left out for this provider.
//!
//! `Raw` is needed when a display name is not ASCII, when there are more than 14 custom
//! headers (with `X-BitMail-Id`, `Simple` takes 15), when a header value is not short
//! printable ASCII, or when the envelope is split over several calls (SES writes
//! `Simple`'s To and Cc from each call's destination, which would then be wrong).

use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{
    Attachment as SesAttachment, AttachmentContentDisposition, Body, Content as Text, Destination, EmailContent,
    MessageHeader, MessageTag, RawMessage,
};

use crate::message::{Mailbox, Message};
use crate::provider::mime;

/// At most this many headers in `Simple` content.
const MAX_SIMPLE_HEADERS: usize = 15;
/// A `Simple` header's name and value together, in characters.
const MAX_SIMPLE_HEADER_LEN: usize = 996;
/// The tag (and header) that carries BitMail's id.
pub const ID_TAG: &str = "bitmail_id";
pub const ID_HEADER: &str = "X-BitMail-Id";

/// Which form of content was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Simple,
    Raw,
}

/// What every `SendEmail` call for one message shares.
#[derive(Debug, Clone)]
pub struct Built {
    pub kind: Content,
    pub from: String,
    pub reply_to: Option<Vec<String>>,
    pub content: EmailContent,
    pub tags: Vec<MessageTag>,
    /// The message's size as SES counts it (the MIME message), or an upper estimate
    /// for `Simple` content.
    pub size: usize,
}

/// Whether `value` can be an SES tag value: 1 to 256 ASCII letters, digits, `_` or `-`.
pub fn is_tag_value(value: &str) -> bool {
    (1..=256).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A mailbox as SES takes it in `Simple` requests: `Name <addr>`, the name quoted by
/// lettre when it needs to be.
pub(super) fn address(m: &Mailbox) -> String {
    match (&m.name, m.email.parse::<lettre::Address>()) {
        (Some(_), Ok(address)) => lettre::message::Mailbox::new(m.name.clone(), address).to_string(),
        // Validated at submission, so a parse failure is not expected: send the address.
        _ => m.email.clone(),
    }
}

/// Why `message` needs `Raw` content, or `None` when `Simple` can carry it.
/// `one_call`: the whole envelope goes in one call (SES writes `Simple` content's To and
/// Cc headers from the call's destination, so a split envelope needs Raw headers).
fn needs_raw(message: &Message, one_call: bool) -> Option<String> {
    if message.raw.is_some() {
        return Some("the client sent MIME: it goes as sent".into());
    }
    if !one_call {
        return Some("the recipients go in several calls".into());
    }
    let mailboxes = std::iter::once(&message.from).chain(message.recipients()).chain(&message.reply_to);
    if let Some(m) = mailboxes.into_iter().find(|m| m.name.as_deref().is_some_and(|n| !printable_ascii(n))) {
        return Some(format!("the display name of {} is not ASCII", m.email));
    }
    if message.headers.len() + 1 > MAX_SIMPLE_HEADERS {
        return Some(format!("{} custom headers", message.headers.len()));
    }
    if let Some((name, _)) =
        message.headers.iter().find(|(n, v)| !printable_ascii(v) || n.len() + v.len() > MAX_SIMPLE_HEADER_LEN)
    {
        return Some(format!("header {name} is not short printable ASCII"));
    }
    None
}

fn utf8(data: &str) -> Result<Text, String> {
    Text::builder().data(data).charset("UTF-8").build().map_err(|e| e.to_string())
}

fn header(name: &str, value: &str) -> Result<MessageHeader, String> {
    MessageHeader::builder().name(name).value(value).build().map_err(|e| e.to_string())
}

fn attachment(message: &Message, a: &crate::message::Attachment) -> Result<SesAttachment, String> {
    // As in the MIME form: a content id makes an inline part only beside an HTML body.
    let inline = a.content_id.is_some() && message.html.is_some();
    let mut built = SesAttachment::builder()
        .raw_content(Blob::new(a.content.clone()))
        .file_name(&a.filename)
        .content_type(&a.content_type)
        .content_disposition(if inline {
            AttachmentContentDisposition::Inline
        } else {
            AttachmentContentDisposition::Attachment
        });
    if let Some(cid) = a.content_id.as_ref().filter(|_| inline) {
        built = built.content_id(cid);
    }
    built.build().map_err(|e| e.to_string())
}

fn simple(message: &Message) -> Result<(EmailContent, usize), String> {
    let mut body = Body::builder();
    if let Some(text) = &message.text {
        body = body.text(utf8(text)?);
    }
    if let Some(html) = &message.html {
        body = body.html(utf8(html)?);
    }
    let mut built = aws_sdk_sesv2::types::Message::builder().subject(utf8(&message.subject)?).body(body.build());
    built = built.headers(header(ID_HEADER, &message.id)?);
    for (name, value) in &message.headers {
        built = built.headers(header(name, value)?);
    }
    for a in &message.attachments {
        built = built.attachments(attachment(message, a)?);
    }
    // SES encodes the bodies (base64 or quoted-printable: at most 4/3 of their size) and
    // the attachments (base64, counted by wire_bytes), and adds line breaks and headers.
    let bodies = message.text.as_ref().map_or(0, String::len) + message.html.as_ref().map_or(0, String::len);
    let wire = message.wire_bytes();
    let size = wire + bodies / 3 + wire / 76 * 2 + message.attachments.len() * 256 + 1024;
    Ok((EmailContent::builder().simple(built.build()).build(), size))
}

fn raw(message: &Message) -> Result<(EmailContent, usize), String> {
    let mime = mime::bytes(message)?;
    let size = mime.len();
    let raw = RawMessage::builder().data(Blob::new(mime)).build().map_err(|e| e.to_string())?;
    Ok((EmailContent::builder().raw(raw).build(), size))
}

/// The request parts for `message`, or why it cannot be expressed (which every provider
/// would refuse too). `one_call`: every recipient goes in one call.
pub fn build_content(message: &Message, one_call: bool) -> Result<Built, String> {
    let raw_reason = needs_raw(message, one_call);
    let (kind, (content, size)) = match &raw_reason {
        None => (Content::Simple, simple(message)?),
        Some(_) => (Content::Raw, raw(message)?),
    };
    let (from, reply_to) = match kind {
        Content::Simple => (
            address(&message.from),
            (!message.reply_to.is_empty()).then(|| message.reply_to.iter().map(address).collect()),
        ),
        // The MIME headers carry the names (encoded by lettre) and the Reply-To.
        Content::Raw => (message.from.email.clone(), None),
    };
    if let Some(reason) = raw_reason {
        tracing::debug!(message = %message.id, reason, "SES: Raw content");
    }
    Ok(Built { kind, from, reply_to, content, tags: tags(message)?, size })
}

/// The email tags of `message` (see the module documentation).
fn tags(message: &Message) -> Result<Vec<MessageTag>, String> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if is_tag_value(&message.id) {
        pairs.push((ID_TAG, &message.id));
    } else {
        // Ids are UUIDs, which fit; should that change, the header still carries it.
        tracing::warn!(message = %message.id, "message id is not a valid SES tag value; sent as a header only");
    }
    pairs.extend(message.metadata.iter().filter(|(_, v)| is_tag_value(v)).map(|(k, v)| (k.as_str(), v.as_str())));
    for label in &message.tags {
        if is_tag_value(label) && !pairs.iter().any(|(n, _)| n == label) {
            pairs.push((label, "true"));
        }
    }
    pairs.into_iter().map(|(n, v)| MessageTag::builder().name(n).value(v).build().map_err(|e| e.to_string())).collect()
}

/// The destination of one call carrying `batch`. `Simple` content (one call for every
/// recipient) names them as the message does, since SES writes the To and Cc headers
/// from it; `Raw` content has its own headers, so this is the envelope: bare addresses.
pub fn destination(message: &Message, batch: &[&Mailbox], kind: Content) -> Destination {
    let pick = |list: &[Mailbox]| -> Option<Vec<String>> {
        let picked: Vec<String> = list
            .iter()
            .filter(|m| batch.iter().any(|b| std::ptr::eq(*b, *m)))
            .map(|m| if kind == Content::Simple { address(m) } else { m.email.clone() })
            .collect();
        (!picked.is_empty()).then_some(picked)
    };
    Destination::builder()
        .set_to_addresses(pick(&message.to))
        .set_cc_addresses(pick(&message.cc))
        .set_bcc_addresses(pick(&message.bcc))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Attachment;

    fn mb(name: Option<&str>, email: &str) -> Mailbox {
        Mailbox { name: name.map(str::to_owned), email: email.into() }
    }

    fn message() -> Message {
        Message {
            id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            from: mb(Some("Ada Lovelace"), "ada@example.org"),
            to: vec![mb(None, "bob@example.net"), mb(Some("Doe, Carol"), "carol@example.net")],
            cc: vec![],
            bcc: vec![mb(None, "hidden@example.net")],
            reply_to: vec![mb(None, "replies@example.org")],
            subject: "Héllo".into(),
            text: Some("plain".into()),
            html: Some("<p>html</p>".into()),
            headers: vec![("X-Campaign".into(), "c1".into())],
            attachments: vec![],
            tags: vec![],
            metadata: Default::default(),
            submitted_at: std::time::SystemTime::now(),
            raw: None,
            already_sent_to: Default::default(),
        }
    }

    fn all(m: &Message) -> Vec<&Mailbox> {
        m.recipients().collect()
    }

    #[test]
    fn a_plain_message_is_simple_content_with_the_id_as_tag_and_header() {
        let m = message();
        let built = build_content(&m, true).unwrap();
        assert_eq!(built.kind, Content::Simple);
        assert_eq!(built.from, "Ada Lovelace <ada@example.org>");
        let destination = destination(&m, &all(&m), built.kind);
        assert_eq!(destination.to_addresses(), ["bob@example.net", "\"Doe, Carol\" <carol@example.net>"]);
        assert_eq!(destination.bcc_addresses(), ["hidden@example.net"]);
        assert!(destination.cc_addresses().is_empty());
        assert_eq!(built.reply_to.as_deref(), Some(&["replies@example.org".to_owned()][..]));
        assert_eq!(built.tags.len(), 1);
        assert_eq!((built.tags[0].name(), built.tags[0].value()), (ID_TAG, m.id.as_str()));
        let simple = built.content.simple().unwrap();
        assert_eq!(simple.subject().unwrap().data(), "Héllo");
        assert_eq!(simple.subject().unwrap().charset(), Some("UTF-8"));
        assert_eq!(simple.body().unwrap().text().unwrap().data(), "plain");
        assert_eq!(simple.body().unwrap().html().unwrap().data(), "<p>html</p>");
        let headers: Vec<(&str, &str)> = simple.headers().iter().map(|h| (h.name(), h.value())).collect();
        assert_eq!(headers, [(ID_HEADER, m.id.as_str()), ("X-Campaign", "c1")]);
        assert!(built.content.raw().is_none());
    }

    #[test]
    fn attachments_tags_and_metadata_go_in_simple_content() {
        let mut m = message();
        m.attachments = vec![
            Attachment {
                filename: "logo.png".into(),
                content_type: "image/png".into(),
                content: b"png".to_vec(),
                content_id: Some("logo".into()),
            },
            Attachment {
                filename: "r.pdf".into(),
                content_type: "application/pdf".into(),
                content: b"pdf".to_vec(),
                content_id: None,
            },
        ];
        m.tags = vec!["welcome".into(), "tenant".into()];
        m.metadata = [("tenant".to_owned(), "acme".to_owned()), ("note".to_owned(), "has spaces".to_owned())].into();
        let built = build_content(&m, true).unwrap();
        assert_eq!(built.kind, Content::Simple);
        let files = built.content.simple().unwrap().attachments();
        assert_eq!(files[0].file_name(), "logo.png");
        assert_eq!(files[0].content_disposition(), Some(&AttachmentContentDisposition::Inline));
        assert_eq!(files[0].content_id(), Some("logo"));
        assert_eq!(files[0].raw_content().as_ref(), b"png");
        assert_eq!(files[1].content_disposition(), Some(&AttachmentContentDisposition::Attachment));
        assert_eq!(files[1].content_id(), None);
        let tags: Vec<(&str, &str)> = built.tags.iter().map(|t| (t.name(), t.value())).collect();
        assert_eq!(tags, [(ID_TAG, m.id.as_str()), ("tenant", "acme"), ("welcome", "true")]);
    }

    #[test]
    fn what_simple_content_cannot_say_goes_as_raw_mime() {
        let mut m = message();
        m.to[1].name = Some("Zoë".into());
        let built = build_content(&m, true).unwrap();
        assert_eq!(built.kind, Content::Raw);
        // The envelope holds bare addresses; lettre encoded the name in the header.
        let destination = destination(&m, &all(&m), built.kind);
        assert_eq!(destination.to_addresses(), ["bob@example.net", "carol@example.net"]);
        assert_eq!(built.from, "ada@example.org");
        let mime = String::from_utf8(built.content.raw().unwrap().data().as_ref().to_vec()).unwrap();
        assert_eq!(built.size, mime.len());
        assert!(mime.contains(&format!("X-BitMail-Id: {}", m.id)), "{mime}");
        assert!(mime.contains("=?utf-8?"), "the non-ASCII name is encoded:\n{mime}");
        assert!(mime.contains("Reply-To: replies@example.org"), "{mime}");
        assert!(!mime.contains("hidden@example.net"), "Bcc stays out of the headers:\n{mime}");
        assert_eq!(built.tags[0].value(), m.id);

        let mut many = message();
        many.headers = (0..15).map(|i| (format!("X-H{i}"), "v".to_owned())).collect();
        assert_eq!(build_content(&many, true).unwrap().kind, Content::Raw);
        many.headers.pop();
        assert_eq!(build_content(&many, true).unwrap().kind, Content::Simple, "14 + X-BitMail-Id fit in 15");

        let mut long = message();
        long.headers = vec![("X-Long".into(), "v".repeat(1000))];
        assert_eq!(build_content(&long, true).unwrap().kind, Content::Raw);
    }

    #[test]
    fn a_split_envelope_is_raw_with_each_call_naming_its_own_recipients() {
        let m = message();
        let built = build_content(&m, false).unwrap();
        assert_eq!(built.kind, Content::Raw);
        let batches = m.envelope_batches(2);
        let second = destination(&m, &batches[1], built.kind);
        assert!(second.to_addresses().is_empty());
        assert_eq!(second.bcc_addresses(), ["hidden@example.net"]);
        let mime = String::from_utf8(built.content.raw().unwrap().data().as_ref().to_vec()).unwrap();
        assert!(mime.contains("bob@example.net") && mime.contains("carol@example.net"), "whole headers:\n{mime}");
    }

    #[test]
    fn tag_values_are_checked() {
        assert!(is_tag_value("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
        assert!(is_tag_value("a_b-C9"));
        assert!(!is_tag_value(""));
        assert!(!is_tag_value("a.b"));
        assert!(!is_tag_value("a b"));
        assert!(!is_tag_value(&"a".repeat(257)));
        let mut m = message();
        m.id = "not a tag".into();
        assert!(build_content(&m, true).unwrap().tags.is_empty());
    }
}
