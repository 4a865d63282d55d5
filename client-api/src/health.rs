//! `GET /healthz`: whether mta-server and backend-server answer their gRPC health checks.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::state::AppState;

async fn upstream_health(channel: Channel) -> &'static str {
    let mut client = HealthClient::new(channel);
    let check = client.check(HealthCheckRequest { service: String::new() });
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(r)) if r.get_ref().status() == ServingStatus::Serving => "serving",
        Ok(Ok(_)) => "not serving",
        _ => "unreachable",
    }
}

/// 200 when backend-server and at least one mta-server serve (the pool sends around
/// the others); `mta_nodes` names each node's state.
pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let nodes = state.pool.nodes();
    let checks = nodes.iter().map(|n| upstream_health(n.channel.clone()));
    let (each, backend) =
        tokio::join!(futures_join_all(checks.collect()), upstream_health(state.backend_channel.clone()));
    let serving = each.iter().filter(|s| **s == "serving").count();
    let mta = match serving {
        n if n == nodes.len() => "serving",
        0 => each.first().copied().unwrap_or("unreachable"),
        _ => "degraded",
    };
    let ok = serving > 0 && backend == "serving";
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mta_nodes: serde_json::Map<String, serde_json::Value> =
        nodes.iter().zip(&each).map(|(n, s)| (n.name().to_owned(), json!(s))).collect();
    let body = json!({
        "status": if ok { "ok" } else { "degraded" }, "mta": mta, "mta_nodes": mta_nodes, "backend": backend,
    });
    (status, Json(body)).into_response()
}

/// Every check at once, their answers in order.
async fn futures_join_all(
    checks: Vec<impl std::future::Future<Output = &'static str> + Send + 'static>,
) -> Vec<&'static str> {
    let mut set = tokio::task::JoinSet::new();
    for (i, check) in checks.into_iter().enumerate() {
        set.spawn(async move { (i, check.await) });
    }
    let mut done = set.join_all().await;
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, s)| s).collect()
}
