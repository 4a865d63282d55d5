//! The `Store` contract as test cases over any engine: each function takes a fresh, empty
//! store and panics with what differs from the contract (memory.rs is the reference).
//! Written once, meant to be run against every engine.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;

use backend_server::store::{Document, Fields, Store, StoreError};

pub fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Every page of a lookup, following the tokens; panics on a page over `limit`.
pub async fn lookup_all(store: &dyn Store, subset: &Fields, limit: usize) -> Vec<Document> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.lookup(subset, limit, token.as_deref()).await.expect("lookup");
        assert!(page.documents.len() <= limit, "a page of {} over the limit {limit}", page.documents.len());
        all.extend(page.documents);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return all,
        }
    }
}

fn ids(docs: &[Document]) -> Vec<String> {
    docs.iter().map(|d| d.id.clone()).collect()
}

/// Put, get, update (merge, remove, versions), delete, and unknown ids.
pub async fn documents_round_trip(store: Arc<dyn Store>) {
    let doc = store.put(fields(&[("kind", "user"), ("name", "ada"), ("lang", "en")])).await.unwrap();
    assert_eq!(doc.version, 1);
    assert!(!doc.id.is_empty());
    assert_eq!(store.get(&doc.id).await.unwrap(), doc);

    let v2 = store
        .update(&doc.id, fields(&[("name", "grace"), ("tz", "UTC")]), vec!["lang".into(), "absent".into()], Some(1))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.fields, fields(&[("kind", "user"), ("name", "grace"), ("tz", "UTC")]));
    assert_eq!(store.get(&doc.id).await.unwrap(), v2);

    // Without an expected version the update always applies; a key both removed and set
    // ends up set.
    let v3 = store.update(&doc.id, fields(&[("tz", "CET")]), vec!["tz".into(), "kind".into()], None).await.unwrap();
    assert_eq!((v3.version, v3.fields.clone()), (3, fields(&[("name", "grace"), ("tz", "CET")])));
    let v4 = store.update(&doc.id, Fields::new(), vec![], None).await.unwrap();
    assert_eq!((v4.version, v4.fields), (4, v3.fields), "an empty update still bumps the version");

    // An empty document is a document.
    let empty = store.put(Fields::new()).await.unwrap();
    assert_eq!(store.get(&empty.id).await.unwrap().fields, Fields::new());

    let second = store.put(fields(&[("kind", "user")])).await.unwrap();
    assert!(second.id > doc.id, "ids sort in creation order");
    assert_ne!(second.id, doc.id);

    store.delete(&doc.id).await.unwrap();
    assert_eq!(store.get(&doc.id).await, Err(StoreError::NotFound(doc.id.clone())));
    assert_eq!(store.delete(&doc.id).await, Err(StoreError::NotFound(doc.id.clone())));
    assert_eq!(store.update(&doc.id, Fields::new(), vec![], None).await, Err(StoreError::NotFound(doc.id.clone())));
    assert_eq!(
        store.update(&doc.id, Fields::new(), vec![], Some(4)).await,
        Err(StoreError::NotFound(doc.id.clone())),
        "a deleted document is not found, whatever version is expected"
    );
    for unknown in ["nope", "00000000-0000-0000-0000-000000000000", &second.id.to_uppercase(), " "] {
        assert_eq!(store.get(unknown).await, Err(StoreError::NotFound(unknown.to_owned())), "{unknown:?}");
        assert_eq!(store.delete(unknown).await, Err(StoreError::NotFound(unknown.to_owned())), "{unknown:?}");
    }
    assert_eq!(store.get(&second.id).await.unwrap(), second, "the others are untouched");
}

/// A stale or future expected version fails with the actual version and changes nothing.
pub async fn stale_version_changes_nothing(store: Arc<dyn Store>) {
    let doc = store.put(fields(&[("n", "1"), ("kind", "counter")])).await.unwrap();
    store.update(&doc.id, fields(&[("n", "2")]), vec![], Some(1)).await.unwrap();
    for expected in [1, 3, 1000] {
        let err = store.update(&doc.id, fields(&[("n", "x")]), vec!["kind".into()], Some(expected)).await;
        assert_eq!(err, Err(StoreError::VersionMismatch { id: doc.id.clone(), expected, actual: 2 }));
    }
    let now = store.get(&doc.id).await.unwrap();
    assert_eq!((now.version, now.fields), (2, fields(&[("kind", "counter"), ("n", "2")])));
    let found = store.lookup(&fields(&[("n", "2")]), 10, None).await.unwrap();
    assert_eq!(ids(&found.documents), vec![doc.id.clone()]);
    assert!(store.lookup(&fields(&[("n", "x")]), 10, None).await.unwrap().documents.is_empty());
}

/// Lookup: every document holding all pairs, exact matches only, following updates and
/// deletes, in id order.
pub async fn lookup_matches_exact_subsets(store: Arc<dyn Store>) {
    let ada = store.put(fields(&[("kind", "user"), ("name", "ada")])).await.unwrap();
    let bob = store.put(fields(&[("kind", "user"), ("name", "bob")])).await.unwrap();
    let session = store.put(fields(&[("kind", "session"), ("name", "ada")])).await.unwrap();
    let json = store.put(fields(&[("kind", "note"), ("body", r#"{"name":"ada"}"#), ("n", "1")])).await.unwrap();

    let both = fields(&[("kind", "user"), ("name", "ada")]);
    assert_eq!(store.lookup(&both, 10, None).await.unwrap().documents, vec![ada.clone()]);
    assert_eq!(ids(&lookup_all(&*store, &fields(&[("kind", "user")]), 10).await), vec![ada.id.clone(), bob.id.clone()]);
    assert_eq!(
        ids(&lookup_all(&*store, &fields(&[("name", "ada")]), 10).await),
        vec![ada.id.clone(), session.id.clone()]
    );
    // Values are strings, compared whole: no prefix, case or number matching, and JSON
    // text inside a value is just text.
    for miss in [
        fields(&[("name", "ad")]),
        fields(&[("name", "ADA")]),
        fields(&[("nam", "ada")]),
        fields(&[("n", "01")]),
        fields(&[("kind", "user"), ("name", "carol")]),
        fields(&[("body", "ada")]),
    ] {
        assert!(store.lookup(&miss, 10, None).await.unwrap().documents.is_empty(), "{miss:?}");
    }
    assert_eq!(ids(&lookup_all(&*store, &fields(&[("body", r#"{"name":"ada"}"#)]), 10).await), vec![json.id.clone()]);

    store.update(&ada.id, fields(&[("name", "ada2")]), vec![], None).await.unwrap();
    assert!(store.lookup(&both, 10, None).await.unwrap().documents.is_empty(), "the old value is gone");
    let found = store.lookup(&fields(&[("name", "ada2")]), 10, None).await.unwrap();
    assert_eq!((found.documents[0].id.clone(), found.documents[0].version), (ada.id.clone(), 2));
    store.update(&bob.id, Fields::new(), vec!["kind".into()], None).await.unwrap();
    store.delete(&session.id).await.unwrap();
    assert_eq!(ids(&lookup_all(&*store, &fields(&[("kind", "user")]), 10).await), vec![ada.id.clone()]);
    assert!(store.lookup(&fields(&[("kind", "session")]), 10, None).await.unwrap().documents.is_empty());

    let everything = lookup_all(&*store, &Fields::new(), 2).await;
    assert_eq!(ids(&everything), vec![ada.id, bob.id, json.id], "an empty subset lists every document in id order");
}

/// Pages cover every match once, in id order, and the last page says it is the last
/// (also when the matches fill it exactly).
pub async fn paging_covers_everything_once(store: Arc<dyn Store>) {
    let mut expected = Vec::new();
    for i in 0..25 {
        expected.push(store.put(fields(&[("kind", "m"), ("i", &i.to_string())])).await.unwrap().id);
        store.put(fields(&[("kind", "other"), ("i", &i.to_string())])).await.unwrap();
    }
    for limit in [1, 7, 10, 25, 100] {
        assert_eq!(ids(&lookup_all(&*store, &fields(&[("kind", "m")]), limit).await), expected, "limit {limit}");
    }
    let first = store.lookup(&fields(&[("kind", "m")]), 10, None).await.unwrap();
    assert_eq!(first.next_page_token.as_deref(), Some(expected[9].as_str()));
    let exact = store.lookup(&fields(&[("kind", "m")]), 5, Some(&expected[19])).await.unwrap();
    assert_eq!(ids(&exact.documents), expected[20..].to_vec());
    assert_eq!(exact.next_page_token, None, "a page that ends the answer has no token");
    assert_eq!(store.lookup(&Fields::new(), 50, None).await.unwrap().next_page_token, None);
    assert_eq!(store.lookup(&Fields::new(), 49, None).await.unwrap().documents.len(), 49);
}

/// Many updates of one document expecting the same version: exactly one wins; updates
/// without an expectation all apply (none lost).
pub async fn concurrent_updates_one_wins(store: Arc<dyn Store>) {
    let doc = store.put(fields(&[("owner", "nobody")])).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (store, id) = (store.clone(), doc.id.clone());
        tasks.push(tokio::spawn(async move {
            store.update(&id, fields(&[("owner", &format!("task{i}"))]), vec![], Some(1)).await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(d) => winners.push(d),
            Err(StoreError::VersionMismatch { expected: 1, actual: 2, .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update expecting version 1 wins");
    let now = store.get(&doc.id).await.unwrap();
    assert_eq!((now.version, &now.fields), (2, &winners[0].fields));

    let mut tasks = Vec::new();
    for i in 0..16 {
        let (store, id) = (store.clone(), doc.id.clone());
        tasks.push(tokio::spawn(
            async move { store.update(&id, fields(&[(&format!("k{i}"), "v")]), vec![], None).await },
        ));
    }
    let mut versions = BTreeSet::new();
    for task in tasks {
        versions.insert(task.await.unwrap().unwrap().version);
    }
    assert_eq!(versions, (3..=18).collect(), "each update got its own version");
    let now = store.get(&doc.id).await.unwrap();
    assert_eq!((now.version, now.fields.len()), (18, 17), "no update lost a field");
}

/// Paging while other tasks insert, update and delete: no document is returned twice,
/// ids only grow, and every document that matched from start to end is returned.
pub async fn paging_while_writing(store: Arc<dyn Store>) {
    let mut stable = Vec::new();
    let mut doomed = Vec::new();
    for i in 0..150 {
        let id = store.put(fields(&[("kind", "p"), ("i", &i.to_string())])).await.unwrap().id;
        if i % 3 == 0 { doomed.push(id) } else { stable.push(id) }
    }
    let writer = {
        let (store, doomed, stable) = (store.clone(), doomed.clone(), stable.clone());
        tokio::spawn(async move {
            for i in 0..150 {
                store.put(fields(&[("kind", "p"), ("late", &i.to_string())])).await.unwrap();
                if let Some(id) = doomed.get(i) {
                    store.delete(id).await.unwrap();
                }
                // Updates that keep the pair must not move a document out of the walk.
                let id = &stable[i % stable.len()];
                store.update(id, fields(&[("touched", &i.to_string())]), vec![], None).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.lookup(&fields(&[("kind", "p")]), 7, token.as_deref()).await.unwrap();
        seen.extend(page.documents.into_iter().map(|d| d.id));
        tokio::task::yield_now().await;
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    writer.await.unwrap();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "ids strictly grow: no repeats");
    let seen: BTreeSet<_> = seen.into_iter().collect();
    let missing: Vec<_> = stable.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(missing.is_empty(), "documents matching throughout were skipped: {missing:?}");
}

/// Keys and values in any script, with quotes, backslashes, newlines and emoji, round
/// trip exactly and are found by lookup; canonically equivalent spellings stay distinct.
pub async fn unicode_keys_and_values(store: Arc<dyn Store>) {
    let pairs = [
        ("名前", "エイダ・ラブレス"),
        ("clé", "valeur accentuée"),
        ("📬", "✉️ 🇫🇷"),
        ("עברית", "مرحبا"),
        ("quote\"back\\slash", "line\nbreak\ttab 'single' \"double\""),
        ("json", r#"{"nested":["a",1,null]}"#),
        ("e\u{301}", "composed differently"),
        ("\u{e9}", "precomposed"),
    ];
    let doc = store.put(fields(&pairs)).await.unwrap();
    assert_eq!(store.get(&doc.id).await.unwrap().fields, fields(&pairs));
    for (k, v) in pairs {
        let found = store.lookup(&fields(&[(k, v)]), 10, None).await.unwrap();
        assert_eq!(ids(&found.documents), vec![doc.id.clone()], "{k:?}");
    }
    assert!(store.lookup(&fields(&[("e\u{301}", "precomposed")]), 10, None).await.unwrap().documents.is_empty());
    let updated = store.update(&doc.id, fields(&[("名前", "グレース")]), vec!["📬".into()], Some(1)).await.unwrap();
    assert_eq!(updated.fields.get("名前").map(String::as_str), Some("グレース"));
    assert!(!updated.fields.contains_key("📬"));
}

/// A document with one value of `size` bytes round trips whole, is found by its other
/// fields, and survives an update of a small field.
pub async fn large_document(store: Arc<dyn Store>, size: usize) {
    let big: String = (0..size).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
    let doc = store.put(fields(&[("kind", "big"), ("body", &big)])).await.unwrap();
    let got = store.get(&doc.id).await.unwrap();
    assert_eq!(got.fields.get("body").map(String::len), Some(size));
    assert!(got.fields["body"] == big, "the body came back changed");
    let updated = store.update(&doc.id, fields(&[("state", "read")]), vec![], Some(1)).await.unwrap();
    assert!(updated.fields["body"] == big);
    let found = store.lookup(&fields(&[("kind", "big"), ("state", "read")]), 1, None).await.unwrap();
    assert_eq!(found.documents.len(), 1);
    assert!(found.documents[0].fields["body"] == big);
}
