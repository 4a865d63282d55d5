//! Each mta-server on the status page: whether it answers now and since when (the
//! pool's health), and what its reports in the store say.
//!
//! Every few seconds each mta-server writes one document into its `[tenants] store`,
//! the backend this edge reads too: unique key `mta-node/<node_id>`, fields
//! `kind = "mta-node"`, `node_id`, `queued` (messages waiting in its spool) and
//! `updated_ms`. A report older than [`STALE_MS`] means the node is not reporting. So a
//! node the edge cannot reach still shows what waits there, as of its last report:
//! "node mta-2 unreachable since 05:12 UTC, 37 messages waiting there".

use std::collections::HashMap;
use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::store_client::StoreClient;
use bitmail_runtime::time::now_ms;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::state::AppState;

/// A report older than this: the node is not reporting.
pub(crate) const STALE_MS: u64 = 15_000;
/// How long the status page waits for one node's providers.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// One node's last report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeReport {
    pub(crate) node_id: String,
    pub(crate) queued: u64,
    pub(crate) updated_ms: u64,
}

impl NodeReport {
    fn from_fields(fields: &HashMap<String, String>) -> Option<NodeReport> {
        Some(NodeReport {
            node_id: fields.get("node_id").filter(|id| !id.is_empty())?.clone(),
            queued: fields.get("queued")?.parse().ok()?,
            updated_ms: fields.get("updated_ms")?.parse().ok()?,
        })
    }

    fn fresh(&self, now: u64) -> bool {
        now.saturating_sub(self.updated_ms) <= STALE_MS
    }
}

/// Every node's report in the store (a malformed one is left out).
pub(crate) async fn reports(store: StoreClient<tonic::transport::Channel>) -> Result<Vec<NodeReport>, tonic::Status> {
    let subset = HashMap::from([("kind".to_owned(), "mta-node".to_owned())]);
    let mut stream = store
        .clone()
        .lookup(pb::LookupRequest { subset, limit: 1000, page_token: String::new(), newest_first: false })
        .await?;
    let mut found = Vec::new();
    while let Some(item) = stream.get_mut().message().await? {
        if let Some(pb::lookup_response::Item::Document(doc)) = item.item
            && let Some(report) = NodeReport::from_fields(&doc.fields)
        {
            found.push(report);
        }
    }
    Ok(found)
}

/// `HH:MM UTC` of a time in ms since the epoch.
fn clock(ms: u64) -> String {
    let minutes = (ms / 60_000) % (24 * 60);
    format!("{:02}:{:02} UTC", minutes / 60, minutes % 60)
}

/// The sentence the status page shows for a node.
pub(crate) fn note(name: &str, reachable: bool, since_ms: u64, report: Option<&NodeReport>, now: u64) -> String {
    let state = if reachable { "reachable" } else { "unreachable" };
    let head = format!("node {name} {state} since {}", clock(since_ms));
    match report {
        Some(r) if r.fresh(now) && reachable => format!("{head}, {} messages waiting", r.queued),
        Some(r) if r.fresh(now) => format!("{head}, {} messages waiting there", r.queued),
        Some(r) => format!(
            "{head}; not reporting (last report {} s ago, {} messages waiting then)",
            now.saturating_sub(r.updated_ms) / 1000,
            r.queued
        ),
        None => format!("{head}; no report from it in the store"),
    }
}

/// What the status page knows of the nodes.
pub(crate) struct Nodes {
    /// The providers of each node that answered, in the configured order.
    pub(crate) lists: Vec<pb::ListProvidersResponse>,
    /// One entry per configured node, then the reports of nodes not configured here.
    pub(crate) json: Vec<Value>,
    pub(crate) unreachable: Vec<String>,
}

/// Asks every node for its providers at once (noting its health), and reads the reports.
pub(crate) async fn nodes(state: &AppState) -> Nodes {
    let mut asked = JoinSet::new();
    for (i, node) in state.pool.nodes().iter().enumerate() {
        let mut client = node.mta(&state.mta_bearer);
        asked.spawn(async move {
            let answer =
                match tokio::time::timeout(ASK_TIMEOUT, client.list_providers(pb::ListProvidersRequest {})).await {
                    Ok(answer) => answer.map(tonic::Response::into_inner),
                    Err(_) => Err(tonic::Status::deadline_exceeded("no answer within 2 s")),
                };
            (i, answer)
        });
    }
    let store = StoreClient::new(state.backend_channel.clone());
    let read = tokio::time::timeout(ASK_TIMEOUT, reports(store));
    let (answers, read) = tokio::join!(asked.join_all(), read);
    let (reports, reports_error) = match read {
        Ok(Ok(r)) => (r, None),
        Ok(Err(e)) => (Vec::new(), Some(e.message().to_owned())),
        Err(_) => (Vec::new(), Some("the store did not answer within 2 s".to_owned())),
    };
    let mut answers: Vec<_> = answers;
    answers.sort_by_key(|(i, _)| *i);
    let now = now_ms();
    let (mut lists, mut json, mut unreachable) = (Vec::new(), Vec::new(), Vec::new());
    for (i, answer) in answers {
        state.pool.note(i, &answer);
        let node = &state.pool.nodes()[i];
        let health = node.health();
        let reachable = answer.is_ok() || health.reachable;
        let report = node.config.node_id.as_ref().and_then(|id| reports.iter().find(|r| &r.node_id == id));
        let error = answer.as_ref().err().map(|e| e.message().to_owned());
        if let Ok(list) = answer {
            lists.push(list);
        } else {
            unreachable.push(node.name().to_owned());
        }
        json.push(json!({
            "url": node.config.url, "node_id": node.config.node_id, "reachable": reachable,
            "since_ms": health.since_ms, "error": error,
            "queued": report.map(|r| r.queued), "report_ms": report.map(|r| r.updated_ms),
            "reporting": report.is_some_and(|r| r.fresh(now)),
            "note": note(node.name(), reachable, health.since_ms, report, now),
            "reports_error": reports_error,
        }));
    }
    let configured: Vec<&str> = state.pool.nodes().iter().filter_map(|n| n.config.node_id.as_deref()).collect();
    for r in reports.iter().filter(|r| !configured.contains(&r.node_id.as_str())) {
        json.push(json!({
            "url": null, "node_id": r.node_id, "reachable": null, "queued": r.queued, "report_ms": r.updated_ms,
            "reporting": r.fresh(now),
            "note": format!("node {} (not one this edge sends to), {} messages waiting", r.node_id, r.queued),
        }));
    }
    Nodes { lists, json, unreachable }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_says_where_messages_wait_and_whether_the_report_is_fresh() {
        let at = 5 * 3_600_000 + 12 * 60_000;
        let report = NodeReport { node_id: "mta-2".into(), queued: 37, updated_ms: at + 1_000 };
        assert_eq!(
            note("mta-2", false, at, Some(&report), at + 5_000),
            "node mta-2 unreachable since 05:12 UTC, 37 messages waiting there"
        );
        assert_eq!(
            note("mta-2", false, at, Some(&report), at + 41_000),
            "node mta-2 unreachable since 05:12 UTC; not reporting (last report 40 s ago, 37 messages waiting then)"
        );
        assert!(note("mta-1", true, at, None, at).ends_with("no report from it in the store"));
        let fields = HashMap::from([
            ("kind".to_owned(), "mta-node".to_owned()),
            ("node_id".to_owned(), "mta-2".to_owned()),
            ("queued".to_owned(), "37".to_owned()),
            ("updated_ms".to_owned(), "9".to_owned()),
        ]);
        assert_eq!(NodeReport::from_fields(&fields).map(|r| (r.queued, r.updated_ms)), Some((37, 9)));
        assert_eq!(NodeReport::from_fields(&HashMap::new()), None);
    }
}
