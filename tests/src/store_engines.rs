//! Fresh, empty stores of each engine, for the conformance suite and the store tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backend_server::config::{Config, Engine};
use backend_server::embedded::EmbeddedStore;
use backend_server::memory::MemoryStore;
use backend_server::postgres::PostgresStore;
use backend_server::proxy::ProxyStore;
use backend_server::store::Limits;
use tokio::sync::oneshot;

use crate::store_conformance::Subject;

/// A folder under the system's temporary folder, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!("bitmail-{label}-{}", uuid_ish()));
        std::fs::create_dir_all(&path).expect("create a temporary folder");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_ish() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A backend-server serving in this process until dropped.
pub struct InProcessServer {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds a backend-server with `config` on an ephemeral loopback port and serves it.
pub async fn serve(mut config: Config) -> InProcessServer {
    config.listen = ([127, 0, 0, 1], 0).into();
    config.shutdown_grace_secs = 1;
    let server = backend_server::server::Server::bind(&config).await.expect("backend-server binds");
    let url = format!("http://{}", server.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    InProcessServer { url, stop: Some(stop) }
}

pub async fn memory() -> Subject {
    Subject::new(Arc::new(MemoryStore::new()))
}

pub async fn embedded() -> Subject {
    let dir = TempDir::new("store");
    let store = EmbeddedStore::open(&dir.path().join("store.redb"), 16 << 20, Limits::default()).expect("open");
    let mut subject = Subject::new(Arc::new(store));
    subject.keep.push(Box::new(dir));
    subject
}

/// A proxy store in front of an in-process backend-server on the embedded engine.
pub async fn proxy_to_embedded() -> Subject {
    let dir = TempDir::new("store-remote");
    let mut config = Config { engine: Engine::Embedded, ..Default::default() };
    config.embedded.path = dir.path().join("store.redb");
    config.embedded.cache_bytes = 16 << 20;
    let server = serve(config).await;
    let proxy = ProxyStore::new(&server.url, None, Duration::from_secs(1), Duration::from_secs(20), Limits::default())
        .expect("a valid url");
    let mut subject = Subject::new(Arc::new(proxy));
    // Dropped in order: the server stops, then its folder goes.
    subject.keep.push(Box::new(server));
    subject.keep.push(Box::new(dir));
    subject
}

/// A PostgreSQL store on a fresh database of a throwaway cluster shared by the tests of
/// this process (`crate::postgres`).
pub async fn postgres() -> Subject {
    let (pg, url) = tokio::task::spawn_blocking(|| {
        let pg = crate::postgres::PgServer::shared().expect("a PostgreSQL cluster starts");
        let url = pg.create_database().expect("createdb");
        (pg, url)
    })
    .await
    .expect("the cluster task");
    let store = PostgresStore::connect(&url, 8).await.expect("the store connects").with_limits(Limits::default());
    let mut subject = Subject::new(Arc::new(store));
    subject.keep.push(Box::new(pg));
    subject
}

/// The checksum the crash writer puts in a document's `sum` field for its `payload`
/// (its length and FNV-1a 64), so a reader can tell a whole document from a torn one.
pub fn checksum(payload: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in payload.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    format!("{}:{h:016x}", payload.len())
}
