//! `--probe`: asks a running service whether it is healthy, the way a deploy or a
//! supervisor does after a restart, and exits 0 (healthy) or 1 with one line saying why.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;

use crate::grpc_tls::ServerTls;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// How long one probe may take, connection included.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The address to reach a server listening on `listen` from the same machine: a
/// wildcard listen address is reached through loopback.
pub fn local_target(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port()),
        _ => listen,
    }
}

/// Asks the standard gRPC health service at `listen` about `service`; Ok when it
/// answers SERVING within [`PROBE_TIMEOUT`]. With the server's `tls`, over mutual TLS
/// as [`ServerTls::probe_link`] describes.
pub async fn grpc(listen: SocketAddr, tls: Option<&ServerTls>, service: &str) -> Result<(), String> {
    let target = local_target(listen);
    let check = async {
        let link = tls.map(ServerTls::probe_link).transpose().map_err(|e| e.to_string())?;
        let scheme = if link.is_some() { "https" } else { "http" };
        let channel = crate::grpc_tls::endpoint(&format!("{scheme}://{target}"), link.as_ref())
            .map_err(|e| e.to_string())?
            .connect_timeout(PROBE_TIMEOUT)
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {target}: {e}"))?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest { service: service.to_owned() })
            .await
            .map_err(|e| format!("{target} did not answer the health check: {}", e.message()))?;
        match answer.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(format!("{target} reports {service} as {}", other.as_str_name())),
        }
    };
    match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Ok(result) => result,
        Err(_) => Err(format!("{target}: no health answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

/// Prints the probe's result and exits: 0 when healthy, 1 otherwise.
pub fn exit_with(program: &str, result: Result<(), String>) -> ! {
    match result {
        Ok(()) => {
            println!("{program}: healthy");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("{program}: unhealthy: {e}");
            std::process::exit(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_probed_through_loopback() {
        assert_eq!(local_target("0.0.0.0:7".parse().unwrap()), "127.0.0.1:7".parse().unwrap());
        assert_eq!(local_target("[::]:7".parse().unwrap()), "[::1]:7".parse().unwrap());
        assert_eq!(local_target("10.0.0.2:7".parse().unwrap()), "10.0.0.2:7".parse().unwrap());
    }

    #[tokio::test]
    async fn nothing_listening_is_unhealthy_and_says_where() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = grpc(SocketAddr::from(([127, 0, 0, 1], port)), None, "x").await.unwrap_err();
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    }
}
