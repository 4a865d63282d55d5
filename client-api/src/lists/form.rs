//! The public pages' forms: the body read within a small budget, the fields of a
//! subscription or of preferences, checked here so that the visitor sees every mistake
//! at once in the page's language (mta-server checks them again, and stores nothing of
//! a bad one either).

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};

use super::html::{Lang, Words};

/// The largest form body the pages take: a subscription is a few short fields.
pub(crate) const MAX_FORM_BYTES: usize = 16 * 1024;
/// As mta-server: a name of at most 100 characters, an attribute value of 256.
const MAX_NAME_CHARS: usize = 100;
const MAX_ATTRIBUTE_CHARS: usize = 256;

/// Why a form body was not read (over the budget, or cut short).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    TooLarge,
}

/// The body, at most [`MAX_FORM_BYTES`]: refused before reading when `Content-Length`
/// says more, else as soon as the budget is passed.
pub(crate) async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, BodyError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_FORM_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    // A body that ends early is not the visitor's to see: its connection is gone.
    axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| BodyError::TooLarge)
}

/// The fields of an `application/x-www-form-urlencoded` body; a field given twice keeps
/// its first value (a form has each once).
pub(crate) fn fields(body: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    for (name, value) in form_urlencoded::parse(body) {
        fields.entry(name.into_owned()).or_insert_with(|| value.into_owned());
    }
    fields
}

/// A subscription (or preferences) as the form gave it, checked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) email: String,
    pub(crate) name: String,
    /// Empty: the page's language.
    pub(crate) language: String,
    /// The list's attributes, in its order; empty values included.
    pub(crate) attributes: Vec<(String, String)>,
}

/// A field at fault and what to say about it, in the page's words.
pub(crate) type FieldErrors = Vec<(String, &'static str)>;

impl Entry {
    /// The form's fields for a list with these attribute names. `with_email`: the
    /// subscribe form (the preferences form has no address field). Other fields are
    /// ignored (a tenant's page may add a button's name); `errors` names every bad field.
    pub(crate) fn read(
        fields: &HashMap<String, String>,
        attributes: &[String],
        with_email: bool,
        words: &'static Words,
    ) -> (Entry, FieldErrors) {
        let get = |name: &str| fields.get(name).map(|v| v.trim().to_owned()).unwrap_or_default();
        let mut errors = FieldErrors::new();
        // The preferences form has no address: a field sent anyway is not taken.
        let email = if with_email { get("email") } else { String::new() };
        if with_email && !valid_email(&email) {
            errors.push(("email".into(), words.bad_email));
        }
        let name = get("name");
        if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            errors.push(("name".into(), words.bad_name));
        }
        let language = get("language");
        if !language.is_empty() && !matches!(language.as_str(), "en" | "fr") {
            errors.push(("language".into(), words.bad_language));
        }
        let mut values = Vec::with_capacity(attributes.len());
        for attribute in attributes {
            let value = get(attribute);
            if value.chars().count() > MAX_ATTRIBUTE_CHARS || value.chars().any(char::is_control) {
                errors.push((attribute.clone(), words.bad_attribute));
            }
            values.push((attribute.clone(), value));
        }
        (Entry { email: email.to_ascii_lowercase(), name, language, attributes: values }, errors)
    }

    /// The language to store: the form's, else the page's.
    pub(crate) fn language_or(&self, page: Lang) -> String {
        if self.language.is_empty() { page.code().to_owned() } else { self.language.clone() }
    }

    /// The attributes with a value (what a new subscription carries).
    pub(crate) fn given_attributes(&self) -> HashMap<String, String> {
        self.attributes.iter().filter(|(_, v)| !v.is_empty()).cloned().collect()
    }

    pub(crate) fn all_attributes(&self) -> HashMap<String, String> {
        self.attributes.iter().cloned().collect()
    }
}

/// An address the way a form should hold one: `local@domain`, one `@`, a domain with a
/// dot and only letters, digits, `-` and `.`, nothing that could end a header or quote.
/// mta-server has the last word; this catches typing mistakes with a clear message.
pub(crate) fn valid_email(address: &str) -> bool {
    if address.len() > 254 {
        return false;
    }
    let Some((local, domain)) = address.split_once('@') else { return false };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) || !c.is_ascii());
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

/// Whether an RFC 8058 one-click body says `List-Unsubscribe=One-Click`, urlencoded or
/// as a field of `multipart/form-data` (both are allowed to senders of the POST).
pub(crate) fn is_one_click(headers: &HeaderMap, body: &[u8]) -> bool {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        let Ok(text) = std::str::from_utf8(body) else { return false };
        // Each part: headers naming the field, a blank line, the value up to the boundary.
        return text.split("\r\n--").any(|part| {
            let Some((head, value)) = part.split_once("\r\n\r\n") else { return false };
            let named = head.to_ascii_lowercase().contains("name=\"list-unsubscribe\"");
            named && value.trim_end_matches(['\r', '\n']).trim() == "One-Click"
        });
    }
    fields(body).get("List-Unsubscribe").is_some_and(|v| v.trim() == "One-Click")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::html::Lang;

    fn form(body: &str) -> HashMap<String, String> {
        fields(body.as_bytes())
    }

    #[test]
    fn a_good_subscription_is_read_and_lowercased() {
        let attributes = vec!["area".to_owned(), "role".to_owned()];
        let f = form("email=Ada%40Example.ORG&name=Ada+Lovelace&language=fr&area=Colombo+7&submit=Go");
        let (entry, errors) = Entry::read(&f, &attributes, true, Lang::En.words());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(entry.email, "ada@example.org");
        assert_eq!(entry.name, "Ada Lovelace");
        assert_eq!(entry.language_or(Lang::En), "fr");
        assert_eq!(entry.given_attributes(), HashMap::from([("area".to_owned(), "Colombo 7".to_owned())]));
        assert_eq!(entry.all_attributes().get("role").map(String::as_str), Some(""));
        assert!(!entry.given_attributes().contains_key("submit"), "fields not of the list are ignored");
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        let attributes = vec!["area".to_owned()];
        let long = "x".repeat(257);
        let body = format!("email=not-an-address&name=Eve%0D%0ABcc%3A+all%40x.test&language=de&area={long}");
        let (_, errors) = Entry::read(&form(&body), &attributes, true, Lang::Fr.words());
        let named: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(named, ["email", "name", "language", "area"]);
        assert_eq!(errors[0].1, Lang::Fr.words().bad_email);
        // The preferences form has no address: none is asked for.
        let (_, errors) = Entry::read(&form("name=Ada"), &attributes, false, Lang::En.words());
        assert!(errors.is_empty());
        let (_, errors) = Entry::read(&form("name=Ada"), &attributes, true, Lang::En.words());
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn addresses() {
        for good in ["a@b.co", "ada.lovelace+news@example.org", "x@sub.domain.example", "é@exemple.fr"] {
            assert!(valid_email(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "a@b",
            "@b.co",
            "a@.co",
            "a@b..co",
            "a b@c.co",
            "a@b.co\r\nBcc: x@y.z",
            "a@@b.co",
            "<a@b.co>",
            "a@b.co,c@d.co",
            ".a@b.co",
            "a..b@c.co",
            "a@-b.co",
            "a\"@b.co",
        ] {
            assert!(!valid_email(bad), "{bad:?}");
        }
        assert!(!valid_email(&format!("{}@b.co", "a".repeat(65))));
    }

    #[test]
    fn one_click_bodies_urlencoded_and_multipart() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/x-www-form-urlencoded".parse().unwrap());
        assert!(is_one_click(&headers, b"List-Unsubscribe=One-Click"));
        assert!(!is_one_click(&headers, b"via=page"));
        assert!(!is_one_click(&headers, b"List-Unsubscribe=Maybe"));
        headers.insert(header::CONTENT_TYPE, "multipart/form-data; boundary=XyZ".parse().unwrap());
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n";
        assert!(is_one_click(&headers, body.as_bytes()));
        let other = "--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nOne-Click\r\n--XyZ--\r\n";
        assert!(!is_one_click(&headers, other.as_bytes()));
    }

    #[tokio::test]
    async fn bodies_over_the_budget_are_refused() {
        let small = Body::from("email=a%40b.co");
        assert_eq!(read_body(&HeaderMap::new(), small).await.unwrap(), Bytes::from("email=a%40b.co"));
        let big = Body::from(vec![b'a'; MAX_FORM_BYTES + 1]);
        assert_eq!(read_body(&HeaderMap::new(), big).await, Err(BodyError::TooLarge));
        let mut declared = HeaderMap::new();
        declared.insert(header::CONTENT_LENGTH, "10485760".parse().unwrap());
        assert_eq!(read_body(&declared, Body::empty()).await, Err(BodyError::TooLarge));
    }
}
