//! `POST /v3/{domain}/messages` and `/v3/{domain}/messages.mime`, Mailgun's shape:
//! Basic auth `api:KEY`, a form (urlencoded or multipart), 200
//! `{"id":"<ID@domain>","message":"Queued. Thank you."}` (the first copy's BitMail id;
//! `X-BitMail-Message-Ids` lists every copy's), errors as `{"message": ...}` (401 is
//! plain `Forbidden`). `{domain}` must be one of the tenant's sending domains, else 404
//! "Domain not found".
//!
//! Fields: `from`, `to`, `cc`, `bcc` (repeatable, each may hold a comma-separated
//! list), `subject`, `text`, `html`, files `attachment` and `inline` (an inline file is
//! shown as `cid:<filename>`), `h:<Header>` (`h:Reply-To` sets the reply-to), `v:<name>`
//! (BitMail's metadata, at most 10), `o:tag` (at most 3), `o:testmode` (checked, answered
//! as sent, nothing sent), `o:deliverytime` (RFC 2822, at most 72 hours ahead: the
//! message waits in the spool). Other `o:` options (tracking, DKIM, TLS) are accepted
//! and ignored; `template`, `t:` and `amp-html` are answered 400, as is any other field.
//! With `recipient-variables`, each `to` address gets its own copy, `%recipient.KEY%`
//! replaced in its subject, bodies and `v:` values (cc and bcc are on every copy).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bitmail_proto::v1 as pb;
use bitmail_runtime::time::now_ms;
use serde_json::{Value, json};

use super::form::{Form, read_body, refuse_unsupported, split_addresses, tag};
use super::submit::{Upstream, idempotency_key};
use super::{MAILGUN_MAX_BYTES, Refusal};
use crate::state::AppState;

/// `o:deliverytime` at most 72 hours ahead; a minute in the past for clock skew.
const MAX_AHEAD_SECS: i64 = 72 * 3600;
const PAST_SLACK_SECS: i64 = 60;
/// Recipients of one batch (`recipient-variables`), as at Mailgun.
const MAX_BATCH: usize = 1000;

pub(crate) async fn messages(
    State(state): State<Arc<AppState>>,
    Path(domain): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    answer(accept(&state, &domain, &headers, body, false).await)
}

pub(crate) async fn messages_mime(
    State(state): State<Arc<AppState>>,
    Path(domain): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    answer(accept(&state, &domain, &headers, body, true).await)
}

fn answer(result: Result<Response, Refusal>) -> Response {
    result.unwrap_or_else(|refusal| {
        refusal.log();
        error_response(&refusal)
    })
}

async fn accept(
    state: &AppState,
    domain: &str,
    headers: &HeaderMap,
    body: Body,
    mime: bool,
) -> Result<Response, Refusal> {
    let key = basic_key(headers)?;
    let idempotency = idempotency_key(headers)?;
    let bytes = read_body(body, MAILGUN_MAX_BYTES).await?;
    let upstream = Upstream::new(state, &key)?;
    check_domain(domain, &upstream.who_am_i().await?.domains)?;
    let form = Form::read(headers, bytes).await?;
    let now = now_ms() as i64 / 1000;
    let test_mode = test_mode(&form)?;
    let base = if mime { super::mime::base(&form)? } else { fields(&form)? };
    let base = pb::SubmitRequest { not_before_unix_ms: delivery_time(&form, now)?, ..options(&form, base) };
    let names: Vec<String> = base.headers.iter().map(|h| h.name.clone()).collect();
    let copies = batch(base, &form)?;
    let ids = upstream
        .submit(copies, idempotency.as_deref(), test_mode)
        .await
        .map_err(|(_, r)| Refusal { field: r.field.as_deref().map(|f| mailgun_field(f, &names)), ..r })?;
    tracing::info!(copies = ids.len(), test_mode, "accepted a Mailgun-shaped request");
    Ok(success(domain, &ids))
}

/// The key of Basic `api:KEY`; anything else is 401.
fn basic_key(headers: &HeaderMap) -> Result<String, Refusal> {
    let forbidden = || Refusal::new(StatusCode::UNAUTHORIZED, None, "Forbidden");
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(forbidden)?;
    let encoded = value.strip_prefix("Basic ").ok_or_else(forbidden)?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| forbidden())?;
    let decoded = String::from_utf8(decoded).map_err(|_| forbidden())?;
    match decoded.split_once(':') {
        Some(("api", key)) if !key.is_empty() => Ok(key.to_owned()),
        _ => Err(forbidden()),
    }
}

/// 404 "Domain not found" unless `domain` is one of the tenant's (IDNA-normalized).
fn check_domain(domain: &str, domains: &[String]) -> Result<(), Refusal> {
    let ascii = idna::domain_to_ascii(domain.trim()).unwrap_or_default();
    if !ascii.is_empty() && domains.iter().any(|d| d.eq_ignore_ascii_case(&ascii)) {
        return Ok(());
    }
    Err(Refusal::new(StatusCode::NOT_FOUND, None, format!("Domain not found: {domain}")))
}

fn success(domain: &str, ids: &[String]) -> Response {
    // Test mode stores nothing: an id of its own, in the same shape.
    let first = ids.first().cloned().unwrap_or_else(|| format!("{}.testmode", now_ms()));
    let body = json!({ "id": format!("<{first}@{domain}>"), "message": "Queued. Thank you." });
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    if let Ok(all) = HeaderValue::from_str(&ids.join(",")) {
        response.headers_mut().insert("x-bitmail-message-ids", all);
    }
    response
}

/// Mailgun's error shape: `{"message"}`, plain `Forbidden` for 401, `Retry-After` on 429.
pub(crate) fn error_response(r: &Refusal) -> Response {
    if r.status == StatusCode::UNAUTHORIZED {
        return (r.status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Forbidden").into_response();
    }
    let message = match &r.field {
        Some(field) if !r.message.starts_with(field.as_str()) => format!("{field}: {}", r.message),
        _ => r.message.clone(),
    };
    let mut response = (r.status, axum::Json(json!({ "message": message }))).into_response();
    if let Some(value) = r.retry_after_secs.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The plain fields of `/messages`, every other one refused.
fn fields(form: &Form) -> Result<pb::SubmitRequest, Refusal> {
    for (name, _) in &form.fields {
        let known =
            matches!(name.as_str(), "from" | "to" | "cc" | "bcc" | "subject" | "text" | "html" | "recipient-variables")
                || name.starts_with("h:")
                || name.starts_with("v:")
                || name.starts_with("o:");
        refuse_unsupported(name, known)?;
    }
    let list = |name: &str| form.all(name).flat_map(split_addresses).collect::<Vec<_>>();
    let from = form.first("from").ok_or_else(|| Refusal::bad("from", "from is required"))?;
    Ok(pb::SubmitRequest {
        from: from.to_owned(),
        to: list("to"),
        cc: list("cc"),
        bcc: list("bcc"),
        subject: form.first("subject").unwrap_or_default().to_owned(),
        text: form.first("text").unwrap_or_default().to_owned(),
        html: form.first("html").unwrap_or_default().to_owned(),
        attachments: files(form)?,
        ..Default::default()
    })
}

/// The `attachment` and `inline` files.
fn files(form: &Form) -> Result<Vec<pb::Attachment>, Refusal> {
    let mut out = Vec::new();
    for (i, f) in form.files.iter().enumerate() {
        let inline = match f.field.as_str() {
            "attachment" => false,
            "inline" => true,
            other => return Err(Refusal::bad(other, format!("{other}: files go in attachment or inline"))),
        };
        let filename = if f.filename.is_empty() { format!("attachment-{}", i + 1) } else { f.filename.clone() };
        out.push(pb::Attachment {
            content_id: if inline { filename.clone() } else { String::new() },
            filename,
            content_type: f.content_type.clone(),
            content: f.data.clone(),
        });
    }
    Ok(out)
}

/// `h:`, `v:` and `o:tag` over `base`, for both endpoints.
pub(crate) fn options(form: &Form, mut base: pb::SubmitRequest) -> pb::SubmitRequest {
    for (name, value) in &form.fields {
        if let Some(header) = name.strip_prefix("h:") {
            if header.eq_ignore_ascii_case("reply-to") {
                base.reply_to.extend(split_addresses(value));
            } else {
                base.headers.push(pb::Header { name: header.to_owned(), value: value.clone() });
            }
        } else if let Some(variable) = name.strip_prefix("v:") {
            base.metadata.insert(variable.to_owned(), value.clone());
        } else if name == "o:tag" {
            base.tags.push(tag(value));
        }
    }
    base.tags.retain(|t| !t.is_empty());
    base
}

fn test_mode(form: &Form) -> Result<bool, Refusal> {
    match form.first("o:testmode").map(str::trim) {
        None => Ok(false),
        Some(v) if ["yes", "true", "1"].iter().any(|y| v.eq_ignore_ascii_case(y)) => Ok(true),
        Some(v) if ["no", "false", "0"].iter().any(|n| v.eq_ignore_ascii_case(n)) => Ok(false),
        Some(v) => Err(Refusal::bad("o:testmode", format!("o:testmode: `{}` is not yes or no", v.escape_debug()))),
    }
}

/// `o:deliverytime` (RFC 2822) as `not_before_unix_ms`: not past, at most 72 hours ahead.
fn delivery_time(form: &Form, now: i64) -> Result<i64, Refusal> {
    let Some(raw) = form.first("o:deliverytime") else { return Ok(0) };
    let field = "o:deliverytime";
    let at = mail_parser::DateTime::parse_rfc822(raw.trim())
        .filter(mail_parser::DateTime::is_valid)
        .ok_or_else(|| Refusal::bad(field, format!("{field}: `{}` is not an RFC 2822 date", raw.escape_debug())))?
        .to_timestamp();
    if at < now - PAST_SLACK_SECS {
        return Err(Refusal::bad(field, format!("{field}: {raw} is in the past")));
    }
    if at > now + MAX_AHEAD_SECS {
        return Err(Refusal::bad(field, format!("{field}: {raw} is more than 72 hours ahead")));
    }
    Ok(at.saturating_mul(1000))
}

/// One copy, or with `recipient-variables` one per `to` address with its variables.
fn batch(base: pb::SubmitRequest, form: &Form) -> Result<Vec<pb::SubmitRequest>, Refusal> {
    let Some(raw) = form.first("recipient-variables") else { return Ok(vec![base]) };
    let field = "recipient-variables";
    let variables: HashMap<String, Value> = serde_json::from_str(raw)
        .map_err(|e| Refusal::bad(field, format!("{field}: not a JSON object of objects ({e})")))?;
    let variables: HashMap<String, &Value> =
        variables.iter().map(|(k, v)| (k.trim().to_ascii_lowercase(), v)).collect();
    if base.to.len() > MAX_BATCH {
        return Err(Refusal::bad("to", format!("to: {} recipients; a batch takes at most {MAX_BATCH}", base.to.len())));
    }
    base.to
        .iter()
        .map(|to| {
            let vars = variables.get(&address_of(to)).copied();
            let substitute = |s: &str| recipient_substitute(s, vars);
            Ok(pb::SubmitRequest {
                to: vec![to.clone()],
                subject: substitute(&base.subject),
                text: substitute(&base.text),
                html: substitute(&base.html),
                metadata: base.metadata.iter().map(|(k, v)| (k.clone(), substitute(v))).collect(),
                ..base.clone()
            })
        })
        .collect()
}

/// `bob@x.org` of `Bob <bob@x.org>`, lowercased.
fn address_of(mailbox: &str) -> String {
    let inner = mailbox.rsplit_once('<').map_or(mailbox, |(_, r)| r.trim_end_matches('>'));
    inner.trim().to_ascii_lowercase()
}

/// `%recipient.KEY%` replaced by the recipient's variable (empty when it has none).
fn recipient_substitute(s: &str, vars: Option<&Value>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("%recipient.") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "%recipient.".len()..];
        let Some(end) = after.find('%') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let value = vars.and_then(|v| v.get(&after[..end]));
        match value {
            Some(Value::String(s)) => out.push_str(s),
            Some(Value::Null) | None => {}
            Some(other) => out.push_str(&other.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// mta-server's name of a field as Mailgun names it; `headers` are the copy's header
/// names, in order.
fn mailgun_field(mta: &str, headers: &[String]) -> String {
    let (head, rest) = mta.split_once('[').unwrap_or((mta, ""));
    let index = rest.split(']').next().unwrap_or_default();
    match head {
        "headers" => index.parse::<usize>().ok().and_then(|i| headers.get(i)).map_or("h:".into(), |h| format!("h:{h}")),
        "metadata" => format!("v:{}", index.trim_matches('"')),
        "tags" => "o:tag".into(),
        "attachments" => "attachment".into(),
        "to" | "cc" | "bcc" => head.into(),
        "reply_to" => "h:Reply-To".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)]) -> Form {
        Form { fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), files: vec![] }
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("from", "Ada <ada@bitmail.test>"),
            ("to", "bob@example.net, \"Doe, Eve\" <eve@example.net>"),
            ("subject", "Hi %recipient.name%"),
            ("text", "Hello"),
        ]
    }

    #[test]
    fn fields_and_options_make_one_copy() {
        let mut fields = base();
        fields.extend([
            ("cc", "carol@example.net"),
            ("h:X-Campaign", "7"),
            ("h:Reply-To", "help@bitmail.test"),
            ("v:order", "42"),
            ("o:tag", "News letter"),
            ("o:tracking", "yes"),
        ]);
        let f = form(&fields);
        let copy = options(&f, super::fields(&f).unwrap());
        assert_eq!(copy.to, ["bob@example.net", "\"Doe, Eve\" <eve@example.net>"]);
        assert_eq!(copy.cc, ["carol@example.net"]);
        assert_eq!((copy.headers[0].name.as_str(), copy.headers[0].value.as_str()), ("X-Campaign", "7"));
        assert_eq!(copy.reply_to, ["help@bitmail.test"]);
        assert_eq!((copy.metadata["order"].as_str(), copy.tags.as_slice()), ("42", &["News_letter".to_owned()][..]));
        assert_eq!(batch(copy, &f).unwrap().len(), 1);
    }

    #[test]
    fn recipient_variables_make_a_copy_per_recipient() {
        let mut fields = base();
        fields.push((
            "recipient-variables",
            r#"{"bob@example.net": {"name": "Bob", "id": 1}, "EVE@example.net": {"name": "Eve"}}"#,
        ));
        fields.push(("v:user", "%recipient.id%"));
        let f = form(&fields);
        let copies = batch(options(&f, super::fields(&f).unwrap()), &f).unwrap();
        assert_eq!(copies.len(), 2);
        assert_eq!((copies[0].to[0].as_str(), copies[0].subject.as_str()), ("bob@example.net", "Hi Bob"));
        assert_eq!((copies[1].subject.as_str(), copies[0].metadata["user"].as_str()), ("Hi Eve", "1"));
        assert_eq!(copies[1].metadata["user"], "");
        assert_eq!(recipient_substitute("a %recipient.x", None), "a %recipient.x");
        let many =
            pb::SubmitRequest { to: (0..1001).map(|i| format!("r{i}@example.net")).collect(), ..copies[0].clone() };
        assert_eq!(batch(many, &f).unwrap_err().field.as_deref(), Some("to"));
    }

    #[test]
    fn bad_input_names_the_field() {
        let with = |extra: (&'static str, &'static str)| {
            let mut fields = base();
            fields.push(extra);
            let f = form(&fields);
            let now = 1_800_000_000;
            super::fields(&f)
                .map(|b| options(&f, b))
                .and_then(|b| batch(b, &f))
                .and(delivery_time(&f, now))
                .and(test_mode(&f))
                .unwrap_err()
                .field
                .unwrap()
        };
        assert_eq!(with(("template", "welcome")), "template");
        assert_eq!(with(("frm", "x")), "frm");
        assert_eq!(with(("recipient-variables", "not json")), "recipient-variables");
        assert_eq!(with(("o:deliverytime", "tomorrow")), "o:deliverytime");
        assert_eq!(with(("o:deliverytime", "Thu, 13 Oct 2005 15:00:00 +0000")), "o:deliverytime");
        assert_eq!(with(("o:testmode", "maybe")), "o:testmode");
        let f = form(&[("o:deliverytime", "Fri, 15 Jan 2027 08:00:00 +0000")]);
        assert_eq!(
            delivery_time(&f, 1_800_000_000 - 86_400 * 200).unwrap_err().field.as_deref(),
            Some("o:deliverytime")
        );
    }

    #[test]
    fn keys_domains_and_fields() {
        let mut headers = HeaderMap::new();
        assert_eq!(basic_key(&headers).unwrap_err().status, StatusCode::UNAUTHORIZED);
        let basic = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
        headers.insert(header::AUTHORIZATION, basic("api:bmk_x_y").parse().unwrap());
        assert_eq!(basic_key(&headers).unwrap(), "bmk_x_y");
        headers.insert(header::AUTHORIZATION, basic("user:bmk_x_y").parse().unwrap());
        assert!(basic_key(&headers).is_err());
        let domains = ["bitmail.test".to_owned(), "xn--bcher-kva.example".to_owned()];
        assert!(check_domain("BitMail.test", &domains).is_ok());
        assert!(check_domain("bücher.example", &domains).is_ok());
        assert_eq!(check_domain("other.test", &domains).unwrap_err().status, StatusCode::NOT_FOUND);
        assert_eq!(mailgun_field("headers[1].name", &["X-A".into(), "From".into()]), "h:From");
        assert_eq!(mailgun_field("metadata[\"a b\"]", &[]), "v:a b");
        assert_eq!(address_of("Bob <BOB@x.org>"), "bob@x.org");
    }
}
