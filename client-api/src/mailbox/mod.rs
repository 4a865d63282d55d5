//! Mailboxes as store documents in backend-server.
//!
//! - `{kind: "mail", owner, folder: "inbox"|"sent", from, to, cc, bcc (JSON lists),
//!   subject, date_ms, read, preview, attachments (JSON list of name, type, size),
//!   mta_id, local_to (JSON list), state, provider, content_ref}`: what a folder list
//!   shows, small;
//!   Also `thread`, `msgid` and `subj`: its conversation ([`thread`]);
//! - `{kind: "body", mail_id, owner, part, text, html}`: the content, read when a
//!   message is opened, in pieces of at most [`CHUNK_BYTES`] each (`part` 0, 1, ...), so
//!   a body of any size the edge accepts is stored and read back whole; `mail_id` is the entry's `content_ref` (the entry's own id in messages
//!   stored before `content_ref` existed, which have none);
//! - `{kind: "chunk", mail_id, owner, attachment, content_b64}`: attachment bytes in
//!   pieces of at most [`CHUNK_BYTES`], so no document outgrows a gRPC message; stored in
//!   order, read back in id (creation) order.
//!
//! A message is written content first, list entry last: the body and the chunks, then
//! the entry that makes it visible (and, for received mail, holds its unique key,
//! [`crate::unique`]). A failure midway leaves no entry, so a retry stores the whole
//! message again; what the failed try wrote is unreachable and removed when it can be.
//! When the entry's key is taken (a retry racing the first delivery), the content just
//! written is removed and the message answered as a duplicate. That is `write.rs`.
//!
//! Every read goes through [`Mailbox::owned`], which answers 404 for a message of another
//! user exactly as for one that does not exist.

use std::collections::HashMap;
use std::sync::Arc;

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::store_client::StoreClient;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::accounts::User;
use crate::error::ApiError;
use crate::live::{Change, Live};

mod index;
mod shared;
mod thread;
mod write;

pub(crate) use index::SEARCH_FIELDS;
pub(crate) use shared::Copy;

/// What storing a message did ([`Mailbox::store_shared`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    New(String),
    /// The message was already there, with this id; nothing was added.
    Duplicate(String),
}

/// Attachment bytes per chunk document (1 MiB, 1.4 MB in base64).
pub(crate) const CHUNK_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Folder {
    Inbox,
    Sent,
}

impl Folder {
    pub(crate) fn parse(name: &str) -> Result<Self, ApiError> {
        match name {
            "inbox" => Ok(Folder::Inbox),
            "sent" => Ok(Folder::Sent),
            other => Err(ApiError::NotFound(format!("no folder {other:?} (there are \"inbox\" and \"sent\")"))),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Folder::Inbox => "inbox",
            Folder::Sent => "sent",
        }
    }
}

/// An attachment's description (its bytes are in chunk documents).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct AttachmentMeta {
    pub(crate) filename: String,
    pub(crate) content_type: String,
    pub(crate) size: usize,
    /// Set for an inline part the HTML shows as `cid:...`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) content_id: String,
}

/// An attachment with its bytes.
#[derive(Debug, Clone)]
pub(crate) struct Attachment {
    pub(crate) meta: AttachmentMeta,
    pub(crate) content: Vec<u8>,
}

/// A message to store in one folder of one user.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewMail {
    pub(crate) from: String,
    pub(crate) to: Vec<String>,
    pub(crate) cc: Vec<String>,
    pub(crate) bcc: Vec<String>,
    pub(crate) subject: String,
    pub(crate) text: String,
    pub(crate) html: String,
    pub(crate) date_ms: u64,
    pub(crate) mta_id: Option<String>,
    pub(crate) local_to: Vec<String>,
    /// More fields of the list entry (received mail: `inbound_key`, `message_id`,
    /// `reply_to`, `verdicts`).
    pub(crate) extra: HashMap<String, String>,
}

/// A stored message's list entry.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) id: String,
    pub(crate) fields: HashMap<String, String>,
}

impl Summary {
    /// What the body and chunks of this message name in their `mail_id`.
    pub(crate) fn content_ref(&self) -> &str {
        match self.field("content_ref") {
            "" => &self.id,
            content => content,
        }
    }

    pub(crate) fn field(&self, key: &str) -> &str {
        self.fields.get(key).map_or("", String::as_str)
    }

    pub(crate) fn list(&self, key: &str) -> Vec<String> {
        serde_json::from_str(self.field(key)).unwrap_or_default()
    }

    pub(crate) fn date_ms(&self) -> u64 {
        self.field("date_ms").parse().unwrap_or(0)
    }

    pub(crate) fn read(&self) -> bool {
        self.field("read") == "true"
    }

    pub(crate) fn attachments(&self) -> Vec<AttachmentMeta> {
        serde_json::from_str(self.field("attachments")).unwrap_or_default()
    }
}

/// What a folder page holds.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) total: usize,
    pub(crate) unread: usize,
    pub(crate) items: Vec<Summary>,
}

#[derive(Clone)]
pub(crate) struct Mailbox {
    store: StoreClient<Channel>,
    indexed: index::Indexed,
    /// Told of every change, for the owner's open webmails ([`crate::live`]).
    live: Arc<Live>,
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// The first characters of the text, on one line, for the list.
fn preview_of(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(140).collect()
}

impl Mailbox {
    pub(crate) fn new(store: StoreClient<Channel>, live: Arc<Live>) -> Self {
        Self { store, indexed: index::Indexed::default(), live }
    }

    pub(crate) fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// Tells the owner's open webmails that `mail` was `change`d.
    fn tell(&self, mail: &Summary, change: &'static str) {
        self.live.publish(mail.field("owner"), Change::mail(mail.field("folder"), &mail.id, change));
    }

    /// Every document containing `subset`, in creation order, following page tokens.
    pub(crate) async fn lookup_all(&self, subset: &[(&str, &str)]) -> Result<Vec<pb::Document>, ApiError> {
        let mut docs = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = pb::LookupRequest {
                subset: subset.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
                limit: 1000,
                page_token: std::mem::take(&mut page_token),
                newest_first: false,
            };
            let mut stream = self.store.clone().lookup(request).await?.into_inner();
            while let Some(item) = stream.message().await? {
                match item.item {
                    Some(pb::lookup_response::Item::Document(d)) => docs.push(d),
                    Some(pb::lookup_response::Item::NextPageToken(t)) => page_token = t,
                    None => {}
                }
            }
            if page_token.is_empty() {
                return Ok(docs);
            }
        }
    }

    async fn put(&self, fields: HashMap<String, String>) -> Result<String, ApiError> {
        Ok(self.store.clone().put(pb::PutRequest { fields }).await?.into_inner().id)
    }

    /// The message `id` if it is `user`'s; 404 otherwise, whether it exists or not.
    pub(crate) async fn owned(&self, user: &User, id: &str) -> Result<Summary, ApiError> {
        let not_found = || ApiError::NotFound(format!("no message with id {id:?}"));
        if id.is_empty() || id.len() > 128 {
            return Err(not_found());
        }
        let doc = match self.store.clone().get(pb::GetRequest { id: id.to_owned() }).await {
            Ok(d) => d.into_inner(),
            Err(s) if matches!(s.code(), tonic::Code::NotFound | tonic::Code::InvalidArgument) => {
                return Err(not_found());
            }
            Err(s) => return Err(s.into()),
        };
        let field = |k: &str| doc.fields.get(k).map_or("", String::as_str);
        if field("kind") != "mail" || field("owner") != user.id {
            return Err(not_found());
        }
        Ok(Summary { id: doc.id, fields: doc.fields })
    }

    /// A page of `folder`, newest first, with the folder's total and unread counts: the
    /// newest-first walk of the folder's index entry, skipping earlier pages
    /// ([`index`]), so the first pages cost the same in a mailbox of any size.
    pub(crate) async fn page(
        &self,
        user: &User,
        folder: Folder,
        page: usize,
        per_page: usize,
    ) -> Result<Page, ApiError> {
        self.ensure_indexed(user).await?;
        let key = index::box_of(&user.id, folder.name());
        let (total, unread) = tokio::try_join!(self.count("box", &key), self.count("unread", &key))?;
        let mut skip = page.saturating_mul(per_page);
        let mut items = Vec::with_capacity(per_page);
        let mut token = String::new();
        while items.len() < per_page && skip < total {
            let want = (skip + per_page - items.len()).min(1000);
            let (docs, next) = self.lookup_page(&[("box", &key)], want as u32, &token, true).await?;
            let passed = docs.len().min(skip);
            skip -= passed;
            items.extend(docs.into_iter().skip(passed).map(|d| Summary { id: d.id, fields: d.fields }));
            match next {
                Some(t) => token = t,
                None => break,
            }
        }
        items.truncate(per_page);
        Ok(Page { total, unread, items })
    }

    /// The body (text, html) of an owned message.
    pub(crate) async fn body(&self, mail: &Summary) -> Result<(String, String), ApiError> {
        let mut docs = self.lookup_all(&[("kind", "body"), ("mail_id", mail.content_ref())]).await?;
        // Pieces of one body, in order (one piece, without `part`, before bodies split).
        docs.sort_by_key(|d| d.fields.get("part").and_then(|p| p.parse::<usize>().ok()).unwrap_or(0));
        let (mut text, mut html) = (String::new(), String::new());
        for doc in &docs {
            // The first piece keeps its text as the searchable `_text.body` ([`index`]).
            let piece = doc.fields.get("text").or_else(|| doc.fields.get("_text.body"));
            text.push_str(piece.map_or("", String::as_str));
            html.push_str(doc.fields.get("html").map_or("", String::as_str));
        }
        Ok((text, html))
    }

    /// The bytes of attachment `index` of an owned message.
    pub(crate) async fn attachment(&self, mail: &Summary, index: usize) -> Result<Attachment, ApiError> {
        let meta = mail
            .attachments()
            .into_iter()
            .nth(index)
            .ok_or_else(|| ApiError::NotFound(format!("message {:?} has no attachment {index}", mail.id)))?;
        let index = index.to_string();
        let chunks =
            self.lookup_all(&[("kind", "chunk"), ("mail_id", mail.content_ref()), ("attachment", &index)]).await?;
        use base64::Engine as _;
        let mut content = Vec::with_capacity(meta.size);
        for chunk in chunks {
            let b64 = chunk.fields.get("content_b64").map_or("", String::as_str);
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| ApiError::Internal(format!("stored attachment chunk {} is damaged: {e}", chunk.id)))?;
            content.extend_from_slice(&bytes);
        }
        Ok(Attachment { meta, content })
    }

    /// The sent messages submitted to mta-server as `mta_id` (one per edge that stored
    /// it; in practice one).
    pub(crate) async fn sent_with_mta_id(&self, mta_id: &str) -> Result<Vec<Summary>, ApiError> {
        let docs = self.lookup_all(&[("kind", "mail"), ("folder", "sent"), ("mta_id", mta_id)]).await?;
        Ok(docs.into_iter().map(|d| Summary { id: d.id, fields: d.fields }).collect())
    }

    /// Merges `fields` into an owned message's list entry.
    pub(crate) async fn update(&self, mail: &Summary, fields: HashMap<String, String>) -> Result<(), ApiError> {
        self.update_with(mail, fields, vec![]).await
    }

    /// Merges `fields` into an owned message's list entry and removes `remove`.
    async fn update_with(
        &self,
        mail: &Summary,
        fields: HashMap<String, String>,
        remove: Vec<String>,
    ) -> Result<(), ApiError> {
        let request = pb::UpdateRequest { id: mail.id.clone(), fields, remove, expected_version: 0 };
        self.store.clone().update(request).await?;
        self.tell(mail, "changed");
        Ok(())
    }

    /// Removes an owned message, and its body and attachments unless another mailbox's
    /// entry still points at them (shared content, `shared.rs`).
    pub(crate) async fn delete(&self, mail: &Summary) -> Result<(), ApiError> {
        // The list entry goes first: once it is gone the message is gone for the user,
        // and what remains of a half-finished delete is unreachable.
        self.store.clone().delete(pb::DeleteRequest { id: mail.id.clone() }).await?;
        self.tell(mail, "deleted");
        if mail.field("shared") == "true" && self.content_in_use(mail.content_ref()).await? {
            return Ok(());
        }
        for kind in ["body", "chunk"] {
            for doc in self.lookup_all(&[("kind", kind), ("mail_id", mail.content_ref())]).await? {
                let _ = self.store.clone().delete(pb::DeleteRequest { id: doc.id }).await;
            }
        }
        Ok(())
    }

    /// Whether `user`'s inbox already holds the received message `inbound_key`.
    pub(crate) async fn has_inbound(&self, user: &User, inbound_key: &str) -> Result<bool, ApiError> {
        let request = pb::LookupRequest {
            subset: HashMap::from([
                ("kind".to_owned(), "mail".to_owned()),
                ("owner".to_owned(), user.id.clone()),
                ("inbound_key".to_owned(), inbound_key.to_owned()),
            ]),
            limit: 1,
            page_token: String::new(),
            newest_first: false,
        };
        let mut stream = self.store.clone().lookup(request).await?.into_inner();
        while let Some(item) = stream.message().await? {
            if let Some(pb::lookup_response::Item::Document(_)) = item.item {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The user named `name`, if there is one.
    pub(crate) async fn user_named(&self, name: &str) -> Result<Option<User>, ApiError> {
        let users = self.lookup_all(&[("kind", "user"), ("name", name)]).await?;
        Ok(users.into_iter().next().map(|d| User::from_fields(d.id, name, &d.fields)))
    }
}

/// The longest subject and address kept in a list entry, in characters; the most
/// recipients of each list.
const MAX_SUBJECT_CHARS: usize = 998;
const MAX_ADDRESS_CHARS: usize = 320;
const MAX_LISTED_RECIPIENTS: usize = 1000;

/// `text` cut to `max` characters, marked with an ellipsis when cut.
fn capped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

fn capped_list(list: &[String]) -> Vec<String> {
    list.iter().take(MAX_LISTED_RECIPIENTS).map(|a| capped(a, MAX_ADDRESS_CHARS)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_previews() {
        assert_eq!(Folder::parse("inbox").unwrap(), Folder::Inbox);
        assert!(matches!(Folder::parse("spam"), Err(ApiError::NotFound(_))));
        assert_eq!(preview_of("Hello\n\n  world"), "Hello world");
        assert_eq!(preview_of(&"é".repeat(500)).chars().count(), 140);
    }
}
