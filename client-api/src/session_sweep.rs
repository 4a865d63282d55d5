//! Sessions past their expiry, deleted in the background.
//!
//! A session past its `expires_at` is refused when presented, and deleted then
//! ([`crate::accounts`]); one never presented again would stay stored for ever. Every
//! `session_sweep_secs`, the sweeper walks the session documents (a lookup of
//! `kind = session`, in id order, [`PAGE`] at a time) and deletes those expired: at
//! most [`PAGES_PER_TICK`] pages per tick, the page token kept for the next tick, so
//! one tick's cost is bounded whatever the number of sessions, and a walk that ends
//! starts over at the next tick. The store's lookups match exact pairs only (no range
//! on `expires_at`), hence the walk; it reads sessions, which are small.
//!
//! A failed tick is logged and the walk goes on from where it stood at the next one.
//! Several edge nodes may sweep at once: a session deleted by another is `NOT_FOUND`
//! here, which is fine.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::store_client::StoreClient;
use tokio::time::MissedTickBehavior;
use tonic::transport::Channel;

/// Sessions read per lookup.
pub(crate) const PAGE: u32 = 500;
/// Pages one tick reads at most.
pub(crate) const PAGES_PER_TICK: usize = 20;

pub(crate) struct Sweeper {
    store: StoreClient<Channel>,
    /// Where the walk stands: the last page's token, `None` at the start.
    cursor: Option<String>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Sweeper {
    pub(crate) fn new(store: StoreClient<Channel>) -> Self {
        Self { store, cursor: None }
    }

    /// Failed sign-in counts of windows that ended ([`crate::shared_counts`]): at most
    /// one page a tick, the oldest first.
    async fn past_counts(&self, now_secs: u64) -> Result<usize, tonic::Status> {
        let request = pb::LookupRequest {
            subset: HashMap::from([("kind".to_owned(), crate::shared_counts::KIND.to_owned())]),
            limit: PAGE,
            page_token: String::new(),
            newest_first: false,
        };
        let mut stream = self.store.clone().lookup(request).await?.into_inner();
        let mut past = Vec::new();
        while let Some(item) = stream.message().await? {
            if let Some(pb::lookup_response::Item::Document(d)) = item.item
                && crate::shared_counts::is_past(&d.fields, now_secs * 1000)
            {
                past.push(d.id);
            }
        }
        let mut deleted = 0;
        for id in past {
            match self.store.clone().delete(pb::DeleteRequest { id }).await {
                Ok(_) => deleted += 1,
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => return Err(s),
            }
        }
        Ok(deleted)
    }

    /// One tick: up to [`PAGES_PER_TICK`] pages of sessions, and a page of past sign-in
    /// counts; answers how many sessions it deleted.
    pub(crate) async fn tick(&mut self, now_secs: u64) -> Result<usize, tonic::Status> {
        self.past_counts(now_secs).await?;
        let mut deleted = 0;
        for _ in 0..PAGES_PER_TICK {
            let request = pb::LookupRequest {
                subset: HashMap::from([("kind".to_owned(), "session".to_owned())]),
                limit: PAGE,
                page_token: self.cursor.clone().unwrap_or_default(),
                newest_first: false,
            };
            let mut stream = self.store.clone().lookup(request).await?.into_inner();
            let mut next = None;
            let mut expired = Vec::new();
            while let Some(item) = stream.message().await? {
                match item.item {
                    Some(pb::lookup_response::Item::Document(d)) => {
                        let expires_at: u64 = d.fields.get("expires_at").and_then(|v| v.parse().ok()).unwrap_or(0);
                        if expires_at <= now_secs {
                            expired.push(d.id);
                        }
                    }
                    Some(pb::lookup_response::Item::NextPageToken(t)) => next = Some(t),
                    None => {}
                }
            }
            for id in expired {
                match self.store.clone().delete(pb::DeleteRequest { id }).await {
                    Ok(_) => deleted += 1,
                    Err(s) if s.code() == tonic::Code::NotFound => {}
                    Err(s) => return Err(s),
                }
            }
            self.cursor = next;
            if self.cursor.is_none() {
                break;
            }
        }
        Ok(deleted)
    }
}

/// Sweeps every `every`, from now on, until the task is dropped.
pub(crate) async fn run(mut sweeper: Sweeper, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match sweeper.tick(now_secs()).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "expired sessions deleted"),
            Err(e) => {
                tracing::warn!(error = %e.message(), "sweeping expired sessions failed; going on at the next tick")
            }
        }
    }
}
