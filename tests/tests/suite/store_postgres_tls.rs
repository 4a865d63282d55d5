//! The PostgreSQL engine over TLS (`[postgres] ca_file`, as `sslmode=verify-full`)
//! against a throwaway cluster with `ssl=on` and a certificate from a throwaway CA: with
//! that CA the store works and its connections are TLS (PostgreSQL's own `pg_stat_ssl`
//! says so), also through a two-host URL whose first host is down (each host is
//! verified by its own name); with another CA it does not connect, and says it is the
//! certificate.

use backend_server::postgres::PostgresStore;
use backend_server::store::{Fields, Store, StoreError};
use bitmail_tests::ca::Ca;
use bitmail_tests::postgres::PgServer;

#[tokio::test]
async fn the_right_ca_connects_over_tls_and_another_is_refused_clearly() {
    let dir = std::env::temp_dir().join(format!("bitmail-pg-tls-{}", std::process::id()));
    let ca = Ca::new(&dir.join("ours"), "PostgreSQL test CA").unwrap();
    let stranger = Ca::new(&dir.join("theirs"), "another CA").unwrap();
    let pg = PgServer::start_tls(&ca).expect("a PostgreSQL cluster with ssl=on starts");
    let url = pg.create_database().unwrap();

    let store = PostgresStore::connect_with(&url, 2, Some(&ca.ca_file())).await.expect("connects with the right CA");
    let fields = Fields::from([("kind".to_owned(), "user".to_owned())]);
    let put = store.put(fields.clone()).await.unwrap();
    assert_eq!(store.get(&put.id).await.unwrap().fields, fields);
    // The pool keeps its connections: each of them is TLS.
    let database = url.rsplit('/').next().unwrap();
    let sessions = pg
        .psql(
            &url,
            &format!(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = 'bitmail-backend' AND a.datname = '{database}'"
            ),
        )
        .unwrap();
    let (tls, all) = sessions.trim().split_once('|').expect("two counts");
    assert!(all.parse::<u32>().unwrap() >= 1 && tls == all, "TLS sessions | all: {sessions}");

    // Several hosts: each is verified by its own name. The first is down; the second is
    // reached as `localhost`, the name its certificate carries.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let two_hosts = format!(
        "postgres://bitmail:{}@127.0.0.1:{closed},localhost:{}/{database}?target_session_attrs=read-write",
        pg.password(),
        pg.port()
    );
    let pair =
        PostgresStore::connect_with(&two_hosts, 1, Some(&ca.ca_file())).await.expect("the second host, over TLS");
    assert_eq!(pair.get(&put.id).await.unwrap().fields, fields);

    let err = PostgresStore::connect_with(&url, 2, Some(&stranger.ca_file())).await.err().expect("another CA");
    let StoreError::Unavailable(message) = &err else { panic!("{err:?}") };
    assert!(message.contains("certificate") && message.contains("UnknownIssuer"), "{message}");
    assert!(!message.contains(pg.password()), "{message}");

    // Without a CA, asking for TLS is refused before connecting: it would verify nothing.
    let err = PostgresStore::connect(&format!("{url}?sslmode=require"), 2).await.err().expect("no CA");
    assert!(matches!(&err, StoreError::InvalidArgument(m) if m.contains("postgres.ca_file")), "{err:?}");
    drop(pg);
    let _ = std::fs::remove_dir_all(dir);
}
