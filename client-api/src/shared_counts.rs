//! Failed sign-ins counted where every edge sees them: in backend-server, one document
//! per (what, subject, window), `what` being `address` (a client address) or `name` (an
//! account name), and the window a fixed quarter of an hour.
//!
//! [`crate::limiter`] counts exactly within one edge (and backs off each (name, address)
//! pair there); these counts bound the same guessing when it is spread over several
//! edges: once an address or a name has as many failures in the window, on all edges
//! together, as the per-address or per-name cap, every edge refuses it until the window
//! ends. The window is fixed, not sliding, so across a window's end a guesser may reach
//! at most twice the cap.
//!
//! A count is created with the store's unique-key `Create` (`signin/WHAT/SUBJECT/WINDOW`)
//! and then raised by optimistic updates (the stored version expected), so two edges
//! counting at once lose no failure. Past windows are deleted by the session sweep
//! ([`crate::session_sweep`]).

use std::collections::HashMap;

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::store_client::StoreClient;
use tonic::transport::Channel;

use crate::error::ApiError;
use crate::unique::{Created, create};

/// The store documents' `kind`.
pub(crate) const KIND: &str = "signin_failures";
/// One window, in milliseconds: a quarter of an hour, as the local counts.
pub(crate) const WINDOW_MS: u64 = 15 * 60 * 1000;
/// Attempts at raising one count before giving up (each lost to another edge's raise).
const RAISES: usize = 8;

#[derive(Clone)]
pub(crate) struct SharedCounts {
    store: StoreClient<Channel>,
}

fn subset(what: &str, subject: &str, window: u64) -> HashMap<String, String> {
    HashMap::from([
        ("kind".to_owned(), KIND.to_owned()),
        ("what".to_owned(), what.to_owned()),
        ("subject".to_owned(), subject.to_owned()),
        ("window".to_owned(), window.to_string()),
    ])
}

impl SharedCounts {
    pub(crate) fn new(store: StoreClient<Channel>) -> Self {
        Self { store }
    }

    /// The failures of `subject` in the window of `now_ms`, on every edge, and when that
    /// window ends (ms).
    pub(crate) async fn failures(&self, what: &str, subject: &str, now_ms: u64) -> Result<(u32, u64), ApiError> {
        let window = now_ms / WINDOW_MS;
        let request = pb::LookupRequest {
            subset: subset(what, subject, window),
            limit: 1,
            page_token: String::new(),
            newest_first: false,
        };
        let mut stream = self.store.clone().lookup(request).await?.into_inner();
        let mut count = 0;
        while let Some(item) = stream.message().await? {
            if let Some(pb::lookup_response::Item::Document(d)) = item.item {
                count = d.fields.get("count").and_then(|c| c.parse().ok()).unwrap_or(0);
            }
        }
        Ok((count, (window + 1) * WINDOW_MS))
    }

    /// Counts one more failure of `subject` in the window of `now_ms`.
    pub(crate) async fn add(&self, what: &str, subject: &str, now_ms: u64) -> Result<(), ApiError> {
        let window = now_ms / WINDOW_MS;
        let key = format!("signin/{what}/{subject}/{window}");
        for _ in 0..RAISES {
            let mut fields = subset(what, subject, window);
            fields.insert("count".to_owned(), "1".to_owned());
            let id = match create(&self.store, key.clone(), fields).await? {
                Created::New(_) => return Ok(()),
                Created::Taken(id) => id,
            };
            let doc = match self.store.clone().get(pb::GetRequest { id: id.clone() }).await {
                Ok(d) => d.into_inner(),
                // Deleted meanwhile (a past window swept): create it again.
                Err(s) if s.code() == tonic::Code::NotFound => continue,
                Err(s) => return Err(s.into()),
            };
            let count: u32 = doc.fields.get("count").and_then(|c| c.parse().ok()).unwrap_or(0);
            let raise = pb::UpdateRequest {
                id,
                fields: HashMap::from([("count".to_owned(), (count + 1).to_string())]),
                remove: vec![],
                expected_version: doc.version,
            };
            match self.store.clone().update(raise).await {
                Ok(_) => return Ok(()),
                // Another edge raised it first: read again.
                Err(s) if matches!(s.code(), tonic::Code::Aborted | tonic::Code::NotFound) => continue,
                Err(s) => return Err(s.into()),
            }
        }
        Err(ApiError::Unavailable("the shared sign-in count is too busy to raise; try again".into()))
    }
}

/// Whether a count document's window ended before the one of `now_ms`.
pub(crate) fn is_past(fields: &HashMap<String, String>, now_ms: u64) -> bool {
    fields.get("window").and_then(|w| w.parse::<u64>().ok()).is_some_and(|w| w < now_ms / WINDOW_MS)
}
