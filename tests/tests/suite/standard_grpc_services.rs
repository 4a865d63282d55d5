//! Every service answers the standard gRPC health check and server reflection, so a
//! stock client (grpcurl, grpcui, Postman) can discover and call it.

use crate::common;

use std::time::Duration;

use common::Cluster;
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

async fn services(addr: std::net::SocketAddr) -> Vec<String> {
    let mut client = ServerReflectionClient::new(channel(addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    match answer.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

async fn file_containing(addr: std::net::SocketAddr, symbol: &str) -> usize {
    let mut client = ServerReflectionClient::new(channel(addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
    };
    let mut answers = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    match answers.next().await.unwrap().unwrap().message_response {
        Some(MessageResponse::FileDescriptorResponse(f)) => f.file_descriptor_proto.len(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

async fn health(addr: std::net::SocketAddr, service: &str) -> ServingStatus {
    let mut client = HealthClient::new(channel(addr).await);
    client.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status()
}

#[tokio::test]
async fn mta_and_backend_serve_health_and_reflection() {
    let cluster = Cluster::start(vec![], false).await;
    // The servers are bound before start returns and serve from a spawned task: wait
    // until the mta answers its health rather than for a fixed time.
    bitmail_tests::eventually::eventually(
        Duration::from_secs(5),
        "serving",
        || health(cluster.mta, "bitmail.v1.Mta"),
        |s| *s == ServingStatus::Serving,
    )
    .await;

    let mta = services(cluster.mta).await;
    for name in ["bitmail.v1.Mta", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"] {
        assert!(mta.iter().any(|s| s == name), "mta lists {mta:?}");
    }
    assert!(file_containing(cluster.mta, "bitmail.v1.Mta.Submit").await >= 1);
    let backend = services(cluster.backend).await;
    assert!(backend.iter().any(|s| s == "bitmail.v1.Store"), "backend lists {backend:?}");

    assert_eq!(health(cluster.mta, "").await, ServingStatus::Serving);
    assert_eq!(health(cluster.mta, "bitmail.v1.Mta").await, ServingStatus::Serving);
    assert_eq!(health(cluster.backend, "bitmail.v1.Store").await, ServingStatus::Serving);
}
