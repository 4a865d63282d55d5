//! The mailing lists' public pages (the hosted subscribe form, the token links) and the
//! lists JSON API for apps: each bad request answered with its clear error, no
//! subscriber stored, no confirmation mail sent.

use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use super::Corpus;

/// A page's status and what it says is wrong: its error paragraph and each field's
/// error, as text.
async fn page(response: reqwest::Response) -> String {
    let status = response.status().as_u16();
    let html = response.text().await.unwrap_or_default();
    let mut said = Vec::new();
    for marker in ["<p class=\"error\">", "<div class=\"field-error\">"] {
        for piece in html.split(marker).skip(1) {
            said.push(piece.split('<').next().unwrap_or_default().replace("&#39;", "'").replace("&quot;", "\""));
        }
    }
    format!("{status}: {}", said.join(" / "))
}

async fn json_answer(response: reqwest::Response) -> String {
    let status = response.status().as_u16();
    let v: Value = response.json().await.unwrap_or(Value::Null);
    format!("{status}: {}", v["error"]["message"].as_str().unwrap_or("(no error message)"))
}

pub(super) async fn lists(corpus: &Corpus) -> usize {
    let (http, base) = corpus.cluster.https_client();
    let app = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}/app/v1{path}")).bearer_auth(&corpus.key)
    };
    let body =
        json!({ "name": "Corpus", "from_email": "news@bitmail.test", "double_opt_in": true, "attributes": ["area"] });
    let created: Value = app(reqwest::Method::POST, "/lists").json(&body).send().await.unwrap().json().await.unwrap();
    let list = created["id"].as_str().expect("the corpus's list").to_owned();
    let mut got = Vec::new();

    let subscribe = |body: String| {
        http.post(format!("{base}/lists/{list}/subscribe"))
            .header("origin", "https://tenant-site.example")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
    };
    let forms: Vec<(&str, String)> = vec![
        ("no email", "name=Ada".into()),
        ("address without a domain", "email=ada%40".into()),
        ("address with a header after it", "email=ada%40example.org%0D%0ABcc%3A+x%40y.z".into()),
        ("two addresses", "email=ada%40example.org%2Cbob%40example.org".into()),
        ("name with a line break", "email=ada%40example.org&name=Ada%0D%0ABcc%3A+x%40y.z".into()),
        ("name of 101 characters", format!("email=ada%40example.org&name={}", "n".repeat(101))),
        ("language de", "email=ada%40example.org&language=de".into()),
        ("attribute of 257 characters", format!("email=ada%40example.org&area={}", "a".repeat(257))),
        ("a 10 MB attribute", format!("email=ada%40example.org&area={}", "a".repeat(10 << 20))),
        ("not a form", "\u{0}\u{1}binary".into()),
    ];
    for (case, body) in forms {
        got.push((format!("subscribe form: {case}"), page(subscribe(body).send().await.unwrap()).await));
    }
    // From another address: this one has used its 10 subscriptions of the window.
    let (elsewhere, _) = corpus.cluster.https_client_from(Some([127, 0, 0, 2].into()));
    let unknown = elsewhere
        .post(format!("{base}/lists/0193a000-0000-7000-8000-000000000000/subscribe"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("email=ada%40example.org");
    got.push(("subscribe form: unknown list".into(), page(unknown.send().await.unwrap()).await));

    let tokens: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("confirm: not a token", http.get(format!("{base}/lists/confirm/%3Cscript%3E"))),
        ("confirm: a forged token", http.post(format!("{base}/lists/confirm/c.x.-.0.AAAAAAAAAAAAAAAAAAAAAA"))),
        (
            "one-click unsubscribe: a forged token",
            http.post(format!("{base}/lists/u/s.x.-.0.AAAAAAAAAAAAAAAAAAAAAA"))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("List-Unsubscribe=One-Click"),
        ),
        ("preferences: a forged token", http.get(format!("{base}/lists/prefs/s.x.-.0.AAAAAAAAAAAAAAAAAAAAAA"))),
        ("unsubscribe: a body over 16 KiB", http.post(format!("{base}/lists/u/s.x")).body(vec![b'a'; 17 * 1024])),
    ];
    for (case, request) in tokens {
        got.push((format!("list link: {case}"), page(request.send().await.unwrap()).await));
    }

    use reqwest::Method as M;
    let csv = |body: &'static [u8], content_type: &str| {
        app(M::POST, &format!("/lists/{list}/import")).header(CONTENT_TYPE, content_type).body(body)
    };
    let calls: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("list: unknown field", app(M::POST, "/lists").json(&json!({ "name": "x", "colour": "red" }))),
        ("list: no name", app(M::POST, "/lists").json(&json!({ "from_email": "news@bitmail.test" }))),
        (
            "list: sender outside the tenant",
            app(M::POST, "/lists").json(&json!({ "name": "x", "from_email": "a@evil.example" })),
        ),
        ("list edit: nothing to change", app(M::PATCH, &format!("/lists/{list}")).json(&json!({}))),
        ("list edit: a null field", app(M::PATCH, &format!("/lists/{list}")).json(&json!({ "name": null }))),
        (
            "subscriber: malformed address",
            app(M::POST, &format!("/lists/{list}/subscribers")).json(&json!({ "email": "ada@" })),
        ),
        (
            "subscriber: unknown attribute",
            app(M::POST, &format!("/lists/{list}/subscribers"))
                .json(&json!({ "email": "a@example.org", "attributes": { "x": "1" } })),
        ),
        ("subscribers: unknown state", app(M::GET, &format!("/lists/{list}/subscribers?state=gone"))),
        ("subscribers: limit 1001", app(M::GET, &format!("/lists/{list}/subscribers?limit=1001"))),
        ("import: JSON, not CSV", csv(b"{}", "application/json")),
        ("import: not UTF-8", csv(b"email\n\xff@example.org\n", "text/csv")),
        ("import: no email column", csv(b"name\nAda\n", "text/csv")),
        ("import: empty", csv(b"", "text/csv")),
        (
            "import: over 16 MiB",
            app(M::POST, &format!("/lists/{list}/import"))
                .header(CONTENT_TYPE, "text/csv")
                .body(vec![b'a'; (16 << 20) + 1]),
        ),
        (
            "campaign: unknown variable",
            app(M::POST, "/campaigns")
                .json(&json!({ "list_id": list, "name": "c", "subject": "s", "markdown": "{{ nope }}" })),
        ),
        (
            "campaign: attachment not base64",
            app(M::POST, "/campaigns").json(&json!({
                "list_id": list, "name": "c", "subject": "s", "markdown": "m",
                "attachments": [{ "filename": "a.pdf", "content_base64": "%%%" }],
            })),
        ),
        (
            "trigger: no idempotency key",
            app(M::POST, &format!("/lists/{list}/trigger")).json(&json!({ "template": "t" })),
        ),
        (
            "trigger: keys that differ",
            app(M::POST, &format!("/lists/{list}/trigger"))
                .header("idempotency-key", "a")
                .json(&json!({ "template": "t", "idempotency_key": "b" })),
        ),
        ("lists: a wrong key", http.get(format!("{base}/app/v1/lists")).bearer_auth(super::grpc::UNKNOWN_KEY)),
    ];
    for (case, request) in calls {
        got.push((format!("lists API: {case}"), json_answer(request.send().await.unwrap()).await));
    }

    let (status, page) = {
        let r = app(M::GET, &format!("/lists/{list}/subscribers")).send().await.unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert!(status.is_success() && page["subscribers"] == json!([]), "a bad request stored a subscriber: {page}");
    let n = got.len();
    corpus.check("mailing lists", &got, LISTS);
    n
}

const LISTS: &[(&str, &str)] = &[
    ("subscribe form: no email", "400: Please correct the form: / This is not a valid e-mail address."),
    ("subscribe form: address without a domain", "400: Please correct the form: / This is not a valid e-mail address."),
    (
        "subscribe form: address with a header after it",
        "400: Please correct the form: / This is not a valid e-mail address.",
    ),
    ("subscribe form: two addresses", "400: Please correct the form: / This is not a valid e-mail address."),
    (
        "subscribe form: name with a line break",
        "400: Please correct the form: / The name must be at most 100 characters, on one line.",
    ),
    (
        "subscribe form: name of 101 characters",
        "400: Please correct the form: / The name must be at most 100 characters, on one line.",
    ),
    ("subscribe form: language de", "400: Please correct the form: / Choose English or French."),
    (
        "subscribe form: attribute of 257 characters",
        "400: Please correct the form: / At most 256 characters, on one line.",
    ),
    ("subscribe form: a 10 MB attribute", "413: The form is too large."),
    ("subscribe form: not a form", "400: Please correct the form: / This is not a valid e-mail address."),
    ("subscribe form: unknown list", "404: This list does not exist."),
    ("list link: confirm: not a token", "403: This link is not valid or has expired."),
    ("list link: confirm: a forged token", "403: This link is not valid or has expired."),
    ("list link: one-click unsubscribe: a forged token", "403: This link is not valid or has expired."),
    ("list link: preferences: a forged token", "403: This link is not valid or has expired."),
    ("list link: unsubscribe: a body over 16 KiB", "413: The form is too large."),
    (
        "lists API: list: unknown field",
        "400: Failed to deserialize the JSON body into the target type: colour: unknown field `colour`, expected one of `name`, `description`, `double_opt_in`, `from_email`, `from_name`, `attributes`, `confirmation`, `templates` at line 1 column 9",
    ),
    ("lists API: list: no name", "400: name: required"),
    (
        "lists API: list: sender outside the tenant",
        "400: from_email: a@evil.example is not a sending domain or address of tenant \"default\"",
    ),
    (
        "lists API: list edit: nothing to change",
        "400: no field to change; name any of name, description, double_opt_in, from_email, from_name, attributes, confirmation, templates",
    ),
    ("lists API: list edit: a null field", "400: name: null; leave the field out to keep it"),
    ("lists API: subscriber: malformed address", "400: email: \"ada@\" is not an email address (empty)"),
    ("lists API: subscriber: unknown attribute", "400: attributes.x: not an attribute of list \"Corpus\" (area)"),
    ("lists API: subscribers: unknown state", "400: state: \"gone\" is not unconfirmed, confirmed or unsubscribed"),
    ("lists API: subscribers: limit 1001", "400: limit: 1001, at most 1000"),
    ("lists API: import: JSON, not CSV", "400: send the CSV itself as the body, with Content-Type: text/csv"),
    ("lists API: import: not UTF-8", "400: csv: line 2 is not UTF-8 (save the file as UTF-8 and try again)"),
    ("lists API: import: no email column", "400: csv: line 1 (the header): there is no `email` column"),
    ("lists API: import: empty", "400: the CSV is empty: it needs at least its header row"),
    ("lists API: import: over 16 MiB", "413: the CSV is larger than 16 MiB, the limit"),
    (
        "lists API: campaign: unknown variable",
        "400: content.markdown: line 1: unknown variable `nope` (known: area, email, language, name, preferences_url, unsubscribe_url)",
    ),
    (
        "lists API: campaign: attachment not base64",
        "400: attachments[0].content_base64: not base64 (Invalid symbol 37, offset 0.)",
    ),
    (
        "lists API: trigger: no idempotency key",
        "400: idempotency_key: required (in the body or the Idempotency-Key header), so that a trigger sent again notifies once",
    ),
    (
        "lists API: trigger: keys that differ",
        "400: idempotency_key: differs from the Idempotency-Key header; send one of them",
    ),
    (
        "lists API: lists: a wrong key",
        "401: the API key is missing, invalid, expired or revoked (Authorization: Bearer KEY)",
    ),
];
