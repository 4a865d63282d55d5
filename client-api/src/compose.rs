//! Writing mail: recipient lists, Markdown, attachments, local delivery, and the hand-off
//! to mta-server.
//!
//! Recipients at this server's mail domain are delivered here, into their inbox; the
//! others go out through mta-server. The sender keeps a copy in Sent with both.
//!
//! Recipient lists are split at `;` and `,`, and every bad address is named. The Markdown
//! is rendered (pulldown-cmark, then sanitized) as the HTML part, with the Markdown itself
//! as the text part. Attachments together are checked against `max_attachment_bytes`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bitmail_proto::v1 as pb;
use bitmail_runtime::time::now_ms;
use serde::Deserialize;
use serde_json::json;

use crate::accounts::{Role, User, acting_for};
use crate::error::ApiError;
use crate::extract::{ApiJson, CurrentUser};
use crate::groups::Group;
use crate::mailbox::{Attachment, AttachmentMeta, NewMail, Stored};
use crate::sanitize;
use crate::state::AppState;

/// One recipient list: a string of addresses separated by `;` or `,`, or a JSON list of
/// such strings.
#[derive(Default)]
pub(crate) enum Recipients {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Recipients {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Recipients;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string of addresses or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Recipients, E> {
                Ok(Recipients::One(v.to_owned()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Recipients, E> {
                Ok(Recipients::None)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Recipients, A::Error> {
                let mut all = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    all.push(s);
                }
                Ok(Recipients::Many(all))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl Recipients {
    fn entries(&self) -> Vec<String> {
        match self {
            Recipients::None => vec![],
            Recipients::One(s) => split_addresses(s),
            Recipients::Many(v) => v.iter().flat_map(|s| split_addresses(s)).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAttachment {
    filename: String,
    #[serde(default)]
    content_type: String,
    content_base64: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Compose {
    #[serde(default)]
    to: Recipients,
    #[serde(default)]
    cc: Recipients,
    #[serde(default)]
    bcc: Recipients,
    #[serde(default)]
    subject: String,
    /// The body in Markdown: sent as its HTML rendering plus itself as the text part.
    #[serde(default)]
    markdown: String,
    /// Or the parts given directly (ignored when `markdown` is set).
    #[serde(default)]
    text: String,
    #[serde(default)]
    html: String,
    #[serde(default)]
    attachments: Vec<NewAttachment>,
    /// To every user of the sender's tenant besides the recipients (admins only),
    /// stored once ([`crate::fan_out`]).
    #[serde(default)]
    broadcast: bool,
    /// The id of the user's message this one replies to: it joins its conversation.
    #[serde(default)]
    in_reply_to: String,
}

/// Splits `a@x.org; "Doe, Jo" <jo@y.org>, b@z.org` at `;` and `,` outside quotes and
/// angle brackets; empty entries are dropped.
pub(crate) fn split_addresses(raw: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut current, mut quoted, mut angle) = (String::new(), false, false);
    for c in raw.chars() {
        match c {
            '"' if !angle => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' | ';' if !quoted && !angle => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.push(current);
    out.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
}

fn valid_local_part(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
}

fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// The address of a mailbox (`ada@x.org` or `Ada <ada@x.org>`), if it is one.
pub(crate) fn address_of(mailbox: &str) -> Option<String> {
    let mailbox = mailbox.trim();
    if mailbox.chars().any(|c| c.is_control()) {
        return None;
    }
    let addr = match (mailbox.rfind('<'), mailbox.ends_with('>')) {
        (Some(open), true) => &mailbox[open + 1..mailbox.len() - 1],
        (None, false) => mailbox,
        _ => return None,
    };
    let (local, domain) = addr.trim().rsplit_once('@')?;
    (valid_local_part(local) && valid_domain(domain)).then(|| format!("{local}@{}", domain.to_ascii_lowercase()))
}

/// A recipient after checking.
struct Recipient {
    mailbox: String,
    /// The user here, for an address at this server's mail domain.
    local: Option<User>,
    /// The group here, for a group's address ([`crate::groups`]).
    group: Option<Group>,
}

impl Recipient {
    fn external(&self) -> bool {
        self.local.is_none() && self.group.is_none()
    }
}

/// Checks every recipient of one field; bad ones are named in `problems`.
async fn check_field(
    state: &AppState,
    field: &str,
    entries: Vec<String>,
    problems: &mut Vec<String>,
) -> Result<Vec<Recipient>, ApiError> {
    let mut bad = Vec::new();
    let mut out = Vec::new();
    for mailbox in entries {
        let Some(addr) = address_of(&mailbox) else {
            bad.push(format!("{mailbox:?}"));
            continue;
        };
        let (local_part, domain) = addr.rsplit_once('@').unwrap_or_default();
        let (mut local, mut group) = (None, None);
        if domain.eq_ignore_ascii_case(&state.mail_domain) {
            let name = local_part.to_ascii_lowercase();
            local = state.mailbox.user_named(&name).await?;
            if local.is_none() {
                group = crate::groups::group_named(state, &name).await?;
            }
            if local.is_none() && group.is_none() {
                problems.push(format!("{field}: there is no user {addr} here"));
                continue;
            }
        }
        out.push(Recipient { mailbox, local, group });
    }
    match bad.len() {
        0 => {}
        1 => problems.push(format!("{field}: {} is not a valid address", bad[0])),
        _ => problems.push(format!("{field}: {} are not valid addresses", bad.join(", "))),
    }
    Ok(out)
}

fn content_type_ok(ct: &str) -> bool {
    let mut parts = ct.splitn(2, '/');
    let token = |s: &str| {
        !s.is_empty() && s.len() <= 127 && s.chars().all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    matches!((parts.next(), parts.next()), (Some(a), Some(b)) if token(a) && token(b))
}

/// Decodes and checks the attachments against the size limit.
fn attachments(list: Vec<NewAttachment>, limit: usize) -> Result<Vec<Attachment>, ApiError> {
    let mut out = Vec::with_capacity(list.len());
    let mut total = 0usize;
    for (i, a) in list.into_iter().enumerate() {
        let field = format!("attachments[{i}]");
        let name = a.filename.trim();
        if name.is_empty() || name.len() > 255 || name.chars().any(|c| c.is_control() || c == '/' || c == '\\') {
            return Err(ApiError::BadRequest(format!(
                "{field}.filename: 1 to 255 characters, no control characters or slashes"
            )));
        }
        let content_type = if a.content_type.trim().is_empty() {
            "application/octet-stream".to_owned()
        } else {
            a.content_type.trim().to_ascii_lowercase()
        };
        if !content_type_ok(&content_type) {
            return Err(ApiError::BadRequest(format!("{field}.content_type: {content_type:?} is not a MIME type")));
        }
        let content = base64::engine::general_purpose::STANDARD
            .decode(a.content_base64.trim())
            .map_err(|e| ApiError::BadRequest(format!("{field}.content_base64: not base64 ({e})")))?;
        total += content.len();
        if total > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "attachments: more than the limit of {} in all",
                human_size(limit)
            )));
        }
        let meta =
            AttachmentMeta { filename: name.to_owned(), content_type, size: content.len(), content_id: String::new() };
        out.push(Attachment { meta, content });
    }
    Ok(out)
}

fn human_size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

/// `POST /api/messages`: sends a message.
pub(crate) async fn send(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<Compose>,
) -> Result<Response, ApiError> {
    let (to, cc, bcc) = (body.to.entries(), body.cc.entries(), body.bcc.entries());
    state.send_limit.check_recipients(to.len() + cc.len() + bcc.len())?;
    let mut problems = Vec::new();
    let to = check_field(&state, "to", to, &mut problems).await?;
    let cc = check_field(&state, "cc", cc, &mut problems).await?;
    let bcc = check_field(&state, "bcc", bcc, &mut problems).await?;
    if body.broadcast && state.accounts.current_role(&user).await? != Role::Admin {
        return Err(ApiError::Forbidden("broadcast: only an admin sends to every user of the tenant".into()));
    }
    if problems.is_empty() && to.is_empty() && cc.is_empty() && bcc.is_empty() && !body.broadcast {
        problems.push("to: at least one recipient is needed".into());
    }
    if body.subject.contains(['\r', '\n']) {
        problems.push("subject: must be one line".into());
    }
    if !problems.is_empty() {
        return Err(ApiError::BadRequest(problems.join("; ")));
    }
    let files = attachments(body.attachments, state.max_attachment_bytes)?;
    // Counted once the message is known to be good, before anything is sent or stored.
    state.send_limit.acquire(&user.name)?;
    let (text, html) = if body.markdown.trim().is_empty() {
        (body.text, body.html)
    } else {
        (body.markdown.clone(), sanitize::markdown(&body.markdown))
    };

    // The conversation it continues, checked before anything is sent.
    let references = crate::fan_out::references_of(&state, &user, &body.in_reply_to).await?;
    let from = format!("{}@{}", user.name, state.mail_domain);
    let external = |list: &[Recipient]| -> Vec<String> {
        list.iter().filter(|r| r.external()).map(|r| r.mailbox.clone()).collect()
    };
    let (ext_to, ext_cc, ext_bcc) = (external(&to), external(&cc), external(&bcc));
    let mta_id = if ext_to.is_empty() && ext_cc.is_empty() && ext_bcc.is_empty() {
        None
    } else {
        let request = pb::SubmitRequest {
            from: from.clone(),
            to: ext_to,
            cc: ext_cc,
            bcc: ext_bcc,
            subject: body.subject.clone(),
            text: text.clone(),
            html: html.clone(),
            attachments: files
                .iter()
                .map(|f| pb::Attachment {
                    filename: f.meta.filename.clone(),
                    content_type: f.meta.content_type.clone(),
                    content: f.content.clone(),
                    content_id: String::new(),
                })
                .collect(),
            tenant: user.tenant.clone(),
            headers: crate::fan_out::thread_headers(&references),
            ..Default::default()
        };
        let (metadata, _, request) = acting_for(&user, request).into_parts();
        let submitted = state.pool.submit(&state.mta_bearer, &metadata, request).await?;
        let id = submitted.response.message_id;
        state.deliveries.note_sender(&id, &user.id);
        let node = &state.pool.nodes()[submitted.node];
        tracing::debug!(mta_id = %id, node = %node.name(), possible_duplicate = submitted.possible_duplicate, "submitted");
        Some((id, node.config.url.clone()))
    };
    let (mta_id, mta_node) = mta_id.unzip();

    let mailboxes = |list: &[Recipient]| -> Vec<String> { list.iter().map(|r| r.mailbox.clone()).collect() };
    let mut locals: Vec<&User> = Vec::new();
    let mut groups: Vec<&Group> = Vec::new();
    let mut seen = HashSet::new();
    for r in to.iter().chain(&cc).chain(&bcc) {
        if let Some(u) = &r.local
            && seen.insert(u.id.clone())
        {
            locals.push(u);
        }
        if let Some(g) = &r.group
            && seen.insert(g.id.clone())
        {
            groups.push(g);
        }
    }
    let mut local_to: Vec<String> = locals.iter().map(|u| format!("{}@{}", u.name, state.mail_domain)).collect();
    local_to.extend(groups.iter().map(|g| format!("{}@{}", g.name, state.mail_domain)));
    let mail = NewMail {
        from,
        to: mailboxes(&to),
        cc: mailboxes(&cc),
        bcc: mailboxes(&bcc),
        subject: body.subject,
        text,
        html,
        date_ms: now_ms(),
        mta_id: mta_id.clone(),
        local_to: local_to.clone(),
        // Which mta-server took it, asked first for its status (`sent_status`); its id
        // and conversation (`mailbox/thread.rs`).
        extra: mta_node
            .into_iter()
            .map(|url| ("mta_node".to_owned(), url))
            .chain(crate::fan_out::thread_extra(mta_id.as_deref(), &state.mail_domain, &references)?)
            .collect(),
    };
    let to_all = body.broadcast.then_some(user.tenant.as_str());
    let copies = crate::fan_out::copies(&state, &user, mail, &locals, &groups, to_all).await?;
    let delivered = copies.len() - 1;
    let (Stored::New(sent_id) | Stored::Duplicate(sent_id)) =
        state.mailbox.store_shared(copies, &files).await?.swap_remove(0);
    tracing::info!(user = %user.name, local = delivered, external = mta_id.is_some(), "message sent");
    let answer = json!({ "id": sent_id, "mta_id": mta_id, "local_to": local_to });
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Preview {
    markdown: String,
}

/// `POST /api/preview`: the HTML a Markdown body is sent as.
pub(crate) async fn preview(_user: CurrentUser, ApiJson(body): ApiJson<Preview>) -> Json<serde_json::Value> {
    Json(json!({ "html": sanitize::markdown(&body.markdown) }))
}

/// Summary fields for a JSON answer, shared by list and read.
pub(crate) fn addresses_json(fields: &HashMap<String, String>, key: &str) -> serde_json::Value {
    serde_json::from_str(fields.get(key).map_or("[]", String::as_str)).unwrap_or_else(|_| json!([]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_on_semicolons_and_commas_outside_quotes() {
        assert_eq!(split_addresses("a@x.org; b@y.org,c@z.org ;; "), ["a@x.org", "b@y.org", "c@z.org"]);
        assert_eq!(
            split_addresses(r#""Doe, Jo" <jo@y.org>; Ann <a@x.org>"#),
            [r#""Doe, Jo" <jo@y.org>"#, "Ann <a@x.org>"]
        );
        assert!(split_addresses(" ").is_empty());
    }

    #[test]
    fn addresses_are_checked() {
        assert_eq!(address_of("Ada <ada@Example.ORG>").as_deref(), Some("ada@example.org"));
        assert_eq!(address_of("bob@localhost").as_deref(), Some("bob@localhost"));
        for bad in ["not an address", "a@", "@b.org", "a@b..org", "a b@c.org", "<a@b.org", "a@b.org\r\nBcc: x@y"] {
            assert_eq!(address_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn attachments_are_decoded_and_limited() {
        let a = |name: &str, b64: &str| NewAttachment {
            filename: name.into(),
            content_type: String::new(),
            content_base64: b64.into(),
        };
        let ok = attachments(vec![a("notes.txt", "aGVsbG8=")], 10).unwrap();
        assert_eq!(ok[0].content, b"hello");
        assert_eq!(ok[0].meta.content_type, "application/octet-stream");
        assert!(matches!(attachments(vec![a("n.txt", "aGVsbG8=")], 4), Err(ApiError::PayloadTooLarge(_))));
        assert!(matches!(attachments(vec![a("../x", "aGVsbG8=")], 10), Err(ApiError::BadRequest(_))));
        assert!(matches!(attachments(vec![a("x", "***")], 10), Err(ApiError::BadRequest(_))));
    }
}
