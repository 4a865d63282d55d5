//! Mailgun's three signature fields (`timestamp`, `token`, `signature`), read from a
//! route forward before the rest of its form, so that a forged request is refused
//! (401) before its attachments are parsed, copied or decoded.
//!
//! Where they are: Mailgun documents the fields of a forward, not the order of its parts,
//! so none is assumed. The fields are read part by part, in order, skipping every other
//! part without reading it into a value (multer slices the body; nothing is decoded), and
//! the reading stops as soon as all three are known: when Mailgun sends them first, a
//! forged request costs nothing past them; when they come after the attachments, the
//! attachments are passed over once, unparsed. Either way the body in hand is bounded
//! by the edge's budget (client-api's `max_inbound_bytes`), and [`super::MAX_BODY`].
//! A part that cannot be read before all three are found makes the form malformed (400).

use super::{Refused, ready};

/// The three fields, as sent.
#[derive(Debug, PartialEq)]
pub(crate) struct SignatureFields {
    pub timestamp: String,
    pub token: String,
    pub signature: String,
}

/// The longest value taken for one of them (Mailgun's token is 50 characters, the
/// signature 64 hex digits).
const MAX_FIELD: usize = 256;

#[derive(Default)]
struct Found([Option<String>; 3]);

impl Found {
    const NAMES: [&'static str; 3] = ["timestamp", "token", "signature"];

    /// Which field `name` is, if it is one not seen before (the first one counts, as
    /// [`super::Form::text`] takes the first).
    fn wanted(&self, name: &str) -> Option<usize> {
        Self::NAMES.iter().position(|n| *n == name).filter(|i| self.0[*i].is_none())
    }

    fn complete(&self) -> bool {
        self.0.iter().all(Option::is_some)
    }

    fn finish(self) -> Result<SignatureFields, Refused> {
        let [timestamp, token, signature] = self.0;
        let missing = |name: &str| Refused::Unauthorized(format!("`{name}` is missing"));
        Ok(SignatureFields {
            timestamp: timestamp.ok_or_else(|| missing("timestamp"))?,
            token: token.ok_or_else(|| missing("token"))?,
            signature: signature.ok_or_else(|| missing("signature"))?,
        })
    }
}

fn too_long(name: &str) -> Refused {
    Refused::Unauthorized(format!("`{name}` is longer than {MAX_FIELD} bytes"))
}

/// The signature fields of a form body whose Content-Type is `content_type`.
pub(crate) fn signature_fields(content_type: &str, body: &[u8]) -> Result<SignatureFields, Refused> {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.as_str() {
        "multipart/form-data" => from_multipart(content_type, body),
        "application/x-www-form-urlencoded" => {
            let mut found = Found::default();
            for (name, value) in form_urlencoded::parse(body) {
                if let Some(i) = found.wanted(&name) {
                    if value.len() > MAX_FIELD {
                        return Err(too_long(&name));
                    }
                    found.0[i] = Some(value.into_owned());
                    if found.complete() {
                        break;
                    }
                }
            }
            found.finish()
        }
        _ => Err(Refused::Malformed(format!(
            "Content-Type {essence:?}: expected multipart/form-data or application/x-www-form-urlencoded"
        ))),
    }
}

fn from_multipart(content_type: &str, body: &[u8]) -> Result<SignatureFields, Refused> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| Refused::Malformed(format!("multipart/form-data without a usable boundary: {e}")))?;
    let stream = tokio_stream::once(Ok::<_, std::convert::Infallible>(body.to_vec()));
    let mut multipart = multer::Multipart::new(stream, boundary);
    let reading = async move {
        let mut found = Found::default();
        while !found.complete() {
            let Some(mut field) = multipart.next_field().await? else { break };
            let wanted = if field.file_name().is_some() { None } else { field.name().and_then(|n| found.wanted(n)) };
            // Any other part is dropped unread: the next `next_field` passes over it.
            let Some(i) = wanted else { continue };
            let mut value = Vec::new();
            while let Some(chunk) = field.chunk().await? {
                if value.len() + chunk.len() > MAX_FIELD {
                    return Ok(Err(too_long(Found::NAMES[i])));
                }
                value.extend_from_slice(&chunk);
            }
            found.0[i] = Some(String::from_utf8_lossy(&value).into_owned());
        }
        Ok::<_, multer::Error>(found.finish())
    };
    match ready(reading) {
        Some(Ok(fields)) => fields,
        Some(Err(e)) => Err(Refused::Malformed(format!("malformed multipart body: {e}"))),
        None => Err(Refused::Malformed("the multipart body could not be read at once".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Part, multipart};
    use super::*;

    const TYPE: &str = "multipart/form-data; boundary=B";

    fn signed_parts() -> [Part<'static>; 3] {
        [("timestamp", None, None, b"1700000000"), ("token", None, None, b"tok"), ("signature", None, None, b"abc")]
    }

    fn expected() -> SignatureFields {
        SignatureFields { timestamp: "1700000000".into(), token: "tok".into(), signature: "abc".into() }
    }

    #[test]
    fn found_first_the_rest_is_never_read() {
        let mut body = multipart("B", &signed_parts());
        // What follows the three is not even well-formed: it is never looked at.
        body.truncate(body.len() - "--B--\r\n".len());
        body.extend_from_slice(
            b"--B\r\nContent-Disposition: form-data; name=\"attachment-1\"; filename=\"a.bin\"\r\n\r\n",
        );
        body.extend_from_slice(&[0u8; 4096]);
        assert_eq!(signature_fields(TYPE, &body).unwrap(), expected());
    }

    #[test]
    fn found_after_the_attachments_which_are_passed_over() {
        let mut parts = vec![("attachment-1", Some("a.bin"), Some("application/octet-stream"), &[7u8; 10_000][..])];
        parts.extend(signed_parts());
        // A file part named like a field does not count.
        parts.insert(0, ("token", Some("token.txt"), None, b"not this"));
        assert_eq!(signature_fields(TYPE, &multipart("B", &parts)).unwrap(), expected());
    }

    #[test]
    fn missing_or_oversized_fields_are_unauthorized() {
        let body = multipart("B", &signed_parts()[..2]);
        assert!(matches!(signature_fields(TYPE, &body), Err(Refused::Unauthorized(m)) if m.contains("signature")));
        let long = "x".repeat(MAX_FIELD + 1);
        let body = multipart("B", &[("token", None, None, long.as_bytes())]);
        assert!(matches!(signature_fields(TYPE, &body), Err(Refused::Unauthorized(m)) if m.contains("longer")));
        let body = format!("token=tok&signature=abc&timestamp=1700000000&token=later&body-plain={}", "y".repeat(99));
        assert_eq!(signature_fields("application/x-www-form-urlencoded", body.as_bytes()).unwrap(), expected());
    }
}
