//! The "parsed fields" mode that SendGrid's Inbound Parse and Mailgun's routes both offer:
//! the provider has already taken the message apart and posts its header fields, bodies
//! and files as separate form fields. [`Fields`] is what each parser reads from its own
//! field names; [`Fields::into_mail`] assembles the one [`InboundMail`] from it, the same
//! way for both.
//!
//! This is the one assembler of an [`InboundMail`] from the parsed-fields mode: header
//! fields (what the separate fields leave out comes from the header block), bodies (the
//! text derived from the HTML when empty) and attachments with their content ids. The
//! envelope (lowercased) and the provider's verdicts (SendGrid `spam_score`, `SPF`,
//! `dkim`) are set by each provider's parser. Whole MIME messages go through
//! [`super::mime`] instead.

use bitmail_proto::v1::{Attachment, InboundMail};
use mail_parser::decoders::html::html_to_text;

use super::mime::{address_list, addresses, date_ms};
use super::{Refused, check_decoded_size};

/// A received message as separate fields. `None` is a field the provider did not send.
#[derive(Default)]
pub(crate) struct Fields {
    /// The message's header block, parsed: what the separate fields leave out (Reply-To,
    /// Date, Message-ID) comes from here, and so do `from`, `to`, `cc` and `subject`
    /// when their fields are missing.
    pub headers: Option<mail_parser::Message<'static>>,
    /// Address lists as header values (`Name <addr>, ...`); an empty one counts as
    /// missing.
    pub from: Option<String>,
    pub to: Option<String>,
    pub cc: Option<String>,
    /// Taken as sent, even empty.
    pub subject: Option<String>,
    /// The text body; when empty, derived from the HTML.
    pub text: Option<String>,
    pub html: Option<String>,
    /// Already made safe by [`super::attachment`], in the provider's order.
    pub attachments: Vec<Attachment>,
}

type Pick = fn(&mail_parser::Message<'static>) -> Vec<String>;

impl Fields {
    /// The message; `received_ms` is its date when the headers give none. Refused when
    /// over [`super::MAX_DECODED`].
    pub fn into_mail(self, received_ms: u64) -> Result<InboundMail, Refused> {
        let headers = self.headers;
        let from_headers = |pick: Pick| headers.as_ref().map(pick).unwrap_or_default();
        let list = |value: Option<String>, pick: Pick| match value {
            Some(value) if !value.trim().is_empty() => address_list(&value),
            _ => from_headers(pick),
        };
        let html = self.html.unwrap_or_default();
        let text = match self.text {
            Some(text) if !text.is_empty() => text,
            _ if !html.is_empty() => html_to_text(&html),
            _ => String::new(),
        };
        let mail = InboundMail {
            from: list(self.from, |m| addresses(m.from())).into_iter().next().unwrap_or_default(),
            to: list(self.to, |m| addresses(m.to())),
            cc: list(self.cc, |m| addresses(m.cc())),
            reply_to: from_headers(|m| addresses(m.reply_to())),
            subject: self
                .subject
                .or_else(|| headers.as_ref().and_then(|m| m.subject().map(str::to_owned)))
                .unwrap_or_default(),
            date_ms: headers.as_ref().and_then(date_ms).unwrap_or(received_ms),
            message_id: headers.as_ref().and_then(|m| m.message_id()).unwrap_or_default().to_owned(),
            references: headers.as_ref().map(super::mime::references).unwrap_or_default(),
            text,
            html,
            attachments: self.attachments,
            ..Default::default()
        };
        check_decoded_size(&mail)?;
        Ok(mail)
    }
}

#[cfg(test)]
mod tests {
    use super::super::MAX_DECODED;
    use super::super::mime::parse_header_block;
    use super::*;

    fn headers() -> Option<mail_parser::Message<'static>> {
        parse_header_block(
            b"From: Bob <bob@example.com>\r\nTo: info@bitmail.test\r\nCc: carol@example.com\r\n\
              Reply-To: replies@example.com\r\nSubject: From the headers\r\n\
              Message-ID: <h-1@example.com>\r\nDate: Tue, 01 Sep 2026 08:00:00 +0000\r\n",
        )
    }

    #[test]
    fn fields_win_and_the_headers_fill_in() {
        let mail = Fields {
            headers: headers(),
            from: Some("Ann <ann@example.com>".into()),
            to: Some("  ".into()),
            subject: Some(String::new()),
            text: Some("Hi".into()),
            ..Default::default()
        }
        .into_mail(7)
        .unwrap();
        assert_eq!(mail.from, "Ann <ann@example.com>");
        assert_eq!(
            (mail.to.as_slice(), mail.cc.as_slice()),
            (&["info@bitmail.test".to_owned()][..], &["carol@example.com".to_owned()][..])
        );
        assert_eq!(mail.reply_to, vec!["replies@example.com"]);
        assert_eq!(mail.subject, "", "an empty subject field is the subject");
        assert_eq!((mail.message_id.as_str(), mail.date_ms), ("h-1@example.com", 1_788_249_600_000));
        assert_eq!((mail.text.as_str(), mail.html.as_str()), ("Hi", ""));
    }

    #[test]
    fn without_headers_the_date_is_the_receipt_and_text_comes_from_html() {
        let mail = Fields { html: Some("<p>Hello</p>".into()), text: Some(String::new()), ..Default::default() }
            .into_mail(7)
            .unwrap();
        assert_eq!((mail.date_ms, mail.from.as_str(), mail.message_id.as_str()), (7, "", ""));
        assert_eq!(mail.text.trim(), "Hello");
        let big = Fields { text: Some("x".repeat(MAX_DECODED + 1)), ..Default::default() };
        assert!(matches!(big.into_mail(7), Err(Refused::Malformed(_))));
    }
}
