//! The domain message and its validation.
//!
//! A [`Message`] is built once, from a checked [`bitmail_proto::v1::SubmitRequest`], and
//! never changes afterwards: every provider attempt receives the same `Arc<Message>`, so
//! one attempt can never alter what the next provider sends.
//!
//! Validation ([`validate`]) is the one place submissions are checked: every address
//! parses as an RFC 5322 mailbox; the subject and header values hold no CR or LF; custom
//! headers do not override a header BitMail sets; the size and the number of recipients
//! are within the configured limits; at most [`MAX_TAGS`] (3) tags and [`MAX_METADATA`]
//! (10) metadata pairs. The limits are the strictest any provider has (Mailgun's 3 tags,
//! SES's tag characters), so a valid message can go out through any provider. A refusal
//! names the field (`to[1]: ...`) and nothing is stored.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use bitmail_proto::v1::SubmitRequest;

/// An email address with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    /// `local@domain`, as given.
    pub email: String,
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name:?} <{}>", self.email),
            None => f.write_str(&self.email),
        }
    }
}

/// An accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// BitMail's id, the key of `GetMessage`, and the correlation key providers carry
    /// back in their events.
    pub id: String,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub headers: Vec<(String, String)>,
    pub attachments: Vec<Attachment>,
    /// Labels for the provider's reports (see `SubmitRequest.tags`).
    pub tags: Vec<String>,
    /// Pairs the provider's events carry back, next to `bitmail_id`.
    pub metadata: BTreeMap<String, String>,
    pub submitted_at: SystemTime,
    /// The MIME message as its client sent it (SMTP submission), with `Message-ID` and
    /// `Date` added when missing and `Bcc` removed. Providers that take MIME send these
    /// bytes as they are; the fields above are read from them for those that do not.
    pub raw: Option<std::sync::Arc<[u8]>>,
    /// Recipients (lowercased addresses) an earlier attempt already delivered to, when
    /// a provider took the message in several calls and a later call failed: the next
    /// attempts leave them out of the envelope.
    pub already_sent_to: BTreeSet<String>,
}

/// A file carried with a message.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    /// A valid MIME type (`application/octet-stream` when none was given).
    pub content_type: String,
    pub content: Vec<u8>,
    /// Set for an inline part the HTML shows as `cid:<content_id>`.
    pub content_id: Option<String>,
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("bytes", &self.content.len())
            .field("content_id", &self.content_id)
            .finish()
    }
}

impl Message {
    /// Every recipient, to then cc then bcc.
    pub fn recipients(&self) -> impl Iterator<Item = &Mailbox> {
        self.to.iter().chain(&self.cc).chain(&self.bcc)
    }

    /// Whether an earlier attempt already delivered to `m`.
    pub fn was_sent_to(&self, m: &Mailbox) -> bool {
        !self.already_sent_to.is_empty() && self.already_sent_to.contains(&m.email.to_ascii_lowercase())
    }

    /// The recipients this attempt must still reach (each once), in batches of at most
    /// `per_call`: the envelopes of a provider that takes a limited number of
    /// recipients per call.
    pub fn envelope_batches(&self, per_call: usize) -> Vec<Vec<&Mailbox>> {
        let mut seen = HashSet::new();
        let pending: Vec<&Mailbox> =
            self.recipients().filter(|m| !self.was_sent_to(m) && seen.insert(m.email.to_ascii_lowercase())).collect();
        pending.chunks(per_call.max(1)).map(<[_]>::to_vec).collect()
    }

    /// About the size as sent: the content with attachments base64-encoded, which is
    /// what the providers' size limits count.
    pub fn wire_bytes(&self) -> usize {
        let attachments: usize = self.attachments.iter().map(|a| a.content.len()).sum();
        self.content_bytes() - attachments + attachments.div_ceil(3) * 4
    }

    /// The bytes of the content: subject, bodies, header values and attachments.
    pub fn content_bytes(&self) -> usize {
        self.subject.len()
            + self.text.as_ref().map_or(0, String::len)
            + self.html.as_ref().map_or(0, String::len)
            + self.headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
            + self.attachments.iter().map(|a| a.filename.len() + a.content.len()).sum::<usize>()
    }
}

/// Limits a submission must keep.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Subject, text, html and header values together, in bytes.
    pub max_message_bytes: usize,
    /// to + cc + bcc.
    pub max_recipients: usize,
}

/// Why a submission was refused: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    pub field: String,
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidField {
    InvalidField { field: field.into(), reason: reason.into() }
}

/// Headers the message's own fields set, or that providers forbid: a custom header may
/// not override them.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "reply-to",
    "sender",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "return-path",
    "received",
    "dkim-signature",
    "x-sg-id",
    "x-sg-eid",
];

/// Whether a custom header named `name` would override one BitMail sets.
pub(crate) fn is_reserved_header(name: &str) -> bool {
    RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// The largest number of tags: Mailgun takes no more than 3 per message.
pub const MAX_TAGS: usize = 3;
/// The largest number of metadata pairs.
pub const MAX_METADATA: usize = 10;

/// ASCII letters, digits, `_` and `-`: what every provider accepts in a tag or a
/// variable name (SES's email tags are the strictest).
fn tag_like(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_attachment(
    i: usize,
    a: bitmail_proto::v1::Attachment,
    cids: &mut HashSet<String>,
) -> Result<Attachment, InvalidField> {
    let field = |name: &str| format!("attachments[{i}].{name}");
    if a.filename.is_empty() || a.filename.len() > 255 {
        return Err(invalid(field("filename"), "1 to 255 bytes are required"));
    }
    if a.filename.chars().any(|c| c.is_control() || c == '/' || c == '\\') {
        return Err(invalid(field("filename"), "must not contain control characters, `/` or `\\`"));
    }
    let content_type = if a.content_type.is_empty() { "application/octet-stream".to_owned() } else { a.content_type };
    if lettre::message::header::ContentType::parse(&content_type).is_err() || !content_type.contains('/') {
        return Err(invalid(
            field("content_type"),
            format!("`{}` is not a MIME type such as application/pdf", content_type.escape_debug()),
        ));
    }
    let content_id = if a.content_id.is_empty() {
        None
    } else {
        if a.content_id.len() > 128
            || a.content_id.bytes().any(|b| !(0x21..0x7f).contains(&b) || b == b'<' || b == b'>')
        {
            return Err(invalid(field("content_id"), "1 to 128 printable ASCII characters without spaces, `<` or `>`"));
        }
        if !cids.insert(a.content_id.clone()) {
            return Err(invalid(field("content_id"), format!("`{}` is used by another attachment", a.content_id)));
        }
        Some(a.content_id)
    };
    Ok(Attachment { filename: a.filename, content_type, content: a.content, content_id })
}

/// Parses one RFC 5322 mailbox (`ada@example.org` or `Ada <ada@example.org>`).
pub fn parse_mailbox(field: &str, raw: &str) -> Result<Mailbox, InvalidField> {
    if raw.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters (CR, LF, ...)"));
    }
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    let parsed = lettre::message::Mailbox::from_str(trimmed)
        .map_err(|e| invalid(field, format!("`{trimmed}` is not a valid address ({e})")))?;
    Ok(Mailbox { name: parsed.name.filter(|n| !n.is_empty()), email: parsed.email.to_string() })
}

fn parse_list(field: &str, raws: &[String]) -> Result<Vec<Mailbox>, InvalidField> {
    raws.iter().enumerate().map(|(i, raw)| parse_mailbox(&format!("{field}[{i}]"), raw)).collect()
}

fn no_line_breaks(field: &str, value: &str) -> Result<(), InvalidField> {
    if value.contains(['\r', '\n']) {
        return Err(invalid(field, "must not contain CR or LF"));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// An RFC 5322 field name: printable ASCII except `:`.
fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Checks a submission and builds the message it describes, with the id `id`. Every
/// problem names the field it is in; on error nothing has happened.
pub fn validate(req: SubmitRequest, id: String, limits: Limits) -> Result<Message, InvalidField> {
    let from = parse_mailbox("from", &req.from)?;
    let to = parse_list("to", &req.to)?;
    let cc = parse_list("cc", &req.cc)?;
    let bcc = parse_list("bcc", &req.bcc)?;
    let reply_to = parse_list("reply_to", &req.reply_to)?;
    let recipients = to.len() + cc.len() + bcc.len();
    if recipients == 0 {
        return Err(invalid("to", "at least one recipient (to, cc or bcc) is required"));
    }
    if recipients > limits.max_recipients {
        return Err(invalid(
            "to",
            format!("{recipients} recipients in to, cc and bcc; at most {} are allowed", limits.max_recipients),
        ));
    }

    if req.subject.trim().is_empty() {
        return Err(invalid("subject", "required"));
    }
    no_line_breaks("subject", &req.subject)?;
    if req.text.is_empty() && req.html.is_empty() {
        return Err(invalid("text", "a text or an html body is required"));
    }

    let mut headers = Vec::with_capacity(req.headers.len());
    for (i, h) in req.headers.into_iter().enumerate() {
        let field = format!("headers[{i}]");
        if !valid_header_name(&h.name) {
            return Err(invalid(
                format!("{field}.name"),
                format!("`{}` is not a valid header name", h.name.escape_debug()),
            ));
        }
        if RESERVED_HEADERS.contains(&h.name.to_ascii_lowercase().as_str()) {
            return Err(invalid(
                format!("{field}.name"),
                format!("`{}` is set by BitMail from the message's own fields and cannot be a custom header", h.name),
            ));
        }
        no_line_breaks(&format!("{field}.value"), &h.value)?;
        headers.push((h.name, h.value));
    }

    let mut cids = HashSet::new();
    let attachments = req
        .attachments
        .into_iter()
        .enumerate()
        .map(|(i, a)| check_attachment(i, a, &mut cids))
        .collect::<Result<Vec<_>, _>>()?;

    if req.tags.len() > MAX_TAGS {
        return Err(invalid("tags", format!("{} tags; at most {MAX_TAGS} are allowed", req.tags.len())));
    }
    for (i, tag) in req.tags.iter().enumerate() {
        if !tag_like(tag, 128) {
            return Err(invalid(format!("tags[{i}]"), "1 to 128 of ASCII letters, digits, `_` and `-`"));
        }
    }
    if req.metadata.len() > MAX_METADATA {
        return Err(invalid("metadata", format!("{} pairs; at most {MAX_METADATA} are allowed", req.metadata.len())));
    }
    let metadata: BTreeMap<String, String> = req.metadata.into_iter().collect();
    for (key, value) in &metadata {
        if !tag_like(key, 64) {
            return Err(invalid(
                format!("metadata[{key:?}]"),
                "keys are 1 to 64 of ASCII letters, digits, `_` and `-`",
            ));
        }
        if ["bitmail_id", "bitmail_campaign", "bitmail_subscriber"].iter().any(|k| key.eq_ignore_ascii_case(k)) {
            return Err(invalid(format!("metadata[{key:?}]"), format!("`{key}` is set by BitMail")));
        }
        if value.len() > 256 || value.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
            return Err(invalid(format!("metadata[{key:?}]"), "values are at most 256 printable ASCII characters"));
        }
    }

    let message = Message {
        id,
        from,
        to,
        cc,
        bcc,
        reply_to,
        subject: req.subject,
        text: (!req.text.is_empty()).then_some(req.text),
        html: (!req.html.is_empty()).then_some(req.html),
        headers,
        attachments,
        tags: req.tags,
        metadata,
        submitted_at: SystemTime::now(),
        raw: None,
        already_sent_to: BTreeSet::new(),
    };
    let size = message.content_bytes();
    if size > limits.max_message_bytes {
        // Name the biggest part, where the user can act.
        let html = message.html.as_ref().map_or(0, String::len);
        let text = message.text.as_ref().map_or(0, String::len);
        let biggest = message.attachments.iter().enumerate().max_by_key(|(_, a)| a.content.len());
        let field = match biggest {
            Some((i, a)) if a.content.len() > html.max(text) => format!("attachments[{i}].content"),
            _ if html > text => "html".to_owned(),
            _ => "text".to_owned(),
        };
        return Err(invalid(
            field,
            format!("the message is {size} bytes; the limit is {} bytes", limits.max_message_bytes),
        ));
    }

    if req.idempotency_key.len() > 200 || req.idempotency_key.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
        return Err(invalid("idempotency_key", "at most 200 printable ASCII characters"));
    }

    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitmail_proto::v1::Header;

    const LIMITS: Limits = Limits { max_message_bytes: 1000, max_recipients: 3 };

    fn ok_request() -> SubmitRequest {
        SubmitRequest {
            from: "Ada Lovelace <ada@example.org>".into(),
            to: vec!["bob@example.net".into()],
            subject: "Hello".into(),
            text: "Hi Bob".into(),
            ..Default::default()
        }
    }

    fn err(req: SubmitRequest) -> InvalidField {
        validate(req, "id".into(), LIMITS).unwrap_err()
    }

    #[test]
    fn a_good_request_becomes_a_message() {
        let m = validate(ok_request(), "m1".into(), LIMITS).unwrap();
        assert_eq!(m.from, Mailbox { name: Some("Ada Lovelace".into()), email: "ada@example.org".into() });
        assert_eq!(m.to[0].email, "bob@example.net");
        assert_eq!(m.text.as_deref(), Some("Hi Bob"));
        assert_eq!(m.html, None);
    }

    #[test]
    fn bad_addresses_name_their_field_and_index() {
        let e = err(SubmitRequest { to: vec!["bob@example.net".into(), "not an address".into()], ..ok_request() });
        assert_eq!(e.field, "to[1]");
        let e = err(SubmitRequest { from: "ada@example.org\r\nBcc: x@evil.test".into(), ..ok_request() });
        assert_eq!(e.field, "from");
        assert!(e.reason.contains("control"));
    }

    #[test]
    fn recipients_are_required_and_bounded() {
        assert_eq!(err(SubmitRequest { to: vec![], ..ok_request() }).field, "to");
        let many = vec!["a@x.org".to_owned(), "b@x.org".into()];
        let e = err(SubmitRequest { cc: many.clone(), bcc: many, ..ok_request() });
        assert!(e.reason.contains("at most 3"), "{e}");
    }

    #[test]
    fn subject_and_header_injection_is_refused() {
        let e = err(SubmitRequest { subject: "Hi\r\nBcc: victim@example.com".into(), ..ok_request() });
        assert_eq!((e.field.as_str(), e.reason.as_str()), ("subject", "must not contain CR or LF"));
        let h = |name: &str, value: &str| Header { name: name.into(), value: value.into() };
        let e = err(SubmitRequest { headers: vec![h("X-Ok", "1"), h("X-Bad", "a\nb")], ..ok_request() });
        assert_eq!(e.field, "headers[1].value");
        let e = err(SubmitRequest { headers: vec![h("Bcc", "x@y.z")], ..ok_request() });
        assert_eq!(e.field, "headers[0].name");
        let e = err(SubmitRequest { headers: vec![h("Bad Name", "v")], ..ok_request() });
        assert_eq!(e.field, "headers[0].name");
    }

    #[test]
    fn attachments_tags_and_metadata_are_checked() {
        use bitmail_proto::v1::Attachment as A;
        let a = |filename: &str, content_type: &str, cid: &str| A {
            filename: filename.into(),
            content_type: content_type.into(),
            content: b"data".to_vec(),
            content_id: cid.into(),
        };
        let m = validate(
            SubmitRequest {
                attachments: vec![a("r.pdf", "", ""), a("logo.png", "image/png", "logo@x")],
                tags: vec!["welcome".into()],
                metadata: [("tenant".to_owned(), "t 9".to_owned())].into(),
                ..ok_request()
            },
            "m".into(),
            LIMITS,
        )
        .unwrap();
        assert_eq!(m.attachments[0].content_type, "application/octet-stream");
        assert_eq!(m.attachments[1].content_id.as_deref(), Some("logo@x"));
        assert_eq!(m.metadata["tenant"], "t 9");

        let one = |att: A| err(SubmitRequest { attachments: vec![att], ..ok_request() });
        assert_eq!(one(a("", "", "")).field, "attachments[0].filename");
        assert_eq!(one(a("../etc/passwd", "", "")).field, "attachments[0].filename");
        assert_eq!(one(a("a\r\n.txt", "", "")).field, "attachments[0].filename");
        assert_eq!(one(a("a.txt", "not a type", "")).field, "attachments[0].content_type");
        assert_eq!(one(a("a.txt", "text/plain", "<x>")).field, "attachments[0].content_id");
        let e = err(SubmitRequest { attachments: vec![a("a", "", "x"), a("b", "", "x")], ..ok_request() });
        assert_eq!(e.field, "attachments[1].content_id");

        let e = err(SubmitRequest { tags: vec!["a".into(), "b c".into()], ..ok_request() });
        assert_eq!(e.field, "tags[1]");
        let e = err(SubmitRequest { tags: vec!["a".into(); 4], ..ok_request() });
        assert_eq!(e.field, "tags");
        let e = err(SubmitRequest { metadata: [("bitmail_id".to_owned(), "x".to_owned())].into(), ..ok_request() });
        assert!(e.reason.contains("set by BitMail"), "{e}");
        let e = err(SubmitRequest { metadata: [("k".to_owned(), "é".to_owned())].into(), ..ok_request() });
        assert_eq!(e.field, "metadata[\"k\"]");

        let big = A { content: vec![0; 2000], ..a("big.bin", "", "") };
        let e = err(SubmitRequest { attachments: vec![big], ..ok_request() });
        assert_eq!(e.field, "attachments[0].content");
    }

    #[test]
    fn a_body_or_subject_is_required_and_size_is_limited() {
        assert_eq!(err(SubmitRequest { text: String::new(), ..ok_request() }).field, "text");
        assert_eq!(err(SubmitRequest { subject: " ".into(), ..ok_request() }).field, "subject");
        let e = err(SubmitRequest { html: "x".repeat(2000), ..ok_request() });
        assert_eq!(e.field, "html");
        assert!(e.reason.contains("limit is 1000 bytes"), "{e}");
    }
}
