//! The standard gRPC services every BitMail server exposes beside its own: health
//! (`grpc.health.v1.Health`) and server reflection (`grpc.reflection.v1` and `v1alpha`),
//! so that a stock client such as `grpcurl` can discover and call it.

use tonic::service::RoutesBuilder;

/// Adds health and reflection to `routes`. `serving` names the fully qualified services
/// to report as SERVING (for example `bitmail.v1.Mta`); the empty name, the server as a
/// whole, is reported too. The reporter is returned for services whose state changes.
pub async fn add_standard_services(
    routes: &mut RoutesBuilder,
    serving: &[&str],
) -> Result<tonic_health::server::HealthReporter, tonic_reflection::server::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in serving.iter().copied().chain([""]) {
        reporter.set_service_status(name, tonic_health::ServingStatus::Serving).await;
    }
    // Advertise only what this server serves: the shared descriptor set also describes
    // the other BitMail services.
    let advertise = |mut builder: tonic_reflection::server::Builder<'static>| {
        builder = builder
            .register_encoded_file_descriptor_set(bitmail_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for name in serving.iter().copied().chain(["grpc.health.v1.Health"]) {
            builder = builder.with_service_name(name);
        }
        builder
    };
    let reflection_v1 = advertise(tonic_reflection::server::Builder::configure())
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .build_v1()?;
    let reflection_v1alpha = advertise(tonic_reflection::server::Builder::configure())
        .with_service_name("grpc.reflection.v1alpha.ServerReflection")
        .build_v1alpha()?;
    routes.add_service(health).add_service(reflection_v1).add_service(reflection_v1alpha);
    Ok(reporter)
}

/// Serves `routes` on `listener` until `shutdown` resolves, then stops accepting and
/// lets calls in flight finish, for at most `grace`: a client that never completes the
/// HTTP/2 goodbye (it does not answer the final PING) cannot hold the process open.
/// With `tls` (see [`crate::grpc_tls`]) every connection is mutual TLS: a client
/// without a certificate from the configured CA is refused in the handshake.
/// Every call goes through `limits` ([`crate::limits`]), its refusals counted in
/// `metrics`.
pub async fn serve(
    routes: tonic::service::Routes,
    listener: tokio::net::TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
    limits: &crate::limits::GrpcLimits,
    metrics: crate::metrics::Registry,
) -> Result<(), tonic::transport::Error> {
    let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = fired_tx.send(());
    };
    // Without TCP_NODELAY, a small answer waits for the client's delayed ACK (~40 ms).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    // HTTP/1.1 too, for `GET /metrics` (see `metrics::with_metrics_route`).
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let server = builder
        .layer(crate::limits::LimitLayer::new(limits, metrics))
        .accept_http1(true)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(server);
    let deadline = async {
        if fired_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = &mut server => result,
        () = deadline => {
            tracing::warn!(grace_secs = grace.as_secs(), "connections still open after the grace period; closing them");
            Ok(())
        }
    }
}

/// Adds `authorization: Bearer KEY` to every call of a gRPC client (the services' API
/// keys); the value is marked sensitive, so tonic and hyper never log it. Without a key
/// the calls go out as they are (and mta-server refuses them).
#[derive(Clone, Default)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// A key that is not printable ASCII is refused here rather than on every call.
    pub fn new(key: Option<&str>) -> Result<Self, String> {
        let value = match key {
            None => None,
            Some(key) => {
                let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
                    format!("Bearer {key}").parse().map_err(|_| "the API key must be printable ASCII".to_owned())?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Bearer(value))
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Bearer(<key>)" } else { "Bearer(none)" })
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel whose calls carry a [`Bearer`] key.
pub type WithKey = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;
