//! SendGrid Mail Send v3 (`POST {base}/v3/mail/send`, bearer key, JSON body).
//!
//! BitMail's message id travels in `custom_args.bitmail_id`, which SendGrid copies into
//! every event as a top-level key. The metadata pairs go in `custom_args` beside
//! `bitmail_id`, the tags as `categories`; attachments are base64 with `disposition`
//! `inline` (with `content_id`) or `attachment`. `sandbox` sets
//! `mail_settings.sandbox_mode` (the provider check's dry run).
//!
//! Answers: 202 (200 in sandbox mode) accepted, with `X-Message-Id`; 429 transient until
//! `X-RateLimit-Reset`; 5xx and a failed connection transient; 401, 403 and any other
//! 4xx (404 from a wrong base URL) provider-refused; 413 refused for this message; 400
//! message-rejected; a timeout or broken connection after the request went out
//! ambiguous.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::prelude::*;
use bitmail_runtime::config::Secret;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Outcome, Provider, classify_failure, classify_transport_error, http_client};
use crate::message::{Attachment, Mailbox, Message};

/// The SendGrid provider.
pub struct SendGrid {
    name: String,
    endpoint: String,
    api_key: Secret,
    sandbox: bool,
    client: reqwest::Client,
}

/// How to reach one SendGrid account.
#[derive(Debug, Clone)]
pub struct SendGridSettings {
    pub name: String,
    /// `https://api.sendgrid.com`, `https://api.eu.sendgrid.com`, or a stand-in.
    pub base_url: String,
    pub api_key: Secret,
    /// `mail_settings.sandbox_mode`: SendGrid validates and answers 200, sends nothing.
    pub sandbox: bool,
    pub connect_timeout: Duration,
    /// The whole call, connection to last byte of the answer.
    pub timeout: Duration,
}

impl SendGrid {
    pub fn new(settings: SendGridSettings) -> Result<Self, reqwest::Error> {
        let client = http_client(settings.connect_timeout, settings.timeout)?;
        Ok(Self {
            endpoint: format!("{}/v3/mail/send", settings.base_url.trim_end_matches('/')),
            name: settings.name,
            api_key: settings.api_key,
            sandbox: settings.sandbox,
            client,
        })
    }
}

fn address(m: &Mailbox) -> Value {
    match &m.name {
        Some(name) => json!({ "email": m.email, "name": name }),
        None => json!({ "email": m.email }),
    }
}

/// BitMail's id and the message's metadata: SendGrid copies each into every event as a
/// top-level key.
fn custom_args(message: &Message) -> Value {
    let mut args: serde_json::Map<String, Value> =
        message.metadata.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    args.insert("bitmail_id".into(), Value::String(message.id.clone()));
    Value::Object(args)
}

/// An attachment, inline when it has a content id.
fn attachment(a: &Attachment) -> Value {
    let mut v = json!({
        "content": BASE64_STANDARD.encode(&a.content),
        "filename": a.filename,
        "type": a.content_type,
        "disposition": if a.content_id.is_some() { "inline" } else { "attachment" },
    });
    if let Some(cid) = &a.content_id {
        v["content_id"] = json!(cid);
    }
    v
}

/// The request body. SendGrid refuses an address that appears twice in one request, so
/// later repeats (to before cc before bcc, case-insensitive) are left out: each person
/// still gets the message once.
pub(crate) fn request_body(message: &Message, sandbox: bool) -> Value {
    let mut seen = HashSet::new();
    let mut list = |mailboxes: &[Mailbox]| -> Vec<Value> {
        mailboxes
            .iter()
            .filter(|m| !message.was_sent_to(m) && seen.insert(m.email.to_ascii_lowercase()))
            .map(address)
            .collect()
    };
    let (mut to, mut cc, bcc) = (list(&message.to), list(&message.cc), list(&message.bcc));
    if to.is_empty() {
        // No To (a Bcc-only message, or everyone in To reached by an earlier, partly
        // accepted attempt), and SendGrid needs one: the Cc recipients, who are visible
        // anyway.
        to = std::mem::take(&mut cc);
    }
    let personalizations: Vec<Value> = if to.is_empty() {
        // Bcc recipients only: each gets a copy addressed to them alone, so that none
        // sees another.
        bcc.into_iter().map(|b| json!({ "to": [b] })).collect()
    } else {
        let mut personalization = serde_json::Map::new();
        personalization.insert("to".into(), Value::Array(to));
        for (key, values) in [("cc", cc), ("bcc", bcc)] {
            if !values.is_empty() {
                personalization.insert(key.into(), Value::Array(values));
            }
        }
        vec![Value::Object(personalization)]
    };

    let mut content = Vec::new();
    if let Some(text) = &message.text {
        content.push(json!({ "type": "text/plain", "value": text }));
    }
    if let Some(html) = &message.html {
        content.push(json!({ "type": "text/html", "value": html }));
    }

    let mut body = json!({
        "personalizations": personalizations,
        "from": address(&message.from),
        "subject": message.subject,
        "content": content,
        "custom_args": custom_args(message),
    });
    match message.reply_to.as_slice() {
        [] => {}
        [one] => body["reply_to"] = address(one),
        many => body["reply_to_list"] = Value::Array(many.iter().map(address).collect()),
    }
    if !message.headers.is_empty() {
        let headers: serde_json::Map<String, Value> =
            message.headers.iter().map(|(n, v)| (n.clone(), Value::String(v.clone()))).collect();
        body["headers"] = Value::Object(headers);
    }
    if !message.attachments.is_empty() {
        body["attachments"] = message.attachments.iter().map(attachment).collect();
    }
    if !message.tags.is_empty() {
        body["categories"] = json!(message.tags);
    }
    if sandbox {
        body["mail_settings"] = json!({ "sandbox_mode": { "enable": true } });
    }
    body
}

/// The `message` fields of SendGrid's `{"errors":[...]}`, or the raw body when it is not
/// that shape (a proxy's page, say), cut short.
fn error_detail(status: StatusCode, body: &str) -> String {
    let messages: Vec<String> = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("errors")?.as_array().cloned())
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| {
                    let message = e.get("message")?.as_str()?;
                    Some(match e.get("field").and_then(Value::as_str) {
                        Some(field) => format!("{field}: {message}"),
                        None => message.to_owned(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if messages.is_empty() {
        let short: String = body.chars().take(200).collect();
        format!("SendGrid answered {status}: {short}")
    } else {
        format!("SendGrid answered {status}: {}", messages.join("; "))
    }
}

/// When a 429 says the limit resets (`X-RateLimit-Reset`, epoch seconds).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let reset: u64 = headers.get("x-ratelimit-reset")?.to_str().ok()?.trim().parse().ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now)))
}

/// Classifies SendGrid's answer (PROVIDERS.md, "Classification").
pub(crate) fn classify(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &str) -> Outcome {
    match status.as_u16() {
        // 202: queued for delivery. 200: sandbox mode, validated and not sent.
        200 | 202 => Outcome::Accepted {
            provider_message_id: headers
                .get("x-message-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        },
        code => classify_failure(code, error_detail(status, body), retry_after(headers)),
    }
}

#[async_trait::async_trait]
impl Provider for SendGrid {
    fn name(&self) -> &str {
        &self.name
    }

    /// "The total message size should not exceed 30 MB."
    fn max_message_bytes(&self) -> Option<usize> {
        Some(30_000_000)
    }

    async fn send(&self, message: &Message) -> Outcome {
        let response = self
            .client
            .post(&self.endpoint)
            .bearer_auth(self.api_key.expose())
            .json(&request_body(message, self.sandbox))
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return classify_transport_error(&e),
        };
        let status = response.status();
        let headers = response.headers().clone();
        match response.text().await {
            Ok(body) => classify(status, &headers, &body),
            // The status line arrived; for an acceptance the id is in the headers.
            Err(_) if status.is_success() => classify(status, &headers, ""),
            Err(e) => classify_transport_error(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::RefusalScope;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn message() -> Message {
        let mb = |email: &str| Mailbox { name: None, email: email.into() };
        Message {
            id: "m-1".into(),
            from: Mailbox { name: Some("Ada".into()), email: "ada@example.org".into() },
            to: vec![mb("bob@example.net")],
            cc: vec![mb("Bob@Example.net"), mb("carol@example.net")],
            bcc: vec![],
            reply_to: vec![mb("replies@example.org")],
            subject: "Hi".into(),
            text: Some("plain".into()),
            html: Some("<p>html</p>".into()),
            headers: vec![("X-Campaign".into(), "c1".into())],
            attachments: vec![
                Attachment {
                    filename: "logo.png".into(),
                    content_type: "image/png".into(),
                    content: b"PNG".to_vec(),
                    content_id: Some("logo".into()),
                },
                Attachment {
                    filename: "a.txt".into(),
                    content_type: "text/plain".into(),
                    content: b"hello".to_vec(),
                    content_id: None,
                },
            ],
            tags: vec!["welcome".into()],
            metadata: [("tenant".to_owned(), "t-9".to_owned())].into(),
            submitted_at: SystemTime::now(),
            raw: None,
            already_sent_to: Default::default(),
        }
    }

    #[test]
    fn body_has_the_documented_shape() {
        let body = request_body(&message(), false);
        assert_eq!(body["from"], json!({"email": "ada@example.org", "name": "Ada"}));
        assert_eq!(body["personalizations"][0]["to"], json!([{"email": "bob@example.net"}]));
        // The repeated Bob is dropped, not sent twice.
        assert_eq!(body["personalizations"][0]["cc"], json!([{"email": "carol@example.net"}]));
        assert!(body["personalizations"][0].get("bcc").is_none());
        assert_eq!(body["content"][0]["type"], "text/plain");
        assert_eq!(body["content"][1]["type"], "text/html");
        assert_eq!(body["reply_to"], json!({"email": "replies@example.org"}));
        assert_eq!(body["headers"]["X-Campaign"], "c1");
        assert_eq!(body["custom_args"], json!({"bitmail_id": "m-1", "tenant": "t-9"}));
        assert_eq!(body["categories"], json!(["welcome"]));
        assert_eq!(
            body["attachments"],
            json!([
                {"content": "UE5H", "filename": "logo.png", "type": "image/png", "disposition": "inline", "content_id": "logo"},
                {"content": "aGVsbG8=", "filename": "a.txt", "type": "text/plain", "disposition": "attachment"},
            ])
        );
        assert!(body.get("mail_settings").is_none());
        assert_eq!(request_body(&message(), true)["mail_settings"]["sandbox_mode"]["enable"], true);
    }

    #[test]
    fn bcc_recipients_without_a_to_never_see_each_other() {
        let mb = |email: &str| Mailbox { name: None, email: email.into() };
        let only_bcc =
            Message { to: vec![], cc: vec![], bcc: vec![mb("a@example.net"), mb("b@example.net")], ..message() };
        let body = request_body(&only_bcc, false);
        assert_eq!(
            body["personalizations"],
            json!([{"to": [{"email": "a@example.net"}]}, {"to": [{"email": "b@example.net"}]}])
        );
        let cc_and_bcc =
            Message { to: vec![], cc: vec![mb("c@example.net")], bcc: vec![mb("a@example.net")], ..message() };
        assert_eq!(
            request_body(&cc_and_bcc, false)["personalizations"],
            json!([{"to": [{"email": "c@example.net"}], "bcc": [{"email": "a@example.net"}]}])
        );
    }

    #[test]
    fn answers_are_classified_as_providers_md_says() {
        let mut h = HeaderMap::new();
        h.insert("x-message-id", HeaderValue::from_static("sg-123"));
        assert_eq!(classify(StatusCode::ACCEPTED, &h, ""), Outcome::Accepted { provider_message_id: "sg-123".into() });

        let invalid =
            r#"{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email"}]}"#;
        match classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), invalid) {
            Outcome::MessageRejected { detail } => {
                assert!(detail.contains("personalizations.0.to.0.email: Does not contain a valid address."), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), "{}"),
            Outcome::ProviderRefused { scope: RefusalScope::Provider, .. }
        ));
        assert!(matches!(
            classify(StatusCode::PAYLOAD_TOO_LARGE, &HeaderMap::new(), ""),
            Outcome::ProviderRefused { scope: RefusalScope::Message, .. }
        ));
        assert!(matches!(classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), "<html>"), Outcome::Transient { .. }));

        let mut h = HeaderMap::new();
        let reset = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 30;
        h.insert("x-ratelimit-reset", HeaderValue::from_str(&reset.to_string()).unwrap());
        match classify(StatusCode::TOO_MANY_REQUESTS, &h, "") {
            Outcome::Transient { retry_after: Some(d), .. } => assert!((28..=30).contains(&d.as_secs()), "{d:?}"),
            other => panic!("{other:?}"),
        }
    }
}
