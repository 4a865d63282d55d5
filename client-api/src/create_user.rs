//! `client-api create-user`: makes a webmail user in the backend store from the command
//! line, the password read from stdin. With `--admin`, the first admin of a fresh
//! deployment, made without the webmail.

use std::path::PathBuf;
use std::time::Duration;

use bitmail_proto::v1::store_client::StoreClient;

use crate::accounts::{Accounts, CreateUserError, Role};
use crate::config::Config;

/// `client-api create-user`'s command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "client-api create-user",
    version,
    about = "Create a webmail user, reading its password from stdin (one line, at least 8 characters). \
             For the first admin of a deployment: \
             echo \"$PASSWORD\" | client-api create-user --config client-api.toml --name ops --admin",
    after_help = "Exit codes: 0 created, 1 could not (the name is taken, the password too short, the \
                  store unreachable), 64 bad command line or configuration."
)]
pub struct CreateUser {
    /// The TOML configuration of client-api, for its `backend_url`
    #[arg(short, long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The user's name: what they sign in with, and the local part of their address
    #[arg(long)]
    pub name: String,
    /// The mta-server tenant the user's mail is sent for
    #[arg(long, default_value = crate::accounts::DEFAULT_TENANT)]
    pub tenant: String,
    /// Make the user an admin (the admin console)
    #[arg(long)]
    pub admin: bool,
}

/// The first line of `input`, without its line ending.
pub fn password_line(input: &str) -> &str {
    input.lines().next().unwrap_or_default()
}

/// Makes the user; the error is a sentence for stderr. The password is never printed.
pub async fn create_user(args: &CreateUser, config: &Config, password: &str) -> Result<(), String> {
    let channel = crate::server::upstream(&config.backend_url, config.backend_tls.as_ref())
        .map_err(|e| format!("backend_url: {e}"))?;
    let accounts = Accounts::new(StoreClient::new(channel), false, Duration::from_secs(3600));
    let role = if args.admin { Role::Admin } else { Role::User };
    match accounts.create_user(args.name.trim(), password, args.tenant.trim(), role).await {
        Ok(_) => Ok(()),
        Err(CreateUserError::Failed(e)) => Err(format!("cannot reach backend-server at {}: {e}", config.backend_url)),
        Err(e) => Err(e.to_string()),
    }
}
