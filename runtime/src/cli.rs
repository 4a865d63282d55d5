//! The command line every service accepts: `--config PATH`, `--check-config` and
//! `--probe` (is the service this configuration describes up and healthy?), plus
//! `--help` and `--version`.
//!
//! Parsed with clap. The services' `main.rs` name themselves with a [`Service`] and need
//! no clap of their own.

use std::path::PathBuf;

/// What the command line asked for.
#[derive(Debug, Default, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// The TOML configuration file; unknown keys are errors. Without it, the built-in
    /// defaults
    #[arg(short, long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Validate the configuration, report every problem, and exit (0 when valid, 64 when
    /// not) without serving
    #[arg(long)]
    pub check_config: bool,
    /// Ask the running service this configuration describes for its health, and exit 0
    /// (healthy) or 1, without serving. Deploys use it
    #[arg(long)]
    pub probe: bool,
}

/// Who is being started, for `--help` and `--version`.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// The binary's name, as in `mta-server`.
    pub name: &'static str,
    /// The binary crate's version: `env!("CARGO_PKG_VERSION")` in its `main.rs`.
    pub version: &'static str,
    /// One sentence: what the service does.
    pub about: &'static str,
    /// The environment variable that filters its logs (see [`crate::init_tracing`]).
    pub log_env: &'static str,
}

/// The clap command of `service`: its options, help and version.
pub fn command(service: &Service) -> clap::Command {
    // The about goes after `augment_args`, which would put `Args`'s doc comment there.
    <Args as clap::Args>::augment_args(clap::Command::new(service.name))
        .version(service.version)
        .about(service.about)
        .override_usage(format!("{} [-c|--config PATH] [--check-config] [--probe]", service.name))
        .after_help(format!(
            "Logs go to stderr, filtered by {} (EnvFilter syntax). SIGTERM or Ctrl-C stops the \
             service gracefully.\nExit codes: 0 stopped cleanly, 1 could not serve, 64 bad command \
             line or configuration.",
            service.log_env
        ))
}

/// Parses a whole command line, program name first. `--help` and `--version` come back
/// as errors too: [`clap::Error::use_stderr`] is false for them.
pub fn parse<I, T>(service: &Service, args: I) -> Result<Args, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = command(service);
    let matches = cmd.try_get_matches_from_mut(args).map_err(|e| with_usage(e, &mut cmd))?;
    <Args as clap::FromArgMatches>::from_arg_matches(&matches)
}

/// Makes an error show the usage: clap leaves it out of some (a missing value).
fn with_usage(mut e: clap::Error, cmd: &mut clap::Command) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    if e.use_stderr() && e.get(ContextKind::Usage).is_none() {
        e.insert(ContextKind::Usage, ContextValue::StyledStr(cmd.render_usage()));
    }
    e
}

/// Parses the process arguments. `--help` and `--version` print to stdout and exit 0; a
/// bad command line prints the problem and the usage to stderr and exits 64 (EX_USAGE).
pub fn from_env(service: &Service) -> Args {
    parse(service, std::env::args_os()).unwrap_or_else(|e| exit(&e))
}

/// Prints a clap answer and exits: 0 for help and version, 64 for an error. A reader that
/// went away (`| head`) is no error: clap's printing reports it rather than panicking,
/// and it is ignored.
pub fn exit(e: &clap::Error) -> ! {
    if !e.use_stderr() {
        e.exit();
    }
    let _ = e.print();
    std::process::exit(crate::EXIT_BAD_CONFIG)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    const SERVICE: Service =
        Service { name: "svc", version: "9.8.7", about: "Does things.", log_env: "BITMAIL_SVC_LOG" };

    fn parse_strs(args: &[&str]) -> Result<Args, clap::Error> {
        parse(&SERVICE, std::iter::once("svc").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_is_well_formed() {
        command(&SERVICE).debug_assert();
    }

    #[test]
    fn reads_every_flag_and_every_spelling() {
        let args = parse_strs(&["--config", "a.toml", "--check-config"]).unwrap();
        assert_eq!(args.config, Some(PathBuf::from("a.toml")));
        assert!(args.check_config && !args.probe);
        let args = parse_strs(&["--config=b.toml", "--probe"]).unwrap();
        assert_eq!(args.config, Some(PathBuf::from("b.toml")));
        assert!(args.probe && !args.check_config);
        assert_eq!(parse_strs(&["-c", "c.toml"]).unwrap().config, Some(PathBuf::from("c.toml")));
        assert_eq!(parse_strs(&[]).unwrap(), Args::default());
    }

    #[test]
    fn refuses_unknown_arguments_and_a_missing_path_with_the_usage() {
        let e = parse_strs(&["--port", "1"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        assert!(e.use_stderr());
        let text = e.render().to_string();
        assert!(text.contains("--port"), "{text}");
        assert!(text.contains("Usage: svc [-c|--config PATH] [--check-config] [--probe]"), "{text}");
        let e = parse_strs(&["--config"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidValue);
        assert!(e.render().to_string().contains("Usage: svc "), "{}", e.render());
        assert_eq!(parse_strs(&["extra"]).unwrap_err().kind(), ErrorKind::UnknownArgument);
    }

    #[test]
    fn help_describes_the_service_and_version_is_its_own() {
        let help = parse_strs(&["--help"]).unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        assert!(!help.use_stderr());
        let text = help.render().to_string();
        for needle in ["Does things.", "--config <PATH>", "--check-config", "--probe", "BITMAIL_SVC_LOG"] {
            assert!(text.contains(needle), "missing {needle} in:\n{text}");
        }
        let version = parse_strs(&["--version"]).unwrap_err();
        assert_eq!(version.kind(), ErrorKind::DisplayVersion);
        assert_eq!(version.render().to_string(), "svc 9.8.7\n");
    }
}
