//! The domain message and its validation.
//!
//! A [`Message`] is built once, from a checked [`bitmail_proto::v1::SubmitRequest`], and
//! never changes afterwards: every provider attempt receives the same `Arc<Message>`, so
//! one attempt can never alter what the next provider sends.

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
    pub submitted_at: SystemTime,
}

impl Message {
    /// Every recipient, to then cc then bcc.
    pub fn recipients(&self) -> impl Iterator<Item = &Mailbox> {
        self.to.iter().chain(&self.cc).chain(&self.bcc)
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

    let size = req.subject.len()
        + req.text.len()
        + req.html.len()
        + headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
    if size > limits.max_message_bytes {
        let field = if req.html.len() > req.text.len() { "html" } else { "text" };
        return Err(invalid(
            field,
            format!("the message is {size} bytes; the limit is {} bytes", limits.max_message_bytes),
        ));
    }

    if req.idempotency_key.len() > 200 || req.idempotency_key.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
        return Err(invalid("idempotency_key", "at most 200 printable ASCII characters"));
    }

    Ok(Message {
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
        submitted_at: SystemTime::now(),
    })
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
    fn a_body_or_subject_is_required_and_size_is_limited() {
        assert_eq!(err(SubmitRequest { text: String::new(), ..ok_request() }).field, "text");
        assert_eq!(err(SubmitRequest { subject: " ".into(), ..ok_request() }).field, "subject");
        let e = err(SubmitRequest { html: "x".repeat(2000), ..ok_request() });
        assert_eq!(e.field, "html");
        assert!(e.reason.contains("limit is 1000 bytes"), "{e}");
    }
}
