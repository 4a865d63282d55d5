//! The properties of [`Store::create`]: a unique key held by one live document at a
//! time, atomically, freed by a delete.

use std::collections::BTreeSet;
use std::sync::Arc;

use backend_server::store::{Fields, Store, StoreError};

use super::{everything, fields};

pub async fn create_refuses_a_taken_unique_key_and_changes_nothing(store: Arc<dyn Store>) {
    let first = store.create("user/ada", fields(&[("kind", "user"), ("name", "ada")])).await.unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(store.get(&first.id).await.unwrap(), first);
    let plain = store.put(fields(&[("kind", "user"), ("name", "ada")])).await.unwrap();
    assert!(first.id < plain.id, "created documents take ids in creation order like the others");
    let before = everything(&*store).await;

    let again = store.create("user/ada", fields(&[("kind", "user"), ("name", "ada"), ("n", "2")])).await;
    assert_eq!(again, Err(StoreError::AlreadyExists { id: first.id.clone() }));
    // An update keeps the key with its document.
    let updated = store.update(&first.id, fields(&[("name", "ada2")]), vec![], Some(1)).await.unwrap();
    let again = store.create("user/ada", Fields::new()).await;
    assert_eq!(again, Err(StoreError::AlreadyExists { id: first.id.clone() }));
    let mut expected = before.clone();
    expected[0] = updated;
    assert_eq!(everything(&*store).await, expected, "a refused create stored nothing");

    // Keys are exact, apart from fields, and `put` takes none.
    let other = store.create("user/ada ", fields(&[("kind", "user")])).await.unwrap();
    let other_case = store.create("user/Ada", fields(&[("kind", "user")])).await.unwrap();
    let named_like_a_field = store.create("kind", fields(&[("user/ada", "x")])).await.unwrap();
    assert_eq!(store.get(&other.id).await.unwrap(), other);
    assert_ne!(other.id, other_case.id);
    let found = store.lookup(&fields(&[("user/ada", "x")]), 10, None).await.unwrap().documents;
    assert_eq!(found, vec![named_like_a_field], "the key is not a field");
    assert_eq!(everything(&*store).await.len(), before.len() + 3);
}

pub async fn concurrent_creates_with_one_unique_key_one_wins(store: Arc<dyn Store>) {
    for round in 0..5 {
        let key = format!("inbound/{round}");
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    store.create(&key, fields(&[("round", &round.to_string()), ("i", &i.to_string())])).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut named = BTreeSet::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(doc) => winners.push(doc),
                Err(StoreError::AlreadyExists { id }) => {
                    named.insert(id);
                }
                Err(other) => panic!("a losing create must answer AlreadyExists, got {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one of 16 concurrent creates with one key wins");
        let won = &winners[0];
        assert!(named.iter().all(|id| *id == won.id), "every loser names the winner {}: {named:?}", won.id);
        let stored = store.lookup(&fields(&[("round", &round.to_string())]), 100, None).await.unwrap().documents;
        assert_eq!(stored, vec![won.clone()], "only the winner was stored");
    }
}

pub async fn deleting_frees_the_unique_key(store: Arc<dyn Store>) {
    let first = store.create("session/1", fields(&[("n", "1")])).await.unwrap();
    store.delete(&first.id).await.unwrap();
    let second = store.create("session/1", fields(&[("n", "2")])).await.unwrap();
    assert!(second.id > first.id, "a new document, with a new id");
    assert_eq!(
        store.create("session/1", Fields::new()).await,
        Err(StoreError::AlreadyExists { id: second.id.clone() })
    );
    // Deleting another document, or deleting twice, frees nothing else.
    let plain = store.put(fields(&[("n", "3")])).await.unwrap();
    store.delete(&plain.id).await.unwrap();
    assert_eq!(store.delete(&first.id).await, Err(StoreError::NotFound(first.id.clone())));
    assert_eq!(
        store.create("session/1", Fields::new()).await,
        Err(StoreError::AlreadyExists { id: second.id.clone() })
    );
    store.delete(&second.id).await.unwrap();
    // Freed keys are taken again, many times.
    for i in 0..20 {
        let doc = store.create("session/1", fields(&[("i", &i.to_string())])).await.unwrap();
        store.delete(&doc.id).await.unwrap();
    }
    assert!(everything(&*store).await.is_empty());
}
