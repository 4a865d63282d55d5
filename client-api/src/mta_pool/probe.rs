//! Probing the nodes in back-off, so that no user's request pays for finding out
//! whether a node is back: every [`PROBE_EVERY`], each node whose back-off is over gets
//! one gRPC health check (`grpc.health.v1`, the server as a whole); SERVING makes it
//! healthy again, anything else (no answer within [`PROBE_TIMEOUT`] included) starts
//! a longer back-off.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::MtaPool;

/// How often the pool looks for nodes to probe.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long one probe waits.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl MtaPool {
    /// Probes node `i` once, and records what it found.
    pub(crate) async fn probe(&self, i: usize) {
        let mut health = HealthClient::new(self.nodes[i].channel.clone());
        let check = health.check(HealthCheckRequest { service: String::new() });
        match tokio::time::timeout(PROBE_TIMEOUT, check).await {
            Ok(Ok(r)) if r.get_ref().status() == ServingStatus::Serving => self.succeeded(i),
            Ok(Ok(r)) => self.failed(i, &format!("health: {:?}", r.get_ref().status())),
            Ok(Err(e)) => self.failed(i, e.message()),
            Err(_) => self.failed(i, "health: no answer in time"),
        }
    }
}

/// Probes the nodes whose back-off is over, until the task is aborted.
pub(crate) async fn probe_forever(pool: Arc<MtaPool>) {
    let mut probes = JoinSet::new();
    loop {
        for i in pool.probe_due() {
            let pool = pool.clone();
            probes.spawn(async move { pool.probe(i).await });
        }
        while probes.try_join_next().is_some() {}
        tokio::time::sleep(PROBE_EVERY).await;
    }
}
