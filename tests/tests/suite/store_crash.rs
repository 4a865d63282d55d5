//! The embedded engine under kill -9 and a full disk, with a real child process
//! (`bitmail-store-writer`) writing to a real file.
//!
//! - 50 times in a row: the writer is killed with SIGKILL at a random moment; the store
//!   is opened again and must hold every write the writer reported acknowledged
//!   (puts present, updates at least at the reported version, deletes gone), every
//!   document whole (its payload matches its checksum), an index that agrees with the
//!   documents, and unique keys that went with their documents (held by a live one,
//!   free after an acknowledged delete).
//! - A file size limit (`prlimit --fsize`, SIGXFSZ ignored) stands in for a full disk:
//!   writes are refused with `StoreError::Full`, and once the limit is gone the store
//!   opens with every acknowledged document whole and takes writes again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend_server::embedded::EmbeddedStore;
use backend_server::store::{Fields, Limits, Store, StoreError};
use bitmail_tests::store_conformance::{all_pages, everything, fields};
use bitmail_tests::store_engines::{TempDir, checksum};

const WRITER: &str = env!("CARGO_BIN_EXE_bitmail-store-writer");

/// Kills the child when dropped, whatever the test does.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the writer reported acknowledged, over all its lives.
#[derive(Default)]
struct Acked {
    versions: BTreeMap<String, u64>,
    deleted: BTreeSet<String>,
    /// The unique key of each document made by `create`.
    keys: BTreeMap<String, String>,
}

impl Acked {
    fn read(&mut self, line: &str) {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["put", id] => {
                self.versions.insert((*id).to_owned(), 1);
            }
            ["made", id, key] => {
                self.versions.insert((*id).to_owned(), 1);
                self.keys.insert((*id).to_owned(), (*key).to_owned());
            }
            ["upd", id, v] => {
                let v: u64 = v.parse().unwrap();
                let e = self.versions.entry((*id).to_owned()).or_default();
                *e = (*e).max(v);
            }
            // From here on the document may be gone; it must be once `del` is reported.
            ["deleting", id] => {
                self.versions.remove(*id);
            }
            ["del", id] => {
                self.deleted.insert((*id).to_owned());
            }
            ["ready"] | [""] => {}
            _ => panic!("unexpected line from the writer: {line:?}"),
        }
    }
}

fn open(path: &Path) -> EmbeddedStore {
    EmbeddedStore::open(path, 8 << 20, Limits::default()).expect("the store opens after the crash")
}

/// Every acknowledged write is there, every document whole, the index in agreement.
async fn verify(store: Arc<dyn Store>, acked: &Acked, round: usize) -> usize {
    let all = everything(&*store).await;
    for doc in &all {
        let payload = doc.fields.get("payload").map(String::as_str).unwrap_or_default();
        assert_eq!(doc.fields.get("sum"), Some(&checksum(payload)), "round {round}: document {} is torn", doc.id);
        assert_eq!(doc.fields.len(), 5, "round {round}: document {} has fields missing", doc.id);
    }
    let stored: BTreeMap<&str, u64> = all.iter().map(|d| (d.id.as_str(), d.version)).collect();
    for (id, version) in &acked.versions {
        let found = stored.get(id.as_str()).copied();
        assert!(found.is_some_and(|v| v >= *version), "round {round}: acknowledged {id} v{version} lost ({found:?})");
    }
    for id in &acked.deleted {
        assert_eq!(store.get(id).await, Err(StoreError::NotFound(id.clone())), "round {round}: deleted {id} is back");
    }
    // Unique keys went with their documents: a live one's key is taken by it, a deleted
    // one's is free. (A sample each round: each check is a durable write.)
    let step = (acked.keys.len() / 40).max(1);
    for (id, key) in acked.keys.iter().skip(round % step).step_by(step) {
        if acked.versions.contains_key(id) {
            let again = store.create(key, Fields::new()).await;
            assert_eq!(
                again,
                Err(StoreError::AlreadyExists { id: id.clone() }),
                "round {round}: the key of {id} was lost"
            );
        } else if acked.deleted.contains(id) {
            let again = store.create(key, fields(&[("kind", "key-check")])).await;
            let again = again.unwrap_or_else(|e| panic!("round {round}: deleted {id} still holds its key: {e:?}"));
            store.delete(&again.id).await.unwrap();
        }
    }
    let indexed = all_pages(&*store, &fields(&[("kind", "crash")]), 1000).await;
    assert_eq!(indexed, all, "round {round}: the index disagrees with the documents");
    all.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_kills_lose_no_acknowledged_write_and_tear_no_document() {
    let dir = TempDir::new("store-crash");
    let path = dir.path().join("store.redb");
    let mut acked = Acked::default();
    let started = Instant::now();
    let mut documents = 0;
    for round in 1..=50 {
        let mut child = Killed(
            Command::new(WRITER)
                .arg(&path)
                .arg("crash")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the writer"),
        );
        let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        assert_eq!(first.trim(), "ready", "round {round}: the writer did not start");
        std::thread::sleep(Duration::from_millis(fastrand::u64(5..120)));
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        // Only whole lines count: a line cut by the kill was not reported.
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let whole = match rest.rfind('\n') {
            Some(end) => &rest[..end],
            None => "",
        };
        let before = acked.versions.len() + acked.deleted.len();
        whole.lines().for_each(|l| acked.read(l));
        assert!(acked.versions.len() + acked.deleted.len() >= before);

        let store = Arc::new(open(&path));
        documents = verify(store.clone(), &acked, round).await;
        Arc::into_inner(store).expect("no other handle").close();
    }
    assert!(acked.versions.len() > 50, "the writer got writes acknowledged: {}", acked.versions.len());
    assert!(acked.keys.len() > 10, "the writer got creates acknowledged: {}", acked.keys.len());
    eprintln!(
        "50 kills in {:?}: {} documents, {} acknowledged alive, {} acknowledged deletes",
        started.elapsed(),
        documents,
        acked.versions.len(),
        acked.deleted.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_corrupts_nothing() {
    let dir = TempDir::new("store-full");
    let path = dir.path().join("store.redb");
    // SIGXFSZ ignored: writing past the limit fails with EFBIG instead of killing.
    let script = format!("trap '' XFSZ; exec prlimit --fsize={} -- \"$0\" \"$1\" fill", 6 << 20);
    let child = Command::new("sh")
        .args(["-c", &script, WRITER])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the writer under a file size limit");
    let mut child = Killed(child);
    let mut out = String::new();
    child.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "the writer stopped by itself after 20 refusals: {status:?}\n{out}");

    let mut acked = Acked::default();
    let mut errors = Vec::new();
    for line in out.lines() {
        if let Some(err) = line.strip_prefix("err ") {
            errors.push(err.to_owned());
        } else {
            acked.read(line);
        }
    }
    assert!(acked.versions.len() > 10, "some writes fit: {}", acked.versions.len());
    assert_eq!(errors.len(), 20, "{out}");
    assert!(errors[0].starts_with("full storage full:"), "the first refusal says the storage is full: {}", errors[0]);
    assert!(errors.iter().all(|e| e.starts_with("full ") || e.starts_with("other storage unavailable")), "{errors:?}");

    // Without the limit: everything acknowledged is there and whole, and writes work.
    let store = Arc::new(open(&path));
    let count = verify(store.clone(), &acked, 0).await;
    assert_eq!(count, acked.versions.len(), "no write that was refused was stored");
    let doc = store.put(fields(&[("after", "the disk has room again")])).await.unwrap();
    assert_eq!(store.get(&doc.id).await.unwrap(), doc);
}
