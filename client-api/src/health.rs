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

pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let (mta, backend) =
        tokio::join!(upstream_health(state.mta_channel.clone()), upstream_health(state.backend_channel.clone()));
    let ok = mta == "serving" && backend == "serving";
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({ "status": if ok { "ok" } else { "degraded" }, "mta": mta, "backend": backend });
    (status, Json(body)).into_response()
}
