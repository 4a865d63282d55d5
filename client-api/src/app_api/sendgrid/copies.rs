//! A Mail Send body, as SendGrid documents it, checked field by field and made into one
//! submission per personalization. Every refusal names the field as SendGrid does
//! (`personalizations.1.to.0.email`).

use std::collections::{BTreeMap, HashSet};

use base64::Engine as _;
use bitmail_proto::v1 as pb;
use serde::Deserialize;
use serde_json::Value;

use super::super::Refusal;
use super::super::form::{mailbox, tag};

const MAX_PERSONALIZATIONS: usize = 1000;
const MAX_RECIPIENTS: usize = 1000;
/// `send_at` at most 72 hours ahead, as SendGrid; a minute in the past for clock skew.
const MAX_AHEAD_SECS: i64 = 72 * 3600;
const PAST_SLACK_SECS: i64 = 60;
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Mail {
    #[serde(default)]
    personalizations: Vec<Personalization>,
    from: Option<Address>,
    reply_to: Option<Address>,
    reply_to_list: Option<Vec<Address>>,
    subject: Option<String>,
    #[serde(default)]
    content: Vec<Content>,
    #[serde(default)]
    attachments: Vec<Attachment>,
    template_id: Option<Value>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    custom_args: BTreeMap<String, String>,
    send_at: Option<i64>,
    mail_settings: Option<MailSettings>,
    // Accepted and ignored.
    asm: Option<Value>,
    ip_pool_name: Option<Value>,
    batch_id: Option<Value>,
    tracking_settings: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Personalization {
    to: Option<Vec<Address>>,
    #[serde(default)]
    cc: Vec<Address>,
    #[serde(default)]
    bcc: Vec<Address>,
    from: Option<Address>,
    subject: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    substitutions: BTreeMap<String, String>,
    #[serde(default)]
    custom_args: BTreeMap<String, String>,
    send_at: Option<i64>,
    dynamic_template_data: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Address {
    email: String,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Content {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Attachment {
    content: String,
    filename: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    disposition: Option<String>,
    // The Node SDK passes plain attachment objects through as written.
    #[serde(alias = "contentId")]
    content_id: Option<String>,
}

#[derive(Deserialize)]
struct MailSettings {
    sandbox_mode: Option<Enable>,
    // bypass_list_management, footer, spam_check...: accepted and ignored.
    #[serde(flatten)]
    _others: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct Enable {
    #[serde(default)]
    enable: bool,
}

impl Mail {
    pub(super) fn sandbox(&self) -> bool {
        self.mail_settings.as_ref().and_then(|m| m.sandbox_mode.as_ref()).is_some_and(|s| s.enable)
    }
}
/// One `SubmitRequest` per personalization, every field checked; `now` in Unix seconds.
pub(super) fn copies(mail: Mail, now: i64) -> Result<Vec<pb::SubmitRequest>, Refusal> {
    unsupported(&mail)?;
    let n = mail.personalizations.len();
    if !(1..=MAX_PERSONALIZATIONS).contains(&n) {
        return Err(Refusal::bad(
            "personalizations",
            format!("{n} personalizations; 1 to {MAX_PERSONALIZATIONS} are required"),
        ));
    }
    let recipients: usize =
        mail.personalizations.iter().map(|p| p.to.as_ref().map_or(0, Vec::len) + p.cc.len() + p.bcc.len()).sum();
    if recipients > MAX_RECIPIENTS {
        return Err(Refusal::bad(
            "personalizations",
            format!("{recipients} recipients in all; at most {MAX_RECIPIENTS} are allowed per request"),
        ));
    }
    let base = base(&mail, now)?;
    let default_from = mail.from.as_ref().map(|a| mailbox("from", &a.email, a.name.as_deref())).transpose()?;
    mail.personalizations
        .into_iter()
        .enumerate()
        .map(|(i, p)| personalized(&base, default_from.as_deref(), p, i, now))
        .collect()
}

fn unsupported(mail: &Mail) -> Result<(), Refusal> {
    let templates = "templates stored at SendGrid are not supported: send the content itself";
    if mail.template_id.is_some() {
        return Err(Refusal::bad("template_id", templates));
    }
    if let Some(i) = mail.personalizations.iter().position(|p| p.dynamic_template_data.is_some()) {
        return Err(Refusal::bad(&format!("personalizations.{i}.dynamic_template_data"), templates));
    }
    let _ignored = (&mail.asm, &mail.ip_pool_name, &mail.batch_id, &mail.tracking_settings);
    Ok(())
}

/// What every copy shares: the content, attachments, reply-to, headers, categories,
/// custom args and schedule of the request.
fn base(mail: &Mail, now: i64) -> Result<pb::SubmitRequest, Refusal> {
    let (text, html) = content(&mail.content)?;
    let reply_to = match (&mail.reply_to, &mail.reply_to_list) {
        (Some(_), Some(_)) => {
            return Err(Refusal::bad("reply_to_list", "reply_to and reply_to_list cannot both be set"));
        }
        (Some(a), None) => vec![mailbox("reply_to", &a.email, a.name.as_deref())?],
        (None, Some(list)) => list
            .iter()
            .enumerate()
            .map(|(i, a)| mailbox(&format!("reply_to_list.{i}"), &a.email, a.name.as_deref()))
            .collect::<Result<_, _>>()?,
        (None, None) => vec![],
    };
    Ok(pb::SubmitRequest {
        reply_to,
        subject: mail.subject.clone().unwrap_or_default(),
        text,
        html,
        attachments: mail.attachments.iter().enumerate().map(attachment).collect::<Result<_, _>>()?,
        tags: mail.categories.iter().map(|c| tag(c)).filter(|t| !t.is_empty()).collect(),
        metadata: mail.custom_args.clone().into_iter().collect(),
        headers: headers(&mail.headers),
        not_before_unix_ms: send_at("send_at", mail.send_at, now)?,
        ..Default::default()
    })
}

/// The text and HTML of `content[]`: each type once, only those two.
fn content(content: &[Content]) -> Result<(String, String), Refusal> {
    if content.is_empty() {
        return Err(Refusal::bad("content", "at least one content of type text/plain or text/html is required"));
    }
    let (mut text, mut html) = (None, None);
    for (i, c) in content.iter().enumerate() {
        let slot = match c.kind.trim().to_ascii_lowercase().as_str() {
            "text/plain" => &mut text,
            "text/html" => &mut html,
            other => {
                return Err(Refusal::bad(
                    &format!("content.{i}.type"),
                    format!("`{}`: only text/plain and text/html are supported", other.escape_debug()),
                ));
            }
        };
        if slot.replace(c.value.clone()).is_some() {
            return Err(Refusal::bad(&format!("content.{i}.type"), format!("duplicate content type {}", c.kind)));
        }
    }
    Ok((text.unwrap_or_default(), html.unwrap_or_default()))
}

fn attachment((i, a): (usize, &Attachment)) -> Result<pb::Attachment, Refusal> {
    let field = |name: &str| format!("attachments.{i}.{name}");
    let content = base64::engine::general_purpose::STANDARD
        .decode(a.content.split_ascii_whitespace().collect::<String>())
        .map_err(|_| Refusal::bad(&field("content"), "the attachment content must be base64"))?;
    let inline = match a.disposition.as_deref().unwrap_or("attachment") {
        "attachment" => false,
        "inline" => true,
        other => {
            return Err(Refusal::bad(
                &field("disposition"),
                format!("`{}`: the disposition is attachment or inline", other.escape_debug()),
            ));
        }
    };
    let content_id = match (inline, a.content_id.as_deref()) {
        (true, None | Some("")) => {
            return Err(Refusal::bad(&field("content_id"), "an inline attachment needs a content_id"));
        }
        (true, Some(cid)) => cid.to_owned(),
        (false, _) => String::new(),
    };
    Ok(pb::Attachment {
        filename: a.filename.clone(),
        content_type: a.kind.clone().unwrap_or_default(),
        content,
        content_id,
    })
}

fn headers(headers: &BTreeMap<String, String>) -> Vec<pb::Header> {
    headers.iter().map(|(name, value)| pb::Header { name: name.clone(), value: value.clone() }).collect()
}

/// `send_at` (Unix seconds) as `not_before_unix_ms`: not in the past, at most 72 hours
/// ahead.
fn send_at(field: &str, at: Option<i64>, now: i64) -> Result<i64, Refusal> {
    let Some(at) = at else { return Ok(0) };
    if at < now - PAST_SLACK_SECS {
        return Err(Refusal::bad(field, format!("send_at {at} is in the past")));
    }
    if at > now + MAX_AHEAD_SECS {
        return Err(Refusal::bad(field, format!("send_at {at} is more than 72 hours ahead")));
    }
    Ok(at.saturating_mul(1000))
}

/// Copy `i`: the personalization over `base`.
fn personalized(
    base: &pb::SubmitRequest,
    default_from: Option<&str>,
    p: Personalization,
    i: usize,
    now: i64,
) -> Result<pb::SubmitRequest, Refusal> {
    let at = |name: &str| format!("personalizations.{i}.{name}");
    let from = match &p.from {
        Some(a) => mailbox(&at("from"), &a.email, a.name.as_deref())?,
        None => default_from.ok_or_else(|| Refusal::bad("from", "the from address is required"))?.to_owned(),
    };
    let to =
        p.to.as_deref()
            .filter(|to| !to.is_empty())
            .ok_or_else(|| Refusal::bad(&at("to"), "each personalization needs at least one to address"))?;
    let mut seen = HashSet::new();
    let mut list = |name: &str, addresses: &[Address]| -> Result<Vec<String>, Refusal> {
        addresses
            .iter()
            .enumerate()
            .map(|(j, a)| {
                let field = at(&format!("{name}.{j}"));
                if !seen.insert(a.email.trim().to_ascii_lowercase()) {
                    return Err(Refusal::bad(&field, format!("{} appears twice in this personalization", a.email)));
                }
                mailbox(&field, &a.email, a.name.as_deref())
            })
            .collect()
    };
    let (to, cc, bcc) = (list("to", to)?, list("cc", &p.cc)?, list("bcc", &p.bcc)?);
    let substitute = |s: &str| p.substitutions.iter().fold(s.to_owned(), |s, (k, v)| s.replace(k.as_str(), v));
    let mut headers: BTreeMap<String, String> =
        base.headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect();
    headers.extend(p.headers.clone());
    let mut metadata = base.metadata.clone();
    metadata.extend(p.custom_args.clone());
    let not_before = match p.send_at {
        Some(_) => send_at(&at("send_at"), p.send_at, now)?,
        None => base.not_before_unix_ms,
    };
    Ok(pb::SubmitRequest {
        from,
        to,
        cc,
        bcc,
        subject: substitute(p.subject.as_deref().unwrap_or(&base.subject)),
        text: substitute(&base.text),
        html: substitute(&base.html),
        headers: self::headers(&headers),
        metadata,
        not_before_unix_ms: not_before,
        ..base.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn parse(body: Value) -> Result<Vec<pb::SubmitRequest>, Refusal> {
        copies(serde_json::from_value(body).expect("a Mail Send body"), NOW)
    }

    fn mail() -> Value {
        json!({
            "personalizations": [{ "to": [{ "email": "bob@example.net", "name": "Bob" }] }],
            "from": { "email": "ada@bitmail.test" },
            "subject": "Hi",
            "content": [{ "type": "text/plain", "value": "Hello" }]
        })
    }

    fn field_of_error(body: Value) -> String {
        parse(body).unwrap_err().field.unwrap_or_default()
    }

    #[test]
    fn each_personalization_is_a_copy_over_the_shared_fields() {
        let mut body = mail();
        body["personalizations"] = json!([
            { "to": [{ "email": "bob@example.net" }], "substitutions": { "-name-": "Bob" }, "custom_args": { "n": "1" } },
            { "to": [{ "email": "eve@example.net" }], "subject": "Own -name-", "substitutions": { "-name-": "Eve" },
              "headers": { "X-A": "p" }, "send_at": NOW + 60 }
        ]);
        body["content"] = json!([{ "type": "text/plain", "value": "Dear -name-" }, { "type": "text/html", "value": "<p>-name-</p>" }]);
        body["headers"] = json!({ "X-A": "base", "X-B": "b" });
        body["custom_args"] = json!({ "app": "x", "n": "0" });
        body["categories"] = json!(["September newsletter"]);
        let copies = parse(body).unwrap();
        assert_eq!(copies.len(), 2);
        assert_eq!((copies[0].to[0].as_str(), copies[0].subject.as_str()), ("bob@example.net", "Hi"));
        assert_eq!((copies[0].text.as_str(), copies[0].html.as_str()), ("Dear Bob", "<p>Bob</p>"));
        assert_eq!(copies[0].metadata["n"], "1");
        assert_eq!(copies[0].metadata["app"], "x");
        assert_eq!(copies[0].tags, ["September_newsletter"]);
        assert_eq!((copies[1].subject.as_str(), copies[1].not_before_unix_ms), ("Own Eve", (NOW + 60) * 1000));
        let headers: Vec<_> = copies[1].headers.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
        assert_eq!(headers, [("X-A", "p"), ("X-B", "b")]);
        assert_eq!(copies[0].from, "ada@bitmail.test");
    }

    #[test]
    fn attachments_are_decoded_and_inline_ones_keep_their_content_id() {
        let mut body = mail();
        body["attachments"] = json!([
            { "content": "aGVsbG8=", "filename": "a.txt", "type": "text/plain" },
            { "content": "iVBO\nRw==", "filename": "logo.png", "type": "image/png", "disposition": "inline", "content_id": "logo" }
        ]);
        let copy = &parse(body).unwrap()[0];
        assert_eq!(
            (copy.attachments[0].content.as_slice(), copy.attachments[0].content_id.as_str()),
            (&b"hello"[..], "")
        );
        assert_eq!(copy.attachments[1].content_id, "logo");
    }

    #[test]
    fn bad_input_names_the_field() {
        let with = |key: &str, value: Value| {
            let mut body = mail();
            body[key] = value;
            field_of_error(body)
        };
        assert_eq!(with("personalizations", json!([])), "personalizations");
        let many: Vec<Value> = (0..1001).map(|i| json!({ "to": [{ "email": format!("r{i}@example.net") }] })).collect();
        assert_eq!(with("personalizations", Value::Array(many)), "personalizations");
        let dup = json!([{ "type": "text/plain", "value": "a" }, { "type": "text/plain", "value": "b" }]);
        assert_eq!(with("content", dup), "content.1.type");
        assert_eq!(
            with("attachments", json!([{ "content": "not base64!", "filename": "a" }])),
            "attachments.0.content"
        );
        assert_eq!(with("send_at", json!(NOW - 3600)), "send_at");
        assert_eq!(with("send_at", json!(NOW + 365 * 86400)), "send_at");
        assert_eq!(with("template_id", json!("d-123")), "template_id");
        let injected = json!([{ "to": [{ "email": "bob@example.net", "name": "Bob\r\nBcc: x@evil.test" }] }]);
        assert_eq!(with("personalizations", injected), "personalizations.0.to.0.name");
        let twice = json!([{ "to": [{ "email": "bob@example.net" }], "cc": [{ "email": "BOB@example.net" }] }]);
        assert_eq!(with("personalizations", twice), "personalizations.0.cc.0");
        assert_eq!(
            with("personalizations", json!([{ "cc": [{ "email": "bob@example.net" }] }])),
            "personalizations.0.to"
        );
        assert!(serde_json::from_value::<Mail>(json!({ "unknown_field": 1 })).is_err());
    }
}
