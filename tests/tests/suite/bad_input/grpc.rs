//! gRPC: `Mta.Submit` with each field wrong in turn, and `Admin` with bad tenants and keys.

use bitmail_proto::v1 as pb;

use super::Corpus;
use crate::common::submission;

fn answer<T>(r: Result<tonic::Response<T>, tonic::Status>) -> String {
    match r {
        Ok(_) => "OK".into(),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    }
}

fn header(name: &str, value: &str) -> pb::Header {
    pb::Header { name: name.into(), value: value.into() }
}

fn attachment(filename: &str, content_type: &str, content: &[u8]) -> pb::Attachment {
    pb::Attachment {
        filename: filename.into(),
        content_type: content_type.into(),
        content: content.to_vec(),
        ..Default::default()
    }
}

/// Shaped like a key (`bmk_`, 12 of base32, `_`, 32 bytes in base64url), but nobody's.
pub(super) const UNKNOWN_KEY: &str = "bmk_aaaaaaaaaaaa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

pub(super) async fn submit(corpus: &Corpus) -> usize {
    let base = || pb::SubmitRequest { validate_only: false, ..submission("bob@example.org") };
    let with = |f: &dyn Fn(&mut pb::SubmitRequest)| {
        let mut r = base();
        f(&mut r);
        r
    };
    let long = "x".repeat(130);
    let cases: Vec<(&str, pb::SubmitRequest)> = vec![
        ("from empty", with(&|r| r.from = String::new())),
        ("from not an address", with(&|r| r.from = "ada".into())),
        ("from with CRLF", with(&|r| r.from = "ada@bitmail.test\r\nBcc: x@y.z".into())),
        ("from outside the tenant", with(&|r| r.from = "ada@elsewhere.example".into())),
        ("from a look-alike domain", with(&|r| r.from = "ada@bitmail.test.evil.example".into())),
        ("from a subdomain", with(&|r| r.from = "ada@mail.bitmail.test".into())),
        ("from two addresses", with(&|r| r.from = "ada@bitmail.test, eve@bitmail.test".into())),
        ("from with NUL", with(&|r| r.from = "ada\0@bitmail.test".into())),
        ("no recipient", with(&|r| r.to.clear())),
        ("to empty string", with(&|r| r.to = vec![String::new()])),
        ("to not an address", with(&|r| r.to = vec!["bob".into()])),
        ("to with CRLF", with(&|r| r.to = vec!["bob@example.org\r\nX: y".into()])),
        ("second to bad", with(&|r| r.to = vec!["bob@example.org".into(), "@example.org".into()])),
        ("cc bad", with(&|r| r.cc = vec!["carol@".into()])),
        ("bcc bad", with(&|r| r.bcc = vec!["dave at example.org".into()])),
        ("reply_to bad", with(&|r| r.reply_to = vec!["<>".into()])),
        ("too many recipients", with(&|r| r.to = (0..1001).map(|i| format!("r{i}@example.org")).collect())),
        ("subject with CR", with(&|r| r.subject = "Hi\rthere".into())),
        ("subject with LF", with(&|r| r.subject = "Hi\nBcc: x@y.z".into())),
        ("subject with NUL", with(&|r| r.subject = "Hi\0".into())),
        (
            "no body",
            with(&|r| {
                r.text.clear();
                r.html.clear();
            }),
        ),
        ("header without name", with(&|r| r.headers = vec![header("", "v")])),
        ("header name with colon", with(&|r| r.headers = vec![header("X-A:b", "v")])),
        ("header name with space", with(&|r| r.headers = vec![header("X A", "v")])),
        ("header value with CRLF", with(&|r| r.headers = vec![header("X-A", "v\r\nBcc: x@y.z")])),
        ("header From overridden", with(&|r| r.headers = vec![header("From", "eve@evil.example")])),
        ("header Message-ID overridden", with(&|r| r.headers = vec![header("Message-ID", "<x@y>")])),
        ("header Bcc overridden", with(&|r| r.headers = vec![header("bcc", "x@y.z")])),
        ("four tags", with(&|r| r.tags = vec!["a".into(), "b".into(), "c".into(), "d".into()])),
        ("empty tag", with(&|r| r.tags = vec![String::new()])),
        ("tag too long", with(&|r| r.tags = vec![long.clone()])),
        ("eleven metadata pairs", with(&|r| r.metadata = (0..11).map(|i| (format!("k{i}"), "v".into())).collect())),
        ("metadata empty key", with(&|r| r.metadata = [(String::new(), "v".to_owned())].into())),
        ("metadata key too long", with(&|r| r.metadata = [(long.clone(), "v".to_owned())].into())),
        ("metadata value with CRLF", with(&|r| r.metadata = [("k".to_owned(), "a\r\nb".to_owned())].into())),
        ("idempotency key too long", with(&|r| r.idempotency_key = "k".repeat(300))),
        ("attachment without filename", with(&|r| r.attachments = vec![attachment("", "text/plain", b"x")])),
        (
            "attachment filename with CRLF",
            with(&|r| r.attachments = vec![attachment("a\r\nb.txt", "text/plain", b"x")]),
        ),
        ("attachment bad content type", with(&|r| r.attachments = vec![attachment("a.txt", "not a type", b"x")])),
        (
            "attachment content type with CRLF",
            with(&|r| r.attachments = vec![attachment("a.txt", "text/plain\r\nX: y", b"x")]),
        ),
        ("message over the size limit", with(&|r| r.text = "x".repeat(41 * 1024 * 1024))),
        ("another tenant named", with(&|r| r.tenant = "someone-else".into())),
        ("not_before far in the future", with(&|r| r.not_before_unix_ms = i64::MAX)),
        ("not_before negative", with(&|r| r.not_before_unix_ms = -5)),
    ];
    let mut mta = corpus.cluster.mta_client_with(Some(&corpus.key)).await;
    let mut got = Vec::new();
    for (case, request) in cases {
        got.push((case.to_owned(), answer(mta.submit(request).await)));
    }
    // The key itself.
    for (case, key) in [("no key", None), ("malformed key", Some("bmk_nope")), ("unknown key", Some(UNKNOWN_KEY))] {
        let mut mta = corpus.cluster.mta_client_with(key).await;
        got.push((case.to_owned(), answer(mta.submit(base()).await)));
    }
    let n = got.len();
    corpus.check("Mta.Submit", &got, SUBMIT);
    n
}

/// Quotas within every bound, for cases that change one of them.
fn good_quotas() -> pb::Quotas {
    pb::Quotas { per_day: 1000, per_second: 10.0, burst: 20, max_recipients: 50, max_message_bytes: 10 << 20 }
}

pub(super) async fn admin(corpus: &Corpus) -> usize {
    let tenant = |id: &str, domains: &[&str]| pb::Tenant {
        id: id.into(),
        display_name: "T".into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        ..Default::default()
    };
    let with_quotas = |q: pb::Quotas| pb::Tenant { quotas: Some(q), ..tenant("quota-test", &["q.example"]) };
    let tenants: Vec<(&str, pb::Tenant)> = vec![
        ("tenant id empty", tenant("", &["a.example"])),
        ("tenant id upper case", tenant("Acme", &["a.example"])),
        ("tenant id with space", tenant("ac me", &["a.example"])),
        ("tenant id leading dash", tenant("-acme", &["a.example"])),
        ("tenant id too long", tenant(&"a".repeat(64), &["a.example"])),
        ("tenant id with control", tenant("ac\u{7}me", &["a.example"])),
        ("tenant id taken", tenant("default", &["a.example"])),
        ("display name too long", pb::Tenant { display_name: "n".repeat(300), ..tenant("acme", &["a.example"]) }),
        ("display name with newline", pb::Tenant { display_name: "a\nb".into(), ..tenant("acme", &["a.example"]) }),
        ("domain not a domain", tenant("acme", &["not a domain"])),
        ("domain with @", tenant("acme", &["ada@a.example"])),
        ("domain empty", tenant("acme", &[""])),
        ("domain with a leading dot", tenant("acme", &[".a.example"])),
        ("domain label too long", tenant("acme", &[&format!("{}.example", "a".repeat(64))])),
        ("address not an address", pb::Tenant { addresses: vec!["nobody".into()], ..tenant("acme", &["a.example"]) }),
        ("state unknown", pb::Tenant { state: "paused".into(), ..tenant("acme", &["a.example"]) }),
        ("per_second negative", with_quotas(pb::Quotas { per_second: -1.0, ..good_quotas() })),
        ("per_second absurd", with_quotas(pb::Quotas { per_second: 1e12, ..good_quotas() })),
        ("per_second not a number", with_quotas(pb::Quotas { per_second: f64::NAN, ..good_quotas() })),
        ("per_day absurd", with_quotas(pb::Quotas { per_day: u64::MAX, ..good_quotas() })),
        ("max_recipients absurd", with_quotas(pb::Quotas { max_recipients: u32::MAX, ..good_quotas() })),
        ("max_message_bytes absurd", with_quotas(pb::Quotas { max_message_bytes: u64::MAX, ..good_quotas() })),
    ];
    let mut admin = corpus.admin();
    let mut got = Vec::new();
    for (case, t) in tenants {
        got.push((case.to_owned(), answer(admin.create_tenant(t).await)));
    }
    let key = |tenant: &str, name: &str, scopes: &[&str], expires: i64| pb::CreateKeyRequest {
        tenant: tenant.into(),
        name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        expires_at_unix_ms: expires,
    };
    let keys = vec![
        ("key for an unknown tenant", key("nobody", "k", &["send"], 0)),
        ("key without scopes", key("default", "k", &[], 0)),
        ("key with an unknown scope", key("default", "k", &["root"], 0)),
        ("key name empty", key("default", "", &["send"], 0)),
        ("key name too long", key("default", &"k".repeat(200), &["send"], 0)),
        ("key name with control", key("default", "k\u{1b}[31m", &["send"], 0)),
        ("key already expired", key("default", "k", &["send"], 1000)),
    ];
    for (case, k) in keys {
        got.push((case.to_owned(), answer(admin.create_key(k).await)));
    }
    let revoke = pb::RevokeKeyRequest { id: "no-such-key".into() };
    got.push(("revoke an unknown key".into(), answer(admin.revoke_key(revoke).await)));
    let update = pb::UpdateTenantRequest { id: "nobody".into(), display_name: Some("N".into()), ..Default::default() };
    got.push(("update an unknown tenant".into(), answer(admin.update_tenant(update).await)));
    let mut sender = corpus.cluster.mta_client_with(Some(&corpus.key)).await;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", corpus.cluster.mta)).unwrap().connect_lazy();
    let mut as_sender = bitmail_proto::v1::admin_client::AdminClient::with_interceptor(
        channel,
        bitmail_runtime::grpc::Bearer::new(Some(&corpus.key)).unwrap(),
    );
    got.push((
        "a send key creates a tenant".into(),
        answer(as_sender.create_tenant(tenant("acme", &["a.example"])).await),
    ));
    got.push((
        "a send key pauses a provider".into(),
        answer(sender.pause_provider(pb::ProviderRequest { name: "sendgrid".into() }).await),
    ));
    let n = got.len();
    corpus.check("Admin", &got, ADMIN);
    n
}

const SUBMIT: &[(&str, &str)] = &[
    ("from empty", "InvalidArgument: from: must not be empty"),
    ("from not an address", "InvalidArgument: from: `ada` is not a valid address (Invalid input)"),
    ("from with CRLF", "InvalidArgument: from: must not contain control characters (CR, LF, ...)"),
    (
        "from outside the tenant",
        "PermissionDenied: from: ada@elsewhere.example is not a sending domain or address of tenant \"default\"",
    ),
    (
        "from a look-alike domain",
        "PermissionDenied: from: ada@bitmail.test.evil.example is not a sending domain or address of tenant \"default\"",
    ),
    (
        "from a subdomain",
        "PermissionDenied: from: ada@mail.bitmail.test is not a sending domain or address of tenant \"default\"",
    ),
    (
        "from two addresses",
        "InvalidArgument: from: `ada@bitmail.test, eve@bitmail.test` is not a valid address (Invalid input)",
    ),
    ("from with NUL", "InvalidArgument: from: must not contain control characters (CR, LF, ...)"),
    ("no recipient", "InvalidArgument: to: at least one recipient (to, cc or bcc) is required"),
    ("to empty string", "InvalidArgument: to[0]: must not be empty"),
    ("to not an address", "InvalidArgument: to[0]: `bob` is not a valid address (Invalid input)"),
    ("to with CRLF", "InvalidArgument: to[0]: must not contain control characters (CR, LF, ...)"),
    ("second to bad", "InvalidArgument: to[1]: `@example.org` is not a valid address (Invalid input)"),
    ("cc bad", "InvalidArgument: cc[0]: `carol@` is not a valid address (Invalid input)"),
    ("bcc bad", "InvalidArgument: bcc[0]: `dave at example.org` is not a valid address (Invalid input)"),
    ("reply_to bad", "InvalidArgument: reply_to[0]: `<>` is not a valid address (Invalid input)"),
    ("too many recipients", "InvalidArgument: to: 1001 recipients in to, cc and bcc; at most 1000 are allowed"),
    ("subject with CR", "InvalidArgument: subject: must not contain CR or LF"),
    ("subject with LF", "InvalidArgument: subject: must not contain CR or LF"),
    ("subject with NUL", "InvalidArgument: subject: must not contain control characters"),
    ("no body", "InvalidArgument: text: a text or an html body is required"),
    ("header without name", "InvalidArgument: headers[0].name: `` is not a valid header name"),
    ("header name with colon", "InvalidArgument: headers[0].name: `X-A:b` is not a valid header name"),
    ("header name with space", "InvalidArgument: headers[0].name: `X A` is not a valid header name"),
    ("header value with CRLF", "InvalidArgument: headers[0].value: must not contain CR or LF"),
    (
        "header From overridden",
        "InvalidArgument: headers[0].name: `From` is set by BitMail from the message's own fields and cannot be a custom header",
    ),
    (
        "header Message-ID overridden",
        "InvalidArgument: headers[0].name: `Message-ID` is set by BitMail from the message's own fields and cannot be a custom header",
    ),
    (
        "header Bcc overridden",
        "InvalidArgument: headers[0].name: `bcc` is set by BitMail from the message's own fields and cannot be a custom header",
    ),
    ("four tags", "InvalidArgument: tags: 4 tags; at most 3 are allowed"),
    ("empty tag", "InvalidArgument: tags[0]: 1 to 128 of ASCII letters, digits, `_` and `-`"),
    ("tag too long", "InvalidArgument: tags[0]: 1 to 128 of ASCII letters, digits, `_` and `-`"),
    ("eleven metadata pairs", "InvalidArgument: metadata: 11 pairs; at most 10 are allowed"),
    ("metadata empty key", "InvalidArgument: metadata[\"\"]: keys are 1 to 64 of ASCII letters, digits, `_` and `-`"),
    (
        "metadata key too long",
        "InvalidArgument: metadata[\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"]: keys are 1 to 64 of ASCII letters, digits, `_` and `-`",
    ),
    ("metadata value with CRLF", "InvalidArgument: metadata[\"k\"]: values are at most 256 printable ASCII characters"),
    ("idempotency key too long", "InvalidArgument: idempotency_key: at most 200 printable ASCII characters"),
    ("attachment without filename", "InvalidArgument: attachments[0].filename: 1 to 255 bytes are required"),
    (
        "attachment filename with CRLF",
        "InvalidArgument: attachments[0].filename: must not contain control characters, `/` or `\\`",
    ),
    (
        "attachment bad content type",
        "InvalidArgument: attachments[0].content_type: `not a type` is not a MIME type such as application/pdf",
    ),
    (
        "attachment content type with CRLF",
        "InvalidArgument: attachments[0].content_type: `text/plain\\r\\nX: y` is not a MIME type such as application/pdf",
    ),
    (
        "message over the size limit",
        "InvalidArgument: text: the message is 42991621 bytes; the limit is 10485760 bytes",
    ),
    ("another tenant named", "PermissionDenied: key bmk_KEY does not grant `service`"),
    ("not_before far in the future", "InvalidArgument: not_before_unix_ms: at most 7 days ahead"),
    ("not_before negative", "InvalidArgument: not_before_unix_ms: must not be negative (0 sends now)"),
    ("no key", "Unauthenticated: an API key is required: `authorization: Bearer bmk_...`"),
    ("malformed key", "Unauthenticated: not an API key: it is not 60 characters long"),
    ("unknown key", "Unauthenticated: unknown API key"),
];
const ADMIN: &[(&str, &str)] = &[
    (
        "tenant id empty",
        "InvalidArgument: id: \"\" is not a slug (1 to 63 of a-z, 0-9 and '-', not starting or ending with '-')",
    ),
    (
        "tenant id upper case",
        "InvalidArgument: id: \"Acme\" is not a slug (1 to 63 of a-z, 0-9 and '-', not starting or ending with '-')",
    ),
    (
        "tenant id with space",
        "InvalidArgument: id: \"ac me\" is not a slug (1 to 63 of a-z, 0-9 and '-', not starting or ending with '-')",
    ),
    (
        "tenant id leading dash",
        "InvalidArgument: id: \"-acme\" is not a slug (1 to 63 of a-z, 0-9 and '-', not starting or ending with '-')",
    ),
    (
        "tenant id too long",
        "InvalidArgument: id: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" is not a slug (1 to 63 of a-z, 0-9 and '-', not starting or ending with '-')",
    ),
    (
        "tenant id with control",
        "InvalidArgument: id: \"ac\\u{7}me\" is not a slug (1 to 63 of a-z, 0-9 and '-', not starting or ending with '-')",
    ),
    ("tenant id taken", "AlreadyExists: tenant \"default\" exists already"),
    ("display name too long", "InvalidArgument: display_name: 300 characters, at most 100"),
    ("display name with newline", "InvalidArgument: display_name: holds the control character U+000A"),
    (
        "domain not a domain",
        "InvalidArgument: domains[0]: \"not a domain\" is not a domain name (holds a space or a control character)",
    ),
    (
        "domain with @",
        "InvalidArgument: domains[0]: \"ada@a.example\" is not a domain name (not a valid (internationalized) domain name)",
    ),
    ("domain empty", "InvalidArgument: domains[0]: \"\" is not a domain name (empty)"),
    (
        "domain with a leading dot",
        "InvalidArgument: domains[0]: \".a.example\" is not a domain name (not a valid (internationalized) domain name)",
    ),
    (
        "domain label too long",
        "InvalidArgument: domains[0]: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example\" is not a domain name (not a valid (internationalized) domain name)",
    ),
    ("address not an address", "InvalidArgument: addresses[0]: \"nobody\" is not an email address (has no '@')"),
    ("state unknown", "InvalidArgument: state: \"paused\" is not active or suspended"),
    ("per_second negative", "InvalidArgument: quotas.per_second: -1 must be more than 0 and at most 100000"),
    ("per_second absurd", "InvalidArgument: quotas.per_second: 1000000000000 must be more than 0 and at most 100000"),
    ("per_second not a number", "InvalidArgument: quotas.per_second: NaN is not a finite number"),
    ("per_day absurd", "InvalidArgument: quotas.per_day: 18446744073709551615 is outside 1..=1000000000"),
    ("max_recipients absurd", "InvalidArgument: quotas.max_recipients: 4294967295 is outside 1..=10000"),
    (
        "max_message_bytes absurd",
        "InvalidArgument: quotas.max_message_bytes: 18446744073709551615 is outside 1..=104857600",
    ),
    ("key for an unknown tenant", "NotFound: no tenant \"nobody\""),
    ("key without scopes", "InvalidArgument: scopes: required"),
    ("key with an unknown scope", "InvalidArgument: scopes[0]: unknown scope \"root\" (send, read, admin, service)"),
    ("key name empty", "InvalidArgument: name: required"),
    ("key name too long", "InvalidArgument: name: 200 characters, at most 100"),
    ("key name with control", "InvalidArgument: name: holds the control character U+001B"),
    ("key already expired", "InvalidArgument: expires_at_unix_ms: must be in the future (0: never)"),
    ("revoke an unknown key", "NotFound: no key bmk_no-such-key"),
    ("update an unknown tenant", "NotFound: no tenant \"nobody\""),
    ("a send key creates a tenant", "PermissionDenied: key bmk_KEY does not grant `admin`"),
    ("a send key pauses a provider", "PermissionDenied: key bmk_KEY does not grant `admin`"),
];
