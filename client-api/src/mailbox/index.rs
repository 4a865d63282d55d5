//! What makes a folder's first page and a search cost what they answer, not the size of
//! the mailbox (issue 18: 100,000 messages).
//!
//! - Every list entry holds `box = OWNER/FOLDER`, and `unread = OWNER/FOLDER` while it is
//!   unread: a folder page is the newest-first walk of one index entry
//!   (`Lookup.newest_first`), its total and unread counts are `Count`s of one pair each.
//! - The first body piece holds the searchable text, as the store's full-text fields:
//!   `_text.from`, `_text.to` (to and cc), `_text.subject`, `_text.body` (the body's first
//!   piece itself, so the text is stored once). A search is `Search` over the owner's
//!   body pieces, newest first; each hit names its entry by `content_ref`.
//!   The body names each user whose search may find it (`reader.ID = 1`): content may be
//!   shared by several mailboxes (`shared.rs`), and a search asks for the reader.
//! - Mailboxes written before this have none of it: the first page or search of such a
//!   user walks the whole mailbox once and adds it (`ensure_indexed`), then stores a
//!   marker (`{kind: "mailbox-index", owner, version}`) so it never happens again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bitmail_proto::v1 as pb;
use bitmail_runtime::sync::lock;

use super::{Folder, Mailbox, NewMail, Summary};
use crate::accounts::User;
use crate::error::ApiError;

/// The index marker's version: what `ensure_indexed` adds.
const INDEX_VERSION: &str = "3";

/// The users whose mailbox this edge has seen indexed (so the marker is read once).
#[derive(Clone, Default)]
pub(crate) struct Indexed(Arc<Mutex<HashSet<String>>>);

/// `box` (and `unread`) of an entry.
pub(crate) fn box_of(owner: &str, folder: &str) -> String {
    format!("{owner}/{folder}")
}

/// The index fields of a new entry.
pub(crate) fn entry_index(owner: &User, folder: Folder) -> Vec<(String, String)> {
    let b = box_of(&owner.id, folder.name());
    let mut out = vec![("box".to_owned(), b.clone())];
    if folder != Folder::Sent {
        out.push(("unread".to_owned(), b));
    }
    out
}

/// The field of a body piece naming one user whose searches find it.
pub(crate) fn reader_key(user_id: &str) -> String {
    format!("reader.{user_id}")
}

/// The searchable fields of a message's first body piece, besides `_text.body`.
pub(crate) fn search_fields(mail: &NewMail) -> Vec<(String, String)> {
    let to: Vec<&str> = mail.to.iter().chain(&mail.cc).map(String::as_str).collect();
    vec![
        ("_text.from".to_owned(), mail.from.clone()),
        ("_text.to".to_owned(), to.join(", ")),
        ("_text.subject".to_owned(), mail.subject.clone()),
    ]
}

/// The text fields a query may name, as the user types them (`from:ada`).
pub(crate) const SEARCH_FIELDS: [&str; 4] = ["from", "to", "subject", "body"];

impl Mailbox {
    /// Adds the index fields to every entry of `user` written before them, once.
    pub(crate) async fn ensure_indexed(&self, user: &User) -> Result<(), ApiError> {
        if lock(&self.indexed.0).contains(&user.id) {
            return Ok(());
        }
        let marker = self.lookup_page(&[("kind", "mailbox-index"), ("owner", &user.id)], 10, "", false).await?;
        if !marker.0.iter().any(|d| d.fields.get("version").map(String::as_str) == Some(INDEX_VERSION)) {
            let mut token = String::new();
            loop {
                let (docs, next) =
                    self.lookup_page(&[("kind", "mail"), ("owner", &user.id)], 500, &token, false).await?;
                for doc in docs {
                    if !doc.fields.contains_key("box") {
                        self.index_entry(Summary { id: doc.id, fields: doc.fields }).await?;
                    }
                }
                match next {
                    Some(t) => token = t,
                    None => break,
                }
            }
            self.name_readers(user).await?;
            let fields = HashMap::from([
                ("kind".to_owned(), "mailbox-index".to_owned()),
                ("owner".to_owned(), user.id.clone()),
                ("version".to_owned(), INDEX_VERSION.to_owned()),
            ]);
            self.put(fields).await?;
        }
        lock(&self.indexed.0).insert(user.id.clone());
        Ok(())
    }

    /// Version 3: the first body piece of each of the user's own messages names them as
    /// a reader (what a search asks for since content may be shared, `shared.rs`).
    async fn name_readers(&self, user: &User) -> Result<(), ApiError> {
        let reader = reader_key(&user.id);
        let mut token = String::new();
        loop {
            let (docs, next) = self.lookup_page(&[("kind", "body"), ("owner", &user.id)], 500, &token, false).await?;
            for doc in docs {
                let first = doc.fields.get("part").is_none_or(|p| p == "0");
                if first && !doc.fields.contains_key(&reader) {
                    let fields = HashMap::from([(reader.clone(), "1".to_owned())]);
                    let request = pb::UpdateRequest { id: doc.id, fields, remove: vec![], expected_version: 0 };
                    self.store.clone().update(request).await?;
                }
            }
            match next {
                Some(t) => token = t,
                None => return Ok(()),
            }
        }
    }

    /// One old entry: its `box`/`unread`, and its body's searchable fields.
    async fn index_entry(&self, mail: Summary) -> Result<(), ApiError> {
        let (owner, folder) = (mail.field("owner").to_owned(), mail.field("folder").to_owned());
        let mut fields = HashMap::from([("box".to_owned(), box_of(&owner, &folder))]);
        if !mail.read() {
            fields.insert("unread".to_owned(), box_of(&owner, &folder));
        }
        fields.insert("content_ref".to_owned(), mail.content_ref().to_owned());
        // Not `update_with`: what the user sees does not change, so no live event.
        let request = pb::UpdateRequest { id: mail.id.clone(), fields, remove: vec![], expected_version: 0 };
        self.store.clone().update(request).await?;
        let bodies = self.lookup_all(&[("kind", "body"), ("mail_id", mail.content_ref())]).await?;
        if let Some(first) = bodies.iter().find(|d| d.fields.get("part").is_none_or(|p| p == "0")) {
            let to: Vec<String> = mail.list("to").into_iter().chain(mail.list("cc")).collect();
            let text = first.fields.get("text").cloned().unwrap_or_default();
            let fields = HashMap::from([
                ("_text.from".to_owned(), mail.field("from").to_owned()),
                ("_text.to".to_owned(), to.join(", ")),
                ("_text.subject".to_owned(), mail.field("subject").to_owned()),
                ("_text.body".to_owned(), text),
            ]);
            let request =
                pb::UpdateRequest { id: first.id.clone(), fields, remove: vec!["text".into()], expected_version: 0 };
            self.store.clone().update(request).await?;
        }
        Ok(())
    }

    /// One page of a lookup: documents and the next page's token.
    pub(crate) async fn lookup_page(
        &self,
        subset: &[(&str, &str)],
        limit: u32,
        page_token: &str,
        newest_first: bool,
    ) -> Result<(Vec<pb::Document>, Option<String>), ApiError> {
        let request = pb::LookupRequest {
            subset: subset.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            limit,
            page_token: page_token.to_owned(),
            newest_first,
        };
        read_stream(self.store.clone().lookup(request).await?.into_inner()).await
    }

    pub(crate) async fn count(&self, key: &str, value: &str) -> Result<usize, ApiError> {
        let request = pb::CountRequest { subset: HashMap::from([(key.to_owned(), value.to_owned())]), at_most: 0 };
        let answer = self.store.clone().count(request).await?.into_inner();
        Ok(usize::try_from(answer.count).unwrap_or(usize::MAX))
    }

    /// Marks an owned message read or unread, keeping its `unread` index entry true.
    pub(crate) async fn set_read(&self, mail: &Summary, read: bool) -> Result<(), ApiError> {
        let mut fields = HashMap::from([("read".to_owned(), read.to_string())]);
        let mut remove = vec![];
        if read {
            remove.push("unread".to_owned());
        } else {
            fields.insert("unread".to_owned(), box_of(mail.field("owner"), mail.field("folder")));
        }
        self.update_with(mail, fields, remove).await
    }

    /// The user's messages matching `terms`, newest first: a page of at most `limit`, and
    /// the token of the next.
    pub(crate) async fn search(
        &self,
        user: &User,
        terms: Vec<pb::SearchTerm>,
        limit: u32,
        page_token: &str,
    ) -> Result<(Vec<Summary>, Option<String>), ApiError> {
        self.ensure_indexed(user).await?;
        let request = pb::SearchRequest {
            subset: HashMap::from([("kind".to_owned(), "body".to_owned()), (reader_key(&user.id), "1".to_owned())]),
            terms,
            limit,
            page_token: page_token.to_owned(),
            oldest_first: false,
        };
        let (bodies, next) = read_stream(self.store.clone().search(request).await?.into_inner()).await?;
        // Each hit's entry, looked up all at once (a page is at most 200).
        let mut lookups = tokio::task::JoinSet::new();
        for (at, body) in bodies.into_iter().enumerate() {
            let (mailbox, owner) = (self.clone(), user.id.clone());
            lookups.spawn(async move {
                let content = body.fields.get("mail_id").cloned().unwrap_or_default();
                let subset = [("kind", "mail"), ("owner", owner.as_str()), ("content_ref", content.as_str())];
                mailbox.lookup_page(&subset, 1, "", false).await.map(|(entries, _)| (at, entries))
            });
        }
        let mut hits = Vec::new();
        while let Some(done) = lookups.join_next().await {
            let (at, entries) = done.map_err(|e| ApiError::Internal(format!("a search lookup failed: {e}")))??;
            // A body whose entry is gone (being deleted) is no message.
            hits.extend(entries.into_iter().map(|d| (at, Summary { id: d.id, fields: d.fields })));
        }
        hits.sort_by_key(|(at, _)| *at);
        let found = hits.into_iter().map(|(_, s)| s).collect();
        Ok((found, next))
    }
}

async fn read_stream(
    mut stream: tonic::Streaming<pb::LookupResponse>,
) -> Result<(Vec<pb::Document>, Option<String>), ApiError> {
    let (mut docs, mut next) = (Vec::new(), None);
    while let Some(item) = stream.message().await? {
        match item.item {
            Some(pb::lookup_response::Item::Document(d)) => docs.push(d),
            Some(pb::lookup_response::Item::NextPageToken(t)) => next = Some(t),
            None => {}
        }
    }
    Ok((docs, next))
}
