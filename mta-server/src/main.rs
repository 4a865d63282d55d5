//! mta-server: loads its config, serves the `Mta` service, delivers, stops on
//! SIGTERM/Ctrl-C.

use mta_server::config::Config;
use mta_server::server::Server;

const SERVICE: bitmail_runtime::cli::Service = bitmail_runtime::cli::Service {
    name: "mta-server",
    version: env!("CARGO_PKG_VERSION"),
    about: "BitMail's MTA: accepts mail over gRPC (bitmail.v1.Mta), keeps every accepted message on disk and delivers it through the configured sending providers, failing over between them.",
    log_env: "BITMAIL_MTA_LOG",
};

#[tokio::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("create-key") {
        create_key().await;
    }
    let args = bitmail_runtime::cli::from_env(&SERVICE);
    let config: Config = bitmail_runtime::config::load_or_exit(SERVICE.name, &args);
    if args.probe {
        bitmail_runtime::probe::exit_with(
            SERVICE.name,
            bitmail_runtime::probe::grpc(config.listen, config.tls.as_ref(), "bitmail.v1.Mta").await,
        );
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
        let providers: Vec<&str> = config.providers.iter().map(|p| p.name()).collect();
        tracing::info!(%addr, ?providers, "mta-server listening (gRPC)");
    }
    if let Err(e) = server.serve(shutdown).await {
        tracing::error!(error = %e, "mta-server stopped with an error");
        std::process::exit(1);
    }
    tracing::info!("mta-server stopped");
}

/// `mta-server create-key ...`: prints a new key once and exits.
async fn create_key() -> ! {
    use clap::Parser;
    let args = match mta_server::tenancy::CreateKey::try_parse_from(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { bitmail_runtime::EXIT_BAD_CONFIG } else { 0 });
        }
    };
    let service_args = bitmail_runtime::cli::Args { config: args.config.clone(), ..Default::default() };
    let config: Config = bitmail_runtime::config::load_or_exit(SERVICE.name, &service_args);
    match mta_server::tenancy::create_key(args, &config).await {
        Ok(key) => {
            println!("{key}");
            eprintln!("mta-server: this key is shown once; only its hash is stored");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("mta-server create-key: {e}");
            std::process::exit(1);
        }
    }
}
