//! The `Store` contract, written once and run against every engine.
//!
//! Each property is a function taking a fresh, empty store. `tests/tests/suite/store_conformance.rs`
//! runs every property against every engine through [`crate::store_conformance!`], one
//! `#[tokio::test]` per engine and property (named `engine::property`), so a failure
//! names both. Adding an engine is one line there: a function answering a [`Subject`].

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use backend_server::store::{
    DEFAULT_MAX_DOCUMENT_BYTES, Document, Fields, Limits, MAX_KEY_BYTES, MAX_LOOKUP_LIMIT, Store, StoreError,
};

/// An engine under test, with whatever must live as long as it (a temporary folder, a
/// server task).
pub struct Subject {
    pub store: Arc<dyn Store>,
    pub keep: Vec<Box<dyn Any + Send>>,
}

impl Subject {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, keep: Vec::new() }
    }
}

/// Runs every property against the engine `$make` (an expression answering a
/// `Future<Output = Subject>`), as a module `$engine` of tests named after the properties.
#[macro_export]
macro_rules! store_conformance {
    ($engine:ident, $make:expr) => {
        $crate::store_conformance!(@each $engine, $make, [
            put_assigns_ids_and_get_answers_the_document,
            update_merges_sets_and_removes,
            unknown_ids_are_not_found,
            a_stale_version_conflicts_and_changes_nothing,
            lookup_answers_documents_holding_every_pair,
            lookup_pages_in_id_order,
            concurrent_updates_with_one_expected_version_one_wins,
            concurrent_updates_without_a_version_lose_nothing,
            create_refuses_a_taken_unique_key_and_changes_nothing,
            concurrent_creates_with_one_unique_key_one_wins,
            deleting_frees_the_unique_key,
            paging_while_writing_has_no_gaps_or_repeats,
            unicode_keys_and_values,
            documents_near_the_size_limit,
            bad_input_is_refused_and_changes_nothing,
            find_walks_newest_first_and_counts,
            search_finds_words_by_their_forms_and_fields,
            bad_searches_are_refused
        ]);
    };
    (@each $engine:ident, $make:expr, [$($property:ident),*]) => {
        mod $engine {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $property() {
                    let subject = $make.await;
                    $crate::store_conformance::$property(subject.store.clone()).await;
                    drop(subject);
                }
            )*
        }
    };
}

mod search;
mod unique;
pub use search::*;
pub use unique::*;

pub fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Every document, in id order, paging through with the largest limit.
pub async fn everything(store: &dyn Store) -> Vec<Document> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.lookup(&Fields::new(), MAX_LOOKUP_LIMIT, token.as_deref()).await.expect("lookup everything");
        all.extend(page.documents);
        match page.next_page_token {
            Some(t) => {
                assert!(token.as_ref().is_none_or(|old| *old < t), "the page token must move forward, got {t:?} again");
                token = Some(t);
            }
            None => return all,
        }
    }
}

/// Every document holding `subset`, following pages of `limit`.
pub async fn all_pages(store: &dyn Store, subset: &Fields, limit: usize) -> Vec<Document> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.lookup(subset, limit, token.as_deref()).await.expect("lookup");
        assert!(page.documents.len() <= limit, "a page holds at most `limit` documents");
        if page.next_page_token.is_some() {
            assert_eq!(page.documents.len(), limit, "a page that is not the last is full");
        }
        all.extend(page.documents);
        match page.next_page_token {
            Some(t) => {
                assert!(token.as_ref().is_none_or(|old| *old < t), "the page token must move forward, got {t:?} again");
                token = Some(t);
            }
            None => return all,
        }
    }
}

fn ids(docs: &[Document]) -> Vec<String> {
    docs.iter().map(|d| d.id.clone()).collect()
}

pub async fn put_assigns_ids_and_get_answers_the_document(store: Arc<dyn Store>) {
    let a = store.put(fields(&[("kind", "user"), ("name", "ada")])).await.unwrap();
    let b = store.put(fields(&[("kind", "user"), ("name", "ada")])).await.unwrap();
    let empty = store.put(Fields::new()).await.unwrap();
    assert_eq!((a.version, b.version, empty.version), (1, 1, 1));
    assert!(!a.id.is_empty() && a.id.len() <= MAX_KEY_BYTES);
    assert_ne!(a.id, b.id, "two puts store two documents");
    assert!(a.id < b.id && b.id < empty.id, "ids sort in creation order: {} {} {}", a.id, b.id, empty.id);
    assert_eq!(a.fields, fields(&[("kind", "user"), ("name", "ada")]));
    assert_eq!(store.get(&a.id).await.unwrap(), a);
    assert_eq!(store.get(&empty.id).await.unwrap(), empty);
    // A value may hold JSON text, kept byte for byte.
    let json = r#"{"to":["bob@example.org"],"n":1.50,"nested":{"a":[true,null]}}"#;
    let doc = store.put(fields(&[("meta", json), ("blank", "")])).await.unwrap();
    assert_eq!(store.get(&doc.id).await.unwrap().fields, fields(&[("meta", json), ("blank", "")]));
    assert_eq!(everything(&*store).await.len(), 4);
}

pub async fn update_merges_sets_and_removes(store: Arc<dyn Store>) {
    let doc = store.put(fields(&[("kind", "user"), ("name", "ada"), ("lang", "en")])).await.unwrap();
    let updated = store
        .update(&doc.id, fields(&[("name", "grace"), ("tz", "UTC")]), vec!["lang".into(), "absent".into()], Some(1))
        .await
        .unwrap();
    assert_eq!(updated.id, doc.id);
    assert_eq!(updated.version, 2);
    assert_eq!(updated.fields, fields(&[("kind", "user"), ("name", "grace"), ("tz", "UTC")]));
    assert_eq!(store.get(&doc.id).await.unwrap(), updated);

    // Without an expected version the update always applies; a key both set and removed
    // ends up set; an empty update still moves the version.
    let again = store.update(&doc.id, fields(&[("tz", "CET")]), vec!["tz".into()], None).await.unwrap();
    assert_eq!((again.version, again.fields["tz"].as_str()), (3, "CET"));
    let touched = store.update(&doc.id, Fields::new(), vec![], Some(3)).await.unwrap();
    assert_eq!((touched.version, touched.fields), (4, again.fields));

    store.delete(&doc.id).await.unwrap();
    assert!(everything(&*store).await.is_empty());
}

pub async fn unknown_ids_are_not_found(store: Arc<dyn Store>) {
    let kept = store.put(fields(&[("k", "v")])).await.unwrap();
    let gone = store.put(fields(&[("k", "v")])).await.unwrap();
    store.delete(&gone.id).await.unwrap();
    for id in [gone.id.as_str(), "no-such-id", "01890000-0000-7000-8000-000000000000"] {
        assert_eq!(store.get(id).await, Err(StoreError::NotFound(id.into())));
        assert_eq!(store.update(id, fields(&[("k", "x")]), vec![], None).await, Err(StoreError::NotFound(id.into())));
        assert_eq!(store.update(id, Fields::new(), vec![], Some(1)).await, Err(StoreError::NotFound(id.into())));
        assert_eq!(store.delete(id).await, Err(StoreError::NotFound(id.into())));
    }
    assert_eq!(everything(&*store).await, vec![kept]);
    let page = store.lookup(&fields(&[("k", "v")]), 10, None).await.unwrap();
    assert_eq!(ids(&page.documents), vec![page.documents[0].id.clone()]);
}

pub async fn a_stale_version_conflicts_and_changes_nothing(store: Arc<dyn Store>) {
    let doc = store.put(fields(&[("n", "1")])).await.unwrap();
    store.update(&doc.id, fields(&[("n", "2")]), vec![], Some(1)).await.unwrap();
    for expected in [1, 3, 99] {
        let err = store.update(&doc.id, fields(&[("n", "3")]), vec!["n".into()], Some(expected)).await.unwrap_err();
        assert_eq!(err, StoreError::VersionMismatch { id: doc.id.clone(), expected, actual: 2 });
    }
    let now = store.get(&doc.id).await.unwrap();
    assert_eq!((now.version, now.fields), (2, fields(&[("n", "2")])));
    assert!(store.lookup(&fields(&[("n", "3")]), 10, None).await.unwrap().documents.is_empty());
}

pub async fn lookup_answers_documents_holding_every_pair(store: Arc<dyn Store>) {
    let a = store.put(fields(&[("kind", "user"), ("name", "ada"), ("team", "x")])).await.unwrap();
    let b = store.put(fields(&[("kind", "user"), ("name", "bob"), ("team", "x")])).await.unwrap();
    let c = store.put(fields(&[("kind", "session"), ("name", "ada"), ("team", "x")])).await.unwrap();
    let lookup = |pairs: Vec<(&'static str, &'static str)>| {
        let store = store.clone();
        async move { ids(&store.lookup(&fields(&pairs), 100, None).await.unwrap().documents) }
    };
    assert_eq!(lookup(vec![("kind", "user"), ("name", "ada")]).await, vec![a.id.clone()]);
    assert_eq!(lookup(vec![("kind", "user")]).await, vec![a.id.clone(), b.id.clone()]);
    assert_eq!(lookup(vec![("name", "ada")]).await, vec![a.id.clone(), c.id.clone()]);
    assert_eq!(lookup(vec![("team", "x"), ("name", "ada"), ("kind", "session")]).await, vec![c.id.clone()]);
    assert_eq!(lookup(vec![("kind", "user"), ("name", "nobody")]).await, Vec::<String>::new());
    assert_eq!(lookup(vec![("nobody", "user")]).await, Vec::<String>::new());
    // A pair matches on the whole value, and keys and values do not mix.
    assert_eq!(lookup(vec![("name", "ad")]).await, Vec::<String>::new());
    assert_eq!(lookup(vec![("kind", "")]).await, Vec::<String>::new());
    assert_eq!(lookup(vec![("user", "kind")]).await, Vec::<String>::new());

    // The index follows updates and deletes.
    store.update(&a.id, fields(&[("name", "ada2")]), vec!["team".into()], None).await.unwrap();
    assert_eq!(lookup(vec![("name", "ada")]).await, vec![c.id.clone()]);
    assert_eq!(lookup(vec![("name", "ada2"), ("kind", "user")]).await, vec![a.id.clone()]);
    assert_eq!(lookup(vec![("team", "x")]).await, vec![b.id.clone(), c.id.clone()]);
    store.delete(&c.id).await.unwrap();
    assert_eq!(lookup(vec![("name", "ada")]).await, Vec::<String>::new());
    let docs = store.lookup(&fields(&[("kind", "user")]), 100, None).await.unwrap().documents;
    assert_eq!(docs[0], store.get(&a.id).await.unwrap(), "lookups answer whole documents with versions");
}

pub async fn lookup_pages_in_id_order(store: Arc<dyn Store>) {
    let mut made = Vec::new();
    for i in 0..25 {
        let kind = if i % 5 == 0 { "odd-one" } else { "m" };
        made.push(store.put(fields(&[("kind", kind), ("i", &i.to_string())])).await.unwrap());
    }
    let ms: Vec<String> = made.iter().filter(|d| d.fields["kind"] == "m").map(|d| d.id.clone()).collect();
    for limit in [1, 3, 20, 21, 1000] {
        assert_eq!(ids(&all_pages(&*store, &fields(&[("kind", "m")]), limit).await), ms, "limit {limit}");
        assert_eq!(ids(&all_pages(&*store, &Fields::new(), limit).await), ids(&made), "limit {limit}");
    }
    let first = store.lookup(&fields(&[("kind", "m")]), 3, None).await.unwrap();
    assert!(first.next_page_token.is_some());
    let exact = store.lookup(&fields(&[("kind", "m")]), 20, None).await.unwrap();
    assert_eq!((exact.documents.len(), exact.next_page_token), (20, None), "an exact last page says so");
    // A token past the end answers an empty last page.
    let last = ms.last().unwrap();
    let after = store.lookup(&fields(&[("kind", "m")]), 5, Some(last)).await.unwrap();
    assert_eq!((after.documents.len(), after.next_page_token), (0, None));
}

pub async fn concurrent_updates_with_one_expected_version_one_wins(store: Arc<dyn Store>) {
    for round in 0..5 {
        let doc = store.put(fields(&[("round", &round.to_string())])).await.unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                let id = doc.id.clone();
                tokio::spawn(
                    async move { store.update(&id, fields(&[("winner", &i.to_string())]), vec![], Some(1)).await },
                )
            })
            .collect();
        let mut winners = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.unwrap() {
                Ok(d) => winners.push((i, d)),
                Err(e) => assert_eq!(e, StoreError::VersionMismatch { id: doc.id.clone(), expected: 1, actual: 2 }),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one of 16 concurrent updates at version 1 wins");
        let (i, won) = &winners[0];
        let now = store.get(&doc.id).await.unwrap();
        assert_eq!(now.version, 2);
        assert_eq!(now.fields["winner"], i.to_string());
        assert_eq!(&now, won);
    }
}

pub async fn concurrent_updates_without_a_version_lose_nothing(store: Arc<dyn Store>) {
    let doc = store.put(fields(&[("kind", "counter")])).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            let id = doc.id.clone();
            tokio::spawn(async move { store.update(&id, fields(&[(&format!("f{i}"), "x")]), vec![], None).await })
        })
        .collect();
    let mut versions = BTreeSet::new();
    for task in tasks {
        versions.insert(task.await.unwrap().unwrap().version);
    }
    assert_eq!(versions, (2..=33).collect(), "every update got its own version");
    let now = store.get(&doc.id).await.unwrap();
    assert_eq!((now.version, now.fields.len()), (33, 33), "no update was lost");
}

pub async fn paging_while_writing_has_no_gaps_or_repeats(store: Arc<dyn Store>) {
    let mut before = Vec::new();
    for i in 0..300 {
        let kind = if i % 3 == 0 { "other" } else { "page" };
        before.push(store.put(fields(&[("kind", kind), ("i", &i.to_string())])).await.unwrap());
    }
    let stay: Vec<String> = before.iter().filter(|d| d.fields["kind"] == "page").map(|d| d.id.clone()).collect();
    let others: Vec<String> = before.iter().filter(|d| d.fields["kind"] == "other").map(|d| d.id.clone()).collect();

    let writer = {
        let store = store.clone();
        let stay = stay.clone();
        tokio::spawn(async move {
            for i in 0..150usize {
                // New matching documents, changes to matching ones that keep them matching,
                // and churn around them.
                store.put(fields(&[("kind", "page"), ("new", &i.to_string())])).await.unwrap();
                store
                    .update(&stay[i % stay.len()], fields(&[("touched", &i.to_string())]), vec![], None)
                    .await
                    .unwrap();
                store.update(&others[i % others.len()], fields(&[("t", &i.to_string())]), vec![], None).await.unwrap();
                let tmp = store.put(fields(&[("kind", "page"), ("tmp", "1")])).await.unwrap();
                store.delete(&tmp.id).await.unwrap();
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.lookup(&fields(&[("kind", "page")]), 7, token.as_deref()).await.unwrap();
        assert!(page.documents.iter().all(|d| d.fields["kind"] == "page"));
        seen.extend(ids(&page.documents));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    writer.await.unwrap();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "pages are in strictly increasing id order: no repeats");
    let seen: BTreeSet<String> = seen.into_iter().collect();
    let missing: Vec<&String> = stay.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(missing.is_empty(), "documents that matched throughout were skipped: {missing:?}");
}

pub async fn unicode_keys_and_values(store: Arc<dyn Store>) {
    let pairs = [
        ("名前", "エイダ・ラブレス"),
        ("clé", "çà et là — «guillemets»"),
        ("emoji 🎉", "👩‍💻🧪 ok"),
        ("rtl", "مرحبا بالعالم"),
        ("controls", "line\nbreak\ttab\u{7f}"),
        ("e\u{301}", "combining"),
    ];
    let doc = store.put(fields(&pairs)).await.unwrap();
    assert_eq!(store.get(&doc.id).await.unwrap().fields, fields(&pairs));
    // U+0000 is refused alike by every engine (PostgreSQL cannot store it).
    for bad in [("nul\u{0}key", "v"), ("k", "nul\u{0}value")] {
        let refused = store.put(fields(&[bad])).await;
        assert!(matches!(refused, Err(StoreError::InvalidArgument(_))), "{bad:?}: {refused:?}");
    }
    // "é" precomposed and "e" + combining accent are different keys.
    store.put(fields(&[("é", "combining")])).await.unwrap();
    for (k, v) in pairs {
        let found = store.lookup(&fields(&[(k, v)]), 10, None).await.unwrap();
        assert_eq!(ids(&found.documents), vec![doc.id.clone()], "lookup by {k:?}");
    }
    let both = store.lookup(&fields(&[("名前", "エイダ・ラブレス"), ("emoji 🎉", "👩‍💻🧪 ok")]), 10, None).await.unwrap();
    assert_eq!(both.documents.len(), 1);
    // A key of exactly 256 bytes of 4-byte characters is allowed; one more character is not.
    let longest = "🎉".repeat(MAX_KEY_BYTES / 4);
    let d = store.put(fields(&[(&longest, "ok")])).await.unwrap();
    assert_eq!(store.get(&d.id).await.unwrap().fields[&longest], "ok");
    let too_long = "🎉".repeat(MAX_KEY_BYTES / 4 + 1);
    assert!(matches!(store.put(fields(&[(&too_long, "no")])).await, Err(StoreError::InvalidArgument(_))));
    let updated = store.update(&doc.id, fields(&[("名前", "グレース")]), vec!["clé".into()], Some(1)).await.unwrap();
    assert_eq!(updated.fields["名前"], "グレース");
    assert!(!updated.fields.contains_key("clé"));
}

pub async fn documents_near_the_size_limit(store: Arc<dyn Store>) {
    let limit = Limits::default().max_document_bytes;
    assert_eq!(limit, DEFAULT_MAX_DOCUMENT_BYTES);
    // Exactly at the limit: keys plus values.
    let body = "x".repeat(limit - "body".len() - "kind".len() - "big".len());
    let doc = store.put(fields(&[("kind", "big"), ("body", &body)])).await.unwrap();
    let got = store.get(&doc.id).await.unwrap();
    assert_eq!(got.fields["body"].len(), body.len());
    assert!(got.fields["body"] == body, "the large value came back intact");
    let found = store.lookup(&fields(&[("kind", "big")]), 10, None).await.unwrap();
    assert_eq!(found.documents.len(), 1);

    // One byte more is refused, whether sent whole or produced by an update's merge.
    let over = "x".repeat(body.len() + 1);
    let err = store.put(fields(&[("kind", "big"), ("body", &over)])).await.unwrap_err();
    assert!(matches!(&err, StoreError::InvalidArgument(m) if m.contains("bytes")), "{err:?}");
    let err = store.update(&doc.id, fields(&[("z", "1")]), vec![], Some(1)).await.unwrap_err();
    assert!(matches!(&err, StoreError::InvalidArgument(m) if m.contains("bytes")), "{err:?}");
    // Replacing the big value with a smaller one fits.
    let smaller = store.update(&doc.id, fields(&[("body", "small")]), vec![], Some(1)).await.unwrap();
    assert_eq!(smaller.version, 2);
    assert_eq!(everything(&*store).await.len(), 1);
}

/// Asserts the call was refused as invalid input.
fn invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(matches!(result, Err(StoreError::InvalidArgument(_))), "{what}: expected InvalidArgument, got {result:?}");
}

pub async fn bad_input_is_refused_and_changes_nothing(store: Arc<dyn Store>) {
    let doc = store.put(fields(&[("kind", "user"), ("name", "ada")])).await.unwrap();
    let before = everything(&*store).await;
    let long_key = "k".repeat(MAX_KEY_BYTES + 1);
    let huge = "x".repeat(DEFAULT_MAX_DOCUMENT_BYTES + 1);

    invalid(store.put(fields(&[("", "v")])).await, "put, empty key");
    invalid(store.put(fields(&[("ok", "v"), (&long_key, "v")])).await, "put, key over 256 bytes");
    invalid(store.put(fields(&[("body", &huge)])).await, "put, document over the limit");
    invalid(store.create("", fields(&[("k", "v")])).await, "create, empty unique key");
    invalid(store.create(&long_key, fields(&[("k", "v")])).await, "create, unique key over 256 bytes");
    invalid(store.create("nul\0key", fields(&[("k", "v")])).await, "create, unique key with U+0000");
    invalid(store.create("ok", fields(&[("", "v")])).await, "create, empty field key");
    invalid(store.create("ok", fields(&[("body", &huge)])).await, "create, document over the limit");
    invalid(store.get("").await, "get, empty id");
    invalid(store.get(&long_key).await, "get, id over 256 bytes");
    invalid(store.update("", fields(&[("a", "b")]), vec![], None).await, "update, empty id");
    invalid(store.update(&doc.id, fields(&[("", "b")]), vec![], None).await, "update, empty key");
    invalid(store.update(&doc.id, fields(&[(&long_key, "b")]), vec![], Some(1)).await, "update, long key");
    invalid(store.update(&doc.id, Fields::new(), vec![String::new()], None).await, "update, empty key to remove");
    invalid(store.update(&doc.id, Fields::new(), vec![long_key.clone()], None).await, "update, long key to remove");
    invalid(store.update(&doc.id, fields(&[("body", &huge)]), vec![], None).await, "update, over the limit");
    invalid(store.delete("").await, "delete, empty id");
    invalid(store.lookup(&fields(&[("kind", "user")]), 0, None).await, "lookup, limit 0");
    invalid(store.lookup(&Fields::new(), 0, None).await, "lookup, empty subset and no limit");
    invalid(store.lookup(&fields(&[("kind", "user")]), MAX_LOOKUP_LIMIT + 1, None).await, "lookup, limit too large");
    invalid(store.lookup(&fields(&[("", "user")]), 10, None).await, "lookup, empty key");
    invalid(store.lookup(&fields(&[(&long_key, "user")]), 10, None).await, "lookup, long key");

    // The other refusals keep their own kinds.
    assert_eq!(store.get("unknown").await, Err(StoreError::NotFound("unknown".into())));
    assert!(matches!(
        store.update(&doc.id, fields(&[("name", "eve")]), vec![], Some(7)).await,
        Err(StoreError::VersionMismatch { expected: 7, actual: 1, .. })
    ));
    assert_eq!(everything(&*store).await, before, "refused calls changed nothing");
    // A refused create took no key: the key is free.
    let longest = "k".repeat(MAX_KEY_BYTES);
    store.create(&longest, Fields::new()).await.unwrap();
    store.create("ok", Fields::new()).await.unwrap();
}
