//! The `mailto:` of `List-Unsubscribe`: mail received (through a provider's inbound
//! webhook, verified by mta-server) for `unsubscribe+TOKEN@...`, or for `unsubscribe@...`
//! with the subject `unsubscribe TOKEN` (the form mta-server writes,
//! `<mailto:unsubscribe@DOMAIN?subject=unsubscribe%20TOKEN>`: a token is longer than
//! the 64 bytes RFC 5321 allows a local part, and a subject keeps its case), unsubscribes
//! the subscriber of TOKEN, reason `mail`, instead of going to a mailbox. The token is the
//! authority, as on the pages; the domain is whatever the mail was received for (the
//! provider routes only ours here). The token keeps its case: it is read from the
//! address as received, not lowercased like mailbox names.

use bitmail_proto::v1 as pb;
use tonic::Code;

use super::Upstream;
use super::pages::plausible_token;
use crate::error::ApiError;
use crate::state::AppState;

const PREFIX: &str = "unsubscribe+";

/// The token of `unsubscribe+TOKEN@domain` (in a mailbox `Name <...>` or bare).
pub(crate) fn unsubscribe_token(mailbox: &str) -> Option<&str> {
    let mailbox = mailbox.trim();
    let address = match (mailbox.rfind('<'), mailbox.ends_with('>')) {
        (Some(open), true) => &mailbox[open + 1..mailbox.len() - 1],
        (None, false) => mailbox,
        _ => return None,
    };
    let (local, domain) = address.trim().rsplit_once('@')?;
    // `get`, not slicing: the local part may hold any character, and byte 12 may fall
    // inside one.
    let head = local.get(..PREFIX.len())?;
    if domain.is_empty() || local.len() <= PREFIX.len() || !head.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let token = &local[PREFIX.len()..];
    plausible_token(token).then_some(token)
}

/// The token of a mail to the bare `unsubscribe@` address whose subject is
/// `unsubscribe TOKEN` (a reply may prefix `Re: `).
pub(crate) fn subject_token<'a>(mailbox: &str, subject: &'a str) -> Option<&'a str> {
    let mailbox = mailbox.trim();
    let address = mailbox.rsplit_once('<').map_or(mailbox, |(_, r)| r.trim_end_matches('>')).trim();
    let (local, domain) = address.rsplit_once('@')?;
    if domain.is_empty() || !local.eq_ignore_ascii_case("unsubscribe") {
        return None;
    }
    let words: Vec<&str> = subject.split_whitespace().collect();
    let at = words.iter().position(|w| w.eq_ignore_ascii_case("unsubscribe"))?;
    let token = *words.get(at + 1)?;
    plausible_token(token).then_some(token)
}

/// What became of the unsubscribe addresses of one received mail.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ByMail {
    /// Subscribers unsubscribed (or already so).
    pub(crate) unsubscribed: usize,
    /// Addresses whose token mta-server refused (tampered, expired, not a subscriber's).
    pub(crate) refused: Vec<String>,
}

/// Unsubscribes the subscriber of each token, reason `mail`. A refused token is
/// counted, not an error; mta-server unreachable is (503: the provider delivers the
/// mail again, and unsubscribing twice is unsubscribing once).
pub(crate) async fn unsubscribe(state: &AppState, tokens: &[String]) -> Result<ByMail, ApiError> {
    let up = Upstream::service(state);
    let mut by_mail = ByMail::default();
    for token in tokens {
        let request =
            pb::UnsubscribeRequest { token: token.clone(), reason: "mail".into(), client_address: String::new() };
        match up.call(request, |mut c, r| async move { c.unsubscribe(r).await }).await {
            Ok(_) => by_mail.unsubscribed += 1,
            Err(s) if matches!(s.code(), Code::Unauthenticated | Code::NotFound | Code::InvalidArgument) => {
                // Only the token's first characters: it is a secret.
                let shown: String = token.chars().take(6).collect();
                by_mail.refused.push(format!("unsubscribe+{shown}…"));
            }
            Err(s) => return Err(ApiError::from(s)),
        }
    }
    Ok(by_mail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bare_unsubscribe_address_takes_its_token_from_the_subject() {
        assert_eq!(subject_token("unsubscribe@lists.example.org", "unsubscribe s.AbC.-.0.x_Y"), Some("s.AbC.-.0.x_Y"));
        assert_eq!(subject_token("List <Unsubscribe@example.org>", "Re: Unsubscribe Tok3n"), Some("Tok3n"));
        assert_eq!(subject_token("unsubscribe@example.org", "please take me off"), None);
        assert_eq!(subject_token("unsubscribe@example.org", "unsubscribe"), None);
        assert_eq!(subject_token("ada@example.org", "unsubscribe Tok3n"), None);
        assert_eq!(subject_token("unsubscribe@example.org", "unsubscribe to<k"), None);
    }

    #[test]
    fn unsubscribe_addresses_and_their_tokens() {
        assert_eq!(unsubscribe_token("unsubscribe+AbC.d-E_f@lists.example.org"), Some("AbC.d-E_f"));
        assert_eq!(unsubscribe_token("List <Unsubscribe+Tok3n@example.org>"), Some("Tok3n"));
        let long = format!("unsubscribe+{}@example.org", "x".repeat(200));
        assert_eq!(unsubscribe_token(&long).map(str::len), Some(200), "longer than a usual local part");
        for not in [
            "ada@example.org",
            "unsubscribe@example.org",
            "unsubscribe+@example.org",
            "unsubscribe+tok@",
            "unsubscribe+to<k@example.org",
            "ada+unsubscribe+tok@example.org",
            "<unsubscribe+tok@example.org",
            ">𑱐𐭘𑦠@_",
            "unsubscribé+tok@example.org",
        ] {
            assert_eq!(unsubscribe_token(not), None, "{not}");
        }
    }
}
