//! The SendGrid- and Mailgun-shaped APIs, the read and webhook API for apps, and the
//! providers' webhooks into the edge.

use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use super::Corpus;

async fn answer(response: reqwest::Response) -> String {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let message = match serde_json::from_str::<Value>(&text) {
        // SendGrid's shape: errors[0].message (and its field); Mailgun's: message; ours: error.message.
        Ok(v) if v["errors"][0]["message"].is_string() => match v["errors"][0]["field"].as_str() {
            Some(field) => format!("{field}: {}", v["errors"][0]["message"].as_str().unwrap()),
            None => v["errors"][0]["message"].as_str().unwrap().to_owned(),
        },
        Ok(v) if v["message"].is_string() => v["message"].as_str().unwrap().to_owned(),
        Ok(v) if v["error"]["message"].is_string() => v["error"]["message"].as_str().unwrap().to_owned(),
        _ => text.trim().chars().take(200).collect(),
    };
    format!("{status}: {message}")
}

fn urlencoded(form: &[(&str, &str)]) -> String {
    let escape = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    form.iter().map(|(k, v)| format!("{}={}", escape(k), escape(v))).collect::<Vec<_>>().join("&")
}

fn client(corpus: &Corpus) -> (reqwest::Client, String) {
    corpus.cluster.https_client()
}

fn mail() -> Value {
    json!({
        "personalizations": [{ "to": [{ "email": "bob@example.org" }] }],
        "from": { "email": "ada@bitmail.test" },
        "subject": "Hi",
        "content": [{ "type": "text/plain", "value": "Hello" }]
    })
}

fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut m = mail();
    f(&mut m);
    m
}

pub(super) async fn sendgrid(corpus: &Corpus) -> usize {
    let (http, base) = client(corpus);
    let cases: Vec<(&str, Value)> = vec![
        ("no personalizations", with(|m| m["personalizations"] = json!([]))),
        ("personalization without to", with(|m| m["personalizations"] = json!([{}]))),
        ("to not an address", with(|m| m["personalizations"][0]["to"][0]["email"] = json!("bob"))),
        ("to without email", with(|m| m["personalizations"][0]["to"][0] = json!({ "name": "Bob" }))),
        (
            "second to bad",
            with(|m| m["personalizations"][0]["to"] = json!([{ "email": "bob@example.org" }, { "email": "@x" }])),
        ),
        ("cc bad", with(|m| m["personalizations"][0]["cc"] = json!([{ "email": "carol@" }]))),
        ("bcc bad", with(|m| m["personalizations"][0]["bcc"] = json!([{ "email": "dave at x" }]))),
        (
            "second personalization bad",
            with(|m| m["personalizations"].as_array_mut().unwrap().push(json!({ "to": [{ "email": "nope" }] }))),
        ),
        ("no from", with(|m| m.as_object_mut().unwrap().remove("from").map(drop).unwrap_or(()))),
        ("from not an address", with(|m| m["from"]["email"] = json!("ada"))),
        ("from outside the tenant", with(|m| m["from"]["email"] = json!("ada@elsewhere.example"))),
        ("from a look-alike", with(|m| m["from"]["email"] = json!("ada@bitmail.test.evil.example"))),
        ("reply_to bad", with(|m| m["reply_to"] = json!({ "email": "nope" }))),
        ("no content", with(|m| m["content"] = json!([]))),
        ("content without type", with(|m| m["content"] = json!([{ "value": "x" }]))),
        ("content of an unknown type", with(|m| m["content"] = json!([{ "type": "application/pdf", "value": "x" }]))),
        ("subject with newline", with(|m| m["subject"] = json!("a\nBcc: x@y.z"))),
        ("subject a number", with(|m| m["subject"] = json!(5))),
        ("attachment not base64", with(|m| m["attachments"] = json!([{ "content": "%%%", "filename": "a.txt" }]))),
        ("attachment without filename", with(|m| m["attachments"] = json!([{ "content": "eA==" }]))),
        ("attachment without content", with(|m| m["attachments"] = json!([{ "filename": "a.txt" }]))),
        ("header reserved", with(|m| m["headers"] = json!({ "From": "eve@evil.example" }))),
        ("header value with newline", with(|m| m["headers"] = json!({ "X-A": "a\r\nb" }))),
        ("template_id", with(|m| m["template_id"] = json!("d-123"))),
        ("unknown field", with(|m| m["priority"] = json!("high"))),
        ("four categories", with(|m| m["categories"] = json!(["a", "b", "c", "d"]))),
        ("send_at in the past", with(|m| m["send_at"] = json!(1000))),
        ("send_at too far ahead", with(|m| m["send_at"] = json!(4_000_000_000_i64))),
        ("custom_args not strings", with(|m| m["custom_args"] = json!({ "n": 1 }))),
        ("body an array", json!([])),
    ];
    let mut got = Vec::new();
    for (case, body) in cases {
        let response =
            http.post(format!("{base}/v3/mail/send")).bearer_auth(&corpus.key).json(&body).send().await.unwrap();
        got.push((format!("sendgrid: {case}"), answer(response).await));
    }
    let good = mail().to_string();
    let raw = |body: String, key: Option<&str>| {
        let mut r = http.post(format!("{base}/v3/mail/send")).header(CONTENT_TYPE, "application/json").body(body);
        if let Some(key) = key {
            r = r.bearer_auth(key);
        }
        r
    };
    for (case, request) in [
        ("not JSON", raw("{personalizations".into(), Some(&corpus.key))),
        ("empty body", raw(String::new(), Some(&corpus.key))),
        ("no key", raw(good.clone(), None)),
        ("unknown key", raw(good.clone(), Some(super::grpc::UNKNOWN_KEY))),
        ("a SendGrid key", raw(good.clone(), Some("SG.not-ours"))),
    ] {
        got.push((format!("sendgrid: {case}"), answer(request.send().await.unwrap()).await));
    }
    let n = got.len();
    corpus.check("SendGrid API", &got, SENDGRID);
    n
}

pub(super) async fn mailgun(corpus: &Corpus) -> usize {
    let (http, base) = client(corpus);
    let good = [("from", "ada@bitmail.test"), ("to", "bob@example.org"), ("subject", "Hi"), ("text", "Hello")];
    let with = |changes: &[(&'static str, Option<&'static str>)]| {
        let mut form: Vec<(&str, &str)> = good.to_vec();
        for (k, v) in changes {
            form.retain(|(name, _)| name != k);
            if let Some(v) = v {
                form.push((k, v));
            }
        }
        form
    };
    // (case, domain, form fields)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        ("no from", "bitmail.test", with(&[("from", None)])),
        ("from not an address", "bitmail.test", with(&[("from", Some("ada"))])),
        ("from outside the tenant", "bitmail.test", with(&[("from", Some("ada@elsewhere.example"))])),
        ("no to", "bitmail.test", with(&[("to", None)])),
        ("to not an address", "bitmail.test", with(&[("to", Some("bob"))])),
        ("one of the to bad", "bitmail.test", with(&[("to", Some("bob@example.org, nope"))])),
        ("cc bad", "bitmail.test", with(&[("cc", Some("carol@"))])),
        ("bcc bad", "bitmail.test", with(&[("bcc", Some("<>"))])),
        ("no body", "bitmail.test", with(&[("text", None)])),
        ("subject with newline", "bitmail.test", with(&[("subject", Some("a\nb"))])),
        ("template", "bitmail.test", with(&[("template", Some("welcome"))])),
        ("unknown parameter", "bitmail.test", with(&[("priority", Some("high"))])),
        ("header reserved", "bitmail.test", with(&[("h:From", Some("eve@evil.example"))])),
        ("header value with newline", "bitmail.test", with(&[("h:X-A", Some("a\r\nb"))])),
        (
            "four tags",
            "bitmail.test",
            vec![
                ("from", "ada@bitmail.test"),
                ("to", "b@example.org"),
                ("subject", "s"),
                ("text", "t"),
                ("o:tag", "a"),
                ("o:tag", "b"),
                ("o:tag", "c"),
                ("o:tag", "d"),
            ],
        ),
        ("deliverytime not a date", "bitmail.test", with(&[("o:deliverytime", Some("tomorrow"))])),
        ("testmode not yes or no", "bitmail.test", with(&[("o:testmode", Some("maybe"))])),
        ("recipient-variables not JSON", "bitmail.test", with(&[("recipient-variables", Some("{bob"))])),
        ("unknown domain", "elsewhere.example", good.to_vec()),
        ("domain not a domain", "not%20a%20domain", good.to_vec()),
    ];
    let mut got = Vec::new();
    for (case, domain, form) in cases {
        let response = http
            .post(format!("{base}/v3/{domain}/messages"))
            .basic_auth("api", Some(&corpus.key))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(urlencoded(&form))
            .send()
            .await
            .unwrap();
        got.push((format!("mailgun: {case}"), answer(response).await));
    }
    for (case, user, key, content_type, body) in [
        ("no key", None, None, "application/x-www-form-urlencoded", "to=b%40example.org"),
        (
            "wrong user",
            Some("key"),
            Some(corpus.key.as_str()),
            "application/x-www-form-urlencoded",
            "to=b%40example.org",
        ),
        ("JSON body", Some("api"), Some(corpus.key.as_str()), "application/json", "{\"to\":\"b@example.org\"}"),
        (
            "mime without message",
            Some("api"),
            Some(corpus.key.as_str()),
            "application/x-www-form-urlencoded",
            "to=b%40example.org",
        ),
        (
            "mime not a message",
            Some("api"),
            Some(corpus.key.as_str()),
            "application/x-www-form-urlencoded",
            "to=b%40example.org&message=hello",
        ),
    ] {
        let path = if case.starts_with("mime") { "messages.mime" } else { "messages" };
        let mut request =
            http.post(format!("{base}/v3/bitmail.test/{path}")).header(CONTENT_TYPE, content_type).body(body);
        if let Some(user) = user {
            request = request.basic_auth(user, key);
        }
        got.push((format!("mailgun: {case}"), answer(request.send().await.unwrap()).await));
    }
    let n = got.len();
    corpus.check("Mailgun API", &got, MAILGUN);
    n
}

pub(super) async fn webhooks(corpus: &Corpus) -> usize {
    let (http, base) = client(corpus);
    let mut got = Vec::new();
    let posts: Vec<(&str, &str, &str, &str)> = vec![
        ("SendGrid events unsigned", "/webhooks/sendgrid/events", "application/json", r#"[{"event":"delivered"}]"#),
        (
            "SendGrid inbound without its password",
            "/webhooks/sendgrid/inbound",
            "multipart/form-data; boundary=b",
            "--b--\r\n",
        ),
        ("SendGrid inbound not a form", "/webhooks/sendgrid/inbound?password", "application/json", "{}"),
        ("unknown provider events", "/webhooks/postmark/events", "application/json", "[]"),
        ("unknown provider inbound", "/webhooks/postmark/inbound", "application/json", "{}"),
        ("Mailgun events unsigned", "/webhooks/mailgun/events", "application/json", r#"{"event-data":{}}"#),
        ("Mailgun events not JSON", "/webhooks/mailgun/events", "application/json", "{"),
        ("SES events not SNS", "/webhooks/ses/events", "application/json", r#"{"Type":"Notification"}"#),
    ];
    for (case, path, content_type, body) in posts {
        let mut request =
            http.post(format!("{base}{}", path.trim_end_matches("?password"))).header(CONTENT_TYPE, content_type);
        if path.ends_with("?password") {
            request = request.basic_auth("bitmail", Some(super::INBOUND_PASSWORD));
        }
        let response = request.body(body).send().await.unwrap();
        got.push((format!("webhook: {case}"), answer(response).await));
    }
    let app =
        |method: reqwest::Method, path: &str| http.request(method, format!("{base}{path}")).bearer_auth(&corpus.key);
    let signed_badly = http
        .post(format!("{base}/webhooks/sendgrid/events"))
        .header("X-Twilio-Email-Event-Webhook-Signature", "bm90IGEgc2lnbmF0dXJl")
        .header("X-Twilio-Email-Event-Webhook-Timestamp", "1790000000")
        .body("[]");
    got.push((
        "webhook: SendGrid events with a wrong signature".into(),
        answer(signed_badly.send().await.unwrap()).await,
    ));
    let wrong_password = http
        .post(format!("{base}/webhooks/sendgrid/inbound"))
        .basic_auth("bitmail", Some("not-the-password"))
        .header(CONTENT_TYPE, "multipart/form-data; boundary=b")
        .body("--b--\r\n");
    got.push((
        "webhook: SendGrid inbound with a wrong password".into(),
        answer(wrong_password.send().await.unwrap()).await,
    ));
    for (case, request) in [
        ("read an unknown message", app(reqwest::Method::GET, "/app/v1/messages/no-such-id")),
        ("events after a bad cursor", app(reqwest::Method::GET, "/app/v1/events?after=yesterday")),
        (
            "webhook with a plain http URL",
            app(reqwest::Method::POST, "/app/v1/webhooks").json(&json!({ "url": "http://example.org/hook" })),
        ),
        (
            "webhook to a private address",
            app(reqwest::Method::POST, "/app/v1/webhooks").json(&json!({ "url": "https://127.0.0.1/hook" })),
        ),
        ("webhook with no URL", app(reqwest::Method::POST, "/app/v1/webhooks").json(&json!({}))),
        (
            "webhook of an unknown format",
            app(reqwest::Method::POST, "/app/v1/webhooks")
                .json(&json!({ "url": "https://example.org/hook", "format": "xml" })),
        ),
        ("delete an unknown webhook", app(reqwest::Method::DELETE, "/app/v1/webhooks/no-such-hook")),
    ] {
        got.push((format!("app: {case}"), answer(request.send().await.unwrap()).await));
    }
    let n = got.len();
    corpus.check("webhooks and the app API", &got, WEBHOOKS);
    n
}

const SENDGRID: &[(&str, &str)] = &[
    ("sendgrid: no personalizations", "400: personalizations: 0 personalizations; 1 to 1000 are required"),
    (
        "sendgrid: personalization without to",
        "400: personalizations.0.to: each personalization needs at least one to address",
    ),
    (
        "sendgrid: to not an address",
        "400: personalizations.0.to.0: to[0]: `bob` is not a valid address (Invalid input)",
    ),
    (
        "sendgrid: to without email",
        "400: The request body is not valid Mail Send JSON: missing field `email` at line 1 column 128",
    ),
    ("sendgrid: second to bad", "400: personalizations.0.to.1: to[1]: `@x` is not a valid address (Invalid input)"),
    ("sendgrid: cc bad", "400: personalizations.0.cc.0: cc[0]: `carol@` is not a valid address (Invalid input)"),
    ("sendgrid: bcc bad", "400: personalizations.0.bcc.0.email: `dave at x` is not a valid address"),
    (
        "sendgrid: second personalization bad",
        "400: personalizations.1.to.0: to[0]: `nope` is not a valid address (Invalid input)",
    ),
    ("sendgrid: no from", "400: from: the from address is required"),
    ("sendgrid: from not an address", "400: from.email: from: `ada` is not a valid address (Invalid input)"),
    (
        "sendgrid: from outside the tenant",
        "403: from.email: from: ada@elsewhere.example is not a sending domain or address of tenant \"default\"",
    ),
    (
        "sendgrid: from a look-alike",
        "403: from.email: from: ada@bitmail.test.evil.example is not a sending domain or address of tenant \"default\"",
    ),
    ("sendgrid: reply_to bad", "400: reply_to: reply_to[0]: `nope` is not a valid address (Invalid input)"),
    ("sendgrid: no content", "400: content: at least one content of type text/plain or text/html is required"),
    (
        "sendgrid: content without type",
        "400: The request body is not valid Mail Send JSON: missing field `type` at line 1 column 25",
    ),
    (
        "sendgrid: content of an unknown type",
        "400: content.0.type: `application/pdf`: only text/plain and text/html are supported",
    ),
    ("sendgrid: subject with newline", "400: subject: subject: must not contain CR or LF"),
    (
        "sendgrid: subject a number",
        "400: The request body is not valid Mail Send JSON: invalid type: integer `5`, expected a string at line 1 column 156",
    ),
    ("sendgrid: attachment not base64", "400: attachments.0.content: the attachment content must be base64"),
    (
        "sendgrid: attachment without filename",
        "400: The request body is not valid Mail Send JSON: missing field `filename` at line 1 column 34",
    ),
    (
        "sendgrid: attachment without content",
        "400: The request body is not valid Mail Send JSON: missing field `content` at line 1 column 36",
    ),
    (
        "sendgrid: header reserved",
        "400: headers: headers[0].name: `From` is set by BitMail from the message's own fields and cannot be a custom header",
    ),
    ("sendgrid: header value with newline", "400: headers: headers[0].value: must not contain CR or LF"),
    (
        "sendgrid: template_id",
        "400: template_id: templates stored at SendGrid are not supported: send the content itself",
    ),
    (
        "sendgrid: unknown field",
        "400: The request body is not valid Mail Send JSON: unknown field `priority`, expected one of `personalizations`, `from`, `reply_to`, `reply_to_list`, `subject`, `content`, `attachments`, `template_id`, `headers`, `categories`, `custom_args`, `send_at`, `mail_settings`, `asm`, `ip_pool_name`, `batch_id`, `tracking_settings` at line 1 column 155",
    ),
    ("sendgrid: four categories", "400: categories: tags: 4 tags; at most 3 are allowed"),
    ("sendgrid: send_at in the past", "400: send_at: send_at 1000 is in the past"),
    ("sendgrid: send_at too far ahead", "400: send_at: send_at 4000000000 is more than 72 hours ahead"),
    (
        "sendgrid: custom_args not strings",
        "400: The request body is not valid Mail Send JSON: invalid type: integer `1`, expected a string at line 1 column 71",
    ),
    (
        "sendgrid: body an array",
        "400: The request body is not valid Mail Send JSON: invalid length 1, expected struct Mail with 17 elements at line 1 column 2",
    ),
    (
        "sendgrid: not JSON",
        "400: The request body is not valid Mail Send JSON: key must be a string at line 1 column 2",
    ),
    (
        "sendgrid: empty body",
        "400: The request body is not valid Mail Send JSON: EOF while parsing a value at line 1 column 0",
    ),
    ("sendgrid: no key", "401: authorization required"),
    ("sendgrid: unknown key", "401: The provided authorization grant is invalid, expired, or revoked"),
    ("sendgrid: a SendGrid key", "401: The provided authorization grant is invalid, expired, or revoked"),
];
const MAILGUN: &[(&str, &str)] = &[
    ("mailgun: no from", "400: from is required"),
    ("mailgun: from not an address", "400: from: `ada` is not a valid address (Invalid input)"),
    (
        "mailgun: from outside the tenant",
        "403: from: ada@elsewhere.example is not a sending domain or address of tenant \"default\"",
    ),
    ("mailgun: no to", "400: to: at least one recipient (to, cc or bcc) is required"),
    ("mailgun: to not an address", "400: to[0]: `bob` is not a valid address (Invalid input)"),
    ("mailgun: one of the to bad", "400: to[1]: `nope` is not a valid address (Invalid input)"),
    ("mailgun: cc bad", "400: cc[0]: `carol@` is not a valid address (Invalid input)"),
    ("mailgun: bcc bad", "400: bcc[0]: `<>` is not a valid address (Invalid input)"),
    ("mailgun: no body", "400: text: a text or an html body is required"),
    ("mailgun: subject with newline", "400: subject: must not contain CR or LF"),
    ("mailgun: template", "400: template: templates and AMP are not supported: send text or html"),
    ("mailgun: unknown parameter", "400: priority: unknown parameter"),
    (
        "mailgun: header reserved",
        "400: h:From: headers[0].name: `From` is set by BitMail from the message's own fields and cannot be a custom header",
    ),
    ("mailgun: header value with newline", "400: h:X-A: headers[0].value: must not contain CR or LF"),
    ("mailgun: four tags", "400: o:tag: tags: 4 tags; at most 3 are allowed"),
    ("mailgun: deliverytime not a date", "400: o:deliverytime: `tomorrow` is not an RFC 2822 date"),
    ("mailgun: testmode not yes or no", "400: o:testmode: `maybe` is not yes or no"),
    (
        "mailgun: recipient-variables not JSON",
        "400: recipient-variables: not a JSON object of objects (key must be a string at line 1 column 2)",
    ),
    ("mailgun: unknown domain", "404: Domain not found: elsewhere.example"),
    ("mailgun: domain not a domain", "404: Domain not found: not a domain"),
    ("mailgun: no key", "401: Forbidden"),
    ("mailgun: wrong user", "401: Forbidden"),
    ("mailgun: JSON body", "400: the body must be multipart/form-data or application/x-www-form-urlencoded"),
    ("mailgun: mime without message", "400: message: the MIME message is required"),
    ("mailgun: mime not a message", "400: message: not a MIME message with a From header"),
];
const WEBHOOKS: &[(&str, &str)] = &[
    ("webhook: SendGrid events unsigned", "401: signature: X-Twilio-Email-Event-Webhook-Signature is missing"),
    ("webhook: SendGrid inbound without its password", "401: signature: HTTP Basic credentials are missing"),
    (
        "webhook: SendGrid inbound not a form",
        "400: malformed: Content-Type \"application/json\": expected multipart/form-data or application/x-www-form-urlencoded",
    ),
    ("webhook: unknown provider events", "404: no provider \"postmark\" with a webhook key configured"),
    ("webhook: unknown provider inbound", "404: no provider \"postmark\" with a webhook key configured"),
    ("webhook: Mailgun events unsigned", "404: no provider \"mailgun\" with a webhook key configured"),
    ("webhook: Mailgun events not JSON", "404: no provider \"mailgun\" with a webhook key configured"),
    ("webhook: SES events not SNS", "404: no provider \"ses\" with a webhook key configured"),
    ("webhook: SendGrid events with a wrong signature", "401: signature: the signature does not match the body"),
    ("webhook: SendGrid inbound with a wrong password", "401: signature: wrong HTTP Basic credentials"),
    ("app: read an unknown message", "404: no message with id \"no-such-id\""),
    ("app: events after a bad cursor", "400: after: \"yesterday\" is not a cursor"),
    ("app: webhook with a plain http URL", "400: url: http://example.org/hook: the scheme must be https"),
    (
        "app: webhook to a private address",
        "400: url: https://127.0.0.1/hook: the host is a loopback, private or link-local address, which this deployment forbids",
    ),
    ("app: webhook with no URL", "400: the body must be {url, format?}: missing field `url` at line 1 column 2"),
    ("app: webhook of an unknown format", "400: format: \"xml\" is not bitmail or sendgrid"),
    ("app: delete an unknown webhook", "404: no webhook \"no-such-hook\""),
];
