//! The PostgreSQL engine against a real PostgreSQL server (a throwaway cluster from
//! `bitmail_tests::postgres`): its schema on restart, the plan of a lookup, clear errors
//! that never show the password, and backend-server serving gRPC with
//! `engine = "postgres"`. The Store contract itself is checked by the conformance suite
//! (`tests/tests/suite/store_conformance.rs`), which runs against PostgreSQL too.

use std::collections::HashMap;
use std::sync::Arc;

use backend_server::postgres::{LOOKUP_SUBSET, PostgresStore};
use backend_server::store::{Fields, Store, StoreError};
use bitmail_proto::v1 as pb;
use bitmail_proto::v1::store_client::StoreClient;
use bitmail_runtime::config::Secret;
use bitmail_tests::postgres::PgServer;
use tokio::sync::watch;
use tonic::Code;

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// A fresh database on the shared cluster, and a store on it.
async fn fresh() -> (Arc<PgServer>, String, Arc<dyn Store>) {
    let pg = PgServer::shared().expect("a PostgreSQL cluster starts");
    let url = pg.create_database().expect("createdb");
    let store = PostgresStore::connect(&url, 8).await.expect("the store connects");
    (pg, url, Arc::new(store))
}

#[tokio::test]
async fn schema_creation_is_idempotent_and_keeps_data() {
    let (_pg, url, store) = fresh().await;
    let doc = store.put(fields(&[("kind", "keep")])).await.unwrap();
    drop(store);

    // Two servers starting at once on the existing schema, then on a new database.
    let (a, b) = tokio::join!(PostgresStore::connect(&url, 2), PostgresStore::connect(&url, 2));
    let (a, _b) = (a.expect("first restart"), b.expect("second restart"));
    assert_eq!(a.get(&doc.id).await.unwrap(), doc);
    let found = a.lookup(&fields(&[("kind", "keep")]), 10, None).await.unwrap();
    assert_eq!(found.documents, vec![doc]);

    let pg = PgServer::shared().unwrap();
    let other = pg.create_database().unwrap();
    let (a, b) = tokio::join!(PostgresStore::connect(&other, 2), PostgresStore::connect(&other, 2));
    let (a, b) = (a.expect("first on an empty database"), b.expect("second on an empty database"));
    let doc = a.put(fields(&[("x", "1")])).await.unwrap();
    assert_eq!(b.get(&doc.id).await.unwrap(), doc);
}

/// A table made before unique keys (no `unique_key` column) gains the column and its
/// unique index when a server starts on it; its documents stay, holding no key.
#[tokio::test]
async fn a_table_from_before_unique_keys_gains_them_on_start() {
    let pg = PgServer::shared().expect("a PostgreSQL cluster starts");
    let url = pg.create_database().expect("createdb");
    pg.psql(
        &url,
        "CREATE TABLE bitmail_documents (id UUID PRIMARY KEY, version BIGINT NOT NULL, doc JSONB NOT NULL);
         INSERT INTO bitmail_documents VALUES ('01900000-0000-7000-8000-000000000001', 3, '{\"kind\": \"old\"}')",
    )
    .unwrap();
    // Two servers starting at once on it.
    let (a, b) = tokio::join!(PostgresStore::connect(&url, 2), PostgresStore::connect(&url, 2));
    let (a, b) = (a.expect("first start"), b.expect("second start"));
    let old = a.get("01900000-0000-7000-8000-000000000001").await.unwrap();
    assert_eq!((old.version, old.fields), (3, fields(&[("kind", "old")])));
    let made = a.create("user/ada", fields(&[("kind", "user")])).await.unwrap();
    assert_eq!(b.create("user/ada", Fields::new()).await, Err(StoreError::AlreadyExists { id: made.id.clone() }));
    let columns =
        pg.psql(&url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'bitmail_documents_unique_key'").unwrap();
    assert!(columns.contains("UNIQUE INDEX"), "{columns}");
}

/// The lookup statement reads the GIN index for a selective pair with a small limit,
/// where the plain form, prepared once, walks the primary key (the trap).
#[tokio::test]
async fn a_selective_lookup_reads_the_containment_index() {
    let (pg, url, store) = fresh().await;
    store.put(fields(&[("kind", "probe")])).await.unwrap();
    pg.psql(
        &url,
        "INSERT INTO bitmail_documents (id, version, doc)
         SELECT ('01900000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 1,
                jsonb_build_object('kind', 'k' || (i % 10), 'uniq', 'u' || i)
         FROM generate_series(1, 50000) AS i",
    )
    .unwrap();
    pg.psql(&url, "ANALYZE bitmail_documents").unwrap();

    let explain = |mode: &str, sql: &str| {
        pg.psql(
            &url,
            &format!(
                "SET plan_cache_mode = {mode};
                 PREPARE q(jsonb, uuid, bigint) AS {sql};
                 EXPLAIN EXECUTE q('{{\"uniq\":\"u4242\"}}', '00000000-0000-0000-0000-000000000000', 11);"
            ),
        )
        .unwrap()
    };
    // The engine sends the lookup unnamed, so it is planned with the subset's values.
    let plan = explain("force_custom_plan", LOOKUP_SUBSET);
    assert!(plan.contains("Bitmap Index Scan on bitmail_documents_doc"), "{plan}");
    assert!(!plan.contains("bitmail_documents_pkey"), "{plan}");
    let trap = explain(
        "force_generic_plan",
        "SELECT id, version, doc FROM bitmail_documents WHERE doc @> $1 AND id > $2 ORDER BY id LIMIT $3",
    );
    assert!(trap.contains("Index Scan using bitmail_documents_pkey"), "the unfenced form should show the trap: {trap}");

    let found = store.lookup(&fields(&[("uniq", "u4242")]), 10, None).await.unwrap();
    assert_eq!(found.documents.len(), 1);
    assert_eq!(found.documents[0].fields, fields(&[("kind", "k2"), ("uniq", "u4242")]));
    let page = store.lookup(&fields(&[("kind", "k3")]), 1000, None).await.unwrap();
    assert_eq!(page.documents.len(), 1000);
    assert!(page.next_page_token.is_some());
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let (_pg, _url, store) = fresh().await;
    let doc = store.put(fields(&[("kind", "x")])).await.unwrap();
    let nul = fields(&[("kind", "a\0b")]);
    assert!(matches!(store.put(nul.clone()).await, Err(StoreError::InvalidArgument(m)) if m.contains("U+0000")));
    assert!(matches!(store.put(fields(&[("a\0", "b")])).await, Err(StoreError::InvalidArgument(_))));
    assert!(matches!(store.update(&doc.id, nul.clone(), vec![], None).await, Err(StoreError::InvalidArgument(_))));
    assert!(matches!(
        store.update(&doc.id, Fields::new(), vec!["\0".into()], None).await,
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(store.lookup(&nul, 10, None).await, Err(StoreError::InvalidArgument(_))));
    for limit in [0, 1001] {
        assert!(matches!(store.lookup(&Fields::new(), limit, None).await, Err(StoreError::InvalidArgument(_))));
    }
    assert!(matches!(store.lookup(&Fields::new(), 10, Some("garbage")).await, Err(StoreError::InvalidArgument(_))));
    assert_eq!(store.get(&doc.id).await.unwrap(), doc);
    assert_eq!(store.lookup(&Fields::new(), 10, None).await.unwrap().documents, vec![doc]);
}

#[tokio::test]
async fn connection_errors_are_unavailable_and_never_show_the_password() {
    let pg = PgServer::shared().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = PostgresStore::connect(&format!("postgres://bitmail:s3cret-pw@127.0.0.1:{closed}/x"), 2)
        .await
        .err()
        .expect("nothing listens there");
    let StoreError::Unavailable(message) = &err else { panic!("{err:?}") };
    assert!(message.contains(&format!("127.0.0.1:{closed}/x")), "{message}");
    assert!(message.contains("refused"), "{message}");
    assert!(!message.contains("s3cret-pw"), "{message}");

    let wrong = format!("postgres://bitmail:wrong-pw-123@127.0.0.1:{}/postgres", pg.port());
    let err = PostgresStore::connect(&wrong, 2).await.err().expect("a wrong password is refused");
    let StoreError::Unavailable(message) = &err else { panic!("{err:?}") };
    assert!(message.contains("password authentication failed"), "{message}");
    assert!(!message.contains("wrong-pw-123") && !message.contains(pg.password()), "{message}");

    let err = PostgresStore::connect("postgres://u:pw@host/db?nonsense=1", 2).await.err().unwrap();
    assert!(matches!(&err, StoreError::InvalidArgument(m) if m.contains("nonsense") && !m.contains("pw")), "{err:?}");
}

fn wire(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// backend-server with `engine = "postgres"`: the Store service over gRPC, and the data
/// still there after the server restarts.
#[tokio::test]
async fn backend_server_serves_grpc_from_postgres_across_restarts() {
    let pg = PgServer::shared().unwrap();
    let url = pg.create_database().unwrap();
    let config = backend_server::config::Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        engine: backend_server::config::Engine::Postgres,
        postgres: backend_server::config::PostgresConfig { url: Secret::new(url), pool_size: 4, ca_file: None },
        ..Default::default()
    };
    let start = || async {
        let (stop, mut rx) = watch::channel(false);
        let server = backend_server::server::Server::bind(&config).await.expect("binds with postgres");
        let addr = server.local_addr().unwrap();
        let task = tokio::spawn(server.serve(async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        let client = StoreClient::connect(format!("http://{addr}")).await.unwrap();
        (stop, task, client)
    };

    let (stop, task, mut store) = start().await;
    let put = store.put(pb::PutRequest { fields: wire(&[("kind", "user"), ("name", "ada")]) }).await.unwrap();
    let id = put.into_inner().id;
    let update =
        pb::UpdateRequest { id: id.clone(), fields: wire(&[("lang", "fr")]), remove: vec![], expected_version: 1 };
    assert_eq!(store.update(update.clone()).await.unwrap().into_inner().version, 2);
    assert_eq!(store.update(update).await.unwrap_err().code(), Code::Aborted);
    let nul = store.put(pb::PutRequest { fields: wire(&[("k", "\0")]) }).await.unwrap_err();
    assert_eq!(nul.code(), Code::InvalidArgument, "{nul:?}");
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();

    let (stop, task, mut store) = start().await;
    let doc = store.get(pb::GetRequest { id: id.clone() }).await.unwrap().into_inner();
    assert_eq!((doc.version, doc.fields), (2, wire(&[("kind", "user"), ("name", "ada"), ("lang", "fr")])));
    let request = pb::LookupRequest {
        subset: wire(&[("name", "ada")]),
        limit: 10,
        page_token: String::new(),
        newest_first: false,
    };
    let mut stream = store.lookup(request).await.unwrap().into_inner();
    let mut found = Vec::new();
    while let Some(item) = stream.message().await.unwrap() {
        if let Some(pb::lookup_response::Item::Document(d)) = item.item {
            found.push(d.id);
        }
    }
    assert_eq!(found, vec![id.clone()]);
    store.delete(pb::DeleteRequest { id: id.clone() }).await.unwrap();
    assert_eq!(store.get(pb::GetRequest { id }).await.unwrap_err().code(), Code::NotFound);
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}
