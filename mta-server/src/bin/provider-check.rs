//! bitmail-provider-check: one labelled message through each provider of an mta-server
//! configuration, asking the operator whether each arrived (`cargo xtask test-manual`).
//!
//! usage: bitmail-provider-check --to ADDRESS [--provider NAME] [--config mta.toml]
//!        [--from ADDRESS] [--dry-run] [--report-dir DIR]   (`--help`, `--version`)
//!
//! Exit code: 0 when every provider accepted (and, live, the message arrived), 1
//! otherwise, 64 for bad input (nothing sent).

use std::time::SystemTime;

use clap::{CommandFactory, Parser};
use mta_server::config::Config;
use mta_server::provider_check::{self, Args, CheckError};

#[tokio::main]
async fn main() {
    let args = match Args::try_parse() {
        Ok(args) => args,
        // --help and --version are "errors" for stdout, exit 0.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            std::process::exit(0);
        }
        // The others show the usage (clap leaves it out of some, such as a missing value).
        Err(e) => {
            let text = e.render().to_string();
            if text.contains("Usage:") {
                eprint!("{text}");
            } else {
                eprint!("{text}\n{}\n", Args::command().render_usage());
            }
            std::process::exit(bitmail_runtime::EXIT_BAD_CONFIG);
        }
    };
    let (options, config_path) = args.into_options();
    let config: Config = match bitmail_runtime::config::load(config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprint!("bitmail-provider-check: invalid configuration in {e}");
            std::process::exit(bitmail_runtime::EXIT_BAD_CONFIG);
        }
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    match provider_check::run(&config, &options, &mut input, &mut out, SystemTime::now()).await {
        Ok(report) => std::process::exit(if report.all_passed() { 0 } else { 1 }),
        Err(e @ CheckError::Usage(_)) => {
            eprintln!("bitmail-provider-check: {e}\n{}", Args::command().render_usage());
            std::process::exit(bitmail_runtime::EXIT_BAD_CONFIG);
        }
        Err(e) => {
            eprintln!("bitmail-provider-check: {e}");
            std::process::exit(1);
        }
    }
}
