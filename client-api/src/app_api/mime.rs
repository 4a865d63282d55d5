//! Mailgun's `/messages.mime`: a whole MIME message in the file (or field) `message`,
//! sent to the addresses of `to`. The message is read with mail-parser into the fields
//! of a submission, since mta-server builds the MIME form itself for each provider:
//! `From`, `Subject`, `Reply-To`, the text and HTML bodies, attachments and inline parts
//! (with their `Content-ID`), and the other header fields as custom headers except those
//! that describe the structure or that mta-server sets (`Date`, `Message-ID`,
//! `Content-*`, `Received`, `DKIM-Signature`...). The recipients are the `to` field's:
//! the MIME `To` and `Cc` are shown as `to`.

use bitmail_proto::v1 as pb;
use mail_parser::{Address, MessageParser, MimeHeaders, PartType};

use super::Refusal;
use super::form::{Form, refuse_unsupported, split_addresses};

/// Header fields the submission carries in its own fields, or that describe the MIME
/// structure, or that mta-server and the providers set.
const NOT_COPIED: &[&str] = &[
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
    "content-disposition",
    "content-id",
    "return-path",
    "received",
    "dkim-signature",
    "x-sg-id",
    "x-sg-eid",
];

/// The submission the `message` of `form` describes, for the `to` addresses.
pub(crate) fn base(form: &Form) -> Result<pb::SubmitRequest, Refusal> {
    for (name, _) in &form.fields {
        // The official SDKs also send from/cc/subject with a MIME message: the MIME wins.
        let known =
            matches!(name.as_str(), "to" | "message" | "from" | "cc" | "bcc" | "subject" | "recipient-variables")
                || name.starts_with("h:")
                || name.starts_with("v:")
                || name.starts_with("o:");
        refuse_unsupported(name, known)?;
    }
    let raw = form
        .files
        .iter()
        .find(|f| f.field == "message")
        .map(|f| f.data.as_slice())
        .or_else(|| form.first("message").map(str::as_bytes))
        .ok_or_else(|| Refusal::bad("message", "message: the MIME message is required"))?;
    let to: Vec<String> = form.all("to").flat_map(split_addresses).collect();
    if to.is_empty() {
        return Err(Refusal::bad("to", "to: at least one recipient is required"));
    }
    let message = MessageParser::default()
        .parse(raw)
        .filter(|m| m.from().is_some())
        .ok_or_else(|| Refusal::bad("message", "message: not a MIME message with a From header"))?;
    Ok(pb::SubmitRequest {
        from: addresses(message.from()).into_iter().next().unwrap_or_default(),
        to,
        reply_to: addresses(message.reply_to()),
        subject: message.subject().unwrap_or_default().to_owned(),
        text: message.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
        html: html(&message),
        headers: headers(&message),
        attachments: attachments(&message),
        ..Default::default()
    })
}

/// The HTML as sent (`body_html` would make HTML out of a text body).
fn html(message: &mail_parser::Message<'_>) -> String {
    let part = message.html_body.first().and_then(|&i| message.part(i));
    match part.map(|p| &p.body) {
        Some(PartType::Html(html)) => html.to_string(),
        _ => String::new(),
    }
}

/// The top-level header fields not in [`NOT_COPIED`], unfolded.
fn headers(message: &mail_parser::Message<'_>) -> Vec<pb::Header> {
    message
        .headers_raw()
        .filter(|(name, _)| !NOT_COPIED.contains(&name.to_ascii_lowercase().as_str()))
        .map(|(name, value)| pb::Header {
            name: name.to_owned(),
            value: value.replace(['\r', '\n'], "").trim().to_owned(),
        })
        .collect()
}

fn attachments(message: &mail_parser::Message<'_>) -> Vec<pb::Attachment> {
    let mut out = Vec::new();
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
        let filename = part.attachment_name().map_or_else(|| format!("attachment-{}", out.len() + 1), str::to_owned);
        out.push(pb::Attachment {
            filename,
            content_type,
            content: part.contents().to_vec(),
            content_id: content_id.to_owned(),
        });
    }
    out
}

/// `Name <addr>` or `addr` for each mailbox of an address header.
fn addresses(address: Option<&Address<'_>>) -> Vec<String> {
    let Some(address) = address else { return Vec::new() };
    address
        .iter()
        .filter_map(|a| {
            let email = a.address()?.trim();
            let name = a.name().map(str::trim).filter(|n| !n.is_empty() && *n != email);
            super::form::mailbox("message", email, name).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app_api::form::File;

    const MIME: &str = "From: Ada <ada@bitmail.test>\r\nTo: bob@example.net\r\nSubject: Report\r\n\
X-Campaign: spring\r\n  sale\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=r.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n";

    fn form(message: &str) -> Form {
        Form {
            fields: vec![("to".into(), "bob@example.net, carol@example.net".into())],
            files: vec![File {
                field: "message".into(),
                filename: "m.eml".into(),
                content_type: "message/rfc822".into(),
                data: message.as_bytes().to_vec(),
            }],
        }
    }

    #[test]
    fn a_mime_message_becomes_a_submission_for_the_to_field() {
        let request = base(&form(MIME)).unwrap();
        assert_eq!(request.from, "\"Ada\" <ada@bitmail.test>");
        assert_eq!(request.to, ["bob@example.net", "carol@example.net"]);
        assert_eq!((request.subject.as_str(), request.text.trim()), ("Report", "See attached."));
        let headers: Vec<_> = request.headers.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
        assert_eq!(headers, [("X-Campaign", "spring  sale")]);
        assert_eq!(request.attachments.len(), 1);
        assert_eq!(
            (request.attachments[0].filename.as_str(), request.attachments[0].content_type.as_str()),
            ("r.pdf", "application/pdf")
        );
        assert_eq!(request.attachments[0].content, b"%PDF");
    }

    #[test]
    fn a_missing_or_broken_message_is_refused() {
        assert_eq!(base(&form("not a message")).unwrap_err().field.as_deref(), Some("message"));
        let mut without = form(MIME);
        without.files.clear();
        assert_eq!(base(&without).unwrap_err().field.as_deref(), Some("message"));
        let mut nobody = form(MIME);
        nobody.fields.clear();
        assert_eq!(base(&nobody).unwrap_err().field.as_deref(), Some("to"));
    }
}
