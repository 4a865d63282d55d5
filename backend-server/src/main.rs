//! backend-server: loads its config, serves the `Store` service, stops on SIGTERM/Ctrl-C.

use backend_server::config::Config;
use backend_server::server::Server;

const SERVICE: bitmail_runtime::cli::Service = bitmail_runtime::cli::Service {
    name: "backend-server",
    version: env!("CARGO_PKG_VERSION"),
    about: "BitMail's storage tier: serves documents (users, sessions, mailboxes) over gRPC (bitmail.v1.Store) from an embedded, memory, postgres or proxy engine.",
    log_env: "BITMAIL_BACKEND_LOG",
};

#[tokio::main]
async fn main() {
    let args = bitmail_runtime::cli::from_env(&SERVICE);
    let config: Config = bitmail_runtime::config::load_or_exit(SERVICE.name, &args);
    if args.probe {
        bitmail_runtime::probe::exit_with(
            SERVICE.name,
            bitmail_runtime::probe::grpc(config.listen, config.tls.as_ref(), "bitmail.v1.Store").await,
        );
    }
    bitmail_runtime::init_tracing(SERVICE.log_env);

    // Signals are caught from here on, before anyone can be told the port is open.
    let shutdown = bitmail_runtime::shutdown::signal();
    let server = match Server::bind(&config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(listen = %config.listen, engine = ?config.engine, error = %e, "backend-server cannot start");
            std::process::exit(1);
        }
    };
    if let Ok(addr) = server.local_addr() {
        tracing::info!(%addr, engine = ?config.engine, "backend-server listening (gRPC)");
    }
    if let Err(e) = server.serve(shutdown).await {
        tracing::error!(error = %e, "backend-server stopped with an error");
        std::process::exit(1);
    }
    tracing::info!("backend-server stopped");
}
