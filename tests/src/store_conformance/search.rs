//! The newest-first walk, counts and full-text search (`Store::find`, `Store::count`),
//! the same on every engine.

use std::sync::Arc;

use backend_server::store::{Count, Document, Fields, Query, Store, StoreError, Term};

use super::fields;

fn ids(docs: &[Document]) -> Vec<String> {
    docs.iter().map(|d| d.id.clone()).collect()
}

/// Every page of a query, checking the pages' shape.
async fn every_page(store: &dyn Store, query: &Query, limit: usize) -> Vec<Document> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.find(query, limit, token.as_deref()).await.expect("find");
        assert!(page.documents.len() <= limit);
        if page.next_page_token.is_some() {
            assert_eq!(page.documents.len(), limit, "a page that is not the last is full");
        }
        all.extend(page.documents);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return all,
        }
    }
}

fn subset(pairs: &[(&str, &str)]) -> Query {
    Query { subset: fields(pairs), terms: Vec::new(), newest_first: true }
}

fn search(pairs: &[(&str, &str)], terms: &[(&str, &[&str])]) -> Query {
    Query {
        subset: fields(pairs),
        terms: terms
            .iter()
            .map(|(w, f)| Term { words: (*w).to_owned(), fields: f.iter().map(|s| (*s).to_owned()).collect() })
            .collect(),
        newest_first: true,
    }
}

pub async fn find_walks_newest_first_and_counts(store: Arc<dyn Store>) {
    let mut made = Vec::new();
    for i in 0..23 {
        let folder = if i % 4 == 0 { "sent" } else { "inbox" };
        made.push(store.put(fields(&[("owner", "u1"), ("folder", folder), ("i", &i.to_string())])).await.unwrap());
    }
    store.put(fields(&[("owner", "u2"), ("folder", "inbox")])).await.unwrap();
    let mut inbox: Vec<String> = made.iter().filter(|d| d.fields["folder"] == "inbox").map(|d| d.id.clone()).collect();
    inbox.reverse();
    for limit in [1, 5, 17, 100] {
        let got = every_page(&*store, &subset(&[("owner", "u1"), ("folder", "inbox")]), limit).await;
        assert_eq!(ids(&got), inbox, "limit {limit}");
    }
    let oldest = Query { newest_first: false, ..subset(&[("owner", "u1"), ("folder", "inbox")]) };
    let mut forward = ids(&every_page(&*store, &oldest, 4).await);
    forward.reverse();
    assert_eq!(forward, inbox, "id order is the reverse");
    let everything = every_page(&*store, &subset(&[]), 7).await;
    assert_eq!(everything.len(), 24);
    assert!(everything.windows(2).all(|w| w[0].id > w[1].id));

    let count = |pairs: Vec<(&'static str, &'static str)>, at_most: usize| {
        let store = store.clone();
        async move { store.count(&fields(&pairs), at_most).await.unwrap() }
    };
    assert_eq!(count(vec![("owner", "u1"), ("folder", "inbox")], 1000).await, Count { count: 17, capped: false });
    assert_eq!(count(vec![("owner", "u1")], 10).await, Count { count: 10, capped: true });
    assert_eq!(count(vec![("owner", "u1")], 23).await, Count { count: 23, capped: false });
    assert_eq!(count(vec![("owner", "nobody")], 5).await, Count { count: 0, capped: false });
    assert_eq!(count(vec![], 1000).await, Count { count: 24, capped: false });
    // Counts follow updates and deletes.
    store.update(&made[1].id, fields(&[("folder", "sent")]), vec![], None).await.unwrap();
    store.delete(&made[2].id).await.unwrap();
    assert_eq!(count(vec![("owner", "u1"), ("folder", "inbox")], 1000).await, Count { count: 15, capped: false });
    assert!(matches!(store.count(&Fields::new(), 0).await, Err(StoreError::InvalidArgument(_))));
}

pub async fn search_finds_words_by_their_forms_and_fields(store: Arc<dyn Store>) {
    let mail = |owner: &str, from: &str, subject: &str, body: &str| {
        fields(&[("owner", owner), ("_text.from", from), ("_text.subject", subject), ("_text.body", body)])
    };
    let a =
        store.put(mail("u1", "Ada Lovelace <ada@example.org>", "Engines", "The engine runs all night")).await.unwrap();
    let b = store
        .put(mail("u1", "Grace <grace@example.org>", "Réunion du conseil", "Nous avons mangé à l'école"))
        .await
        .unwrap();
    let c = store.put(mail("u1", "Ada <ada@example.org>", "Budget", "Running numbers for the école")).await.unwrap();
    let other = store.put(mail("u2", "Ada <ada@example.org>", "Engines", "engine")).await.unwrap();
    let find = |q: Query| {
        let store = store.clone();
        async move { ids(&every_page(&*store, &q, 2).await) }
    };
    let u1 = [("owner", "u1")];
    assert_eq!(find(search(&u1, &[("ada", &[])])).await, vec![c.id.clone(), a.id.clone()], "newest first");
    assert_eq!(find(search(&u1, &[("running", &[])])).await, vec![c.id.clone(), a.id.clone()], "English forms");
    assert_eq!(find(search(&u1, &[("manger", &[])])).await, vec![b.id.clone()], "French forms");
    assert_eq!(find(search(&u1, &[("ECOLE", &[])])).await, vec![c.id.clone(), b.id.clone()], "case and accents");
    assert_eq!(find(search(&u1, &[("reunion conseil", &["subject"])])).await, vec![b.id.clone()]);
    assert_eq!(find(search(&u1, &[("ada", &["subject", "body"])])).await, Vec::<String>::new(), "fields restrict");
    assert_eq!(find(search(&u1, &[("ada", &["from"]), ("engines", &["subject"])])).await, vec![a.id.clone()]);
    assert_eq!(find(search(&u1, &[("ada@example.org", &[])])).await, vec![c.id.clone(), a.id.clone()]);
    assert_eq!(find(search(&u1, &[("nothing", &[])])).await, Vec::<String>::new());
    assert_eq!(find(search(&[("owner", "u2")], &[("engine", &[])])).await, vec![other.id.clone()], "the subset holds");
    let oldest = Query { newest_first: false, ..search(&u1, &[("ada", &[])]) };
    assert_eq!(find(oldest).await, vec![a.id.clone(), c.id.clone()]);

    // The index follows updates (set, replace, remove) and deletes.
    store.update(&a.id, fields(&[("_text.subject", "Moteurs")]), vec!["_text.body".into()], None).await.unwrap();
    assert_eq!(find(search(&u1, &[("engines", &[])])).await, Vec::<String>::new());
    assert_eq!(find(search(&u1, &[("moteur", &["subject"])])).await, vec![a.id.clone()]);
    assert_eq!(find(search(&u1, &[("running", &[])])).await, vec![c.id.clone()]);
    store.update(&a.id, fields(&[("read", "true")]), vec![], None).await.unwrap();
    assert_eq!(find(search(&u1, &[("moteur", &[])])).await, vec![a.id.clone()], "other updates keep it");
    store.delete(&c.id).await.unwrap();
    assert_eq!(find(search(&u1, &[("ada", &[])])).await, vec![a.id.clone()]);
    let stored = store.get(&b.id).await.unwrap();
    assert_eq!(stored.fields["_text.subject"], "Réunion du conseil", "searchable fields are fields");
}

pub async fn bad_searches_are_refused(store: Arc<dyn Store>) {
    store.put(fields(&[("owner", "u1"), ("_text.body", "hello")])).await.unwrap();
    let refused = |q: Query| {
        let store = store.clone();
        async move {
            match store.find(&q, 10, None).await {
                Err(StoreError::InvalidArgument(reason)) => reason,
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    };
    assert!(refused(search(&[], &[("hello", &[])])).await.contains("subset"));
    assert!(refused(search(&[("owner", "u1")], &[(" ,;- ", &[])])).await.contains("no word"));
    let long = "word ".repeat(300);
    assert!(refused(search(&[("owner", "u1")], &[(long.as_str(), &[])])).await.contains("bytes"));
    let many: Vec<(&str, &[&str])> = (0..65).map(|_| ("hello", &[] as &[&str])).collect();
    assert!(refused(search(&[("owner", "u1")], &many)).await.contains("at most"));
    assert!(refused(search(&[("owner", "u1")], &[("a\u{0}b", &[])])).await.contains("U+0000"));
    let q = search(&[("owner", "u1")], &[("hello", &[])]);
    assert!(matches!(store.find(&q, 0, None).await, Err(StoreError::InvalidArgument(_))));
    assert_eq!(store.find(&q, 10, None).await.unwrap().documents.len(), 1, "nothing changed");
}
