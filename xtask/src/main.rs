//! `cargo xtask`: what cargo alone does not do for BitMail.
//!
//! - `cargo xtask run [--release]`: builds everything and starts backend-server,
//!   mta-server and client-api, with SendGrid, Mailgun and Amazon SES as providers: the
//!   real ones when `SENDGRID_API_KEY` (`MAILGUN_API_KEY` with `MAILGUN_DOMAIN`;
//!   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` and `BITMAIL_SES_DOMAIN`, a
//!   domain verified in SES that becomes the webmail's mail domain) are set, local
//!   stand-ins otherwise. Prints where each listens and how to sign in. Ctrl-C stops
//!   everything. `--nodes N` starts N edges and N mta-servers on one backend-server,
//!   its store in a local PostgreSQL ([`run_nodes`], [`pg`]).
//! - `cargo xtask web`: builds the webmail (`web/`, Leptos) to WebAssembly in release
//!   mode into `target/web/` (`index.html` and content-hashed `assets/`), installing what
//!   that needs when missing: the wasm32 target, the wasm-bindgen CLI of the exact
//!   version in Cargo.lock, and wasm-opt (npm package `binaryen`, into `target/tools/`).
//!   `run` and `test` do this first.
//! - `cargo xtask bench mta`: mta-server's throughput, latency and memory against a
//!   fake provider (release build); prints a Markdown table.
//! - `cargo xtask bench smtp`: SMTP submission beside a real Postfix, both loaded by
//!   smtp-source; `cargo xtask bench api`: SendGrid's `/v3/mail/send` over HTTPS beside
//!   gRPC `Submit` (release builds).
//! - `cargo xtask bench store`: each store engine (memory, embedded at 100,000 and
//!   1,000,000 documents; proxy to embedded and postgres at 100,000): put throughput,
//!   get and lookup latency (answers of 1 and 100 documents), peak memory (release
//!   build); prints a Markdown table.
//! - `cargo xtask bench webmail`: the inbox's first page, searches and opening a message
//!   in a mailbox of 100,000 messages, on the embedded engine and on PostgreSQL;
//! - `cargo xtask bench lists`: a campaign to 100,000 imported subscribers beside
//!   100,000 messages submitted straight over gRPC, in one run against a fast fake
//!   SendGrid: time to the provider, msg/s and the campaign's share of the baseline's,
//!   import rows/s, peak RSS of backend-server and mta-server (release builds).
//! - `cargo xtask test`: what CI runs: `cargo fmt --check`, clippy with warnings as
//!   errors, the test servers the tests need (aiosmtpd and moto, from PyPI, when missing;
//!   PostgreSQL's server binaries, from Debian's `postgresql` package when missing), and
//!   every test of the workspace.
//! - `cargo xtask deploy`: builds, tests, and puts a release on the hosts of a deploy
//!   config over SSH, one at a time (storage, then MTAs, then edges), rolling a host
//!   back when it does not come up healthy ([`deploy`]); `--rollback` goes back one
//!   release.
//! - `cargo xtask test-manual --to ADDRESS`: one labelled message through each
//!   configured provider, asking the operator whether it arrived
//!   (`bitmail-provider-check`, in mta-server).
//!
//! One module per subcommand: [`run`] (with [`run_nodes`] and [`pg`]), [`test`] (with `test-manual` and what the tests
//! need installed), [`bench`], [`web`]; [`deploy`] is its own folder. What they share
//! (the workspace root, running cargo, checking a step) is here.
//!
//! `cargo xtask test` also runs clippy for wasm32 and installs Debian's `chromium` and
//! `chromium-driver` for the browser tests when missing. Few dependencies on purpose
//! (anyhow, clap, serde, toml, serde_ignored): xtask drives the services only through
//! their binaries (`--check-config`, `--probe`), never by linking them.

mod bench;
mod bench_smtp;
mod cli;
mod deploy;
mod out;
mod pg;
mod run;
mod run_nodes;
mod test;
mod web;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};

use anyhow::{Context, Result, bail};

use out::tell;

fn main() -> ExitCode {
    let cli = cli::parse();
    let done = match cli.command {
        cli::Command::Run { release, nodes } => run::prepare(release).and_then(|p| match nodes {
            1 => run::run_one(&p),
            n => run_nodes::run(&p, n),
        }),
        cli::Command::Test => test::test(),
        cli::Command::Web => web::web().map(drop),
        cli::Command::Bench(cli::Bench::Mta) => bench::bench_mta(),
        cli::Command::Bench(cli::Bench::Store) => bench::bench_store(),
        cli::Command::Bench(cli::Bench::Smtp) => bench_smtp::bench_smtp(),
        cli::Command::Bench(cli::Bench::Api) => bench::bench_api(),
        cli::Command::Bench(cli::Bench::Keys) => bench::bench_keys(),
        cli::Command::Bench(cli::Bench::Capacity) => bench::bench_capacity(),
        cli::Command::Bench(cli::Bench::Lists) => bench::bench_lists(),
        cli::Command::Bench(cli::Bench::Webmail) => bench::bench_webmail(),
        cli::Command::Deploy(options) => deploy::main(options, &root(), test::test, web::web),
        cli::Command::TestManual { args } => test::test_manual(&args),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // As `main() -> Result` would print it, without its panic on a closed stderr.
            tell!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    // xtask lives one folder below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn check(status: std::io::Result<ExitStatus>, what: &str) -> Result<()> {
    let status = status.with_context(|| format!("cannot start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn step(what: &str) {
    tell!("\n==> {what}");
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}
