//! Mailgun (`POST {base}/v3/{domain}/messages`, HTTP Basic `api:<key>`, multipart form).
//!
//! BitMail's message id travels as the custom variable `v:bitmail_id`, which Mailgun
//! returns in every event's `user-variables`. Custom headers go as `h:<Name>`, tags as
//! `o:tag`, the metadata pairs as `v:<key>` beside `v:bitmail_id`. Attachments are file
//! parts `attachment`; an inline part is a file part `inline` named by its content id,
//! since Mailgun derives the `cid:` from the file name.
//!
//! Answers: 200 with `id` accepted; 429 (its reset only in prose), 5xx and a failed
//! connection transient; 401 (plain `Forbidden`), 403 and 404 (an unknown domain)
//! provider-refused; 413 refused for this message; 400 message-rejected; a timeout after
//! the request went out ambiguous.
//!
//! When an earlier attempt elsewhere already reached some recipients, the message goes
//! to `/messages.mime` instead: the MIME message keeps its whole header (every To and
//! Cc as the sender wrote them) while the `to` fields, the envelope, name only the
//! recipients still to reach.

use std::time::Duration;

use bitmail_runtime::config::Secret;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use super::{Outcome, Provider, classify_failure, classify_transport_error, http_client};
use crate::message::{Attachment, Mailbox, Message};

/// The Mailgun provider.
pub struct Mailgun {
    name: String,
    endpoint: String,
    mime_endpoint: String,
    api_key: Secret,
    test_mode: bool,
    client: reqwest::Client,
}

/// How to reach one Mailgun sending domain.
#[derive(Debug, Clone)]
pub struct MailgunSettings {
    pub name: String,
    /// `https://api.mailgun.net`, `https://api.eu.mailgun.net`, or a stand-in.
    pub base_url: String,
    /// The sending domain registered with Mailgun.
    pub domain: String,
    pub api_key: Secret,
    /// `o:testmode=yes`: Mailgun accepts and does not deliver.
    pub test_mode: bool,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

impl Mailgun {
    pub fn new(settings: MailgunSettings) -> Result<Self, reqwest::Error> {
        let messages = format!("{}/v3/{}/messages", settings.base_url.trim_end_matches('/'), settings.domain);
        Ok(Self {
            mime_endpoint: format!("{messages}.mime"),
            endpoint: messages,
            client: http_client(settings.connect_timeout, settings.timeout)?,
            name: settings.name,
            api_key: settings.api_key,
            test_mode: settings.test_mode,
        })
    }
}

/// A mailbox as an RFC 5322 header value, the display name quoted by lettre when it
/// needs to be (a comma in a name would otherwise split Mailgun's recipient list).
fn mailbox(m: &Mailbox) -> String {
    match m.email.parse::<lettre::Address>() {
        Ok(address) => lettre::message::Mailbox::new(m.name.clone(), address).to_string(),
        // Validated at submission, so this is not expected; send the bare address.
        Err(_) => m.email.clone(),
    }
}

/// The form fields of a message, in the order Mailgun documents them.
pub(crate) fn form_fields(message: &Message, test_mode: bool) -> Vec<(String, String)> {
    let mut fields = vec![("from".to_owned(), mailbox(&message.from))];
    for (key, list) in [("to", &message.to), ("cc", &message.cc), ("bcc", &message.bcc)] {
        fields.extend(list.iter().filter(|m| !message.was_sent_to(m)).map(|m| (key.to_owned(), mailbox(m))));
    }
    fields.push(("subject".into(), message.subject.clone()));
    if let Some(text) = &message.text {
        fields.push(("text".into(), text.clone()));
    }
    if let Some(html) = &message.html {
        fields.push(("html".into(), html.clone()));
    }
    if !message.reply_to.is_empty() {
        let list: Vec<String> = message.reply_to.iter().map(mailbox).collect();
        fields.push(("h:Reply-To".into(), list.join(", ")));
    }
    fields.extend(message.headers.iter().map(|(n, v)| (format!("h:{n}"), v.clone())));
    fields.extend(option_fields(message, test_mode));
    fields
}

/// Tags, variables (BitMail's id among them) and test mode, for either endpoint.
fn option_fields(message: &Message, test_mode: bool) -> impl Iterator<Item = (String, String)> + '_ {
    let tags = message.tags.iter().map(|t| ("o:tag".to_owned(), t.clone()));
    let variables = message.metadata.iter().map(|(k, v)| (format!("v:{k}"), v.clone()));
    let id = std::iter::once(("v:bitmail_id".to_owned(), message.id.clone()));
    let test = test_mode.then(|| ("o:testmode".to_owned(), "yes".to_owned()));
    tags.chain(variables).chain(id).chain(test)
}

/// The fields of a `messages.mime` call besides the MIME document: the envelope (the
/// recipients still to reach) and the options.
pub(crate) fn mime_fields(message: &Message, test_mode: bool) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> =
        message.envelope_batches(usize::MAX).concat().into_iter().map(|m| ("to".to_owned(), m.email.clone())).collect();
    fields.extend(option_fields(message, test_mode));
    fields
}

/// An attachment as a file part. Mailgun names an inline part's content id after its
/// file name (the HTML refers to `cid:<filename>`), so an inline part is sent under its
/// content id.
fn file_part(a: &Attachment) -> (&'static str, Part) {
    let (field, name) = match &a.content_id {
        Some(cid) => ("inline", cid.clone()),
        None => ("attachment", a.filename.clone()),
    };
    let part = Part::bytes(a.content.clone()).file_name(name);
    // The type was checked at submission; should reqwest still refuse it, Mailgun
    // guesses from the name.
    let part = match part.mime_str(&a.content_type) {
        Ok(p) => p,
        Err(_) => Part::bytes(a.content.clone()).file_name(a.filename.clone()),
    };
    (field, part)
}

/// Mailgun's `{"message": ...}`, or the raw body (it answers 401 as plain `Forbidden`).
fn error_detail(status: StatusCode, body: &str) -> String {
    let said = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect());
    format!("Mailgun answered {status}: {}", said.trim())
}

/// Classifies Mailgun's answer (PROVIDERS.md, "Classification").
pub(crate) fn classify(status: StatusCode, body: &str) -> Outcome {
    if status == StatusCode::OK {
        // `{"id":"<...@domain>","message":"Queued. Thank you."}`; events carry the id
        // without the angle brackets, so it is kept that way.
        let id = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        return Outcome::Accepted { provider_message_id: id.trim_start_matches('<').trim_end_matches('>').to_owned() };
    }
    // Mailgun's 429 says when to come back only in prose; the circuit's cool-down
    // applies.
    classify_failure(status.as_u16(), error_detail(status, body), None)
}

#[async_trait::async_trait]
impl Provider for Mailgun {
    fn name(&self) -> &str {
        &self.name
    }

    /// "The maximum message size Mailgun supports is 25MB."
    fn max_message_bytes(&self) -> Option<usize> {
        Some(25_000_000)
    }

    async fn send(&self, message: &Message) -> Outcome {
        // The client's own MIME, a resumed envelope, or a message with no To (Mailgun's
        // form needs one; Bcc recipients must not become visible) goes to
        // `messages.mime`, whose envelope is separate from the header.
        let (endpoint, form) = if message.already_sent_to.is_empty() && message.raw.is_none() && !message.to.is_empty()
        {
            let mut form = form_fields(message, self.test_mode).into_iter().fold(Form::new(), |f, (k, v)| f.text(k, v));
            for a in &message.attachments {
                let (field, part) = file_part(a);
                form = form.part(field, part);
            }
            (&self.endpoint, form)
        } else {
            let mime = match super::mime::bytes(message) {
                Ok(m) => m,
                Err(detail) => {
                    return Outcome::MessageRejected { detail: format!("cannot build the MIME message: {detail}") };
                }
            };
            let form = mime_fields(message, self.test_mode).into_iter().fold(Form::new(), |f, (k, v)| f.text(k, v));
            (&self.mime_endpoint, form.part("message", Part::bytes(mime).file_name("message.mime")))
        };
        let response =
            self.client.post(endpoint).basic_auth("api", Some(self.api_key.expose())).multipart(form).send().await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return classify_transport_error(&e),
        };
        let status = response.status();
        match response.text().await {
            Ok(body) => classify(status, &body),
            Err(e) => classify_transport_error(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::RefusalScope;

    fn message() -> Message {
        let mb = |name: Option<&str>, email: &str| Mailbox { name: name.map(str::to_owned), email: email.into() };
        Message {
            id: "m-1".into(),
            from: mb(Some("Ada Lovelace"), "ada@example.org"),
            to: vec![mb(None, "bob@example.net"), mb(Some("Doe, Zoë"), "zoe@example.net")],
            cc: vec![mb(None, "carol@example.net")],
            bcc: vec![],
            reply_to: vec![mb(None, "replies@example.org")],
            subject: "Hi".into(),
            text: Some("plain".into()),
            html: None,
            headers: vec![("X-Campaign".into(), "c1".into())],
            attachments: vec![],
            tags: vec!["welcome".into()],
            metadata: [("tenant".to_owned(), "t-9".to_owned())].into(),
            submitted_at: std::time::SystemTime::now(),
            raw: None,
            already_sent_to: Default::default(),
        }
    }

    #[test]
    fn fields_have_the_documented_names() {
        let fields = form_fields(&message(), true);
        let get = |k: &str| fields.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
        assert_eq!(get("from"), ["Ada Lovelace <ada@example.org>"]);
        assert_eq!(get("to").len(), 2);
        // Quoted, so that the comma does not split Mailgun's recipient list; UTF-8 is
        // fine in a form field (Mailgun encodes the header).
        assert_eq!(get("to")[1], "\"Doe, Zoë\" <zoe@example.net>");
        assert_eq!(get("cc"), ["carol@example.net"]);
        assert_eq!(get("h:Reply-To"), ["replies@example.org"]);
        assert_eq!(get("h:X-Campaign"), ["c1"]);
        assert_eq!(get("v:bitmail_id"), ["m-1"]);
        assert_eq!(get("v:tenant"), ["t-9"]);
        assert_eq!(get("o:tag"), ["welcome"]);
        assert_eq!(get("o:testmode"), ["yes"]);
        assert!(get("html").is_empty());
    }

    #[test]
    fn answers_are_classified_as_providers_md_says() {
        let ok = r#"{"id":"<20261123.1.fake@mg.example.org>","message":"Queued. Thank you."}"#;
        assert_eq!(
            classify(StatusCode::OK, ok),
            Outcome::Accepted { provider_message_id: "20261123.1.fake@mg.example.org".into() }
        );
        match classify(StatusCode::BAD_REQUEST, r#"{"message":"'to' parameter is not a valid address"}"#) {
            Outcome::MessageRejected { detail } => assert!(detail.contains("'to' parameter"), "{detail}"),
            other => panic!("{other:?}"),
        }
        match classify(StatusCode::UNAUTHORIZED, "Forbidden") {
            Outcome::ProviderRefused { detail, scope: RefusalScope::Provider } => {
                assert!(detail.ends_with("Forbidden"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify(StatusCode::TOO_MANY_REQUESTS, "{}"), Outcome::Transient { .. }));
        assert!(matches!(classify(StatusCode::SERVICE_UNAVAILABLE, ""), Outcome::Transient { .. }));
        assert!(matches!(classify(StatusCode::NOT_FOUND, "{}"), Outcome::ProviderRefused { .. }));
    }
}
