//! bitmail-provider-check: one labelled message through each provider of an mta-server
//! configuration, asking the operator whether each arrived (`cargo xtask test-manual`).
//!
//! usage: bitmail-provider-check --to ADDRESS [--provider NAME] [--config mta.toml]
//!        [--from ADDRESS] [--dry-run] [--report-dir DIR]
//!
//! Exit code: 0 when every provider accepted (and, live, the message arrived), 1
//! otherwise, 64 for bad input (nothing sent).

use std::time::SystemTime;

use mta_server::config::Config;
use mta_server::manual::{self, CheckError};

const USAGE: &str = "usage: bitmail-provider-check --to ADDRESS [--provider NAME] [--config mta.toml] [--from ADDRESS] [--dry-run] [--report-dir DIR]";

#[tokio::main]
async fn main() {
    let (options, config_path) = match manual::parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("bitmail-provider-check: {e}\n{USAGE}");
            std::process::exit(bitmail_runtime::EXIT_BAD_CONFIG);
        }
    };
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
    match manual::run(&config, &options, &mut input, &mut out, SystemTime::now()).await {
        Ok(report) => std::process::exit(if report.all_passed() { 0 } else { 1 }),
        Err(e @ CheckError::Usage(_)) => {
            eprintln!("bitmail-provider-check: {e}\n{USAGE}");
            std::process::exit(bitmail_runtime::EXIT_BAD_CONFIG);
        }
        Err(e) => {
            eprintln!("bitmail-provider-check: {e}");
            std::process::exit(1);
        }
    }
}
