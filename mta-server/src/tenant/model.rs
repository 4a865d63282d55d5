//! The tenant: who it is, what it may send from, how much, and whether it may now.

use std::fmt;

use backend_server::store::Fields;
use serde::{Deserialize, Serialize};

use super::domain;

/// A caller's organisation. Stored as one document (see the module doc of [`super`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    /// A slug: 1..=63 of `[a-z0-9-]`, not starting or ending with `-`. Never changes.
    pub id: String,
    /// 1..=100 characters, no control characters.
    pub display_name: String,
    /// Sending domains, normalized (lowercase ASCII, punycode); a `From` must be in one
    /// of them exactly (see [`Tenant::may_send_from`]).
    pub domains: Vec<String>,
    /// Exact `From` addresses allowed besides the domains, normalized
    /// (see [`domain::normalize_address`]).
    pub addresses: Vec<String>,
    pub quotas: Quotas,
    pub state: TenantState,
    pub created_ms: u64,
    pub updated_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    Active,
    /// Every key of the tenant is refused ([`super::AuthError::Suspended`]); nothing is
    /// deleted, and resuming restores it as it was.
    Suspended,
}

/// What a tenant may send. Rates are per node; `per_day` holds across nodes (see
/// [`super::quota`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quotas {
    /// Messages accepted per UTC day, across all nodes.
    pub per_day: u64,
    /// Sustained messages per second (token bucket refill), per node.
    pub per_second: f64,
    /// Messages that may be sent at once after a quiet spell (token bucket size), per node.
    pub burst: u32,
    pub max_recipients: u32,
    pub max_message_bytes: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self { per_day: 100_000, per_second: 50.0, burst: 100, max_recipients: 100, max_message_bytes: 40 << 20 }
    }
}

pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
pub const MAX_SLUG_CHARS: usize = 63;
/// Bounds on the lists, so a tenant document stays small.
pub const MAX_DOMAINS: usize = 1000;
pub const MAX_ADDRESSES: usize = 1000;

/// Everything wrong with a tenant or key as given, each naming its field; nothing was
/// stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Invalid(pub Vec<FieldError>);

/// One field's problem, e.g. `domains[1]: "exa mple.org" is not a domain name (holds a
/// space or a control character)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("required")]
    Empty,
    #[error("{len} characters, at most {max}")]
    TooLong { len: usize, max: usize },
    #[error("holds the control character U+{0:04X}")]
    ControlCharacter(u32),
    #[error("{0:?} is not a slug (1 to 63 of a-z, 0-9 and '-', not starting or ending with '-')")]
    NotASlug(String),
    #[error("{value:?} is not a domain name ({why})")]
    NotADomain { value: String, why: &'static str },
    #[error("{value:?} is not an email address ({why})")]
    NotAnAddress { value: String, why: &'static str },
    #[error("{0:?} is listed twice")]
    Duplicate(String),
    #[error("{len} entries, at most {max}")]
    TooMany { len: usize, max: usize },
    #[error("{value} is not a finite number")]
    NotFinite { value: String },
    #[error("{value} must be more than 0 and at most {max}")]
    NotPositiveUpTo { value: String, max: String },
    #[error("{value} is outside {min}..={max}")]
    OutOfRange { value: String, min: String, max: String },
    #[error("{0}")]
    Other(&'static str),
}

/// Collects field errors, so one answer lists every problem.
#[derive(Default)]
pub(crate) struct Problems(Vec<FieldError>);

impl Problems {
    pub(crate) fn add(&mut self, field: impl Into<String>, problem: Problem) {
        self.0.push(FieldError { field: field.into(), problem });
    }

    pub(crate) fn finish(self) -> Result<(), Invalid> {
        if self.0.is_empty() { Ok(()) } else { Err(Invalid(self.0)) }
    }

    /// A name for people: 1..=`max` characters, none of them a control character.
    pub(crate) fn text(&mut self, field: &str, value: &str, max: usize) {
        let len = value.chars().count();
        if value.trim().is_empty() {
            self.add(field, Problem::Empty);
        } else if len > max {
            self.add(field, Problem::TooLong { len, max });
        }
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            self.add(field, Problem::ControlCharacter(c as u32));
        }
    }

    fn range<T: PartialOrd + fmt::Display + Copy>(&mut self, field: &str, value: T, min: T, max: T) {
        if !(min..=max).contains(&value) {
            self.add(
                field,
                Problem::OutOfRange { value: value.to_string(), min: min.to_string(), max: max.to_string() },
            );
        }
    }
}

/// Whether `id` is a tenant slug.
pub fn is_slug(id: &str) -> bool {
    (1..=MAX_SLUG_CHARS).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

impl Quotas {
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut p = Problems::default();
        self.check(&mut p);
        p.finish()
    }

    fn check(&self, p: &mut Problems) {
        if self.per_second.is_finite() {
            if !(self.per_second > 0.0 && self.per_second <= 100_000.0) {
                p.add(
                    "quotas.per_second",
                    Problem::NotPositiveUpTo { value: self.per_second.to_string(), max: "100000".into() },
                );
            }
        } else {
            p.add("quotas.per_second", Problem::NotFinite { value: self.per_second.to_string() });
        }
        p.range("quotas.burst", self.burst, 1, 1_000_000);
        p.range("quotas.per_day", self.per_day, 1, 1_000_000_000);
        p.range("quotas.max_recipients", self.max_recipients, 1, 10_000);
        p.range("quotas.max_message_bytes", self.max_message_bytes, 1, 100 << 20);
    }
}

impl Tenant {
    /// A new active tenant, checked and normalized: domains and addresses to their normal
    /// form (see [`domain`]). Every problem is listed in the error.
    pub fn new(
        id: &str,
        display_name: &str,
        domains: &[String],
        addresses: &[String],
        quotas: Quotas,
        now_ms: u64,
    ) -> Result<Self, Invalid> {
        let mut tenant = Self {
            id: id.to_owned(),
            display_name: display_name.to_owned(),
            domains: domains.to_vec(),
            addresses: addresses.to_vec(),
            quotas,
            state: TenantState::Active,
            created_ms: now_ms,
            updated_ms: now_ms,
        };
        tenant.normalize()?;
        Ok(tenant)
    }

    /// Checks every field and puts domains and addresses in their normal form; called by
    /// [`Tenant::new`] and after every edit, before anything is stored.
    pub fn normalize(&mut self) -> Result<(), Invalid> {
        let mut p = Problems::default();
        if !is_slug(&self.id) {
            p.add("id", Problem::NotASlug(self.id.clone()));
        }
        p.text("display_name", &self.display_name, MAX_DISPLAY_NAME_CHARS);
        self.domains = normalize_list(&mut p, "domains", &self.domains, MAX_DOMAINS, |d| {
            domain::normalize(d).map_err(|why| Problem::NotADomain { value: d.to_owned(), why })
        });
        self.addresses = normalize_list(&mut p, "addresses", &self.addresses, MAX_ADDRESSES, |a| {
            domain::normalize_address(a).map_err(|why| Problem::NotAnAddress { value: a.to_owned(), why })
        });
        self.quotas.check(&mut p);
        p.finish()
    }

    /// Whether this tenant may send with `from_address` (a bare `local@domain`, as
    /// `message::Message` holds it) in `From`.
    ///
    /// The rule: the address's domain, normalized like the tenant's (IDNA to lowercase
    /// ASCII, so the Unicode and punycode forms of one name are equal), must equal one of
    /// [`Tenant::domains`] **exactly**: subdomains are not included, they are listed
    /// when wanted. (Nothing in the tree knows the public suffix list, so "subdomains
    /// too" would let a tenant listing `co.uk` send as every British company.) Anything
    /// that does not normalize is refused, which covers a trailing dot, spaces, IP
    /// literals; look-alikes such as `example.org.evil.test` or `evil-example.org` are
    /// other names and so are refused too. Or the whole address equals one of
    /// [`Tenant::addresses`]: the domain compared case-insensitively (normalized), the
    /// local part exactly (its case belongs to the receiving system, RFC 5321 §2.4).
    pub fn may_send_from(&self, from_address: &str) -> bool {
        let Ok(address) = domain::normalize_address(from_address) else {
            return false;
        };
        let Some((_, domain)) = address.rsplit_once('@') else {
            return false;
        };
        self.domains.iter().any(|d| d == domain) || self.addresses.contains(&address)
    }

    pub fn is_active(&self) -> bool {
        self.state == TenantState::Active
    }

    /// The document's fields (`kind`, `tenant`, `doc`); see the module doc of [`super`].
    pub fn to_fields(&self) -> Fields {
        let mut body = serde_json::to_value(self).expect("a tenant serializes");
        if let Some(map) = body.as_object_mut() {
            map.remove("id");
        }
        Fields::from([
            ("kind".to_owned(), KIND.to_owned()),
            ("tenant".to_owned(), self.id.clone()),
            ("doc".to_owned(), body.to_string()),
        ])
    }

    /// Reads a tenant document back; `None` when it is not one (wrong kind, bad JSON).
    pub fn from_fields(fields: &Fields) -> Option<Self> {
        if fields.get("kind").map(String::as_str) != Some(KIND) {
            return None;
        }
        let id = fields.get("tenant")?;
        let mut body: serde_json::Value = serde_json::from_str(fields.get("doc")?).ok()?;
        body.as_object_mut()?.insert("id".into(), id.clone().into());
        serde_json::from_value(body).ok()
    }
}

/// The `kind` field of tenant documents.
pub const KIND: &str = "tenant";

fn normalize_list(
    p: &mut Problems,
    field: &str,
    items: &[String],
    max: usize,
    normalize: impl Fn(&str) -> Result<String, Problem>,
) -> Vec<String> {
    if items.len() > max {
        p.add(field, Problem::TooMany { len: items.len(), max });
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match normalize(item) {
            Ok(n) if out.contains(&n) => p.add(format!("{field}[{i}]"), Problem::Duplicate(item.clone())),
            Ok(n) => out.push(n),
            Err(problem) => p.add(format!("{field}[{i}]"), problem),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(domains: &[&str], addresses: &[&str]) -> Tenant {
        let d: Vec<String> = domains.iter().map(|s| s.to_string()).collect();
        let a: Vec<String> = addresses.iter().map(|s| s.to_string()).collect();
        Tenant::new("acme", "Acme", &d, &a, Quotas::default(), 1).unwrap()
    }

    fn problems(result: Result<Tenant, Invalid>) -> Vec<String> {
        result.unwrap_err().0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn each_bad_field_is_named() {
        let bad = Tenant::new(
            "-Acme",
            "Ac\u{7}me",
            &["example.org".into(), "exa mple.org".into(), "EXAMPLE.org".into()],
            &["nobody".into()],
            Quotas::default(),
            0,
        );
        let got = problems(bad);
        assert_eq!(got.len(), 5, "{got:?}");
        assert!(got[0].starts_with("id: \"-Acme\" is not a slug"), "{got:?}");
        assert_eq!(got[1], "display_name: holds the control character U+0007");
        assert!(got[2].starts_with("domains[1]: \"exa mple.org\" is not a domain name"), "{got:?}");
        assert_eq!(got[3], "domains[2]: \"EXAMPLE.org\" is listed twice");
        assert!(got[4].starts_with("addresses[0]: \"nobody\" is not an email address"), "{got:?}");
    }

    #[test]
    fn names_over_length_and_empty_are_refused() {
        let long = "x".repeat(101);
        assert_eq!(
            problems(Tenant::new("a", &long, &[], &[], Quotas::default(), 0)),
            ["display_name: 101 characters, at most 100"]
        );
        assert_eq!(problems(Tenant::new("a", " ", &[], &[], Quotas::default(), 0)), ["display_name: required"]);
        assert!(Tenant::new(&"a".repeat(64), "A", &[], &[], Quotas::default(), 0).is_err());
        assert!(Tenant::new(&"a".repeat(63), "Ünïcode name", &[], &[], Quotas::default(), 0).is_ok());
    }

    #[test]
    fn absurd_quotas_are_refused() {
        let cases = [
            (Quotas { per_second: f64::NAN, ..Quotas::default() }, "quotas.per_second: NaN is not a finite number"),
            (
                Quotas { per_second: f64::INFINITY, ..Quotas::default() },
                "quotas.per_second: inf is not a finite number",
            ),
            (
                Quotas { per_second: -1.0, ..Quotas::default() },
                "quotas.per_second: -1 must be more than 0 and at most 100000",
            ),
            (
                Quotas { per_second: 0.0, ..Quotas::default() },
                "quotas.per_second: 0 must be more than 0 and at most 100000",
            ),
            (Quotas { burst: 0, ..Quotas::default() }, "quotas.burst: 0 is outside 1..=1000000"),
            (Quotas { per_day: 0, ..Quotas::default() }, "quotas.per_day: 0 is outside 1..=1000000000"),
            (
                Quotas { per_day: u64::MAX, ..Quotas::default() },
                "quotas.per_day: 18446744073709551615 is outside 1..=1000000000",
            ),
            (
                Quotas { max_recipients: 10_001, ..Quotas::default() },
                "quotas.max_recipients: 10001 is outside 1..=10000",
            ),
            (
                Quotas { max_message_bytes: (100 << 20) + 1, ..Quotas::default() },
                "quotas.max_message_bytes: 104857601 is outside 1..=104857600",
            ),
        ];
        for (quotas, want) in cases {
            assert_eq!(quotas.validate().unwrap_err().to_string(), want);
        }
        Quotas::default().validate().unwrap();
    }

    #[test]
    fn from_only_in_own_domains_exactly() {
        let t = tenant(&["example.org", "bücher.example"], &["Ops@partner.test"]);
        assert!(t.may_send_from("ada@example.org"));
        assert!(t.may_send_from("ada@EXAMPLE.Org"));
        assert!(t.may_send_from("ada@xn--bcher-kva.example"));
        assert!(t.may_send_from("ada@BÜCHER.example"));
        assert!(t.may_send_from("Ops@partner.test"));
        assert!(t.may_send_from("Ops@PARTNER.test"));
        for bad in [
            "ada@example.org.evil.test",
            "ada@evil-example.org",
            "ada@example.org.",
            "ada@mail.example.org",
            "ada@xn--bcher-kva.example.evil.test",
            "ada@bucher.example",
            "ada@büchér.example",
            "ada@еxample.org", // Cyrillic е
            "ops@partner.test",
            "other@partner.test",
            "ada@[192.0.2.1]",
            "example.org",
            "",
        ] {
            assert!(!t.may_send_from(bad), "{bad:?} allowed");
        }
    }

    #[test]
    fn document_round_trip() {
        let t = tenant(&["example.org"], &[]);
        let fields = t.to_fields();
        assert_eq!(fields["kind"], "tenant");
        assert_eq!(fields["tenant"], "acme");
        assert!(!fields["doc"].contains("\"id\""));
        assert_eq!(Tenant::from_fields(&fields).unwrap(), t);
    }
}
