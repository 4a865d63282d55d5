//! Conversations (issue 18). Each list entry is put in a conversation of its owner's
//! mailbox when it is stored, and never moved after:
//!
//! - `msgid = OWNER/MESSAGE-ID` when the message has an id (received mail: its
//!   `Message-ID`; mail sent here: the one it is sent with, `compose.rs`);
//! - `thread = OWNER/KEY`: the conversation of the nearest of its references (the
//!   `References`/`In-Reply-To` ids, parent last) that this mailbox holds; else, for mail
//!   without references whose subject says it replies or forwards (`Re:`, `Fwd:`,
//!   `TR:`, `AW:` ...), the conversation of the newest entry with the same subject;
//!   else a conversation of its own, keyed by its id (or its content);
//! - `subj = OWNER/SUBJECT`: the subject without those prefixes, lowercased, for that
//!   fallback.
//!
//! A conversation is then one lookup of `thread`. Since an entry only ever joins one
//! that exists, references that loop, name the message itself or name nothing here
//! cannot make a cycle. A reply that arrives before its parent starts its own
//! conversation, and the parent does not join it later.

use super::{Mailbox, NewMail};
use crate::error::ApiError;

/// References looked up per message, nearest first.
const MAX_LOOKUPS: usize = 10;
/// The longest base subject kept for the fallback, in characters.
const MAX_SUBJECT_KEY: usize = 200;
const PREFIXES: &[&str] = &["re", "fwd", "fw", "tr", "aw", "wg", "sv", "vs", "réf", "ref", "rif", "antw"];

/// The subject without its reply and forward prefixes (`Re: Fwd: RE[2]:`), lowercased,
/// with spaces collapsed; and whether it had any.
pub(crate) fn base_subject(subject: &str) -> (String, bool) {
    let mut rest = subject.trim();
    let mut replied = false;
    while let Some((head, tail)) = rest.split_once(':') {
        let word = head.trim().split('[').next().unwrap_or_default().trim().to_lowercase();
        if !PREFIXES.contains(&word.as_str()) {
            break;
        }
        replied = true;
        rest = tail.trim_start();
    }
    let base: String = rest.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    (base.chars().take(MAX_SUBJECT_KEY).collect(), replied)
}

impl Mailbox {
    /// The conversation fields of a new entry of `owner` for `mail`
    /// (`content_ref` keys a conversation of a message without an id).
    pub(super) async fn thread_fields(
        &self,
        owner: &str,
        mail: &NewMail,
        content_ref: &str,
    ) -> Result<Vec<(String, String)>, ApiError> {
        let own = mail.extra.get("message_id").filter(|m| !m.is_empty() && m.len() <= 250);
        let references: Vec<String> =
            mail.extra.get("references").and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
        let (base, replied) = base_subject(&mail.subject);
        let mut thread = None;
        for id in references.iter().rev().take(MAX_LOOKUPS) {
            let key = format!("{owner}/{id}");
            let (found, _) = self.lookup_page(&[("kind", "mail"), ("msgid", &key)], 1, "", false).await?;
            thread = found.into_iter().find_map(|d| d.fields.get("thread").cloned());
            if thread.is_some() {
                break;
            }
        }
        let subject_key = format!("{owner}/{base}");
        if thread.is_none() && references.is_empty() && replied && !base.is_empty() {
            let (found, _) = self.lookup_page(&[("kind", "mail"), ("subj", &subject_key)], 1, "", true).await?;
            thread = found.into_iter().find_map(|d| d.fields.get("thread").cloned());
        }
        let thread = thread.unwrap_or_else(|| format!("{owner}/{}", own.map_or(content_ref, String::as_str)));
        let mut fields = vec![("thread".to_owned(), thread)];
        if let Some(id) = own {
            fields.push(("msgid".to_owned(), format!("{owner}/{id}")));
        }
        if !base.is_empty() {
            fields.push(("subj".to_owned(), subject_key));
        }
        Ok(fields)
    }

    /// The messages of the conversation `thread`, newest first (at most `limit`).
    pub(crate) async fn conversation(&self, thread: &str, limit: u32) -> Result<Vec<super::Summary>, ApiError> {
        let (docs, _) = self.lookup_page(&[("kind", "mail"), ("thread", thread)], limit, "", true).await?;
        Ok(docs.into_iter().map(|d| super::Summary { id: d.id, fields: d.fields }).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_lose_their_reply_and_forward_prefixes_in_any_language() {
        assert_eq!(base_subject("Re: RE[2]: Fwd:  Water   pump"), ("water pump".into(), true));
        assert_eq!(base_subject("TR: AW: Réunion"), ("réunion".into(), true));
        assert_eq!(base_subject("Water pump"), ("water pump".into(), false));
        assert_eq!(base_subject("Note: the pump"), ("note: the pump".into(), false), "not a prefix");
        assert_eq!(base_subject("Re:"), (String::new(), true));
        assert_eq!(base_subject(&"x".repeat(5000)).0.len(), MAX_SUBJECT_KEY);
    }
}
