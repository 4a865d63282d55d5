//! What SES receives for one message: `Simple` content when SES can express it (it
//! builds the MIME itself), `Raw` MIME built by lettre otherwise, plus the destination,
//! Reply-To and the `bitmail_id` tag.

use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Body, Content as Text, Destination, EmailContent, MessageHeader, MessageTag, RawMessage};

use crate::message::{Mailbox, Message};
use crate::provider::smtp::build_mime;

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

/// One `SendEmail` request's message part.
#[derive(Debug)]
pub struct Built {
    pub kind: Content,
    pub from: String,
    pub destination: Destination,
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
fn needs_raw(message: &Message) -> Option<String> {
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
    // Bodies are sent base64 or quoted-printable: at most 4/3 of their size, plus lines.
    let bodies = message.text.as_ref().map_or(0, String::len) + message.html.as_ref().map_or(0, String::len);
    let headers: usize = message.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let size = bodies * 4 / 3 + bodies / 76 * 2 + message.subject.len() * 2 + headers + 1024;
    Ok((EmailContent::builder().simple(built.build()).build(), size))
}

fn raw(message: &Message) -> Result<(EmailContent, usize), String> {
    let mime = build_mime(message)?.formatted();
    let size = mime.len();
    let raw = RawMessage::builder().data(Blob::new(mime)).build().map_err(|e| e.to_string())?;
    Ok((EmailContent::builder().raw(raw).build(), size))
}

/// The request parts for `message`, or why it cannot be expressed (which every provider
/// would refuse too).
pub fn build_content(message: &Message) -> Result<Built, String> {
    let raw_reason = needs_raw(message);
    let (kind, (content, size)) = match &raw_reason {
        None => (Content::Simple, simple(message)?),
        Some(_) => (Content::Raw, raw(message)?),
    };
    // In Raw content the headers carry the names (encoded by lettre); the destination is
    // the envelope only, so it holds bare addresses.
    let list = |l: &[Mailbox]| -> Option<Vec<String>> {
        (!l.is_empty())
            .then(|| l.iter().map(|m| if kind == Content::Simple { address(m) } else { m.email.clone() }).collect())
    };
    let destination = Destination::builder()
        .set_to_addresses(list(&message.to))
        .set_cc_addresses(list(&message.cc))
        .set_bcc_addresses(list(&message.bcc))
        .build();
    let from = if kind == Content::Simple { address(&message.from) } else { message.from.email.clone() };
    let reply_to = if kind == Content::Simple { list(&message.reply_to) } else { None };
    let mut tags = Vec::new();
    if is_tag_value(&message.id) {
        tags.push(MessageTag::builder().name(ID_TAG).value(&message.id).build().map_err(|e| e.to_string())?);
    } else {
        // Ids are UUIDs, which fit; should that change, the header still carries it.
        tracing::warn!(message = %message.id, "message id is not a valid SES tag value; sent as a header only");
    }
    if let Some(reason) = raw_reason {
        tracing::debug!(message = %message.id, reason, "SES: Raw content");
    }
    Ok(Built { kind, from, destination, reply_to, content, tags, size })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            submitted_at: std::time::SystemTime::now(),
        }
    }

    #[test]
    fn a_plain_message_is_simple_content_with_the_id_as_tag_and_header() {
        let m = message();
        let built = build_content(&m).unwrap();
        assert_eq!(built.kind, Content::Simple);
        assert_eq!(built.from, "Ada Lovelace <ada@example.org>");
        assert_eq!(built.destination.to_addresses(), ["bob@example.net", "\"Doe, Carol\" <carol@example.net>"]);
        assert_eq!(built.destination.bcc_addresses(), ["hidden@example.net"]);
        assert!(built.destination.cc_addresses().is_empty());
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
    fn what_simple_content_cannot_say_goes_as_raw_mime() {
        let mut m = message();
        m.to[1].name = Some("Zoë".into());
        let built = build_content(&m).unwrap();
        assert_eq!(built.kind, Content::Raw);
        // The envelope holds bare addresses; lettre encoded the name in the header.
        assert_eq!(built.destination.to_addresses(), ["bob@example.net", "carol@example.net"]);
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
        assert_eq!(build_content(&many).unwrap().kind, Content::Raw);
        many.headers.pop();
        assert_eq!(build_content(&many).unwrap().kind, Content::Simple, "14 + X-BitMail-Id fit in 15");

        let mut long = message();
        long.headers = vec![("X-Long".into(), "v".repeat(1000))];
        assert_eq!(build_content(&long).unwrap().kind, Content::Raw);
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
        assert!(build_content(&m).unwrap().tags.is_empty());
    }
}
