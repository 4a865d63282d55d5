//! Groups (issue 18): an address in the mail domain (`team@…`) with members and owners,
//! as store documents; their API is `groups_api.rs`. Mail to a group is stored once
//! (`fan_out.rs`, `mailbox/shared.rs`): each member's inbox gets a small entry, tagged
//! `group`, replying to the group. A member gets the group's mail from the moment they
//! join and keeps what arrived while they were a member after they leave.
//!
//! - `{kind: "group", name, tenant, created_by, created_ms}`, created with the unique key
//!   `user/NAME` ([`crate::unique::user_key`]): users and groups share one name space,
//!   so a group cannot take a user's address, nor a user a group's;
//! - `{kind: "group-member", group, user, name, owner, joined_ms}`, one per member,
//!   created with the unique key `member/GROUP/USER`: a member is added once.

use std::collections::HashMap;

use bitmail_proto::v1::store_client::StoreClient;
use tonic::transport::Channel;

use crate::accounts::User;
use crate::error::ApiError;
use crate::state::AppState;
use crate::unique::{self, Created};

/// Members added by one call.
pub(crate) const MAX_ADDED: usize = 1000;

/// A group, as stored.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) id: String,
    pub(crate) name: String,
}

/// A member, as stored.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) doc: String,
    pub(crate) user: User,
    pub(crate) owner: bool,
    pub(crate) joined_ms: u64,
}

fn member_key(group: &str, user: &str) -> String {
    format!("member/{group}/{user}")
}

pub(crate) fn store(state: &AppState) -> StoreClient<Channel> {
    StoreClient::new(state.backend_channel.clone())
}

/// The group named `name`, if there is one.
pub(crate) async fn group_named(state: &AppState, name: &str) -> Result<Option<Group>, ApiError> {
    let docs = state.mailbox.lookup_all(&[("kind", "group"), ("name", name)]).await?;
    Ok(docs.into_iter().next().map(|d| Group { id: d.id, name: name.to_owned() }))
}

/// Every member of `group`, in the order they joined.
pub(crate) async fn members(state: &AppState, group: &Group) -> Result<Vec<Member>, ApiError> {
    let docs = state.mailbox.lookup_all(&[("kind", "group-member"), ("group", &group.id)]).await?;
    Ok(docs
        .into_iter()
        .map(|d| {
            let field = |k: &str| d.fields.get(k).cloned().unwrap_or_default();
            let user = User::from_fields(field("user"), &field("name"), &HashMap::new());
            Member {
                doc: d.id,
                user,
                owner: field("owner") == "true",
                joined_ms: field("joined_ms").parse().unwrap_or(0),
            }
        })
        .collect())
}

/// Stores `users` as members; the first failure is answered (each one was checked).
pub(crate) async fn add(state: &AppState, group: &Group, users: &[User], owner: bool) -> Result<(), ApiError> {
    let now = bitmail_runtime::time::now_ms().to_string();
    for user in users {
        let fields = HashMap::from([
            ("kind".to_owned(), "group-member".to_owned()),
            ("group".to_owned(), group.id.clone()),
            ("user".to_owned(), user.id.clone()),
            ("name".to_owned(), user.name.clone()),
            ("owner".to_owned(), owner.to_string()),
            ("joined_ms".to_owned(), now.clone()),
        ]);
        if let Created::Taken(_) = unique::create(&store(state), member_key(&group.id, &user.id), fields).await? {
            return Err(ApiError::Conflict(format!("{} is a member of {} already", user.name, group.name)));
        }
    }
    Ok(())
}
