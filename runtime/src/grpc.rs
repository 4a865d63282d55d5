//! The standard gRPC services every BitMail server exposes beside its own: health
//! (`grpc.health.v1.Health`) and server reflection (`grpc.reflection.v1` and `v1alpha`),
//! so that a stock client such as `grpcurl` can discover and call it.

use tonic::service::RoutesBuilder;

/// Adds health and reflection to `routes`. `serving` names the fully qualified services
/// to report as SERVING (for example `bitmail.v1.Mta`); the empty name, the server as a
/// whole, is reported too.
pub async fn add_standard_services(
    routes: &mut RoutesBuilder,
    serving: &[&str],
) -> Result<(), tonic_reflection::server::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in serving.iter().copied().chain([""]) {
        reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(bitmail_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(bitmail_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    routes
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    Ok(())
}
