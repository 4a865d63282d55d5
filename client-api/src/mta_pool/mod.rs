//! Several mta-servers behind one edge: a lazily connected channel per node, and which
//! node to ask next.
//!
//! - Rotation: calls go round robin over the nodes that are healthy. A node whose call
//!   failed in transport (refused, reset, UNAVAILABLE, no answer in `mta_timeout_ms`) is
//!   skipped for a back-off that doubles with each failure in a row ([`BACKOFF_MIN`] to
//!   [`BACKOFF_MAX`]); once it is over, `probe.rs` asks it for its gRPC health (one probe
//!   at a time: the back-off starts again as it is sent), so that no user's request
//!   waits on a node that hangs. Failing nodes still come after the healthy ones in
//!   every order, so a call is tried everywhere before it fails, and a node that answers
//!   a real call is healthy again at once.
//! - `submit.rs`: a Submit tried on one node after another under one idempotency key,
//!   flagged `possible_duplicate` after an ambiguous failure; at most once per node.
//! - `lookup.rs`: GetMessage from the node that took the message (when this edge
//!   submitted it), else from every node at once.
//! - `nodes.rs`: the configured nodes (`mta_url`, `mta_urls`) and their checks.
//!
//! No lock is held across an `.await`: the health of a node is a small `Mutex`ed value
//! read and written between calls.

mod lookup;
pub(crate) mod nodes;
mod probe;
mod submit;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bitmail_proto::v1::admin_client::AdminClient;
use bitmail_proto::v1::lists_client::ListsClient;
use bitmail_proto::v1::mta_client::MtaClient;
use bitmail_runtime::grpc::{Bearer, WithKey};
use bitmail_runtime::metrics::Registry;
use bitmail_runtime::sync::lock;
use bitmail_runtime::time::now_ms;
use tokio::time::Instant;
use tonic::transport::Channel;

pub(crate) use nodes::MtaNode;
pub(crate) use probe::probe_forever;
pub(crate) use submit::{Failure, classify};

/// The first back-off of a failing node.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// The longest: a node down for long is probed this often.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Message ids remembered with the node that took them.
const PLACED_MAX: usize = 100_000;

/// One mta-server: where it is, its channel, how it has been doing.
pub(crate) struct Node {
    pub(crate) config: MtaNode,
    pub(crate) channel: Channel,
    health: Mutex<Health>,
}

/// A node's health as calls found it.
#[derive(Debug, Clone, Copy)]
struct Health {
    /// Transport failures in a row.
    failures: u32,
    /// Until when the node is skipped (None: healthy).
    skip_until: Option<Instant>,
    /// When it became unreachable or reachable again (ms since the epoch).
    since_ms: u64,
}

/// What the status page shows of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeHealth {
    pub(crate) reachable: bool,
    pub(crate) since_ms: u64,
    pub(crate) failures: u32,
}

impl Node {
    pub(crate) fn name(&self) -> &str {
        self.config.name()
    }

    pub(crate) fn health(&self) -> NodeHealth {
        let h = *lock(&self.health);
        NodeHealth { reachable: h.failures == 0, since_ms: h.since_ms, failures: h.failures }
    }

    /// mta-server's `Mta` service on this node, with `bearer`.
    pub(crate) fn mta(&self, bearer: &Bearer) -> MtaClient<WithKey> {
        MtaClient::with_interceptor(self.channel.clone(), bearer.clone())
    }

    pub(crate) fn admin(&self, bearer: &Bearer) -> AdminClient<WithKey> {
        AdminClient::with_interceptor(self.channel.clone(), bearer.clone())
    }

    /// mta-server's `Lists` service on this node, with `bearer`.
    pub(crate) fn lists(&self, bearer: &Bearer) -> ListsClient<WithKey> {
        ListsClient::with_interceptor(self.channel.clone(), bearer.clone())
    }
}

/// The nodes, the rotation, and where the messages this edge submitted went.
pub(crate) struct MtaPool {
    nodes: Vec<Node>,
    next: AtomicUsize,
    /// How long one call to one node may take.
    pub(crate) timeout: Duration,
    placed: Mutex<Placed>,
    metrics: Registry,
}

#[derive(Default)]
struct Placed {
    node_of: HashMap<String, usize>,
    order: VecDeque<String>,
}

impl MtaPool {
    /// A pool over `nodes`, each with its channel (connected on first use); submissions
    /// tried again on another node are counted in `metrics`.
    pub(crate) fn new(nodes: Vec<(MtaNode, Channel)>, timeout: Duration, metrics: Registry) -> MtaPool {
        let now = now_ms();
        let nodes = nodes
            .into_iter()
            .map(|(config, channel)| Node {
                config,
                channel,
                health: Mutex::new(Health { failures: 0, skip_until: None, since_ms: now }),
            })
            .collect();
        MtaPool { nodes, next: AtomicUsize::new(0), timeout, placed: Mutex::default(), metrics }
    }

    pub(crate) fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Every node once, in the order to try them: the healthy ones round robin from the
    /// next in turn, or from `start` (a caller's idempotency key, so that the same
    /// request sent again goes where it went before); then the failing ones, those whose
    /// back-off is over first, then the one free soonest.
    pub(crate) fn order(&self, start: Option<usize>) -> Vec<usize> {
        let n = self.nodes.len();
        let first = start.unwrap_or_else(|| self.next.fetch_add(1, Ordering::Relaxed)) % n;
        let now = Instant::now();
        let mut healthy = Vec::with_capacity(n);
        let mut failing = Vec::new();
        for i in (0..n).map(|k| (first + k) % n) {
            let h = *lock(&self.nodes[i].health);
            match h.skip_until {
                None => healthy.push(i),
                Some(until) => failing.push((until.max(now), i)),
            }
        }
        failing.sort();
        healthy.extend(failing.into_iter().map(|(_, i)| i));
        healthy
    }

    /// The failing nodes whose back-off is over, each claimed for one probe: its next
    /// back-off starts now, so it is not probed again before this probe has told.
    pub(crate) fn probe_due(&self) -> Vec<usize> {
        let now = Instant::now();
        let mut due = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let mut h = lock(&node.health);
            if let Some(until) = h.skip_until
                && until <= now
            {
                h.skip_until = Some(now + backoff(h.failures));
                due.push(i);
            }
        }
        due
    }

    /// The node for a call that any one node answers (the admin console, the app's
    /// webhooks): the next reachable one in turn; a node in back-off only when every
    /// node is. Never a probe, which is for calls that try the next node ([`Self::any`]).
    pub(crate) fn pick(&self) -> &Node {
        let n = self.nodes.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let reachable = (0..n).map(|k| (first + k) % n).find(|i| self.nodes[*i].health().reachable);
        &self.nodes[reachable.unwrap_or(first)]
    }

    /// `call` on one node after another (as [`Self::order`]) while the request never
    /// reached one (a refused connection): safe for any call, reads and writes alike,
    /// since no node saw the ones tried before. Any other ending is the answer.
    pub(crate) async fn any<T, F, Fut>(&self, call: F) -> Result<T, tonic::Status>
    where
        F: Fn(&Node) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let mut last = None;
        for i in self.order(None) {
            let answer = match tokio::time::timeout(self.timeout, call(&self.nodes[i])).await {
                Ok(answer) => answer,
                Err(_) => {
                    Err(tonic::Status::deadline_exceeded(format!("no answer within {} ms", self.timeout.as_millis())))
                }
            };
            self.note(i, &answer);
            match answer {
                Err(s) if classify(&s) == Failure::NotSent => last = Some(s),
                answer => return answer,
            }
        }
        Err(last.unwrap_or_else(|| tonic::Status::unavailable("no mta-server configured")))
    }

    /// The node answered (whatever it said).
    pub(crate) fn succeeded(&self, i: usize) {
        let mut h = lock(&self.nodes[i].health);
        if h.failures > 0 {
            tracing::info!(node = %self.nodes[i].name(), "mta-server reachable again");
            h.since_ms = now_ms();
        }
        h.failures = 0;
        h.skip_until = None;
    }

    /// The node failed in transport: skipped for a back-off that grows.
    pub(crate) fn failed(&self, i: usize, error: &str) {
        let mut h = lock(&self.nodes[i].health);
        if h.failures == 0 {
            tracing::warn!(node = %self.nodes[i].name(), error, "mta-server unreachable");
            h.since_ms = now_ms();
        }
        h.failures = h.failures.saturating_add(1);
        h.skip_until = Some(Instant::now() + backoff(h.failures));
    }

    /// Notes the outcome of a call to node `i`: a transport failure counts against it,
    /// an answer (of any code) for it.
    pub(crate) fn note<T>(&self, i: usize, result: &Result<T, tonic::Status>) {
        match result {
            Err(s) if classify(s) != Failure::Answer => self.failed(i, s.message()),
            _ => self.succeeded(i),
        }
    }

    /// Remembers that node `i` took message `id`.
    fn place(&self, id: &str, i: usize) {
        let mut placed = lock(&self.placed);
        if placed.node_of.insert(id.to_owned(), i).is_none() {
            placed.order.push_back(id.to_owned());
        }
        while placed.order.len() > PLACED_MAX {
            if let Some(old) = placed.order.pop_front() {
                placed.node_of.remove(&old);
            }
        }
    }

    /// The node that took message `id`, when this edge submitted it (and remembers).
    pub(crate) fn placed(&self, id: &str) -> Option<usize> {
        lock(&self.placed).node_of.get(id).copied()
    }
}

/// The back-off after `failures` failures in a row: 0.5 s, 1 s, 2 s, ... 30 s.
pub(crate) fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (BACKOFF_MIN * 2u32.pow(doublings)).min(BACKOFF_MAX)
}
