//! The PostgreSQL engine with a hot standby (`bitmail_tests::postgres`: a primary and a
//! synchronous streaming standby). backend-server runs on a URL naming both hosts with
//! `target_session_attrs=read-write`; writers put documents over gRPC while the primary
//! is killed (SIGKILL) and the standby promoted. Every write answered OK must be there
//! afterwards, every other one must have been answered UNAVAILABLE, and writes must be
//! answered again soon, by the same backend-server, with no restart. Also: a host that
//! turns read-only (SQLSTATE 25006) has its pooled connections dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backend_server::postgres::PostgresStore;
use backend_server::store::{Fields, Store, StoreError};
use bitmail_proto::v1 as pb;
use bitmail_proto::v1::store_client::StoreClient;
use bitmail_runtime::config::Secret;
use bitmail_tests::postgres::PgServer;
use tokio::sync::watch;
use tonic::Code;

/// The most the store may take to answer writes again after the primary died (the
/// promotion included).
const RECOVERY_BOUND: Duration = Duration::from_secs(10);
/// How long the pair runs without a primary before the standby is promoted, as while a
/// fail-over manager makes sure the primary is gone: writes sent then must fail.
const DETECTION: Duration = Duration::from_millis(500);

/// One put over gRPC: when it was sent and answered, and the answer.
struct Outcome {
    sent: Instant,
    answered: Instant,
    result: Result<(String, HashMap<String, String>), Code>,
}

async fn writer(
    mut client: StoreClient<tonic::transport::Channel>,
    name: usize,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
) {
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let fields = HashMap::from([("writer".to_owned(), name.to_string()), ("seq".to_owned(), seq.to_string())]);
        let sent = Instant::now();
        let result = client.put(pb::PutRequest { fields: fields.clone() }).await;
        let answered = Instant::now();
        let failed = result.is_err();
        let result = result.map(|r| (r.into_inner().id, fields)).map_err(|status| status.code());
        outcomes.lock().unwrap().push(Outcome { sent, answered, result });
        if failed {
            // A client that retries, not one that spins.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn ok_count(outcomes: &Mutex<Vec<Outcome>>) -> usize {
    outcomes.lock().unwrap().iter().filter(|o| o.result.is_ok()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_promotion_and_writes_resume_without_a_restart() {
    let mut primary = PgServer::start_primary().expect("a primary starts");
    let database = primary.create_database().expect("createdb");
    let standby = primary.start_standby().expect("a synchronous standby starts");
    let url = primary.pair_url(&standby, &database);

    let config = backend_server::config::Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        engine: backend_server::config::Engine::Postgres,
        postgres: backend_server::config::PostgresConfig { url: Secret::new(url), pool_size: 4, ca_file: None },
        ..Default::default()
    };
    let server = backend_server::server::Server::bind(&config).await.expect("binds on the pair");
    let addr = server.local_addr().unwrap();
    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let serving = tokio::spawn(server.serve(async move {
        let _ = shutdown_rx.wait_for(|s| *s).await;
    }));
    let client = StoreClient::connect(format!("http://{addr}")).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> =
        (0..4).map(|n| tokio::spawn(writer(client.clone(), n, stop.clone(), outcomes.clone()))).collect();

    // Some writes on the first primary, then it dies mid-stream and the standby is promoted.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok_count(&outcomes) < 200 {
        assert!(Instant::now() < deadline, "the writers did not get going on the primary");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let kill_started = Instant::now();
    let primary = tokio::task::spawn_blocking(move || {
        primary.kill().expect("kill -9 the primary");
        primary
    })
    .await
    .unwrap();
    // From here on the primary is gone: no write sent later can be answered by it.
    let killed_at = Instant::now();
    let before_kill = ok_count(&outcomes);
    tokio::time::sleep(DETECTION).await;
    let promoting_at = Instant::now();
    let standby = tokio::task::spawn_blocking(move || {
        standby.promote().expect("the standby is promoted");
        standby
    })
    .await
    .unwrap();
    let promoted_at = Instant::now();

    // Writes are answered again: one sent after the kill comes back OK.
    let recovered_at = loop {
        let first = outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.sent > killed_at && o.result.is_ok())
            .map(|o| o.answered)
            .min();
        if let Some(at) = first {
            break at;
        }
        assert!(killed_at.elapsed() < RECOVERY_BOUND, "no write was answered OK within {RECOVERY_BOUND:?} of the kill");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Some more on the new primary, then the writers stop.
    let after = ok_count(&outcomes);
    while ok_count(&outcomes) < after + 100 {
        assert!(Instant::now() < recovered_at + RECOVERY_BOUND, "writes stalled again after the promotion");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let mut failures: HashMap<Code, usize> = HashMap::new();
    for o in &outcomes {
        if let Err(code) = o.result {
            *failures.entry(code).or_default() += 1;
        }
    }
    let failed: usize = failures.values().sum();
    let acknowledged: Vec<_> = outcomes.iter().filter_map(|o| o.result.as_ref().ok()).collect();
    let recovery = recovered_at - killed_at;
    println!(
        "standby fail-over: {} writes answered OK ({before_kill} before the kill), {failed} UNAVAILABLE; the kill took \
         {:?}; after it: promotion started {:?}, pg_promote returned {:?}, first write answered OK {recovery:?}",
        acknowledged.len(),
        killed_at - kill_started,
        promoting_at - killed_at,
        promoted_at - killed_at,
    );
    assert_eq!(failures.keys().copied().collect::<Vec<_>>(), vec![Code::Unavailable], "failures by code: {failures:?}");
    assert!(recovery < RECOVERY_BOUND, "recovery took {recovery:?}");

    // Every acknowledged write is on the promoted standby, read through the same server.
    let mut reader = client.clone();
    for (id, fields) in &acknowledged {
        let doc = reader.get(pb::GetRequest { id: id.clone() }).await.unwrap_or_else(|s| panic!("{id}: {s:?}"));
        assert_eq!(&doc.into_inner().fields, fields, "{id}");
    }
    let rows = standby.psql(&database, "SELECT count(*) FROM bitmail_documents").unwrap();
    assert!(rows.trim().parse::<usize>().unwrap() >= acknowledged.len(), "{rows} rows");

    shutdown.send(true).unwrap();
    serving.await.unwrap().unwrap();
    drop((primary, standby));
}

/// A primary that turns read-only under the pool (here fenced with
/// `default_transaction_read_only`, as a fail-over tool does): writes are refused
/// `Unavailable` and the pooled connections to it are closed, not handed out again;
/// once it takes writes again, so does the store.
#[tokio::test]
async fn connections_to_a_host_turned_read_only_are_dropped() {
    // Its own cluster: the setting is for the whole cluster.
    let pg = PgServer::start().expect("a PostgreSQL cluster starts");
    let url = pg.create_database().unwrap();
    let store = PostgresStore::connect(&url, 2).await.expect("connects");
    let kept = store.put(Fields::from([("kind".to_owned(), "kept".to_owned())])).await.unwrap();
    let sessions = || {
        pg.psql(
            &url,
            "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE application_name = 'bitmail-backend'",
        )
        .unwrap()
        .trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    let before = sessions();
    assert!(!before.is_empty());

    let reload = |sql: &str| {
        pg.psql(&url, sql).unwrap();
        pg.psql(&url, "SELECT pg_reload_conf()").unwrap();
        // The postmaster passes the reload on to every backend.
        std::thread::sleep(Duration::from_millis(300));
    };
    reload("ALTER SYSTEM SET default_transaction_read_only = on");
    let err = store.put(Fields::from([("kind".to_owned(), "refused".to_owned())])).await.unwrap_err();
    assert!(matches!(&err, StoreError::Unavailable(m) if m.contains("25006")), "{err:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while sessions().iter().any(|pid| before.contains(pid)) {
        assert!(Instant::now() < deadline, "the read-only connections are still open: {before:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    reload("ALTER SYSTEM RESET default_transaction_read_only");
    let put = store.put(Fields::from([("kind".to_owned(), "after".to_owned())])).await.expect("writes again");
    assert_eq!(store.get(&put.id).await.unwrap().fields["kind"], "after");
    assert_eq!(store.get(&kept.id).await.unwrap(), kept);
}
