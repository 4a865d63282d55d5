//! Property tests of the edge's parsers: the webmail's address lists, the app APIs'
//! forms and MIME bodies, the SendGrid Mail Send JSON, the HTML sanitizer, and the
//! public list pages' forms, languages, escaping and unsubscribe addresses. Each
//! answers a value or a clear refusal for any input, never panics, and what it accepts
//! holds what it promises (addresses are addresses, sanitized HTML runs no script).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use proptest::prelude::*;
use serde_json::Value;

use crate::app_api::form::Form;
use crate::compose::{address_of, split_addresses};

/// Text with what address and HTML parsers trip on.
fn tricky() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("\"".to_owned()),
            Just("<".to_owned()),
            Just(">".to_owned()),
            Just("@".to_owned()),
            Just(",".to_owned()),
            Just(";".to_owned()),
            Just("\r\n".to_owned()),
            Just("<script>alert(1)</script>".to_owned()),
            Just("<img src=x onerror=alert(1)>".to_owned()),
            Just("<a href=\"javascript:alert(1)\">".to_owned()),
            Just("<svg onload=alert(1)>".to_owned()),
            Just("<iframe src=//evil.example>".to_owned()),
            Just("<style>body{}</style>".to_owned()),
            "[a-zA-Z0-9 .=/_-]{1,8}",
            "\\PC{1,3}",
        ],
        0..14,
    )
    .prop_map(|parts| parts.concat())
}

fn headers(content_type: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().unwrap()
}

proptest! {
    #[test]
    fn every_entry_of_an_address_list_is_an_address_or_refused(raw in tricky()) {
        for entry in split_addresses(&raw) {
            prop_assert!(!entry.is_empty() && entry == entry.trim());
            if let Some(address) = address_of(&entry) {
                let (local, domain) = address.rsplit_once('@').unwrap();
                prop_assert!(!local.is_empty() && !domain.is_empty(), "{address}");
                prop_assert!(!address.chars().any(|c| c.is_control() || c.is_whitespace() || "<>\",;".contains(c)), "{address}");
                prop_assert_eq!(address_of(&address), Some(address.clone()), "an address is its own address");
            }
        }
    }

    #[test]
    fn addresses_joined_by_either_separator_come_back_in_order(
        list in prop::collection::vec(("[a-z]{1,8}", "[a-z]{1,8}\\.[a-z]{2,4}", prop::option::of("[A-Za-z ,;]{1,12}")), 1..6),
        semicolons in any::<bool>(),
    ) {
        let written: Vec<String> = list
            .iter()
            .map(|(l, d, name)| match name {
                Some(n) => format!("\"{n}\" <{l}@{d}>"),
                None => format!("{l}@{d}"),
            })
            .collect();
        let joined = written.join(if semicolons { "; " } else { ", " });
        let back: Vec<Option<String>> = split_addresses(&joined).iter().map(|e| address_of(e)).collect();
        let expected: Vec<Option<String>> = list.iter().map(|(l, d, _)| Some(format!("{l}@{d}"))).collect();
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn sanitized_mail_html_runs_no_script(html in tricky(), images in any::<bool>()) {
        let clean = crate::sanitize::mail_html(&html, images, &HashMap::new()).html.to_ascii_lowercase();
        // Text may say anything (escaped); what counts is inside the tags.
        for tag in clean.split('<').skip(1).map(|t| t.split('>').next().unwrap_or_default()) {
            let name = tag.trim_start_matches('/').split([' ', '/']).next().unwrap_or_default();
            prop_assert!(!["script", "iframe", "svg", "style", "object", "embed"].contains(&name), "{clean}");
            prop_assert!(!tag.contains("javascript:"), "{clean}");
            prop_assert!(!tag.split_whitespace().any(|attr| attr.starts_with("on")), "{clean}");
        }
    }

    #[test]
    fn any_app_form_body_is_read_or_refused(
        content_type in prop_oneof![
            Just("multipart/form-data; boundary=b0und".to_owned()),
            Just("multipart/form-data".to_owned()),
            Just("application/x-www-form-urlencoded".to_owned()),
            "[ -~]{0,40}",
        ],
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..600),
            tricky().prop_map(|t| format!("--b0und\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\n{t}\r\n--b0und--\r\n").into_bytes()),
        ],
    ) {
        let read = runtime().block_on(Form::read(&headers(&content_type), Bytes::from(body)));
        if let Err(refusal) = read {
            prop_assert!(refusal.status.is_client_error(), "{:?}", refusal.status);
            prop_assert!(!refusal.message.is_empty());
        }
    }

    #[test]
    fn any_mime_message_for_the_mailgun_api_is_a_submission_or_refused(raw in prop::collection::vec(any::<u8>(), 0..1500)) {
        let form = Form { fields: vec![("to".into(), "bob@example.net".into())], files: vec![crate::app_api::form::File {
            field: "message".into(), filename: "m.eml".into(), content_type: "message/rfc822".into(), data: raw,
        }] };
        if let Err(refusal) = crate::app_api::mime::base(&form) {
            prop_assert!(refusal.status.is_client_error());
        }
    }

    #[test]
    fn any_json_for_sendgrid_mail_send_is_copies_or_refused(body in json_value()) {
        match crate::app_api::sendgrid::parse(body.to_string().as_bytes(), 1_800_000_000) {
            Ok((_, copies)) => prop_assert!(!copies.is_empty()),
            Err(refusal) => {
                prop_assert!(refusal.status.is_client_error());
                prop_assert!(!refusal.message.is_empty());
            }
        }
    }
}

proptest! {
    #[test]
    fn a_list_form_is_an_entry_or_named_errors_and_an_entry_holds_no_line_break(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            (tricky(), tricky(), tricky(), tricky()).prop_map(|(e, n, l, a)| {
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs([("email", e), ("name", n), ("language", l), ("area", a)])
                    .finish()
                    .into_bytes()
            }),
        ],
        with_email in any::<bool>(),
    ) {
        use crate::lists::form::{Entry, fields, valid_email};
        let attributes = vec!["area".to_owned()];
        let (entry, errors) = Entry::read(&fields(&body), &attributes, with_email, crate::lists::html::Lang::En.words());
        for (field, message) in &errors {
            prop_assert!(["email", "name", "language", "area"].contains(&field.as_str()) && !message.is_empty());
        }
        if errors.is_empty() {
            prop_assert!(!with_email || valid_email(&entry.email), "{}", entry.email);
            prop_assert!(!entry.email.contains(['\r', '\n', '<', '>', ',', '"']), "{}", entry.email);
            for value in [&entry.name, &entry.attributes[0].1] {
                prop_assert!(!value.chars().any(char::is_control), "{value:?}");
            }
            prop_assert!(["", "en", "fr"].contains(&entry.language.as_str()));
        }
    }

    #[test]
    fn escaped_text_opens_no_tag_and_ends_no_attribute(text in tricky()) {
        let escaped = crate::lists::html::escape(&text);
        prop_assert!(!escaped.contains(['<', '>', '"', '\'']), "{escaped}");
        let filled = crate::lists::html::fill("{email} {list}", &[("email", &text), ("list", &text)]);
        prop_assert!(!filled.contains(['<', '>', '"', '\'']), "{filled}");
    }

    #[test]
    fn any_accept_language_or_one_click_body_is_read(header in "[ -~]{0,60}", body in prop::collection::vec(any::<u8>(), 0..300)) {
        let lang = crate::lists::html::choose(None, None, Some(&header));
        prop_assert!(matches!(lang, crate::lists::html::Lang::En | crate::lists::html::Lang::Fr));
        let _ = crate::lists::form::is_one_click(&headers("multipart/form-data; boundary=b"), &body);
        let _ = crate::lists::form::is_one_click(&HeaderMap::new(), &body);
    }

    #[test]
    fn an_unsubscribe_address_gives_a_url_safe_token_or_none(address in tricky(), token in "[A-Za-z0-9._-]{1,120}") {
        if let Some(t) = crate::lists::mail::unsubscribe_token(&address) {
            prop_assert!(crate::lists::pages::plausible_token(t), "{t}");
        }
        let written = format!("List <unsubscribe+{token}@bitmail.test>");
        prop_assert_eq!(crate::lists::mail::unsubscribe_token(&written), Some(token.as_str()));
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        tricky().prop_map(Value::from),
        Just(Value::from("bob@example.net")),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("personalizations".to_owned()),
                    Just("to".to_owned()),
                    Just("email".to_owned()),
                    Just("from".to_owned()),
                    Just("subject".to_owned()),
                    Just("content".to_owned()),
                    Just("type".to_owned()),
                    Just("value".to_owned()),
                    Just("attachments".to_owned()),
                    Just("send_at".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
