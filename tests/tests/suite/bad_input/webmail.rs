//! The webmail's JSON API: compose, folders, messages, the session, and the console's API
//! for a user who is not an admin.

use reqwest::Method;
use serde_json::{Value, json};

use super::Corpus;

fn answer((status, body): (reqwest::StatusCode, Value)) -> String {
    let message = body["error"]["message"].as_str().map_or_else(|| body.to_string(), str::to_owned);
    format!("{}: {message}", status.as_u16())
}

pub(super) async fn api(corpus: &Corpus) -> usize {
    let ada = &corpus.ada;
    let compose: Vec<(&str, Value)> = vec![
        ("no recipient", json!({ "text": "t" })),
        ("to empty", json!({ "to": "", "text": "t" })),
        ("to not an address", json!({ "to": "bob", "text": "t" })),
        ("to two bad of three", json!({ "to": "ok@example.org; nope, also bad@", "text": "t" })),
        ("to with CRLF", json!({ "to": "bob@example.org\r\nBcc: x@y.z", "text": "t" })),
        ("to an unknown local user", json!({ "to": "ghost@bitmail.test", "text": "t" })),
        ("to a number", json!({ "to": 5, "text": "t" })),
        ("to a list of numbers", json!({ "to": [1, 2], "text": "t" })),
        ("cc bad", json!({ "to": "bob@example.org", "cc": "carol@", "text": "t" })),
        ("bcc bad", json!({ "to": "bob@example.org", "bcc": "<>", "text": "t" })),
        ("subject with LF", json!({ "to": "bob@example.org", "subject": "a\nBcc: x@y.z", "text": "t" })),
        ("subject a number", json!({ "to": "bob@example.org", "subject": 1, "text": "t" })),
        ("unknown field", json!({ "to": "bob@example.org", "text": "t", "priority": "high" })),
        (
            "attachment without content",
            json!({ "to": "bob@example.org", "text": "t", "attachments": [{ "filename": "a.txt" }] }),
        ),
        (
            "attachment not base64",
            json!({ "to": "bob@example.org", "text": "t", "attachments": [{ "filename": "a.txt", "content_base64": "%%%" }] }),
        ),
        (
            "attachment without filename",
            json!({ "to": "bob@example.org", "text": "t", "attachments": [{ "filename": "", "content_base64": "eA==" }] }),
        ),
        (
            "attachment filename with CRLF",
            json!({ "to": "bob@example.org", "text": "t", "attachments": [{ "filename": "a\r\nb", "content_base64": "eA==" }] }),
        ),
        (
            "attachment bad content type",
            json!({ "to": "bob@example.org", "text": "t", "attachments": [{ "filename": "a.txt", "content_type": "nope", "content_base64": "eA==" }] }),
        ),
        (
            "too many recipients",
            json!({ "to": (0..120).map(|i| format!("r{i}@example.org")).collect::<Vec<_>>(), "text": "t" }),
        ),
        ("body an array", json!([1, 2, 3])),
        ("body a string", json!("hello")),
        ("broadcast as a user", json!({ "broadcast": true, "text": "t" })),
        ("in_reply_to unknown", json!({ "to": "bob@example.org", "text": "t", "in_reply_to": "no-such-message" })),
    ];
    let mut got = Vec::new();
    for (case, body) in compose {
        got.push((format!("compose: {case}"), answer(ada.send(body).await)));
    }
    // Not JSON at all, and no body.
    for (case, body, content_type) in [
        ("not JSON", "{to:", "application/json"),
        ("empty body", "", "application/json"),
        ("form instead of JSON", "to=bob%40example.org", "application/x-www-form-urlencoded"),
    ] {
        let response = ada
            .http
            .post(format!("{}/api/messages", ada.base))
            .header("cookie", &ada.cookie)
            .header("x-csrf-token", &ada.csrf)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        got.push((format!("compose: {case}"), answer((status, body))));
    }
    let calls: Vec<(&str, Method, &str, Option<Value>)> = vec![
        ("folder unknown", Method::GET, "/api/folders/spam", None),
        ("folder per_page 0", Method::GET, "/api/folders/inbox?per_page=0", None),
        ("folder per_page 500", Method::GET, "/api/folders/inbox?per_page=500", None),
        ("folder page not a number", Method::GET, "/api/folders/inbox?page=two", None),
        ("folder unknown parameter", Method::GET, "/api/folders/inbox?sort=asc", None),
        ("message unknown", Method::GET, "/api/mail/no-such-message", None),
        (
            "message id too long",
            Method::GET,
            "/api/mail/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            None,
        ),
        ("mark unknown message", Method::PATCH, "/api/mail/no-such-message", Some(json!({ "read": true }))),
        ("mark with a string", Method::PATCH, "/api/mail/no-such-message", Some(json!({ "read": "yes" }))),
        ("delete unknown message", Method::DELETE, "/api/mail/no-such-message", None),
        ("attachment of unknown message", Method::GET, "/api/mail/no-such-message/attachments/0", None),
        ("attachment index not a number", Method::GET, "/api/mail/no-such-message/attachments/first", None),
        ("unknown endpoint", Method::GET, "/api/nothing-here", None),
        ("group unknown", Method::GET, "/api/groups/nope", None),
        ("group bad name", Method::POST, "/api/groups", Some(json!({ "name": "No Good!" }))),
        ("group unknown field", Method::POST, "/api/groups", Some(json!({ "name": "team", "colour": "red" }))),
        ("group unknown member", Method::POST, "/api/groups", Some(json!({ "name": "team", "members": ["ghost"] }))),
        ("members of an unknown group", Method::POST, "/api/groups/nope/members", Some(json!({ "names": ["bob"] }))),
        ("preview not JSON object", Method::POST, "/api/preview", Some(json!(42))),
        ("console tenants as a user", Method::GET, "/api/admin/tenants", None),
        (
            "console create tenant as a user",
            Method::POST,
            "/api/admin/tenants",
            Some(json!({ "id": "acme", "domains": ["a.example"] })),
        ),
        ("console audit as a user", Method::GET, "/api/admin/audit", None),
        ("console pause as a user", Method::POST, "/api/admin/providers/sendgrid/pause", None),
        (
            "console suppress as a user",
            Method::POST,
            "/api/admin/suppressions",
            Some(json!({ "address": "x@example.org" })),
        ),
    ];
    for (case, method, path, body) in calls {
        got.push((case.to_owned(), answer(ada.call(method, path, body).await)));
    }
    // Without the CSRF token, and without a session.
    let no_csrf = ada
        .http
        .post(format!("{}/api/messages", ada.base))
        .header("cookie", &ada.cookie)
        .json(&json!({ "to": "bob@example.org", "text": "t" }))
        .send()
        .await
        .unwrap();
    let status = no_csrf.status();
    got.push(("compose without the CSRF token".into(), answer((status, no_csrf.json().await.unwrap_or(Value::Null)))));
    let anonymous = ada.http.get(format!("{}/api/folders/inbox", ada.base)).send().await.unwrap();
    let status = anonymous.status();
    got.push(("folder without a session".into(), answer((status, anonymous.json().await.unwrap_or(Value::Null)))));
    for (case, body) in [
        ("sign-in without password", json!({ "name": "ada" })),
        ("sign-in name with control", json!({ "name": "ad\u{7}a", "password": "a long password" })),
        ("sign-in name too long", json!({ "name": "a".repeat(200), "password": "a long password" })),
        ("sign-in password too short for a new account", json!({ "name": "newcomer", "password": "short" })),
        ("sign-in reserved name", json!({ "name": "postmaster", "password": "a long password" })),
        ("sign-in unknown field", json!({ "name": "ada", "password": "a long password", "admin": true })),
    ] {
        let response = ada.http.post(format!("{}/api/session", ada.base)).json(&body).send().await.unwrap();
        let status = response.status();
        got.push((case.to_owned(), answer((status, response.json().await.unwrap_or(Value::Null)))));
    }
    let n = got.len();
    corpus.check("webmail API", &got, WEBMAIL);
    n
}

const WEBMAIL: &[(&str, &str)] = &[
    ("compose: no recipient", "400: to: at least one recipient is needed"),
    ("compose: to empty", "400: to: at least one recipient is needed"),
    ("compose: to not an address", "400: to: \"bob\" is not a valid address"),
    ("compose: to two bad of three", "400: to: \"nope\", \"also bad@\" are not valid addresses"),
    ("compose: to with CRLF", "400: to: \"bob@example.org\\r\\nBcc: x@y.z\" is not a valid address"),
    ("compose: to an unknown local user", "400: to: there is no user ghost@bitmail.test here"),
    (
        "compose: to a number",
        "400: Failed to deserialize the JSON body into the target type: to: invalid type: integer `5`, expected a string of addresses or a list of strings at line 1 column 18",
    ),
    (
        "compose: to a list of numbers",
        "400: Failed to deserialize the JSON body into the target type: to[0]: invalid type: integer `1`, expected a string at line 1 column 19",
    ),
    ("compose: cc bad", "400: cc: \"carol@\" is not a valid address"),
    ("compose: bcc bad", "400: bcc: \"<>\" is not a valid address"),
    ("compose: subject with LF", "400: subject: must be one line"),
    (
        "compose: subject a number",
        "400: Failed to deserialize the JSON body into the target type: subject: invalid type: integer `1`, expected a string at line 1 column 12",
    ),
    (
        "compose: unknown field",
        "400: Failed to deserialize the JSON body into the target type: priority: unknown field `priority`, expected one of `to`, `cc`, `bcc`, `subject`, `markdown`, `text`, `html`, `attachments`, `broadcast`, `in_reply_to` at line 1 column 11",
    ),
    (
        "compose: attachment without content",
        "400: Failed to deserialize the JSON body into the target type: attachments[0]: missing field `content_base64` at line 1 column 36",
    ),
    ("compose: attachment not base64", "400: attachments[0].content_base64: not base64 (Invalid symbol 37, offset 0.)"),
    (
        "compose: attachment without filename",
        "400: attachments[0].filename: 1 to 255 characters, no control characters or slashes",
    ),
    (
        "compose: attachment filename with CRLF",
        "400: attachments[0].filename: 1 to 255 characters, no control characters or slashes",
    ),
    ("compose: attachment bad content type", "400: attachments[0].content_type: \"nope\" is not a MIME type"),
    (
        "compose: too many recipients",
        "400: to: 120 recipients (to, cc and bcc together) are more than the 50 a message may have",
    ),
    (
        "compose: body an array",
        "400: Failed to deserialize the JSON body into the target type: [0]: invalid type: integer `1`, expected a string of addresses or a list of strings at line 1 column 2",
    ),
    (
        "compose: body a string",
        "400: Failed to deserialize the JSON body into the target type: invalid type: string \"hello\", expected struct Compose at line 1 column 7",
    ),
    ("compose: broadcast as a user", "403: broadcast: only an admin sends to every user of the tenant"),
    ("compose: in_reply_to unknown", "400: in_reply_to: you have no message \"no-such-message\""),
    ("compose: not JSON", "400: Failed to parse the request body as JSON: key must be a string at line 1 column 2"),
    (
        "compose: empty body",
        "400: Failed to parse the request body as JSON: EOF while parsing a value at line 1 column 0",
    ),
    ("compose: form instead of JSON", "400: Expected request with `Content-Type: application/json`"),
    ("folder unknown", "404: no folder \"spam\" (there are \"inbox\" and \"sent\")"),
    ("folder per_page 0", "400: per_page: 1 to 200"),
    ("folder per_page 500", "400: per_page: 1 to 200"),
    ("folder page not a number", "400: Failed to deserialize query string: page: invalid digit found in string"),
    (
        "folder unknown parameter",
        "400: Failed to deserialize query string: sort: unknown field `sort`, expected `page` or `per_page`",
    ),
    ("message unknown", "404: no message with id \"no-such-message\""),
    (
        "message id too long",
        "404: no message with id \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
    ),
    ("mark unknown message", "404: no message with id \"no-such-message\""),
    (
        "mark with a string",
        "400: Failed to deserialize the JSON body into the target type: read: invalid type: string \"yes\", expected a boolean at line 1 column 13",
    ),
    ("delete unknown message", "404: no message with id \"no-such-message\""),
    ("attachment of unknown message", "404: no message with id \"no-such-message\""),
    ("attachment index not a number", "400: Invalid URL: Cannot parse value at index 1 with value `first` to a `u64`"),
    ("unknown endpoint", "404: no such endpoint"),
    ("group unknown", "404: no group \"nope\""),
    ("group bad name", "400: name: 1 to 64 characters of a-z, 0-9, '.', '_' and '-', not starting or ending with '.'"),
    (
        "group unknown field",
        "400: Failed to deserialize the JSON body into the target type: colour: unknown field `colour`, expected `name` or `members` at line 1 column 9",
    ),
    ("group unknown member", "400: members: there is no user ghost here"),
    ("members of an unknown group", "404: no group \"nope\""),
    (
        "preview not JSON object",
        "400: Failed to deserialize the JSON body into the target type: invalid type: integer `42`, expected struct Preview at line 1 column 2",
    ),
    ("console tenants as a user", "403: the admin console is for admins only"),
    ("console create tenant as a user", "403: the admin console is for admins only"),
    ("console audit as a user", "403: the admin console is for admins only"),
    ("console pause as a user", "403: the admin console is for admins only"),
    ("console suppress as a user", "403: the admin console is for admins only"),
    ("compose without the CSRF token", "403: missing or wrong CSRF token (the X-CSRF-Token header); reload the page"),
    ("folder without a session", "401: sign in first"),
    (
        "sign-in without password",
        "400: Failed to deserialize the JSON body into the target type: missing field `password` at line 1 column 14",
    ),
    (
        "sign-in name with control",
        "400: name: 1 to 64 characters of a-z, 0-9, '.', '_' and '-', not starting or ending with '.'",
    ),
    (
        "sign-in name too long",
        "400: name: 1 to 64 characters of a-z, 0-9, '.', '_' and '-', not starting or ending with '.'",
    ),
    ("sign-in password too short for a new account", "400: password: 8 to 1024 characters"),
    (
        "sign-in reserved name",
        "403: name: `postmaster` is reserved for the operators of this domain; they create it with `client-api create-user`",
    ),
    (
        "sign-in unknown field",
        "400: Failed to deserialize the JSON body into the target type: admin: unknown field `admin`, expected `name` or `password` at line 1 column 8",
    ),
];
