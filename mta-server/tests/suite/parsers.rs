//! Property tests of every parser that reads what the outside sends: addresses, whole
//! submissions, inbound MIME and forms (SendGrid, Mailgun), SES notifications, Mailgun
//! event webhooks, and the configuration. Each must answer a value or a clear refusal
//! for any input, never panic; and what it accepts must mean what it says.
//!
//! Fuzzing with cargo-fuzz needs a nightly toolchain, which these machines do not have;
//! proptest runs on stable. `PROPTEST_CASES` raises the number of cases (256 by default).

use aws_lc_rs::hmac;
use bitmail_proto::v1 as pb;
use mta_server::events::mailgun::Verifier;
use mta_server::inbound::{self, Refused};
use mta_server::message::{Limits, parse_mailbox, validate};
use proptest::prelude::*;
use serde_json::{Value, json};

const NOW_MS: u64 = 1_790_000_000_000;
const MAILGUN_KEY: &str = "a-mailgun-signing-key-for-properties";

fn limits() -> Limits {
    Limits { max_message_bytes: 64 * 1024, max_recipients: 50 }
}

/// Text with the characters parsers trip on: quotes, angle brackets, `@`, commas,
/// semicolons, backslashes, CR/LF, NUL, non-ASCII letters.
fn tricky() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("\"".to_owned()),
            Just("<".to_owned()),
            Just(">".to_owned()),
            Just("@".to_owned()),
            Just(",".to_owned()),
            Just(";".to_owned()),
            Just("\\".to_owned()),
            Just("\r\n".to_owned()),
            Just("\0".to_owned()),
            Just(" ".to_owned()),
            "[a-zA-Z0-9.+_-]{1,8}",
            "\\PC{1,3}",
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

fn address() -> impl Strategy<Value = String> {
    ("[a-z0-9_+-]{1,6}(\\.[a-z0-9_+-]{1,4}){0,2}", "[a-z0-9]{1,10}", "[a-z]{2,5}")
        .prop_map(|(l, d, t)| format!("{l}@{d}.{t}"))
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        tricky().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("mail".to_owned()),
                    Just("content".to_owned()),
                    Just("receipt".to_owned()),
                    Just("destination".to_owned()),
                    Just("commonHeaders".to_owned()),
                    Just("notificationType".to_owned()),
                    Just("event-data".to_owned()),
                    Just("user-variables".to_owned()),
                    Just("bitmail_id".to_owned()),
                    Just("event".to_owned()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn multipart(boundary: &str, fields: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

fn form_headers(boundary: &str) -> Vec<(String, String)> {
    vec![("content-type".to_owned(), format!("multipart/form-data; boundary={boundary}"))]
}

fn mailgun_signature(timestamp: &str, token: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, MAILGUN_KEY.as_bytes());
    hmac::sign(&key, format!("{timestamp}{token}").as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

proptest! {
    #[test]
    fn a_mailbox_parses_or_is_refused_naming_its_field(raw in tricky()) {
        match parse_mailbox("to[0]", &raw) {
            Ok(m) => {
                prop_assert!(!m.email.chars().any(char::is_control), "{m:?}");
                prop_assert!(m.email.contains('@'), "{m:?}");
                // What BitMail writes back is the same mailbox.
                let again = parse_mailbox("to[0]", &m.to_string()).expect("its own form parses");
                prop_assert_eq!(again, m);
            }
            Err(e) => prop_assert_eq!(e.field, "to[0]"),
        }
    }

    #[test]
    fn a_named_mailbox_keeps_its_name_and_address(name in "[A-Za-zÀ-ÿ]([A-Za-zÀ-ÿ .'-]{0,18}[A-Za-zÀ-ÿ])?", email in address()) {
        let m = parse_mailbox("from", &format!("\"{name}\" <{email}>")).unwrap();
        prop_assert_eq!(m.email, email);
        // lettre folds runs of spaces in a display name into one, as mail readers show it.
        let folded = name.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
        prop_assert_eq!(m.name, Some(folded));
    }

    #[test]
    fn any_submission_is_a_message_or_names_the_field_at_fault(
        from in prop_oneof![address(), tricky()],
        to in prop::collection::vec(prop_oneof![address(), tricky()], 0..4),
        subject in tricky(),
        text in prop::option::of(tricky()),
        header in (tricky(), tricky()),
        tags in prop::collection::vec(tricky(), 0..5),
    ) {
        let request = pb::SubmitRequest {
            from, to: to.clone(), subject, text: text.unwrap_or_default(),
            headers: vec![pb::Header { name: header.0, value: header.1 }],
            tags, ..Default::default()
        };
        match validate(request, "m-1".into(), limits()) {
            Ok(message) => {
                prop_assert_eq!(message.to.len(), to.len());
                prop_assert!(!message.subject.contains(['\r', '\n']));
                for (name, value) in &message.headers {
                    prop_assert!(!name.contains(':') && !value.contains(['\r', '\n']), "{name}: {value}");
                }
            }
            Err(e) => {
                let known = ["from", "to", "cc", "bcc", "subject", "text", "html", "headers", "tags", "metadata", "reply_to", "attachments", "size"];
                prop_assert!(known.iter().any(|f| e.field.starts_with(f)), "{e}");
                prop_assert!(!e.reason.is_empty());
            }
        }
    }

    #[test]
    fn any_bytes_as_inbound_mime_are_mail_or_a_refusal(raw in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Err(e) = inbound::mime::parse_mime(&raw, NOW_MS) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn generated_mime_keeps_its_subject_sender_and_text(
        subject in "[A-Za-z0-9 éàü?!.,]{1,60}",
        from in address(),
        text in "[A-Za-z0-9 éàü.,\n]{1,200}",
    ) {
        let raw = format!(
            "From: {from}\r\nTo: ada@bitmail.test\r\nSubject: =?utf-8?b?{}?=\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n{}",
            base64_encode(subject.as_bytes()), text.replace('\n', "\r\n"),
        );
        let mail = inbound::mime::parse_mime(raw.as_bytes(), NOW_MS).unwrap();
        prop_assert_eq!(mail.subject.trim(), subject.trim());
        prop_assert!(mail.from.contains(&from), "{}", mail.from);
        prop_assert_eq!(mail.text.trim_end().replace("\r\n", "\n"), text.trim_end());
    }

    #[test]
    fn any_sendgrid_inbound_form_is_mail_or_a_refusal(
        fields in prop::collection::vec((prop_oneof![Just("email".to_owned()), Just("envelope".to_owned()), Just("from".to_owned()), Just("to".to_owned()), Just("subject".to_owned()), Just("attachments".to_owned()), Just("attachment-info".to_owned()), Just("attachment1".to_owned()), "[a-z]{1,6}"], prop::collection::vec(any::<u8>(), 0..200)), 0..6),
        raw_body in prop::collection::vec(any::<u8>(), 0..400),
        structured in any::<bool>(),
    ) {
        let boundary = "xYzZY";
        let body = if structured { multipart(boundary, &fields) } else { raw_body };
        match inbound::sendgrid::parse(&form_headers(boundary), &body, NOW_MS) {
            Ok(mail) => prop_assert!(!mail.dedupe_key.is_empty()),
            Err(Refused::Malformed(m) | Refused::Unauthorized(m)) => prop_assert!(!m.is_empty()),
            Err(other) => prop_assert!(!other.to_string().is_empty()),
        }
    }

    #[test]
    fn a_mailgun_forward_is_checked_before_it_is_read(
        fields in prop::collection::vec(("[a-z-]{1,12}", prop::collection::vec(any::<u8>(), 0..120)), 0..6),
        signed in any::<bool>(),
    ) {
        let (timestamp, token) = ((NOW_MS / 1000).to_string(), "t0k3n-properties".to_owned());
        let mut all: Vec<(String, Vec<u8>)> = fields;
        let signature = if signed { mailgun_signature(&timestamp, &token) } else { "00".repeat(32) };
        all.push(("timestamp".into(), timestamp.into_bytes()));
        all.push(("token".into(), token.into_bytes()));
        all.push(("signature".into(), signature.into_bytes()));
        let key = mta_server::webhook::MailgunSigningKey::new(MAILGUN_KEY);
        let result = inbound::mailgun::parse(&key, &form_headers("b0und"), &multipart("b0und", &all), NOW_MS);
        if !signed {
            prop_assert!(matches!(result, Err(Refused::Unauthorized(_))), "{result:?}");
        }
    }

    #[test]
    fn any_ses_notification_is_mail_or_a_refusal(message in any_json()) {
        if let Err(e) = inbound::ses::parse(&message, NOW_MS) {
            prop_assert!(matches!(e, Refused::Malformed(_)), "{e:?}");
        }
    }

    #[test]
    fn any_signed_mailgun_event_is_a_batch_or_a_refusal(data in any_json(), token in "[a-z0-9]{8,20}") {
        let timestamp = (NOW_MS / 1000).to_string();
        let body = json!({
            "signature": {"timestamp": timestamp, "token": token, "signature": mailgun_signature(&timestamp, &token)},
            "event-data": data,
        });
        let verifier = Verifier::new(MAILGUN_KEY);
        match verifier.receive("mailgun", body.to_string().as_bytes(), NOW_MS) {
            Ok(batch) => prop_assert!(batch.events.len() <= 1),
            Err(e) => prop_assert!(matches!(e, Refused::Malformed(_)), "{e:?}"),
        }
    }

    #[test]
    fn any_configuration_text_loads_or_says_why(text in prop_oneof![
        tricky(),
        "\\[(spool|delivery|retry|smtp|tenants|outbox)\\]\n[a-z_]{1,12} = (\"[a-z]{0,5}\"|-?[0-9]{1,12}|true|\\[\\])\n",
    ]) {
        if let Err(e) = bitmail_runtime::config::parse::<mta_server::config::Config>(&text, "mta.toml") {
            prop_assert!(e.to_string().contains("mta.toml"), "{e}");
        }
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
