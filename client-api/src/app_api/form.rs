//! What both shapes read the same way: the body under a limit, HTML forms
//! (urlencoded or multipart, Mailgun's), address lists, and mailboxes built from an
//! address and a display name.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};

use super::Refusal;

/// The body, or 413 past `limit` bytes.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, Refusal> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!("the request is larger than {} MB, the limit", limit / (1024 * 1024)),
        )
    })
}

/// A file part of a multipart form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct File {
    pub(crate) field: String,
    pub(crate) filename: String,
    pub(crate) content_type: String,
    pub(crate) data: Vec<u8>,
}

/// An HTML form: its fields in order (a name may repeat) and its files.
#[derive(Debug, Default)]
pub(crate) struct Form {
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) files: Vec<File>,
}

impl Form {
    /// Reads `application/x-www-form-urlencoded` or `multipart/form-data`.
    pub(crate) async fn read(headers: &HeaderMap, body: Bytes) -> Result<Form, Refusal> {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/x-www-form-urlencoded" => Ok(Form {
                fields: form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
                files: Vec::new(),
            }),
            "multipart/form-data" => read_multipart(content_type, body).await,
            _ => Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                None,
                "the body must be multipart/form-data or application/x-www-form-urlencoded",
            )),
        }
    }

    /// Every value of `name`.
    pub(crate) fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.fields.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first value of `name`.
    pub(crate) fn first(&self, name: &str) -> Option<&str> {
        self.all(name).next()
    }
}

async fn read_multipart(content_type: &str, body: Bytes) -> Result<Form, Refusal> {
    let malformed =
        |e: multer::Error| Refusal::new(StatusCode::BAD_REQUEST, None, format!("malformed multipart body: {e}"));
    let boundary = multer::parse_boundary(content_type).map_err(malformed)?;
    let stream = tokio_stream::once(Ok::<_, std::convert::Infallible>(body));
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut form = Form::default();
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(|m| m.essence_str().to_owned());
        let data = field.bytes().await.map_err(malformed)?.to_vec();
        match filename {
            Some(filename) => {
                let content_type = content_type.unwrap_or_default();
                form.files.push(File { field: name, filename, content_type, data });
            }
            None => {
                let value = String::from_utf8(data)
                    .map_err(|_| Refusal::bad(&name, format!("the field {name} is not UTF-8 text")))?;
                form.fields.push((name, value));
            }
        }
    }
    Ok(form)
}

/// An address list as Mailgun takes it: `a@x.org, "Doe, Jane" <jane@x.org>`, split at
/// the commas that are outside quotes and angle brackets.
pub(crate) fn split_addresses(list: &str) -> Vec<String> {
    let (mut out, mut current) = (Vec::new(), String::new());
    let (mut quoted, mut angled, mut escaped) = (false, false, false);
    for c in list.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angled = true,
            '>' if !quoted => angled = false,
            ',' if !quoted && !angled => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.push(current);
    out.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
}

/// `"Name" <email>`, or the bare address without a name. `field` names the address in
/// a refusal (a line break in a name is a header injection).
pub(crate) fn mailbox(field: &str, email: &str, name: Option<&str>) -> Result<String, Refusal> {
    let email = email.trim();
    if email.is_empty() {
        return Err(Refusal::bad(&format!("{field}.email"), "an email address is required"));
    }
    if email.chars().any(|c| c.is_control() || c.is_whitespace() || "<>\",".contains(c)) {
        return Err(Refusal::bad(
            &format!("{field}.email"),
            format!("`{}` is not a valid address", email.escape_debug()),
        ));
    }
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        None => Ok(email.to_owned()),
        Some(name) if name.chars().any(char::is_control) => {
            Err(Refusal::bad(&format!("{field}.name"), "must not contain control characters (CR, LF, ...)"))
        }
        Some(name) => Ok(format!("\"{}\" <{email}>", name.replace('\\', "\\\\").replace('"', "\\\""))),
    }
}

/// A SendGrid category or Mailgun tag as a BitMail tag: characters other than ASCII
/// letters, digits, `_` and `-` become `_`, at most 128 of them.
pub(crate) fn tag(raw: &str) -> String {
    raw.trim().chars().take(128).map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// 400 for templates (stored at Mailgun) and for fields that are not Mailgun's.
pub(crate) fn refuse_unsupported(name: &str, known: bool) -> Result<(), Refusal> {
    if name == "template" || name.starts_with("t:") || name == "amp-html" {
        return Err(Refusal::bad(name, format!("{name}: templates and AMP are not supported: send text or html")));
    }
    if !known {
        return Err(Refusal::bad(name, format!("{name}: unknown parameter")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists_split_outside_quotes_and_brackets() {
        assert_eq!(
            split_addresses(r#"a@x.org, "Doe, Jane" <jane@x.org>,, Bob <b,ob@x.org> "#),
            ["a@x.org", "\"Doe, Jane\" <jane@x.org>", "Bob <b,ob@x.org>"]
        );
        assert!(split_addresses(" , ").is_empty());
    }

    #[test]
    fn tags_keep_what_every_provider_takes() {
        assert_eq!(tag(" September newsletter "), "September_newsletter");
        assert_eq!(tag("a-b_c9"), "a-b_c9");
        assert_eq!(tag(&"é".repeat(200)).len(), 128);
    }

    #[test]
    fn mailboxes_quote_names_and_refuse_injections() {
        assert_eq!(mailbox("from", "a@x.org", None).unwrap(), "a@x.org");
        assert_eq!(mailbox("from", "a@x.org", Some(" ")).unwrap(), "a@x.org");
        assert_eq!(mailbox("from", "a@x.org", Some("Ada \"L\"")).unwrap(), r#""Ada \"L\"" <a@x.org>"#);
        let e = mailbox("personalizations.0.to.0", "a@x.org", Some("A\r\nBcc: v@x.org")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("personalizations.0.to.0.name"));
        assert_eq!(mailbox("from", "a@x.org\r\nBcc: v@x.org", None).unwrap_err().field.as_deref(), Some("from.email"));
        assert_eq!(mailbox("from", "", None).unwrap_err().field.as_deref(), Some("from.email"));
    }
}
