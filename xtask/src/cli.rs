//! xtask's command line, parsed with clap: one subcommand per job, each with its help.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// EX_USAGE (sysexits.h): what a bad command line exits with, as for the services.
const EXIT_USAGE: i32 = 64;

/// What cargo alone does not do for BitMail.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, arg_required_else_help = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Build and start the whole gateway locally, with provider stand-ins (Ctrl-C stops it)
    ///
    /// Starts backend-server, mta-server and client-api with SendGrid, Mailgun and
    /// Amazon SES as providers: the real ones when their credentials are in the
    /// environment (SENDGRID_API_KEY; MAILGUN_API_KEY with MAILGUN_DOMAIN;
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and BITMAIL_SES_DOMAIN), local
    /// stand-ins otherwise. Prints where each listens and how to sign in.
    ///
    /// With --nodes N (2 to 4): N client-api edges and N mta-servers sharing one
    /// backend-server, which keeps its store in a local PostgreSQL (data/nodes/pg).
    #[command(override_usage = "cargo xtask run [--release] [--nodes N]")]
    Run {
        /// Build and run the release profile
        #[arg(long)]
        release: bool,
        /// How many edges and mta-servers to start (1: one of each, the store in a file)
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=4))]
        nodes: u8,
    },
    /// Formatting, clippy, and every test of the workspace: what CI runs
    ///
    /// Installs what the tests need when missing: aiosmtpd and moto (PyPI), PostgreSQL,
    /// openssh-server and, as root, chromium (Debian packages), the wasm32 target and
    /// wasm-bindgen-cli.
    Test,
    /// Build the webmail (WebAssembly, release) into target/web
    Web,
    /// Benchmarks (release builds); each prints a Markdown table
    #[command(subcommand, arg_required_else_help = true)]
    Bench(Bench),
    /// Build, test, and deploy to the configured hosts over SSH, one host at a time
    ///
    /// Storage hosts first, then the MTAs, then the edges, each healthy before the next.
    /// A host whose services do not come up healthy is rolled back, and later hosts are
    /// left alone. See deploy/README.md.
    #[command(override_usage = "cargo xtask deploy [--config FILE] [--hosts a,b] [--skip-tests] [--rollback] \
                                [--bin-dir DIR [--web-dir DIR]]")]
    Deploy(crate::deploy::Options),
    /// Send one labelled message through each configured provider and ask whether it
    /// arrived
    ///
    /// Every argument goes to bitmail-provider-check (mta-server), built first:
    /// `cargo xtask test-manual --help` shows its options.
    #[command(disable_help_flag = true)]
    TestManual {
        /// The arguments of bitmail-provider-check, such as --to ADDRESS
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
        args: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub(crate) enum Bench {
    /// mta-server against a fake SendGrid: durable acceptances/s, deliveries/s, submit
    /// latency, peak memory
    Mta,
    /// Each store engine at 100,000 and 1,000,000 documents: puts/s, get and lookup
    /// latency, peak memory
    Store,
    /// The SendGrid-shaped `POST /v3/mail/send` over HTTPS beside gRPC `Submit`, 2 KiB
    /// messages from 64 callers: durable accepted msg/s, p50/p99, and the ratio
    Api,
    /// SMTP submission against a real Postfix (installed from Debian), both loaded by
    /// Postfix's smtp-source: accepted msg/s, the ratio, BitMail's p99 per message
    Smtp,
    /// The key check every authenticated call makes: time per check of a cached key and
    /// of a malformed one
    Keys,
    /// One node of each role on a durable PostgreSQL: store operations, PostgreSQL bytes
    /// and spool bytes per message for app-API sends, webmail sends and inbound mail, and
    /// the time a restarted mta-server takes to deliver its backlog (the capacity model's
    /// inputs, ARCHITECTURE.md)
    Capacity,
    /// A campaign to 100,000 imported subscribers beside 100,000 messages submitted
    /// straight, against a fast fake SendGrid: time to the provider, msg/s and its share
    /// of the baseline's, import rows/s, peak memory of every service
    Lists,
    /// A mailbox of 100,000 messages through the edge, on the embedded engine and on
    /// PostgreSQL: the inbox's first page, two searches and opening a message, p50/p99
    Webmail,
}

/// Parses the process arguments. `--help` and `--version` print to stdout and exit 0
/// (quietly when the reader is gone: clap ignores the failed write); a bad command line
/// prints the problem and the usage to stderr and exits 64.
pub(crate) fn parse() -> Cli {
    try_parse(std::env::args_os()).unwrap_or_else(|e| {
        if !e.use_stderr() {
            e.exit();
        }
        let _ = e.print();
        std::process::exit(EXIT_USAGE)
    })
}

/// Parses a whole command line, program name first; every error shows the usage.
fn try_parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let mut cmd = Cli::command();
    let matches = cmd.try_get_matches_from_mut(&args).map_err(|e| with_usage(e, &mut cmd, &args))?;
    Cli::from_arg_matches(&matches)
}

/// Adds the usage of the (sub)command the arguments name to an error that lacks it:
/// clap leaves it out of some (a missing value).
fn with_usage(mut e: clap::Error, cmd: &mut clap::Command, args: &[std::ffi::OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    if !e.use_stderr() || e.get(ContextKind::Usage).is_some() {
        return e;
    }
    let mut at = cmd;
    for arg in args.iter().skip(1) {
        let Some(name) = arg.to_str() else { break };
        if at.find_subcommand(name).is_none() {
            break;
        }
        at = at.find_subcommand_mut(name).expect("just found");
    }
    e.insert(ContextKind::Usage, ContextValue::StyledStr(at.render_usage()));
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse_strs(args: &[&str]) -> Result<Cli, clap::Error> {
        try_parse(std::iter::once("xtask").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn reads_each_subcommand() {
        assert!(matches!(parse_strs(&["run"]).unwrap().command, Command::Run { release: false, nodes: 1 }));
        assert!(matches!(parse_strs(&["run", "--release"]).unwrap().command, Command::Run { release: true, nodes: 1 }));
        assert!(matches!(
            parse_strs(&["run", "--nodes", "2"]).unwrap().command,
            Command::Run { release: false, nodes: 2 }
        ));
        assert!(matches!(parse_strs(&["test"]).unwrap().command, Command::Test));
        assert!(matches!(parse_strs(&["bench", "store"]).unwrap().command, Command::Bench(Bench::Store)));
        assert!(matches!(parse_strs(&["bench", "lists"]).unwrap().command, Command::Bench(Bench::Lists)));
        assert!(matches!(parse_strs(&["bench", "webmail"]).unwrap().command, Command::Bench(Bench::Webmail)));
        let Command::Deploy(o) = parse_strs(&["deploy", "--hosts", "a,b", "--skip-tests"]).unwrap().command else {
            panic!("not deploy")
        };
        assert_eq!((o.config.to_str(), o.hosts.as_deref(), o.skip_tests), (Some("deploy.toml"), Some("a,b"), true));
        assert!(!o.rollback && o.bin_dir.is_none());
    }

    #[test]
    fn test_manual_passes_everything_on_even_help() {
        let Command::TestManual { args } =
            parse_strs(&["test-manual", "--to", "a@b.c", "--dry-run", "--help"]).unwrap().command
        else {
            panic!("not test-manual")
        };
        assert_eq!(args, ["--to", "a@b.c", "--dry-run", "--help"]);
    }

    #[test]
    fn mistakes_are_errors_with_the_usage() {
        for (args, kind) in [
            (&["deploy", "--host", "a"][..], ErrorKind::UnknownArgument),
            (&["deploy", "--web-dir", "w"][..], ErrorKind::MissingRequiredArgument),
            (&["deploy", "--config"][..], ErrorKind::InvalidValue),
            (&["bench", "disk"][..], ErrorKind::InvalidSubcommand),
            (&["run", "--relase"][..], ErrorKind::UnknownArgument),
            (&["run", "--nodes", "5"][..], ErrorKind::ValueValidation),
            (&["run", "--nodes", "0"][..], ErrorKind::ValueValidation),
            (&["frobnicate"][..], ErrorKind::InvalidSubcommand),
        ] {
            let e = parse_strs(args).unwrap_err();
            assert_eq!(e.kind(), kind, "{args:?}");
            assert!(e.use_stderr());
            assert!(e.render().to_string().contains("Usage: cargo xtask"), "{args:?}: {}", e.render());
        }
        // Help and version go to stdout, and are not errors.
        for args in [&["--help"][..], &["deploy", "--help"], &["bench", "--help"], &["--version"]] {
            assert!(!parse_strs(args).unwrap_err().use_stderr(), "{args:?}");
        }
    }
}
