//! Inbound mail into mailboxes: mta-server verifies and parses what a provider's inbound
//! webhook carried (`ReceiveWebhook` with `WebhookKind::Inbound`) and answers one
//! normalized [`pb::InboundMail`]; this module puts it into the inbox of each local
//! recipient.
//!
//! - Recipients are the SMTP envelope's (what the provider received the mail for), or the
//!   `To`/`Cc` addresses when the provider gave no envelope. An address is local when its
//!   domain is this server's mail domain and a user has its local part; the rest are not
//!   ours and are named in the log.
//! - A message is stored once per mailbox: its list entry carries the provider's
//!   `dedupe_key` (`inbound_key`) and is created with the unique key
//!   [`crate::unique::inbound_key`] after the body and attachments are stored, so a
//!   provider's retry (after a lost answer, or after a failure midway) finds either the
//!   whole message or none of it, and two deliveries racing store it once. A delivery
//!   already in that inbox is counted as a duplicate. (Entries stored before unique keys
//!   hold none; they are found by `inbound_key` first.)
//! - The HTML is stored as sent; [`crate::sanitize`] cleans it whenever it is read.
//!
//! Mail for a list's `unsubscribe+TOKEN@` address (the `mailto:` of `List-Unsubscribe`)
//! unsubscribes instead of reaching a mailbox ([`crate::lists::mail`]).
//!
//! A tagged address is its user's: `ada+tag@` is delivered to ada. Inline parts keep their
//! content id, and the message view points `cid:` images at the attachment URL.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bitmail_proto::v1 as pb;

use crate::accounts::User;
use crate::compose::address_of;
use crate::error::ApiError;
use crate::groups::Group;
use crate::lists::mail::{subject_token, unsubscribe_token};
use crate::mailbox::{Attachment, AttachmentMeta, Copy, Folder, NewMail, Stored};
use crate::state::AppState;

/// What became of one inbound message.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// Inboxes it was stored in.
    pub(crate) stored: usize,
    /// Inboxes that already had it.
    pub(crate) duplicates: usize,
    /// Recipients that are not users of this server (or an unsubscribe address whose
    /// token was refused).
    pub(crate) unknown: Vec<String>,
    /// Subscribers unsubscribed by mail to their `unsubscribe+TOKEN@` address.
    pub(crate) unsubscribed: usize,
}

/// The recipients to deliver to, lowercased and without repeats: the envelope's, else
/// the header's.
fn recipients(mail: &pb::InboundMail) -> Vec<String> {
    let mut seen = BTreeSet::new();
    listed(mail)
        .into_iter()
        .filter(|m| unsubscribe_token(m).is_none() && subject_token(m, &mail.subject).is_none())
        .filter_map(|m| address_of(m).map(|a| a.to_ascii_lowercase()))
        .filter(|a| seen.insert(a.clone()))
        .collect()
}

/// The envelope's recipients, else the header's, as given.
fn listed(mail: &pb::InboundMail) -> Vec<&String> {
    if mail.envelope_to.is_empty() {
        mail.to.iter().chain(&mail.cc).collect()
    } else {
        mail.envelope_to.iter().collect()
    }
}

/// The tokens of the recipients that are a list's `unsubscribe+TOKEN@` address, without
/// repeats. A token is case-sensitive and mta-server lowercases envelope addresses, so
/// each is taken from the `To`/`Cc` header, as the sender's mail program wrote it, when
/// the header names the same address; from the envelope as it is otherwise.
fn unsubscribe_tokens(mail: &pb::InboundMail) -> Vec<String> {
    let headers: Vec<&str> = mail.to.iter().chain(&mail.cc).filter_map(|m| unsubscribe_token(m)).collect();
    let mut seen = BTreeSet::new();
    listed(mail)
        .into_iter()
        .filter_map(|m| match unsubscribe_token(m) {
            Some(t) => Some(headers.iter().copied().find(|h| h.eq_ignore_ascii_case(t)).unwrap_or(t)),
            None => subject_token(m, &mail.subject),
        })
        .filter(|t| seen.insert(t.to_ascii_lowercase()))
        .map(String::from)
        .collect()
}

/// Who an address of this server's is: a user, or a group.
enum Local {
    User(User),
    Group(Group),
}

/// The user or group an address belongs to, when it is one of this server's.
async fn local(state: &AppState, address: &str) -> Result<Option<Local>, ApiError> {
    let Some((local_part, domain)) = address.rsplit_once('@') else { return Ok(None) };
    if !domain.eq_ignore_ascii_case(&state.mail_domain) {
        return Ok(None);
    }
    // `ada+news@` is ada's.
    let name = local_part.split('+').next().unwrap_or(local_part).to_ascii_lowercase();
    if let Some(user) = state.mailbox.user_named(&name).await? {
        return Ok(Some(Local::User(user)));
    }
    Ok(crate::groups::group_named(state, &name).await?.map(Local::Group))
}

/// Stores `mail` in the inbox of each of its local recipients, and of each member of
/// the groups it is for, its content once.
pub(crate) async fn deliver(state: &AppState, mail: pb::InboundMail) -> Result<Delivered, ApiError> {
    let mut delivered = Delivered::default();
    let tokens = unsubscribe_tokens(&mail);
    if !tokens.is_empty() {
        let by_mail = crate::lists::mail::unsubscribe(state, &tokens).await?;
        delivered.unsubscribed = by_mail.unsubscribed;
        delivered.unknown.extend(by_mail.refused);
    }
    let (mut users, mut groups): (Vec<User>, Vec<Group>) = (Vec::new(), Vec::new());
    for address in recipients(&mail) {
        match local(state, &address).await? {
            Some(Local::User(user)) if !users.iter().any(|u| u.id == user.id) => users.push(user),
            Some(Local::Group(group)) if !groups.iter().any(|g| g.id == group.id) => groups.push(group),
            Some(_) => {}
            None => delivered.unknown.push(address),
        }
    }
    if users.is_empty() && groups.is_empty() {
        return Ok(delivered);
    }
    let mut extra = HashMap::from([("inbound_key".to_owned(), mail.dedupe_key.clone())]);
    if !mail.message_id.is_empty() {
        extra.insert("message_id".into(), mail.message_id.clone());
    }
    if !mail.references.is_empty() {
        extra.insert("references".into(), serde_json::to_string(&mail.references).unwrap_or_default());
    }
    if !mail.reply_to.is_empty() {
        extra.insert("reply_to".into(), serde_json::to_string(&mail.reply_to).unwrap_or_default());
    }
    if !mail.verdicts.is_empty() {
        let verdicts: HashMap<&str, &str> = mail.verdicts.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
        extra.insert("verdicts".into(), serde_json::to_string(&verdicts).unwrap_or_default());
    }
    let new = NewMail {
        from: mail.from,
        to: mail.to,
        cc: mail.cc,
        bcc: Vec::new(),
        subject: mail.subject,
        text: mail.text,
        html: mail.html,
        date_ms: mail.date_ms,
        mta_id: None,
        local_to: Vec::new(),
        extra,
    };
    let attachments: Vec<Attachment> = mail
        .attachments
        .into_iter()
        .map(|a| Attachment {
            meta: AttachmentMeta {
                size: a.content.len(),
                filename: a.filename,
                content_type: if a.content_type.is_empty() {
                    "application/octet-stream".into()
                } else {
                    a.content_type
                },
                content_id: a.content_id,
            },
            content: a.content,
        })
        .collect();
    // One content for every inbox (`mailbox/shared.rs`), each entry under its own
    // unique key, so a provider's retry stores nothing twice.
    let dedupe_key = &mail.dedupe_key;
    let copy = |owner: User, mail: &Arc<NewMail>| {
        let unique_key = Some(crate::unique::inbound_key(&owner.id, dedupe_key));
        Copy { owner, folder: Folder::Inbox, mail: mail.clone(), unique_key }
    };
    let received = Arc::new(new);
    let mut copies = Vec::new();
    // A member named directly gets the direct copy only.
    let direct: std::collections::HashSet<String> = users.iter().map(|u| u.id.clone()).collect();
    for user in users {
        // Mail stored before unique keys holds none: found by its key first.
        if state.mailbox.has_inbound(&user, &mail.dedupe_key).await? {
            delivered.duplicates += 1;
        } else {
            copies.push(copy(user, &received));
        }
    }
    for group in &groups {
        let tagged = Arc::new(crate::fan_out::group_copy(state, group, &received));
        let members = crate::groups::members(state, group).await?.into_iter();
        copies.extend(members.filter(|m| !direct.contains(&m.user.id)).map(|m| copy(m.user, &tagged)));
    }
    for stored in state.mailbox.store_shared(copies, &attachments).await? {
        match stored {
            Stored::New(_) => delivered.stored += 1,
            Stored::Duplicate(_) => delivered.duplicates += 1,
        }
    }
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_decides_and_repeats_go() {
        let mut mail = pb::InboundMail {
            envelope_to: vec!["Ada@Example.org".into(), "ada@example.org".into()],
            to: vec!["Someone <list@example.org>".into()],
            ..Default::default()
        };
        assert_eq!(recipients(&mail), ["ada@example.org"]);
        mail.envelope_to.clear();
        mail.cc = vec!["bob@example.org".into(), "not an address".into()];
        assert_eq!(recipients(&mail), ["list@example.org", "bob@example.org"]);
    }

    #[test]
    fn unsubscribe_addresses_are_no_mailbox_and_keep_their_case() {
        let mail = pb::InboundMail {
            envelope_to: vec![
                "unsubscribe+AbC-1@bitmail.test".into(),
                "Unsubscribe+AbC-1@bitmail.test".into(),
                "ada@bitmail.test".into(),
            ],
            ..Default::default()
        };
        assert_eq!(recipients(&mail), ["ada@bitmail.test"]);
        assert_eq!(unsubscribe_tokens(&mail), ["AbC-1"]);
        // The envelope lowercased by mta-server; the header as written.
        let mail = pb::InboundMail {
            envelope_to: vec!["unsubscribe+abc-1@bitmail.test".into(), "unsubscribe+xyz@bitmail.test".into()],
            to: vec!["List <unsubscribe+AbC-1@bitmail.test>".into(), "unsubscribe+Other@bitmail.test".into()],
            ..Default::default()
        };
        assert_eq!(unsubscribe_tokens(&mail), ["AbC-1", "xyz"], "only the envelope's recipients count");
        // mta-server's own form: the bare address, the token in the subject.
        let mail = pb::InboundMail {
            envelope_to: vec!["unsubscribe@bitmail.test".into(), "ada@bitmail.test".into()],
            subject: "unsubscribe s.0199.-.0.MaC_x".into(),
            ..Default::default()
        };
        assert_eq!(recipients(&mail), ["ada@bitmail.test"]);
        assert_eq!(unsubscribe_tokens(&mail), ["s.0199.-.0.MaC_x"]);
    }
}
