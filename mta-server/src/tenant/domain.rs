//! Domain names and addresses as tenants list them and as `From` presents them: one
//! normal form (lowercase ASCII, punycode for Unicode labels), so that comparing two is
//! comparing strings.

/// `input` in its normal form: IDNA (UTS #46, strict: STD3 characters, hyphen and DNS
/// length checks) to lowercase ASCII, then our own rules on top: at least two labels
/// (the one exception is `localhost`, RFC 6761's name for this machine, which the default
/// tenant sends from in development, as `cargo xtask run` always has), none empty (so no trailing dot), each 1..=63 bytes without a leading or trailing
/// hyphen, 253 bytes in all, and a last label that is not all digits (no IPv4 literal;
/// `[..]` literals and `*` wildcards are refused by the STD3 character rules).
///
/// The Unicode and punycode forms of one name normalize to the same string
/// (`bücher.example` and `xn--bcher-kva.example`), as do case variants.
pub fn normalize(input: &str) -> Result<String, &'static str> {
    if input.is_empty() {
        return Err("empty");
    }
    if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("holds a space or a control character");
    }
    if input.ends_with('.') || input.ends_with('。') {
        return Err("ends with a dot");
    }
    let ascii = idna::domain_to_ascii_strict(input).map_err(|_| "not a valid (internationalized) domain name")?;
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 && ascii != "localhost" {
        return Err("needs at least two labels");
    }
    if ascii.len() > 253 {
        return Err("longer than 253 bytes");
    }
    for label in &labels {
        if label.is_empty() {
            return Err("has an empty label");
        }
        if label.len() > 63 {
            return Err("has a label longer than 63 bytes");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("has a label starting or ending with '-'");
        }
        if !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err("has a character outside a-z, 0-9 and '-'");
        }
    }
    if labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return Err("is an IP address, not a name");
    }
    Ok(ascii)
}

/// An address `local@domain` in its normal form: the local part exactly as given (RFC 5321
/// leaves its case to the receiving system, so `Ada@` and `ada@` may be two mailboxes),
/// the domain normalized by [`normalize`]. Quoted local parts are not accepted.
pub fn normalize_address(input: &str) -> Result<String, &'static str> {
    let (local, domain) = input.rsplit_once('@').ok_or("has no '@'")?;
    if local.is_empty() {
        return Err("has an empty local part");
    }
    if local.len() > 64 {
        return Err("has a local part longer than 64 bytes");
    }
    if local.contains(['@', '"', '<', '>', '(', ')', ',', ';', ':', '\\', '[', ']'])
        || local.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("has a character its local part may not hold unquoted");
    }
    let domain = normalize(domain)?;
    Ok(format!("{local}@{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_and_punycode_forms_are_one_name() {
        assert_eq!(normalize("bücher.example").unwrap(), "xn--bcher-kva.example");
        assert_eq!(normalize("XN--BCHER-KVA.Example").unwrap(), "xn--bcher-kva.example");
        assert_eq!(normalize("Mail.Example.ORG").unwrap(), "mail.example.org");
    }

    #[test]
    fn things_that_are_not_domain_names_are_refused() {
        for bad in [
            "",
            "mailhost",
            "exa mple.org",
            "example.org.",
            "example..org",
            ".example.org",
            "-example.org",
            "example-.org",
            "*.example.org",
            "[127.0.0.1]",
            "127.0.0.1",
            "example.org\n",
            "ex_ample.org",
            &format!("{}.org", "a".repeat(64)),
            &format!("{}org", "abcdefghi.".repeat(26)),
        ] {
            assert!(normalize(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn addresses_keep_the_local_part_and_normalize_the_domain() {
        assert_eq!(normalize_address("Ada@BÜCHER.example").unwrap(), "Ada@xn--bcher-kva.example");
        assert!(normalize_address("ada").is_err());
        assert!(normalize_address("@example.org").is_err());
        assert!(normalize_address("a b@example.org").is_err());
        assert!(normalize_address("ada@mailhost").is_err());
        assert_eq!(normalize_address("me@LOCALHOST").unwrap(), "me@localhost");
    }
}
