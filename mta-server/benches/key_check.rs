//! What the key check adds to every authenticated call: `cargo xtask bench keys` (or
//! `cargo bench -p mta-server --bench key_check`) times checks of one key already in the
//! check's cache, as every call after a key's first makes, and of a malformed key, which
//! is refused before any hashing. Prints one line of a Markdown table each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backend_server::memory::MemoryStore;
use backend_server::store::Store;
use mta_server::tenant::registry::{KeyRequest, Registry};
use mta_server::tenant::{KeyCheck, Scope};

const CHECKS: u32 = 200_000;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let registry = Registry::new(store);
    registry.ensure_default_tenant(&["bitmail.test".to_owned()]).await.expect("the default tenant");
    let request = KeyRequest {
        tenant: "default".into(),
        name: "bench".into(),
        scopes: [Scope::Send].into(),
        expires_ms: None,
        created_by: "bench".into(),
    };
    let key = registry.create_key(request).await.expect("a key").expose().to_owned();
    let check = KeyCheck::new(registry, Duration::from_secs(3600));
    check.authenticate(&key).await.expect("the key is known");

    println!("| key check | checks | time per check |\n| --- | --- | --- |");
    for (what, presented) in [("cached key", key.as_str()), ("malformed key", "bmk_short")] {
        let started = Instant::now();
        for _ in 0..CHECKS {
            let _ = std::hint::black_box(check.authenticate(std::hint::black_box(presented)).await);
        }
        let per = started.elapsed() / CHECKS;
        println!("| {what} | {CHECKS} | {:.2} µs |", per.as_secs_f64() * 1e6);
    }
}
