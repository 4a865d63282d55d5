//! Live updates: `GET /api/events`, a server-sent event stream of the signed-in user's
//! mailbox changes, so that an open webmail shows new mail and delivery progress as it
//! happens instead of asking every few seconds.
//!
//! - Every write to a mailbox goes through [`crate::mailbox::Mailbox`], which tells
//!   [`Live::publish`]: `mail` events, `{folder, id, change: "new"|"changed"|"deleted"}`.
//!   The follower of mta-server's deliveries ([`crate::status::follow`]) tells each state
//!   of a message sent from this edge as a `status` event, `{mta_id, state}`.
//! - A stream begins with a `ready` event carrying `retry: 1000` (the browser's wait
//!   before it reconnects). A `ready` after a reconnect means "something may have been
//!   missed": the webmail reads the page shown again. A stream that fell behind (more
//!   than [`BACKLOG`] changes unread) gets a `resync` event, which means the same.
//! - A stream lasts at most `limits.live_stream_secs`, then ends; the browser reconnects
//!   and the session is checked again, so a signed-out or expired session stops getting
//!   events. Comments keep an idle stream open through proxies every
//!   [`KEEP_ALIVE`]. Streams end at once when the edge shuts down.
//! - At most `limits.max_live_streams` streams are open on the edge (more: 503 with
//!   `Retry-After`) and [`PER_USER`] per user (more: 429), counted in
//!   `bitmail_live_streams` (open) and `bitmail_live_streams_opened_total`.
//!
//! The events are this edge's: a change made through another edge (a cluster without
//! session affinity, or an inbound webhook another node received) shows at the next
//! reconnect, at most `live_stream_secs` later (see ARCHITECTURE.md).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bitmail_runtime::metrics::Registry;
use bitmail_runtime::sync::lock;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ApiError;

/// Changes a stream may fall behind by before it is told to read everything again.
pub(crate) const BACKLOG: usize = 64;
/// Streams one user may hold open at once (tabs, devices).
pub(crate) const PER_USER: usize = 16;
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// What the browser waits before reconnecting, sent in the `ready` event.
const RETRY: Duration = Duration::from_millis(1000);

/// One change, as sent: the event's name and its JSON data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change {
    pub(crate) event: &'static str,
    pub(crate) data: Value,
}

impl Change {
    /// A change to a message of a folder: `new`, `changed` or `deleted`.
    pub(crate) fn mail(folder: &str, id: &str, change: &'static str) -> Self {
        Self { event: "mail", data: json!({ "folder": folder, "id": id, "change": change }) }
    }

    /// A state of a message sent from this edge, as mta-server tells it.
    pub(crate) fn status(mta_id: &str, state: &str) -> Self {
        Self { event: "status", data: json!({ "mta_id": mta_id, "state": state }) }
    }
}

/// The open streams of this edge, by user.
pub(crate) struct Live {
    users: Mutex<HashMap<String, broadcast::Sender<Change>>>,
    slots: Arc<Semaphore>,
    stream_for: Duration,
    /// Set once the edge shuts down: every stream ends.
    closing: watch::Sender<bool>,
    metrics: Registry,
}

impl Live {
    pub(crate) fn new(max_streams: usize, stream_for: Duration, metrics: Registry) -> Self {
        Self {
            users: Mutex::default(),
            slots: Arc::new(Semaphore::new(max_streams)),
            stream_for,
            closing: watch::Sender::new(false),
            metrics,
        }
    }

    /// Tells `owner`'s open streams of `change`; nothing when none is open.
    pub(crate) fn publish(&self, owner: &str, change: Change) {
        if let Some(users) = lock(&self.users).get(owner) {
            let _ = users.send(change);
        }
    }

    /// Ends every stream (the edge is stopping).
    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
    }

    fn subscribe(self: &Arc<Self>, owner: &str) -> Result<Subscription, ApiError> {
        let mut users = lock(&self.users);
        let sender = users.entry(owner.to_owned()).or_insert_with(|| broadcast::channel(BACKLOG).0);
        if sender.receiver_count() >= PER_USER {
            return Err(ApiError::TooManyRequests(format!(
                "{PER_USER} live streams are open for this user already; close a tab"
            )));
        }
        Ok(Subscription { changes: Some(sender.subscribe()), live: self.clone(), owner: owner.to_owned() })
    }

    fn gauge(&self) {
        let open = self.slots_taken();
        self.metrics.set("bitmail_live_streams", "Live update streams open on this edge.", &[], open as u64);
    }

    fn slots_taken(&self) -> usize {
        lock(&self.users).values().map(broadcast::Sender::receiver_count).sum()
    }
}

/// One stream's receiver; the user's entry goes with their last stream.
struct Subscription {
    changes: Option<broadcast::Receiver<Change>>,
    live: Arc<Live>,
    owner: String,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.changes = None;
        {
            let mut users = lock(&self.live.users);
            if users.get(&self.owner).is_some_and(|s| s.receiver_count() == 0) {
                users.remove(&self.owner);
            }
        }
        self.live.gauge();
    }
}

/// Sends `ready`, then each change, until the stream's time is up, the edge stops or
/// the browser goes.
async fn forward(
    subscription: &mut Subscription,
    tx: &mpsc::Sender<Result<Event, Infallible>>,
    closing: &mut watch::Receiver<bool>,
    ends: tokio::time::Instant,
) {
    let ready = Event::default().event("ready").retry(RETRY).data("{}");
    let Some(changes) = subscription.changes.as_mut() else { return };
    if tx.send(Ok(ready)).await.is_err() {
        return;
    }
    loop {
        let next = tokio::select! {
            next = changes.recv() => next,
            () = tokio::time::sleep_until(ends) => return,
            _ = closing.wait_for(|c| *c) => return,
            () = tx.closed() => return,
        };
        let sent = match next {
            Ok(change) => event(&change),
            Err(broadcast::error::RecvError::Lagged(_)) => Event::default().event("resync").data("{}"),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if tx.send(Ok(sent)).await.is_err() {
            return;
        }
    }
}

fn event(change: &Change) -> Event {
    Event::default().event(change.event).data(change.data.to_string())
}

impl Live {
    /// A new stream of `owner`'s changes, as the body of `GET /api/events`
    /// ([`crate::mail::events`]): 503 when the edge's streams are all taken, 429 when
    /// the user's are.
    pub(crate) fn open(self: &Arc<Self>, owner: &str) -> Result<Response, ApiError> {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            crate::limits::shed(&self.metrics, "live_streams");
            return Err(ApiError::Unavailable(
                "the edge has as many live streams open as it takes; retry later".into(),
            ));
        };
        let mut subscription = self.subscribe(owner)?;
        self.gauge();
        self.metrics.count(
            "bitmail_live_streams_opened_total",
            "Live update streams opened (a browser's reconnects included).",
            &[],
            1,
        );
        let (tx, rx) = mpsc::channel(8);
        let mut closing = self.closing.subscribe();
        let ends = tokio::time::Instant::now() + self.stream_for;
        tokio::spawn(async move {
            forward(&mut subscription, &tx, &mut closing, ends).await;
            // The slot and the subscription go first: once the stream ends, a reconnect
            // finds them free.
            drop(subscription);
            drop(slot);
            drop(tx);
        });
        Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Arc<Live> {
        Arc::new(Live::new(4, Duration::from_secs(60), Registry::default()))
    }

    #[tokio::test]
    async fn a_change_reaches_its_owners_streams_only_and_the_entry_goes_with_the_last() {
        let live = live();
        let mut ada = live.subscribe("u-ada").unwrap();
        let mut ada_too = live.subscribe("u-ada").unwrap();
        let mut bob = live.subscribe("u-bob").unwrap();
        live.publish("u-ada", Change::mail("inbox", "m1", "new"));
        live.publish("u-eve", Change::mail("inbox", "m2", "new"));
        for s in [&mut ada, &mut ada_too] {
            let got = s.changes.as_mut().unwrap().recv().await.unwrap();
            assert_eq!(got, Change::mail("inbox", "m1", "new"));
        }
        assert!(bob.changes.as_mut().unwrap().try_recv().is_err(), "bob sees nothing of ada's mail");
        assert_eq!(live.slots_taken(), 3);
        drop(ada);
        assert!(lock(&live.users).contains_key("u-ada"), "a stream of ada's is still open");
        drop(ada_too);
        assert!(!lock(&live.users).contains_key("u-ada"), "no stream of ada's: her entry is gone");
        drop(bob);
        assert_eq!(live.slots_taken(), 0);
    }

    #[test]
    fn a_user_holds_at_most_per_user_streams() {
        let live = live();
        let held: Vec<_> = (0..PER_USER).map(|_| live.subscribe("u-ada").unwrap()).collect();
        let Err(refused) = live.subscribe("u-ada") else { panic!("one stream too many") };
        assert!(matches!(refused, ApiError::TooManyRequests(_)), "{refused:?}");
        assert!(live.subscribe("u-bob").is_ok(), "another user is not held back");
        drop(held);
    }

    #[tokio::test]
    async fn a_stream_that_falls_behind_is_told_to_read_again() {
        let live = live();
        let mut ada = live.subscribe("u-ada").unwrap();
        for n in 0..=BACKLOG {
            live.publish("u-ada", Change::mail("inbox", &n.to_string(), "new"));
        }
        let got = ada.changes.as_mut().unwrap().recv().await;
        assert!(matches!(got, Err(broadcast::error::RecvError::Lagged(1))), "{got:?}");
    }
}
