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
    if std::env::args().nth(1).as_deref() == Some("create-user") {
        create_user().await;
    }
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

/// `client-api create-user ...`: makes a user, the password read from stdin, and exits.
async fn create_user() -> ! {
    use clap::Parser;
    use std::io::Read;
    let args = match client_api::create_user::CreateUser::try_parse_from(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => bitmail_runtime::cli::exit(&e),
    };
    let service_args = bitmail_runtime::cli::Args { config: args.config.clone(), ..Default::default() };
    let config: Config = bitmail_runtime::config::load_or_exit(SERVICE.name, &service_args);
    let mut input = String::new();
    if let Err(e) = std::io::stdin().take(4096).read_to_string(&mut input) {
        eprintln!("client-api create-user: cannot read the password from stdin: {e}");
        std::process::exit(1);
    }
    let password = client_api::create_user::password_line(&input);
    match client_api::create_user::create_user(&args, &config, password).await {
        Ok(()) => {
            let role = if args.admin { "admin" } else { "user" };
            eprintln!("client-api: created {role} {:?} of tenant {:?}", args.name, args.tenant);
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("client-api create-user: {e}");
            std::process::exit(1);
        }
    }
}
