//! Documents stored once per unique key: backend-server's `Create`, which stores a
//! document only if no live one holds its key, and the keys client-api uses.
//!
//! - `user/NAME`: a user account, NAME normalized ([`crate::accounts::check_name`]
//!   admits only the lowercase form), so two first sign-ins with one name make one
//!   account;
//! - `inbound/OWNER/SHA256(DEDUPE_KEY)`: a received message's list entry in one inbox,
//!   so a provider's retry racing the first delivery stores it once. The provider's key
//!   is hashed to keep the store key short whatever its length.
//!
//! - `member/GROUP/USER`: a user's membership of a group ([`crate::groups`]), so a member
//!   is added once; a group itself takes `user/NAME`, so users and groups share names.
//!
//! Documents stored before unique keys existed hold none: callers still look for them
//! first (by name, by `inbound_key`), and the create closes the race that lookup leaves.

use std::collections::HashMap;

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::store_client::StoreClient;
use tonic::transport::Channel;

use crate::error::ApiError;

/// The metadata of an `ALREADY_EXISTS` answer naming the document holding the key.
const EXISTING_ID_METADATA: &str = "bitmail-existing-id";

/// What a create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Created {
    /// Stored, with this id.
    New(String),
    /// Nothing stored: the document with this id holds the key.
    Taken(String),
}

/// The key of the account named `name` (already checked and normalized).
pub(crate) fn user_key(name: &str) -> String {
    format!("user/{name}")
}

/// The key of the received message `dedupe_key` in the inbox of the user `owner_id`.
pub(crate) fn inbound_key(owner_id: &str, dedupe_key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, dedupe_key.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("inbound/{owner_id}/{hex}")
}

/// Stores `fields` unless a live document holds `unique_key`.
pub(crate) async fn create(
    store: &StoreClient<Channel>,
    unique_key: String,
    fields: HashMap<String, String>,
) -> Result<Created, ApiError> {
    match store.clone().create(pb::CreateRequest { unique_key, fields }).await {
        Ok(answer) => Ok(Created::New(answer.into_inner().id)),
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            match status.metadata().get(EXISTING_ID_METADATA).and_then(|v| v.to_str().ok()) {
                Some(id) => Ok(Created::Taken(id.to_owned())),
                None => Err(status.into()),
            }
        }
        Err(status) => Err(status.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_and_separate_owners() {
        let long = "x".repeat(10_000);
        let key = inbound_key("0190-owner", &long);
        assert!(key.len() < 256, "{key}");
        assert_ne!(inbound_key("a", "k"), inbound_key("b", "k"));
        assert_ne!(inbound_key("a", "k"), inbound_key("a", "k2"));
        assert_eq!(user_key("ada"), "user/ada");
    }
}
