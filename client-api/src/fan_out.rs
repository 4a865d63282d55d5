//! Who gets a copy of a message sent from the webmail, its content stored once
//! (`mailbox/shared.rs`): the sender's Sent copy; each local recipient's; each member of
//! each group it is for (tagged `group`, replying to the group; not the sender, who has
//! the Sent copy); and for a broadcast, every user of the tenant (tagged `broadcast`).
//! A user reached twice gets one copy: the first.

use std::sync::Arc;

use bitmail_proto::v1 as pb;
use serde_json::json;

use crate::accounts::User;
use crate::error::ApiError;
use crate::groups::{self, Group};
use crate::mailbox::{Copy, Folder, NewMail};
use crate::state::AppState;

/// A member's copy of mail to `group`: tagged with it, and replying to it.
pub(crate) fn group_copy(state: &AppState, group: &Group, mail: &NewMail) -> NewMail {
    let mut copy = mail.clone();
    copy.extra.insert("group".to_owned(), group.name.clone());
    let address = format!("{}@{}", group.name, state.mail_domain);
    copy.extra.insert("reply_to".to_owned(), json!([address]).to_string());
    copy
}

/// Every user of `tenant` (the users stored without one are `default`'s).
pub(crate) async fn everyone(state: &AppState, tenant: &str) -> Result<Vec<User>, ApiError> {
    let docs = state.mailbox.lookup_all(&[("kind", "user")]).await?;
    Ok(docs
        .into_iter()
        .filter_map(|d| {
            let name = d.fields.get("name")?.clone();
            Some(User::from_fields(d.id, &name, &d.fields))
        })
        .filter(|u| u.tenant == tenant)
        .collect())
}

/// The copies of `mail` from `sender`: Sent, then the local recipients', the groups'
/// members', and with `broadcast` (a tenant) that tenant's users'.
pub(crate) async fn copies(
    state: &AppState,
    sender: &User,
    mut mail: NewMail,
    locals: &[&User],
    groups: &[&Group],
    broadcast: Option<&str>,
) -> Result<Vec<Copy>, ApiError> {
    let mut copies =
        vec![Copy { owner: sender.clone(), folder: Folder::Sent, mail: Arc::new(mail.clone()), unique_key: None }];
    // Recipients see neither the Bcc list nor the delivery bookkeeping; they keep the
    // message's id and conversation.
    mail.bcc.clear();
    mail.mta_id = None;
    mail.local_to.clear();
    mail.extra.retain(|k, _| k == "message_id" || k == "references");
    let received = Arc::new(mail);
    let copy =
        |owner: User, mail: &Arc<NewMail>| Copy { owner, folder: Folder::Inbox, mail: mail.clone(), unique_key: None };
    copies.extend(locals.iter().map(|u| copy((*u).clone(), &received)));
    for group in groups {
        let tagged = Arc::new(group_copy(state, group, &received));
        for member in groups::members(state, group).await? {
            if member.user.id != sender.id {
                copies.push(copy(member.user, &tagged));
            }
        }
    }
    if let Some(tenant) = broadcast {
        let mut tagged = (*received).clone();
        tagged.extra.insert("broadcast".to_owned(), tenant.to_owned());
        let tagged = Arc::new(tagged);
        copies
            .extend(everyone(state, tenant).await?.into_iter().filter(|u| u.id != sender.id).map(|u| copy(u, &tagged)));
    }
    Ok(copies)
}

/// The references of a reply to the user's message `parent` (an entry id; none when
/// empty): the parent's own, then its id. A message of anyone else's is a 400.
pub(crate) async fn references_of(state: &AppState, user: &User, parent: &str) -> Result<Vec<String>, ApiError> {
    if parent.is_empty() {
        return Ok(vec![]);
    }
    let parent = match state.mailbox.owned(user, parent).await {
        Ok(p) => p,
        Err(ApiError::NotFound(_)) => {
            return Err(ApiError::BadRequest(format!("in_reply_to: you have no message {parent:?}")));
        }
        Err(e) => return Err(e),
    };
    let mut references = parent.list("references");
    let id = parent.field("message_id");
    if !id.is_empty() {
        references.retain(|r| r != id);
        references.push(id.to_owned());
    }
    let extra = references.len().saturating_sub(20);
    references.drain(..extra);
    Ok(references)
}

/// `In-Reply-To` and `References` for the message sent out, so that other mail programs
/// put it in its conversation too.
pub(crate) fn thread_headers(references: &[String]) -> Vec<pb::Header> {
    let Some(parent) = references.last() else { return vec![] };
    let listed: Vec<String> = references.iter().map(|r| format!("<{r}>")).collect();
    vec![
        pb::Header { name: "In-Reply-To".into(), value: format!("<{parent}>") },
        pb::Header { name: "References".into(), value: listed.join(" ") },
    ]
}

/// The message's id (the one mta-server's MIME carries, `MTA_ID@bitmail`, or a new one
/// for mail that stays here) and references, for its entries.
pub(crate) fn thread_extra(
    mta_id: Option<&str>,
    domain: &str,
    references: &[String],
) -> Result<Vec<(String, String)>, ApiError> {
    let id = match mta_id {
        Some(id) => format!("{id}@bitmail"),
        None => {
            let mut bytes = [0u8; 12];
            aws_lc_rs::rand::fill(&mut bytes)
                .map_err(|_| ApiError::Internal("the system random generator failed".into()))?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("{hex}@{domain}")
        }
    };
    let mut extra = vec![("message_id".to_owned(), id)];
    if !references.is_empty() {
        extra.push(("references".to_owned(), json!(references).to_string()));
    }
    Ok(extra)
}
