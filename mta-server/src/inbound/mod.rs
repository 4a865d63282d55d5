//! Inbound mail from the providers' webhooks, normalized to one
//! [`InboundMail`].
//!
//! What comes in: the raw HTTP request the edge forwarded (header pairs and body bytes).
//!
//! - [`sendgrid`]: Inbound Parse, `multipart/form-data`, either parsed fields or the whole
//!   message in field `email` (raw mode). SendGrid signs nothing: the request is
//!   authenticated by HTTP Basic auth in the URL it posts to ([`sendgrid::check_basic_auth`]).
//! - [`mailgun`]: route forwards, `multipart/form-data` or `application/x-www-form-urlencoded`,
//!   parsed fields or the whole message in `body-mime`. Authenticated by the HMAC of
//!   `timestamp` + `token` with the webhook signing key, as Mailgun's event webhooks
//!   ([`MailgunSigningKey`](crate::webhook::MailgunSigningKey)), and the same
//!   freshness rule.
//! - [`ses`]: the `Message` of an SNS notification with `notificationType: "Received"`,
//!   the MIME message in `content`. The SNS signature is checked before, by the caller.
//! - `signed`: Mailgun's signature fields read before the rest of the form, so that a
//!   forged forward is refused before its attachments are parsed;
//! - [`mime`]: the MIME parser all three share (mail-parser);
//! - `fields`: the message assembled from separate form fields, the "parsed" mode of
//!   SendGrid and Mailgun alike.
//!
//! What goes out: an `InboundMail` with the envelope (lowercase addresses), the decoded
//! header fields, bodies, attachments and the provider's verdicts, and a `dedupe_key`
//! stable across the provider's retries. Nothing here delivers or stores: refusals are
//! [`Refused`] values whose HTTP status the caller chooses (`Unauthorized` 401,
//! `Malformed` 400). A message whose decoded size is over [`MAX_DECODED`] is refused.
//!
//! Dedupe keys: SendGrid `sendgrid:` + Message-ID, else `sendgrid:sha256:` + the body's
//! digest; Mailgun `mailgun:` + token; SES `ses:` + `mail.messageId`. Attachment names
//! are made safe (control characters, `/` and `\` replaced; 1 to 255 bytes); invalid or
//! repeated content ids are dropped.

pub(crate) mod fields;
pub mod mailgun;
pub mod mime;
pub mod sendgrid;
pub mod ses;
mod signed;

use std::collections::HashSet;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use aws_lc_rs::digest;
use bitmail_proto::v1::{Attachment, Header, InboundMail};

pub use crate::webhook::Refused;
use crate::webhook::header;

/// The largest message taken, decoded (bodies plus attachments).
pub const MAX_DECODED: usize = 40 * 1024 * 1024;

/// The largest request body read at all: base64 makes a message 4/3 larger, and the
/// multipart framing adds a little.
pub const MAX_BODY: usize = MAX_DECODED / 3 * 4 + 4 * 1024 * 1024;

/// Refuses a request body too large to hold a message of [`MAX_DECODED`].
pub(crate) fn check_body_size(len: usize) -> Result<(), Refused> {
    if len > MAX_BODY {
        return Err(Refused::Malformed(format!(
            "the request is {} MiB; inbound mail is taken up to {} MiB",
            len / (1024 * 1024),
            MAX_DECODED / (1024 * 1024)
        )));
    }
    Ok(())
}

/// Refuses a message over [`MAX_DECODED`], counting its bodies and attachments.
pub(crate) fn check_decoded_size(mail: &InboundMail) -> Result<(), Refused> {
    let size = mail.text.len() + mail.html.len() + mail.attachments.iter().map(|a| a.content.len()).sum::<usize>();
    if size > MAX_DECODED {
        return Err(Refused::Malformed(format!(
            "the message is {} MiB decoded; inbound mail is taken up to {} MiB",
            size / (1024 * 1024),
            MAX_DECODED / (1024 * 1024)
        )));
    }
    Ok(())
}

/// Envelope addresses: split on commas, trimmed, lowercased, without angle brackets,
/// empty ones and repeats dropped, in order.
pub(crate) fn envelope_list<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen = HashSet::new();
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(envelope_address)
        .filter(|a| !a.is_empty() && seen.insert(a.clone()))
        .collect()
}

/// One envelope address, trimmed, lowercased, without angle brackets.
pub(crate) fn envelope_address(value: &str) -> String {
    value.trim().trim_start_matches('<').trim_end_matches('>').trim().to_ascii_lowercase()
}

/// A verdict pair, lowercase value, or nothing when the value is empty.
pub(crate) fn verdict(name: &str, value: &str) -> Option<Header> {
    let value = value.trim();
    (!value.is_empty()).then(|| Header { name: name.to_owned(), value: value.to_ascii_lowercase() })
}

/// The lowercase hex SHA-256 of `bytes`: a dedupe key when the provider gives none.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    digest::digest(&digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// An attachment as the proto allows it: the file name made safe (no control characters,
/// `/` or `\`, 1 to 255 bytes; `fallback` when empty), the content id without angle
/// brackets and kept only when valid and not used before in `seen`.
pub(crate) fn attachment(
    filename: &str,
    content_type: &str,
    content: Vec<u8>,
    content_id: &str,
    fallback: &str,
    seen: &mut HashSet<String>,
) -> Attachment {
    let mut name: String =
        filename.trim().chars().map(|c| if c.is_control() || c == '/' || c == '\\' { '_' } else { c }).collect();
    if name.len() > 255 {
        let mut end = 255;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    if name.is_empty() {
        name = fallback.to_owned();
    }
    let cid = content_id.trim().trim_start_matches('<').trim_end_matches('>');
    let valid = (1..=128).contains(&cid.len()) && cid.bytes().all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    let content_id = if valid && seen.insert(cid.to_owned()) { cid.to_owned() } else { String::new() };
    Attachment { filename: name, content_type: content_type.trim().to_ascii_lowercase(), content, content_id }
}

/// One part of a form body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FormPart {
    pub name: String,
    /// Set for a file part.
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// A form body, read whole: `multipart/form-data` or `application/x-www-form-urlencoded`
/// as the request's Content-Type says.
#[derive(Debug, Default)]
pub(crate) struct Form {
    pub parts: Vec<FormPart>,
}

impl Form {
    pub fn read(headers: &[(String, String)], body: &[u8]) -> Result<Form, Refused> {
        check_body_size(body.len())?;
        let content_type = header(headers, "content-type")
            .ok_or_else(|| Refused::Malformed("the Content-Type header is missing".into()))?;
        let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match essence.as_str() {
            "multipart/form-data" => read_multipart(content_type, body),
            "application/x-www-form-urlencoded" => Ok(Form {
                parts: form_urlencoded::parse(body)
                    .map(|(name, value)| FormPart {
                        name: name.into_owned(),
                        filename: None,
                        content_type: None,
                        data: value.into_owned().into_bytes(),
                    })
                    .collect(),
            }),
            _ => Err(Refused::Malformed(format!(
                "Content-Type {essence:?}: expected multipart/form-data or application/x-www-form-urlencoded"
            ))),
        }
    }

    /// The first part named `name`.
    pub fn get(&self, name: &str) -> Option<&FormPart> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// The first part named `name` as text (invalid UTF-8 replaced), trimmed of nothing.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name).map(|p| String::from_utf8_lossy(&p.data).into_owned())
    }

    /// The parts named `prefix` + a number (`attachment1`, `attachment-2`), by number,
    /// with the number.
    pub fn numbered(&self, prefix: &str) -> Vec<(u32, &FormPart)> {
        let mut parts: Vec<(u32, &FormPart)> =
            self.parts.iter().filter_map(|p| Some((p.name.strip_prefix(prefix)?.parse().ok()?, p))).collect();
        parts.sort_by_key(|(n, _)| *n);
        parts
    }
}

fn read_multipart(content_type: &str, body: &[u8]) -> Result<Form, Refused> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| Refused::Malformed(format!("multipart/form-data without a usable boundary: {e}")))?;
    let stream = tokio_stream::once(Ok::<_, std::convert::Infallible>(body.to_vec()));
    let mut multipart = multer::Multipart::new(stream, boundary);
    let reading = async move {
        let mut parts = Vec::new();
        while let Some(field) = multipart.next_field().await? {
            let name = field.name().unwrap_or_default().to_owned();
            let filename = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(|m| m.to_string());
            let data = field.bytes().await?.to_vec();
            parts.push(FormPart { name, filename, content_type, data });
        }
        Ok::<_, multer::Error>(parts)
    };
    match ready(reading) {
        Some(Ok(parts)) if parts.is_empty() => Err(Refused::Malformed("the multipart body has no parts".into())),
        Some(Ok(parts)) => Ok(Form { parts }),
        Some(Err(e)) => Err(Refused::Malformed(format!("malformed multipart body: {e}"))),
        None => Err(Refused::Malformed("the multipart body could not be read at once".into())),
    }
}

/// Runs a future whose input is all in memory: it never waits, so one poll finishes it.
/// `None` if it did wait (it would never be woken).
fn ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Form bodies for the tests, built as the providers send them.

    /// One form part: name, file name, content type, data.
    pub type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

    /// A `multipart/form-data` body.
    pub fn multipart(boundary: &str, parts: &[Part<'_>]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, filename, content_type, data) in parts {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes(),
            );
            if let Some(f) = filename {
                body.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            if let Some(t) = content_type {
                body.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        body
    }

    pub fn headers(content_type: &str) -> Vec<(String, String)> {
        vec![("Content-Type".into(), content_type.into())]
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{headers, multipart};
    use super::*;

    #[test]
    fn envelope_lists_are_lowercase_split_and_unique() {
        assert_eq!(
            envelope_list(["Bob@Example.COM, <alice@example.com>", "bob@example.com", " "]),
            vec!["bob@example.com", "alice@example.com"]
        );
    }

    #[test]
    fn attachments_get_safe_names_and_valid_unique_content_ids() {
        let mut seen = HashSet::new();
        let a = attachment("../etc/pa\u{7}ss", "Image/PNG", vec![1], "<logo@x>", "attachment1", &mut seen);
        assert_eq!(
            (a.filename.as_str(), a.content_type.as_str(), a.content_id.as_str()),
            (".._etc_pa_ss", "image/png", "logo@x")
        );
        let b = attachment("", "", vec![], "logo@x", "attachment2", &mut seen);
        assert_eq!((b.filename.as_str(), b.content_id.as_str()), ("attachment2", ""));
        let c = attachment(&"é".repeat(200), "", vec![], "has space", "x", &mut seen);
        assert_eq!((c.filename.len(), c.content_id.as_str()), (254, ""));
    }

    #[test]
    fn oversized_messages_are_refused() {
        let mail = InboundMail { text: "x".repeat(MAX_DECODED + 1), ..Default::default() };
        let e = check_decoded_size(&mail).unwrap_err();
        assert!(matches!(&e, Refused::Malformed(m) if m.contains("40 MiB")), "{e}");
        assert!(check_decoded_size(&InboundMail { text: "x".repeat(MAX_DECODED), ..Default::default() }).is_ok());
        assert!(matches!(check_body_size(MAX_BODY + 1), Err(Refused::Malformed(_))));
    }

    #[test]
    fn forms_are_read_in_both_encodings() {
        let body = multipart("XyZ", &[("a", None, None, b"1"), ("f", Some("f.txt"), Some("text/plain"), b"data")]);
        let form = Form::read(&headers("multipart/form-data; boundary=XyZ"), &body).unwrap();
        assert_eq!(form.text("a").as_deref(), Some("1"));
        let f = form.get("f").unwrap();
        assert_eq!(
            (f.filename.as_deref(), f.content_type.as_deref(), &f.data[..]),
            (Some("f.txt"), Some("text/plain"), &b"data"[..])
        );

        let form = Form::read(&headers("application/x-www-form-urlencoded"), b"a=x%20y&b=%C3%A9").unwrap();
        assert_eq!((form.text("a").as_deref(), form.text("b").as_deref()), (Some("x y"), Some("é")));
    }

    #[test]
    fn malformed_multipart_is_refused() {
        let body = multipart("XyZ", &[("a", None, None, b"1")]);
        for (content_type, body) in [
            ("multipart/form-data; boundary=Other", &body[..]),
            ("multipart/form-data", &body[..]),
            ("multipart/form-data; boundary=XyZ", &body[..body.len() / 2]),
            ("text/plain", &body[..]),
        ] {
            let e = Form::read(&headers(content_type), body).unwrap_err();
            assert!(matches!(e, Refused::Malformed(_)), "{content_type}: {e}");
        }
        assert!(matches!(Form::read(&[], &body), Err(Refused::Malformed(_))));
    }
}
