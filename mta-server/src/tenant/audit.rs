//! The audit log: every administrative change, who made it, when, from where, and the
//! value before and after.
//!
//! Entries are store documents (`kind=audit`) written once with `put` and never
//! updated or deleted: no code path here or in any service edits or removes one, so the
//! log is append-only for everyone who reaches it through BitMail's APIs. Store ids sort
//! in creation order, so a lookup pages through the log oldest first.
//!
//! Filters: actor and tenant are fields of the document, so filtering by them is a
//! lookup on a subset (its cost follows the answer, not the log). A time window is
//! applied to the pages read; `day` (UTC `YYYY-MM-DD`) is a field too, for a lookup of
//! one day.
//!
//! Refused key uses are not entries: they are counted per key prefix and client address
//! ([`crate::tenant::KeyCheck::refused`]), so that a flood of bad keys cannot fill the
//! log.

use std::sync::Arc;

use backend_server::store::{Fields, Store, StoreError};

const KIND: &str = "audit";

/// One administrative change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// The store's id; empty before it is stored.
    pub id: String,
    pub at_ms: u64,
    /// `key:bmk_<id>`, or `user:NAME via key:bmk_<id>`.
    pub actor: String,
    /// The client address of the call.
    pub address: String,
    /// What was done: `tenant.create`, `key.revoke`, `provider.pause`, ...
    pub action: String,
    /// The tenant the change is about, when there is one.
    pub tenant: String,
    /// What was changed: a tenant id, a key prefix, a provider, an address.
    pub target: String,
    /// JSON of the value before and after; empty when there was none.
    pub before: String,
    pub after: String,
}

/// Which entries to list; empty strings and `None` match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub actor: String,
    pub tenant: String,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn Store>,
}

impl Audit {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Audit { store }
    }

    /// Appends `entry`; answers it with its id. Called before the change is answered to
    /// the caller, so a change the caller saw succeed is in the log.
    pub async fn record(&self, mut entry: Entry) -> Result<Entry, StoreError> {
        let mut fields = Fields::new();
        fields.insert("kind".into(), KIND.into());
        fields.insert("at_ms".into(), entry.at_ms.to_string());
        fields.insert("day".into(), bitmail_runtime::time::date(entry.at_ms));
        for (name, value) in [
            ("actor", &entry.actor),
            ("address", &entry.address),
            ("action", &entry.action),
            ("tenant", &entry.tenant),
            ("target", &entry.target),
            ("before", &entry.before),
            ("after", &entry.after),
        ] {
            fields.insert(name.into(), value.clone());
        }
        entry.id = self.store.put(fields).await?.id;
        Ok(entry)
    }

    /// Up to `limit` entries matching `filter`, oldest first, and the token of the next
    /// page. Pages through the store until it has `limit` entries in the time window or
    /// the log ends.
    pub async fn list(
        &self,
        filter: &Filter,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<(Vec<Entry>, Option<String>), StoreError> {
        let mut subset = Fields::from([("kind".to_owned(), KIND.to_owned())]);
        if !filter.actor.is_empty() {
            subset.insert("actor".into(), filter.actor.clone());
        }
        if !filter.tenant.is_empty() {
            subset.insert("tenant".into(), filter.tenant.clone());
        }
        let mut out = Vec::new();
        let mut token = page_token.map(str::to_owned);
        loop {
            let page = self.store.lookup(&subset, limit.max(1), token.as_deref()).await?;
            for doc in page.documents {
                let entry = from_fields(doc.id, &doc.fields);
                if filter.until_ms.is_some_and(|until| entry.at_ms > until) {
                    // Oldest first: nothing later can be inside the window.
                    return Ok((out, None));
                }
                if filter.since_ms.is_none_or(|since| entry.at_ms >= since) {
                    out.push(entry);
                }
            }
            token = page.next_page_token;
            if out.len() >= limit || token.is_none() {
                return Ok((out, token));
            }
        }
    }
}

fn from_fields(id: String, fields: &Fields) -> Entry {
    let get = |name: &str| fields.get(name).cloned().unwrap_or_default();
    Entry {
        id,
        at_ms: get("at_ms").parse().unwrap_or(0),
        actor: get("actor"),
        address: get("address"),
        action: get("action"),
        tenant: get("tenant"),
        target: get("target"),
        before: get("before"),
        after: get("after"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend_server::memory::MemoryStore;

    fn entry(at_ms: u64, actor: &str, tenant: &str) -> Entry {
        Entry {
            at_ms,
            actor: actor.into(),
            address: "127.0.0.1".into(),
            action: "tenant.update".into(),
            tenant: tenant.into(),
            target: tenant.into(),
            before: "{}".into(),
            after: "{\"a\":1}".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn entries_come_back_oldest_first_filtered_and_paged() {
        let audit = Audit::new(Arc::new(MemoryStore::new()));
        for (i, (actor, tenant)) in
            [("key:bmk_a", "t1"), ("key:bmk_b", "t2"), ("key:bmk_a", "t2"), ("key:bmk_a", "t1")].iter().enumerate()
        {
            audit.record(entry(1000 + i as u64, actor, tenant)).await.unwrap();
        }
        let (all, next) = audit.list(&Filter::default(), 10, None).await.unwrap();
        assert_eq!(all.iter().map(|e| e.at_ms).collect::<Vec<_>>(), [1000, 1001, 1002, 1003]);
        assert!(next.is_none());
        assert_eq!(all[1].after, "{\"a\":1}");

        let by_a = Filter { actor: "key:bmk_a".into(), ..Default::default() };
        let (first, next) = audit.list(&by_a, 2, None).await.unwrap();
        assert_eq!(first.iter().map(|e| e.at_ms).collect::<Vec<_>>(), [1000, 1002]);
        let (rest, _) = audit.list(&by_a, 2, next.as_deref()).await.unwrap();
        assert_eq!(rest.iter().map(|e| e.at_ms).collect::<Vec<_>>(), [1003]);

        let window = Filter { tenant: "t2".into(), since_ms: Some(1002), until_ms: Some(1002), ..Default::default() };
        let (found, _) = audit.list(&window, 10, None).await.unwrap();
        assert_eq!(found.iter().map(|e| (e.at_ms, e.tenant.as_str())).collect::<Vec<_>>(), [(1002, "t2")]);
    }
}
