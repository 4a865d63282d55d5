//! The proxy engine's own behaviour: an unreachable or silent storage node is
//! `Unavailable`, the proxy reconnects once the node is back (and waits for it, within
//! the deadline, while it restarts), and the node's refusals come back as the same
//! `StoreError`.

use std::time::{Duration, Instant};

use backend_server::config::{Config, Engine};
use backend_server::proxy::ProxyStore;
use backend_server::store::{Limits, Store, StoreError};
use bitmail_tests::store_conformance::fields;
use bitmail_tests::store_engines::serve;

fn proxy(url: &str, timeout: Duration) -> ProxyStore {
    ProxyStore::new(url, None, Duration::from_millis(500), timeout, Limits::default()).unwrap()
}

#[tokio::test]
async fn an_unreachable_node_is_unavailable_and_the_proxy_reconnects_when_it_is_back() {
    // A port nobody listens on (taken, then freed).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // A short deadline: the refused connection is tried again until it passes.
    let store = proxy(&format!("http://127.0.0.1:{port}"), Duration::from_millis(300));
    let started = Instant::now();
    let err = store.put(fields(&[("k", "v")])).await.unwrap_err();
    assert!(matches!(&err, StoreError::Unavailable(m) if m.contains(&port.to_string())), "{err:?}");
    assert!(m_refused(&err), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "answered after {:?}", started.elapsed());
    assert!(matches!(store.get("some-id").await, Err(StoreError::Unavailable(_))));

    // The node comes up on that port: the same proxy works, without being rebuilt.
    let mut config = Config { engine: Engine::Memory, ..Default::default() };
    config.listen = ([127, 0, 0, 1], port).into();
    let server = backend_server::server::Server::bind(&config).await.expect("the port is free again");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let doc = store.put(fields(&[("k", "v")])).await.unwrap();
    assert_eq!(store.get(&doc.id).await.unwrap(), doc);

    // It goes away again: Unavailable, not a hang and not another kind of error.
    let _ = stop.send(());
    let id = doc.id.clone();
    let answer = bitmail_tests::eventually::eventually(
        Duration::from_secs(5),
        "refused once the node stopped",
        || store.get(&id),
        Result::is_err,
    )
    .await;
    let err = answer.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

fn m_refused(err: &StoreError) -> bool {
    matches!(err, StoreError::Unavailable(m) if m.to_lowercase().contains("refused"))
}

#[tokio::test]
async fn a_call_made_while_the_node_restarts_waits_for_it_within_the_deadline() {
    let server = serve(Config { engine: Engine::Memory, ..Default::default() }).await;
    let store = proxy(&server.url, Duration::from_secs(5));
    let doc = store.put(fields(&[("k", "v")])).await.unwrap();
    let addr: std::net::SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    drop(server);
    let quick = proxy(&format!("http://{addr}"), Duration::from_millis(100));
    let _refused = bitmail_tests::eventually::eventually(
        Duration::from_secs(5),
        "the node stopped",
        || quick.get(&doc.id),
        |r| matches!(r, Err(StoreError::Unavailable(_))),
    )
    .await;
    // Down: the calls made now are answered once it is back on the same port, 700 ms on.
    let back = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let mut config = Config { engine: Engine::Memory, ..Default::default() };
        config.listen = addr;
        loop {
            // The stopped node lets go of its port within its grace.
            if let Ok(server) = backend_server::server::Server::bind(&config).await {
                break server.serve(std::future::pending()).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let started = Instant::now();
    let (put, missing) = tokio::join!(store.put(fields(&[("k", "w")])), store.get(&doc.id));
    let waited = started.elapsed();
    // A fresh memory node: the write landed there once, the old document is gone.
    let put = put.expect("a write the node never received is made once it is back");
    assert_eq!(store.get(&put.id).await.unwrap().fields, fields(&[("k", "w")]));
    assert_eq!(missing, Err(StoreError::NotFound(doc.id.clone())));
    assert!(waited >= Duration::from_millis(600) && waited < Duration::from_secs(5), "waited {waited:?}");
    back.abort();
}

#[tokio::test]
async fn a_node_that_never_answers_is_unavailable_within_the_timeout() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let store = proxy(&format!("http://{addr}"), Duration::from_millis(300));
    let started = Instant::now();
    let err = store.get("some-id").await.unwrap_err();
    assert!(matches!(&err, StoreError::Unavailable(m) if m.contains("300 ms")), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "answered after {:?}", started.elapsed());
}

#[tokio::test]
async fn the_nodes_refusals_come_back_as_the_same_errors() {
    // The node allows smaller documents than the proxy: its own refusal travels back.
    let config = Config { engine: Engine::Memory, max_document_bytes: 1024, ..Default::default() };
    let server = serve(config).await;
    let store = proxy(&server.url, Duration::from_secs(5));
    let err = store.put(fields(&[("body", &"x".repeat(2000))])).await.unwrap_err();
    assert_eq!(err, StoreError::InvalidArgument("document: 2004 bytes, at most 1024".into()));

    let doc = store.put(fields(&[("n", "1")])).await.unwrap();
    store.update(&doc.id, fields(&[("n", "2")]), vec![], Some(1)).await.unwrap();
    let err = store.update(&doc.id, fields(&[("n", "3")]), vec![], Some(1)).await.unwrap_err();
    assert_eq!(err, StoreError::VersionMismatch { id: doc.id.clone(), expected: 1, actual: 2 });
    store.delete(&doc.id).await.unwrap();
    assert_eq!(store.delete(&doc.id).await, Err(StoreError::NotFound(doc.id.clone())));
}
