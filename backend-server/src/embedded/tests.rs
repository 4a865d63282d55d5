use std::path::PathBuf;

use super::*;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bitmail-embedded-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn refused(path: &Path) -> String {
    match EmbeddedStore::open(path, 1 << 20, Limits::default()) {
        Err(StoreError::Unavailable(m)) => m,
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(_) => panic!("{} was opened", path.display()),
    }
}

#[test]
fn a_damaged_file_is_reported_and_left_untouched() {
    let dir = temp("damaged");
    let path = dir.join("store.redb");
    let junk: Vec<u8> = (0..100_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&path, &junk).unwrap();
    let message = refused(&path);
    assert!(message.contains(&path.display().to_string()) && message.contains("left untouched"), "{message}");
    assert_eq!(std::fs::read(&path).unwrap(), junk, "the file was not changed");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn another_redb_file_is_not_taken_for_a_store() {
    let dir = temp("other");
    let path = dir.join("spool.redb");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TableDefinition::<&str, &[u8]>::new("messages")).unwrap().insert("m", b"x".as_slice()).unwrap();
        txn.commit().unwrap();
    }
    let message = refused(&path);
    assert!(message.contains("not a BitMail store") && message.contains("messages"), "{message}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn documents_survive_a_reopen_and_new_ids_sort_after_old_ones() {
    let dir = temp("reopen");
    let path = dir.join("store.redb");
    let store = EmbeddedStore::open(&path, 1 << 20, Limits::default()).unwrap();
    let a = store.put(fields(&[("kind", "user")])).await.unwrap();
    let a = store.update(&a.id, fields(&[("name", "ada")]), vec![], Some(1)).await.unwrap();
    store.close();

    let store = EmbeddedStore::open(&path, 1 << 20, Limits::default()).unwrap();
    assert_eq!(store.get(&a.id).await.unwrap(), a);
    let b = store.put(fields(&[("kind", "user")])).await.unwrap();
    assert!(b.id > a.id);
    let page = store.lookup(&fields(&[("kind", "user")]), 10, None).await.unwrap();
    assert_eq!(page.documents, vec![a, b]);
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}
