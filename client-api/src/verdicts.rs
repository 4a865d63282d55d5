//! What the webmail says of a received message's origin: the receiving provider's
//! verdicts (SPF, DKIM, spam), and warnings a reader should see before trusting it.
//!
//! The warnings, in the order shown:
//! - `claims_local_domain`: the message came from outside (through an inbound webhook)
//!   but its `From` is an address of this mail domain, which only the webmail itself
//!   sends from: a forged `From: boss@our-domain` would otherwise look internal;
//! - `failed_checks`: SPF or DKIM failed (`fail`, `softfail`, `permerror`);
//! - `spam`: the provider judged it spam.
//!
//! Mail between users of the webmail carries no verdicts and gets no warning.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::mailbox::Summary;

/// The domain of the address in a `From` value (`Name <a@b>` or `a@b`), lowercased.
fn from_domain(from: &str) -> Option<String> {
    let address = match (from.rfind('<'), from.rfind('>')) {
        (Some(open), Some(close)) if open < close => &from[open + 1..close],
        _ => from,
    };
    let domain = address.trim().rsplit_once('@')?.1.trim().trim_end_matches('.');
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

fn failed(verdict: &str) -> bool {
    let v = verdict.to_ascii_lowercase();
    ["fail", "permerror"].iter().any(|bad| v.contains(bad))
}

fn spam(verdicts: &BTreeMap<String, String>) -> bool {
    let said = |k: &str| verdicts.get(k).map(|v| v.to_ascii_lowercase());
    // SES: spam "fail"; Mailgun: "yes"; SendGrid: a SpamAssassin score, 5 and over.
    matches!(said("spam").as_deref(), Some("fail" | "yes"))
        || said("spam_score").and_then(|s| s.trim().parse::<f64>().ok()).is_some_and(|s| s >= 5.0)
}

/// `{"verdicts": {...}, "warnings": [...]}` for a received message of `mail_domain`.
pub(crate) fn of(mail: &Summary, mail_domain: &str) -> Value {
    let verdicts: BTreeMap<String, String> = serde_json::from_str(mail.field("verdicts")).unwrap_or_default();
    let external = !mail.field("inbound_key").is_empty();
    let mut warnings = Vec::new();
    let local = mail_domain.trim_end_matches('.').to_ascii_lowercase();
    if external && from_domain(mail.field("from")).is_some_and(|d| d == local) {
        warnings.push("claims_local_domain");
    }
    if ["spf", "dkim"].iter().any(|k| verdicts.get(*k).is_some_and(|v| failed(v))) {
        warnings.push("failed_checks");
    }
    if spam(&verdicts) {
        warnings.push("spam");
    }
    json!({ "external": external, "verdicts": verdicts, "warnings": warnings })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn received(from: &str, verdicts: &str, external: bool) -> Summary {
        let mut fields =
            HashMap::from([("from".to_owned(), from.to_owned()), ("verdicts".to_owned(), verdicts.to_owned())]);
        if external {
            fields.insert("inbound_key".into(), "k".into());
        }
        Summary { id: "m".into(), fields }
    }

    fn warnings(m: &Summary) -> Vec<String> {
        serde_json::from_value(of(m, "bitmail.test")["warnings"].clone()).unwrap()
    }

    #[test]
    fn outside_mail_claiming_the_local_domain_is_flagged_in_any_case() {
        let forged = received("Boss <BOSS@BitMail.Test>", r#"{"spf":"pass"}"#, true);
        assert_eq!(warnings(&forged), ["claims_local_domain"]);
        let bare = received("boss@bitmail.test.", "", true);
        assert_eq!(warnings(&bare), ["claims_local_domain"]);
        let internal = received("Boss <boss@bitmail.test>", "", false);
        assert!(warnings(&internal).is_empty(), "mail between users is not flagged");
        let lookalike = received("boss@bitmail.test.evil.example", "", true);
        assert!(warnings(&lookalike).is_empty());
    }

    #[test]
    fn failed_checks_and_spam_are_flagged_as_each_provider_words_them() {
        let m = received("a@x.example", r#"{"spf":"softfail","dkim":"{@x.example : pass}"}"#, true);
        assert_eq!(warnings(&m), ["failed_checks"]);
        let m = received("a@x.example", r#"{"dkim":"fail","spam":"fail"}"#, true);
        assert_eq!(warnings(&m), ["failed_checks", "spam"]);
        let m = received("a@x.example", r#"{"spam_score":"7.1"}"#, true);
        assert_eq!(warnings(&m), ["spam"]);
        let m = received("a@x.example", r#"{"spf":"pass","dkim":"pass","spam_score":"0.3"}"#, true);
        assert!(warnings(&m).is_empty());
        assert_eq!(of(&m, "bitmail.test")["verdicts"]["spf"], "pass");
    }
}
