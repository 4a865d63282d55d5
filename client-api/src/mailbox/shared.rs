//! One message in several mailboxes, stored once (issue 18): the sender's Sent copy, the
//! local recipients', a group's members', a broadcast's users'. The body and attachment
//! chunks are written once; each mailbox gets its own small list entry pointing at them
//! (`content_ref`, and `shared = true`), with its own read and deleted state. The first
//! body piece names every reader (`reader.ID`), so each one's search finds it.
//!
//! The content goes when its last entry goes: a delete of a shared entry counts the
//! entries still pointing at the content ([`Mailbox::delete`]). While the entries are
//! being written, a `{kind: "delivering", content_ref}` marker stands, which that count
//! includes: a reader who deletes their copy at once never removes the content the
//! others' entries are about to point at. A crash midway leaves the marker, and so the
//! content, in place: the safe way round.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bitmail_proto::v1 as pb;
use tokio::sync::Semaphore;

use super::write::{entry_fields, random_hex};
use super::{Attachment, Folder, Mailbox, NewMail, Stored};
use crate::accounts::User;
use crate::error::ApiError;
use crate::live::Change;
use crate::unique::{self, Created};

/// Entries written at once for one message.
const FAN_OUT: usize = 64;

/// One mailbox's copy: its owner, folder and entry (the content is the first copy's),
/// and the unique key its entry is created with, if any (received mail,
/// [`crate::unique::inbound_key`]).
pub(crate) struct Copy {
    pub(crate) owner: User,
    pub(crate) folder: Folder,
    pub(crate) mail: Arc<NewMail>,
    pub(crate) unique_key: Option<String>,
}

impl Mailbox {
    /// Stores `copies` with their content once; answers what became of each, in order
    /// (a copy whose unique key is taken is a duplicate). A single copy is stored as
    /// [`Mailbox::store`] does. A user named twice in one folder gets the first copy
    /// naming them only.
    pub(crate) async fn store_shared(
        &self,
        copies: Vec<Copy>,
        attachments: &[Attachment],
    ) -> Result<Vec<Stored>, ApiError> {
        let mut seen = HashSet::new();
        let copies: Vec<Copy> = copies.into_iter().filter(|c| seen.insert((c.owner.id.clone(), c.folder))).collect();
        let Some(first) = copies.first() else { return Ok(vec![]) };
        if copies.len() == 1 {
            let stored =
                self.store_inner(&first.owner, first.folder, &first.mail, attachments, first.unique_key.clone());
            return Ok(vec![stored.await?]);
        }
        let content_ref = format!("content-{}", random_hex()?);
        let marker = self
            .put(HashMap::from([
                ("kind".to_owned(), "delivering".to_owned()),
                ("content_ref".to_owned(), content_ref.clone()),
            ]))
            .await?;
        let readers: Vec<&str> = {
            let mut once = HashSet::new();
            copies.iter().map(|c| c.owner.id.as_str()).filter(|id| once.insert(*id)).collect()
        };
        let mut written = vec![marker.clone()];
        if let Err(e) =
            self.store_content(&first.owner, &readers, &content_ref, &first.mail, attachments, &mut written).await
        {
            self.discard(written).await;
            return Err(e);
        }
        let stored = self.write_entries(&copies, attachments, &content_ref).await;
        // Whatever was written stays: the entries written point at the content.
        if let Err(e) = self.store.clone().delete(pb::DeleteRequest { id: marker }).await {
            tracing::warn!(error = %e.message(), content_ref, "a delivery marker is left: its content stays");
        }
        // Every copy a duplicate: nothing points at the content.
        if let Ok(all) = &stored
            && all.iter().all(|s| matches!(s, Stored::Duplicate(_)))
        {
            written.remove(0);
            self.discard(written).await;
        }
        stored
    }

    /// Each copy's entry, [`FAN_OUT`] at a time; the first failure is answered once the
    /// others ended.
    async fn write_entries(
        &self,
        copies: &[Copy],
        attachments: &[Attachment],
        content_ref: &str,
    ) -> Result<Vec<Stored>, ApiError> {
        let slots = Arc::new(Semaphore::new(FAN_OUT));
        let mut tasks = tokio::task::JoinSet::new();
        for (at, copy) in copies.iter().enumerate() {
            let mut fields = entry_fields(&copy.owner, copy.folder, &copy.mail, attachments, content_ref);
            fields.insert("shared".to_owned(), "true".to_owned());
            let (mailbox, slots, owner, folder) = (self.clone(), slots.clone(), copy.owner.id.clone(), copy.folder);
            let (key, mail, content_ref) = (copy.unique_key.clone(), copy.mail.clone(), content_ref.to_owned());
            tasks.spawn(async move {
                let _slot = slots.acquire_owned().await;
                fields.extend(mailbox.thread_fields(&owner, &mail, &content_ref).await?);
                let stored = match key {
                    None => Stored::New(mailbox.put(fields).await?),
                    Some(key) => match unique::create(&mailbox.store, key, fields).await? {
                        Created::New(id) => Stored::New(id),
                        Created::Taken(id) => Stored::Duplicate(id),
                    },
                };
                if let Stored::New(id) = &stored {
                    mailbox.live.publish(&owner, Change::mail(folder.name(), id, "new"));
                }
                Ok::<_, ApiError>((at, stored))
            });
        }
        let mut ids = vec![Stored::Duplicate(String::new()); copies.len()];
        let mut failed = None;
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok((at, stored))) => ids[at] = stored,
                Ok(Err(e)) => failed = failed.or(Some(e)),
                Err(e) => failed = failed.or(Some(ApiError::Internal(format!("writing an entry failed: {e}")))),
            }
        }
        failed.map_or(Ok(ids), Err)
    }

    /// Whether anything still points at `content_ref`: an entry, or a delivery writing
    /// entries.
    pub(super) async fn content_in_use(&self, content_ref: &str) -> Result<bool, ApiError> {
        for kind in ["mail", "delivering"] {
            let subset = HashMap::from([
                ("kind".to_owned(), kind.to_owned()),
                ("content_ref".to_owned(), content_ref.to_owned()),
            ]);
            let answer = self.store.clone().count(pb::CountRequest { subset, at_most: 1 }).await?.into_inner();
            if answer.count > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
