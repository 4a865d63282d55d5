//! The groups' API ([`crate::groups`] has what they are):
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET`, `POST /api/groups` | the user's groups; a new one `{name, members?}`, its creator its first owner |
//! | `GET /api/groups/{name}` | a group with its members (its members only: 404 for others) |
//! | `POST /api/groups/{name}/members` | `{names, owner?}`: adds members (owners only) |
//! | `DELETE /api/groups/{name}/members/{member}` | removes a member (owners), or leaves (the member) |
//!
//! A name taken by a user or a group, a member added twice, an unknown user: 409 or 400
//! naming them, nothing stored. A member who is no owner editing the group: 403.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bitmail_proto::v1 as pb;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::{User, check_name};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, CurrentUser};
use crate::groups::{Group, MAX_ADDED, Member, add, group_named, members, store};
use crate::state::AppState;
use crate::unique::{self, Created};

fn member_json(m: &Member) -> Value {
    json!({ "name": m.user.name, "owner": m.owner, "joined_ms": m.joined_ms })
}

fn group_json(state: &AppState, group: &Group, members: &[Member]) -> Value {
    json!({
        "id": group.id, "name": group.name, "address": format!("{}@{}", group.name, state.mail_domain),
        "members": members.iter().map(member_json).collect::<Vec<_>>(),
    })
}

/// The group `name` and its members, for one of them; 404 for anyone else, as for a
/// group that does not exist.
async fn as_member(state: &AppState, user: &User, name: &str) -> Result<(Group, Vec<Member>, bool), ApiError> {
    let not_found = || ApiError::NotFound(format!("no group {name:?}"));
    let group = group_named(state, name).await?.ok_or_else(not_found)?;
    let members = members(state, &group).await?;
    let me = members.iter().find(|m| m.user.id == user.id).ok_or_else(not_found)?;
    let owner = me.owner;
    Ok((group, members, owner))
}

/// The users named, each an existing user not among `members` (400 or 409 naming them
/// otherwise, before anything is stored).
async fn new_members(
    state: &AppState,
    group: &Group,
    members: &[Member],
    names: &[String],
    field: &str,
) -> Result<Vec<User>, ApiError> {
    if names.is_empty() || names.len() > MAX_ADDED {
        return Err(ApiError::BadRequest(format!("{field}: 1 to {MAX_ADDED} user names")));
    }
    let (mut unknown, mut twice, mut users) = (Vec::new(), Vec::new(), Vec::new());
    let mut seen = HashSet::new();
    for name in names {
        let name = name.trim().to_ascii_lowercase();
        if !seen.insert(name.clone()) || members.iter().any(|m| m.user.name == name) {
            twice.push(name);
            continue;
        }
        match state.mailbox.user_named(&name).await? {
            Some(user) => users.push(user),
            None => unknown.push(name),
        }
    }
    if !unknown.is_empty() {
        return Err(ApiError::BadRequest(format!("{field}: there is no user {} here", unknown.join(", "))));
    }
    if !twice.is_empty() {
        return Err(ApiError::Conflict(format!(
            "{} named twice or a member of {} already",
            twice.join(", "),
            group.name
        )));
    }
    Ok(users)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewGroup {
    name: String,
    #[serde(default)]
    members: Vec<String>,
}

/// `POST /api/groups`.
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<NewGroup>,
) -> Result<Response, ApiError> {
    let name = body.name.trim().to_ascii_lowercase();
    check_name(&name)?;
    let group = Group { id: String::new(), name: name.clone() };
    let others: Vec<String> = body.members.into_iter().filter(|n| n.trim().to_ascii_lowercase() != user.name).collect();
    let others = if others.is_empty() { vec![] } else { new_members(&state, &group, &[], &others, "members").await? };
    let fields = HashMap::from([
        ("kind".to_owned(), "group".to_owned()),
        ("name".to_owned(), name.clone()),
        ("tenant".to_owned(), user.tenant.clone()),
        ("created_by".to_owned(), user.id.clone()),
        ("created_ms".to_owned(), bitmail_runtime::time::now_ms().to_string()),
    ]);
    let id = match unique::create(&store(&state), unique::user_key(&name), fields).await? {
        Created::New(id) => id,
        Created::Taken(_) => {
            return Err(ApiError::Conflict(format!("the name {name} is taken: a user or a group has it")));
        }
    };
    let group = Group { id, name };
    add(&state, &group, std::slice::from_ref(&user), true).await?;
    add(&state, &group, &others, false).await?;
    let members = members(&state, &group).await?;
    tracing::info!(group = %group.name, by = %user.name, members = members.len(), "group created");
    Ok((StatusCode::CREATED, Json(group_json(&state, &group, &members))).into_response())
}

/// `GET /api/groups`: the groups the user is a member of.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state);
    let mine = state.mailbox.lookup_all(&[("kind", "group-member"), ("user", &user.id)]).await?;
    let mut groups = Vec::new();
    for m in mine {
        let Some(id) = m.fields.get("group") else { continue };
        let Ok(doc) = store.clone().get(pb::GetRequest { id: id.clone() }).await else { continue };
        let doc = doc.into_inner();
        groups.push(json!({
            "name": doc.fields.get("name"), "owner": m.fields.get("owner").is_some_and(|o| o == "true"),
            "address": format!("{}@{}", doc.fields.get("name").map_or("", String::as_str), state.mail_domain),
        }));
    }
    Ok(Json(json!({ "groups": groups })))
}

/// `GET /api/groups/{name}`.
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let (group, members, _) = as_member(&state, &user, &name).await?;
    Ok(Json(group_json(&state, &group, &members)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Added {
    names: Vec<String>,
    #[serde(default)]
    owner: bool,
}

fn owners_only(group: &Group) -> ApiError {
    ApiError::Forbidden(format!("only an owner of {} may add or remove its members", group.name))
}

/// `POST /api/groups/{name}/members`.
pub(crate) async fn add_members(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<Added>,
) -> Result<Json<Value>, ApiError> {
    let (group, members, owner) = as_member(&state, &user, &name).await?;
    if !owner {
        return Err(owners_only(&group));
    }
    let users = new_members(&state, &group, &members, &body.names, "names").await?;
    add(&state, &group, &users, body.owner).await?;
    tracing::info!(group = %group.name, by = %user.name, added = users.len(), "members added");
    let members = crate::groups::members(&state, &group).await?;
    Ok(Json(group_json(&state, &group, &members)))
}

/// `DELETE /api/groups/{name}/members/{member}`: by an owner, or the member leaving.
pub(crate) async fn remove_member(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    ApiPath((name, member)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (group, members, owner) = as_member(&state, &user, &name).await?;
    if !owner && member != user.name {
        return Err(owners_only(&group));
    }
    let Some(gone) = members.iter().find(|m| m.user.name == member) else {
        return Err(ApiError::NotFound(format!("{member} is not a member of {}", group.name)));
    };
    if gone.owner && members.iter().filter(|m| m.owner).count() == 1 {
        return Err(ApiError::Conflict(format!("{member} is the last owner of {}: a group keeps one", group.name)));
    }
    store(&state).delete(pb::DeleteRequest { id: gone.doc.clone() }).await?;
    tracing::info!(group = %group.name, by = %user.name, member = %member, "member removed");
    Ok(StatusCode::NO_CONTENT)
}
