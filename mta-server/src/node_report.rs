//! A node's report in the shared store: every [`EVERY`] an mta-server whose tenants live
//! in a shared backend-server writes one document about itself (unique key
//! `mta-node/<node_id>`; fields `kind = "mta-node"`, `node_id`, `queued`,
//! `oldest_queued_ms`, `started_ms`, `updated_ms`), so that every edge can say what waits
//! on a node it cannot reach: its messages stay on that node's disk until it returns.
//!
//! The report is a snapshot as of `updated_ms`; a reader treats one older than a few
//! intervals as "the node is not reporting". A node with a tenants file of its own
//! writes none (nobody else could read it).

use std::sync::Arc;
use std::time::Duration;

use backend_server::store::{Fields, Store, StoreError};

use crate::spool::Spool;

/// How often a node writes its report.
pub const EVERY: Duration = Duration::from_secs(5);

/// The value of the `kind` field of every report, to look them all up.
pub const KIND: &str = "mta-node";

/// Writes this node's report into `store` every [`EVERY`], forever; a failed write is
/// logged once per failure streak and tried again at the next tick.
pub async fn report_forever(store: Arc<dyn Store>, node_id: String, spool: Spool) {
    let started_ms = bitmail_runtime::time::now_ms();
    let mut doc_id: Option<String> = None;
    let mut failing = false;
    loop {
        let fields = report(&node_id, &spool, started_ms);
        match write(store.as_ref(), &node_id, &mut doc_id, fields).await {
            Ok(()) if failing => {
                tracing::info!(node = %node_id, "node report written again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(node = %node_id, error = %e, "cannot write this node's report to the store");
                }
                failing = true;
                // The document may be gone (deleted by an operator): find it again.
                doc_id = None;
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// The report's fields now.
fn report(node_id: &str, spool: &Spool, started_ms: u64) -> Fields {
    let queued = spool.backlog().unwrap_or(0);
    let oldest = spool.oldest_unfinished().ok().flatten().unwrap_or(0);
    Fields::from([
        ("kind".into(), KIND.into()),
        ("node_id".into(), node_id.into()),
        ("queued".into(), queued.to_string()),
        ("oldest_queued_ms".into(), oldest.to_string()),
        ("started_ms".into(), started_ms.to_string()),
        ("updated_ms".into(), bitmail_runtime::time::now_ms().to_string()),
    ])
}

/// Creates the report the first time (or finds the one a previous run made) and
/// updates it afterwards.
async fn write(
    store: &dyn Store,
    node_id: &str,
    doc_id: &mut Option<String>,
    fields: Fields,
) -> Result<(), StoreError> {
    if let Some(id) = doc_id.as_deref() {
        store.update(id, fields, Vec::new(), None).await?;
        return Ok(());
    }
    match store.create(&format!("{KIND}/{node_id}"), fields.clone()).await {
        Ok(doc) => *doc_id = Some(doc.id),
        Err(StoreError::AlreadyExists { id }) => {
            store.update(&id, fields, Vec::new(), None).await?;
            *doc_id = Some(id);
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use backend_server::memory::MemoryStore;

    use super::*;

    fn fields(queued: u64) -> Fields {
        Fields::from([
            ("kind".into(), KIND.into()),
            ("node_id".into(), "mta-2".into()),
            ("queued".into(), queued.to_string()),
        ])
    }

    #[tokio::test]
    async fn a_node_keeps_one_report_across_restarts() {
        let store = MemoryStore::new();
        let mut first_run = None;
        write(&store, "mta-2", &mut first_run, fields(3)).await.unwrap();
        write(&store, "mta-2", &mut first_run, fields(5)).await.unwrap();
        // A restarted node does not know its document's id: it finds it by the key.
        let mut second_run = None;
        write(&store, "mta-2", &mut second_run, fields(7)).await.unwrap();
        assert_eq!(first_run, second_run);

        let subset = Fields::from([("kind".into(), KIND.into())]);
        let page = store.lookup(&subset, 10, None).await.unwrap();
        assert_eq!(page.documents.len(), 1, "one report per node");
        assert_eq!(page.documents[0].fields["queued"], "7");
        assert_eq!(page.documents[0].version, 3);
    }
}
