//! client-api: loads its config, serves HTTPS, stops on SIGTERM/Ctrl-C.

use client_api::config::Config;
use client_api::server::Server;

const SERVICE: bitmail_runtime::cli::Service = bitmail_runtime::cli::Service {
    name: "client-api",
    version: env!("CARGO_PKG_VERSION"),
    about: "BitMail's HTTPS edge: the webmail, its JSON API and the providers' webhooks. Hands mail to mta-server and keeps users and mail in backend-server.",
    log_env: "BITMAIL_CLIENT_API_LOG",
};

#[tokio::main]
async fn main() {
    let args = bitmail_runtime::cli::from_env(&SERVICE);
    let config: Config = bitmail_runtime::config::load_or_exit(SERVICE.name, &args);
    if args.probe {
        bitmail_runtime::probe::exit_with(SERVICE.name, client_api::probe::healthz(&config));
    }
    bitmail_runtime::init_tracing(SERVICE.log_env);

    // Signals are caught from here on, before anyone can be told the port is open.
    let shutdown = bitmail_runtime::shutdown::signal();
    let server = match Server::bind(&config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(listen = %config.listen, error = %e, "cannot start");
            std::process::exit(1);
        }
    };
    if let Ok(addr) = server.local_addr() {
        tracing::info!(url = %format!("https://{addr}/"), cert = %server.cert.cert.display(), "client-api listening (HTTPS)");
    }
    if let Err(e) = server.serve(shutdown).await {
        tracing::error!(error = %e, "client-api stopped with an error");
        std::process::exit(1);
    }
    tracing::info!("client-api stopped");
}
