//! Writing a message: its content (body, attachment chunks) first, its list entry last
//! (see the module above for why), and what a failed or duplicate write leaves removed.

use std::collections::HashMap;

use bitmail_proto::v1 as pb;

use super::{
    Attachment, AttachmentMeta, CHUNK_BYTES, Folder, MAX_ADDRESS_CHARS, MAX_SUBJECT_CHARS, Mailbox, NewMail, Stored,
    capped, capped_list, index, json_list, preview_of,
};
use crate::accounts::User;
use crate::error::ApiError;
use crate::live::Change;
use crate::unique::{self, Created};

impl Mailbox {
    /// Stores `mail` in `folder` of `owner` with its attachments, its entry created
    /// with `unique_key` when given (a message holding it there already: nothing is
    /// added). The list entry, which every listing of the folder reads, is capped
    /// ([`capped`]): a message with a huge subject or thousands of recipients still lists.
    pub(super) async fn store_inner(
        &self,
        owner: &User,
        folder: Folder,
        mail: &NewMail,
        attachments: &[Attachment],
        unique_key: Option<String>,
    ) -> Result<Stored, ApiError> {
        let content_ref = format!("content-{}", random_hex()?);
        let mut written = Vec::new();
        let content =
            self.store_content(owner, &[owner.id.as_str()], &content_ref, mail, attachments, &mut written).await;
        if let Err(e) = content {
            self.discard(written).await;
            return Err(e);
        }
        let mut fields = entry_fields(owner, folder, mail, attachments, &content_ref);
        match self.thread_fields(&owner.id, mail, &content_ref).await {
            Ok(thread) => fields.extend(thread),
            Err(e) => {
                self.discard(written).await;
                return Err(e);
            }
        }
        let entry = match unique_key {
            None => self.put(fields).await.map(Created::New),
            Some(key) => unique::create(&self.store, key, fields).await,
        };
        match entry {
            Ok(Created::New(id)) => {
                self.live.publish(&owner.id, Change::mail(folder.name(), &id, "new"));
                Ok(Stored::New(id))
            }
            Ok(Created::Taken(id)) => {
                self.discard(written).await;
                Ok(Stored::Duplicate(id))
            }
            // Refused for certain: nothing points at the content.
            Err(e @ (ApiError::BadRequest(_) | ApiError::Conflict(_))) => {
                self.discard(written).await;
                Err(e)
            }
            // Perhaps stored after all (its answer lost): the content stays for it.
            Err(e) => Err(e),
        }
    }

    /// The body, then each attachment's chunks, each naming `content_ref`; the ids
    /// written are pushed to `written` as they are. The first body piece names each of
    /// `readers` (`reader.ID`), whose searches find it ([`super::index`]).
    pub(super) async fn store_content(
        &self,
        owner: &User,
        readers: &[&str],
        content_ref: &str,
        mail: &NewMail,
        attachments: &[Attachment],
        written: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        // A body larger than a document may be is split in pieces, read back in order.
        let (text, html) = (pieces(&mail.text), pieces(&mail.html));
        for part in 0..text.len().max(html.len()).max(1) {
            let mut body = HashMap::from([
                ("kind".to_owned(), "body".to_owned()),
                ("mail_id".to_owned(), content_ref.to_owned()),
                ("owner".to_owned(), owner.id.clone()),
                ("part".to_owned(), part.to_string()),
                ("html".to_owned(), html.get(part).copied().unwrap_or_default().to_owned()),
            ]);
            let piece = text.get(part).copied().unwrap_or_default().to_owned();
            if part == 0 {
                // The first piece is what a search reads ([`super::index`]).
                body.insert("_text.body".to_owned(), piece);
                body.extend(index::search_fields(mail));
                body.extend(readers.iter().map(|id| (index::reader_key(id), "1".to_owned())));
            } else {
                body.insert("text".to_owned(), piece);
            }
            written.push(self.put(body).await?);
        }
        use base64::Engine as _;
        for (index, attachment) in attachments.iter().enumerate() {
            for chunk in attachment.content.chunks(CHUNK_BYTES) {
                let doc = HashMap::from([
                    ("kind".to_owned(), "chunk".to_owned()),
                    ("mail_id".to_owned(), content_ref.to_owned()),
                    ("owner".to_owned(), owner.id.clone()),
                    ("attachment".to_owned(), index.to_string()),
                    ("content_b64".to_owned(), base64::engine::general_purpose::STANDARD.encode(chunk)),
                ]);
                written.push(self.put(doc).await?);
            }
        }
        Ok(())
    }

    /// Removes content no entry points at; what cannot be removed now stays unreachable.
    pub(super) async fn discard(&self, ids: Vec<String>) {
        for id in ids {
            if let Err(e) = self.store.clone().delete(pb::DeleteRequest { id }).await {
                tracing::warn!(error = %e.message(), "content of an unstored message left behind");
            }
        }
    }
}

/// `s` in pieces of at most [`CHUNK_BYTES`], cut at character boundaries.
fn pieces(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let mut end = rest.len().min(CHUNK_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        out.push(piece);
        rest = tail;
    }
    out
}

/// A message's list entry, capped ([`capped`]).
pub(super) fn entry_fields(
    owner: &User,
    folder: Folder,
    mail: &NewMail,
    attachments: &[Attachment],
    content_ref: &str,
) -> HashMap<String, String> {
    let metas: Vec<&AttachmentMeta> = attachments.iter().map(|a| &a.meta).collect();
    let mut fields = HashMap::from([
        ("kind".to_owned(), "mail".to_owned()),
        ("owner".to_owned(), owner.id.clone()),
        ("folder".to_owned(), folder.name().to_owned()),
        ("from".to_owned(), capped(&mail.from, MAX_ADDRESS_CHARS)),
        ("to".to_owned(), json_list(&capped_list(&mail.to))),
        ("cc".to_owned(), json_list(&capped_list(&mail.cc))),
        ("bcc".to_owned(), json_list(&capped_list(&mail.bcc))),
        ("subject".to_owned(), capped(&mail.subject, MAX_SUBJECT_CHARS)),
        ("date_ms".to_owned(), mail.date_ms.to_string()),
        // A user's own sent mail is read; received mail is not.
        ("read".to_owned(), (folder == Folder::Sent).to_string()),
        ("preview".to_owned(), preview_of(&mail.text)),
        ("attachments".to_owned(), serde_json::to_string(&metas).unwrap_or_else(|_| "[]".into())),
        ("local_to".to_owned(), json_list(&mail.local_to)),
        ("content_ref".to_owned(), content_ref.to_owned()),
    ]);
    fields.extend(index::entry_index(owner, folder));
    for (key, value) in &mail.extra {
        fields.entry(key.clone()).or_insert_with(|| value.clone());
    }
    if let Some(mta_id) = &mail.mta_id {
        fields.insert("mta_id".into(), mta_id.clone());
    }
    fields
}

/// 128 random bits in hex: names a message's content before its entry has an id.
pub(super) fn random_hex() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ApiError::Internal("the system random generator failed".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
