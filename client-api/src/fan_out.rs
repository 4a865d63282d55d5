//! Who gets a copy of a message sent from the webmail, its content stored once
//! (`mailbox/shared.rs`): the sender's Sent copy; each local recipient's; each member of
//! each group it is for (tagged `group`, replying to the group; not the sender, who has
//! the Sent copy); and for a broadcast, every user of the tenant (tagged `broadcast`).
//! A user reached twice gets one copy: the first.

use std::collections::HashMap;
use std::sync::Arc;

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
    let docs = groups::lookup_all(&groups::store(state), &[("kind", "user")]).await?;
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
    // Recipients see neither the Bcc list nor the delivery bookkeeping.
    mail.bcc.clear();
    mail.mta_id = None;
    mail.local_to.clear();
    mail.extra.clear();
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
        tagged.extra = HashMap::from([("broadcast".to_owned(), tenant.to_owned())]);
        let tagged = Arc::new(tagged);
        copies
            .extend(everyone(state, tenant).await?.into_iter().filter(|u| u.id != sender.id).map(|u| copy(u, &tagged)));
    }
    Ok(copies)
}
