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
    routes
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    Ok(())
}
