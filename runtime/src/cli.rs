//! The command line every service accepts: `--config PATH`, `--check-config` and
//! `--probe` (is the service this configuration describes up and healthy?).

use std::path::PathBuf;

/// What the command line asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// The TOML file to load; none means the built-in defaults.
    pub config: Option<PathBuf>,
    /// Validate the configuration, report, and exit without serving.
    pub check_config: bool,
    /// Check that the running service this configuration describes answers its health
    /// check, report, and exit 0 (healthy) or 1, without serving. Deploys use it.
    pub probe: bool,
}

/// Parses the arguments after the program name. The error is a sentence for stderr.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args, String> {
    let mut out = Args::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                let path = args.next().ok_or("--config needs a path")?;
                out.config = Some(PathBuf::from(path));
            }
            "--check-config" => out.check_config = true,
            "--probe" => out.probe = true,
            other => {
                if let Some(path) = other.strip_prefix("--config=") {
                    out.config = Some(PathBuf::from(path));
                } else {
                    return Err(format!(
                        "unknown argument `{other}` (expected --config PATH, --check-config, --probe)"
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Parses the process arguments, or prints usage and exits with code 64.
pub fn from_env(program: &str) -> Args {
    match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{program}: {e}\nusage: {program} [--config PATH] [--check-config] [--probe]");
            std::process::exit(crate::EXIT_BAD_CONFIG);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn reads_both_flags_and_both_spellings() {
        let args = parse_strs(&["--config", "a.toml", "--check-config"]).unwrap();
        assert_eq!(args.config, Some(PathBuf::from("a.toml")));
        assert!(args.check_config);
        let args = parse_strs(&["--config=b.toml", "--probe"]).unwrap();
        assert_eq!(args.config, Some(PathBuf::from("b.toml")));
        assert!(args.probe && !args.check_config);
    }

    #[test]
    fn refuses_unknown_arguments_and_a_missing_path() {
        assert!(parse_strs(&["--port", "1"]).unwrap_err().contains("--port"));
        assert!(parse_strs(&["--config"]).unwrap_err().contains("needs a path"));
    }
}
