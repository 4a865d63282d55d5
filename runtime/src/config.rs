//! Typed configuration from TOML.
//!
//! A service describes its configuration as a `serde` struct whose fields all have
//! defaults, and implements [`Validate`] for the checks serde cannot express (addresses
//! parse, URLs are absolute, a secret is present). [`load`] then reports every problem at
//! once: each unknown key, the type error, and every failed check, so an operator fixes a
//! file in one round.
//!
//! A [`Secret`] is written inline, or as `{ env = "VAR" }` or `{ file = "PATH" }`; its
//! `Debug` never shows the value (it has no `Display`). A bad configuration exits with
//! code 64.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;

/// Every problem found in one configuration, one per line when displayed.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    /// Where the configuration came from: a path, or "built-in defaults".
    pub source_name: String,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {} problem(s):", self.source_name, self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// Checks that need the whole, typed configuration. Push one sentence per problem,
/// naming the key (`providers.sendgrid.base_url: ...`).
pub trait Validate {
    fn validate(&self, problems: &mut Vec<String>);
}

/// Parses TOML text into `T`, refusing unknown keys and running [`Validate`].
pub fn parse<T: DeserializeOwned + Validate>(text: &str, source_name: &str) -> Result<T, ConfigErrors> {
    let fail = |problems| ConfigErrors { source_name: source_name.to_owned(), problems };
    let value: toml::Table = toml::from_str(text).map_err(|e| fail(vec![e.to_string().trim().to_owned()]))?;

    let mut problems = Vec::new();
    let parsed: Result<T, _> = serde_ignored::deserialize(toml::Value::Table(value), |path| {
        problems.push(format!("{path}: unknown key"));
    });
    match parsed {
        Ok(config) => {
            config.validate(&mut problems);
            if problems.is_empty() { Ok(config) } else { Err(fail(problems)) }
        }
        Err(e) => {
            problems.push(e.to_string());
            Err(fail(problems))
        }
    }
}

/// Loads `path`, or the built-in defaults (still validated) when there is none.
pub fn load<T: DeserializeOwned + Validate>(path: Option<&Path>) -> Result<T, ConfigErrors> {
    match path {
        None => parse("", "built-in defaults"),
        Some(path) => {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
                source_name: name.clone(),
                problems: vec![format!("cannot read the file: {e}")],
            })?;
            parse(&text, &name)
        }
    }
}

/// Loads the configuration the command line names. On `--check-config` it reports and
/// exits (0 when valid); on any problem it prints them all and exits with code 64.
pub fn load_or_exit<T: DeserializeOwned + Validate>(program: &str, args: &crate::cli::Args) -> T {
    match load(args.config.as_deref()) {
        Ok(config) => {
            if args.check_config {
                println!("{program}: configuration is valid");
                std::process::exit(0);
            }
            config
        }
        Err(e) => {
            eprint!("{program}: invalid configuration in {e}");
            std::process::exit(crate::EXIT_BAD_CONFIG);
        }
    }
}

/// A secret value (API key, password). Its `Debug` and `Display` never show it.
///
/// In TOML it is either the value itself or a table naming where to read it:
/// `api_key = { env = "SENDGRID_API_KEY" }` or `api_key = { file = "/run/secrets/sg" }`.
/// It is resolved once, when the configuration loads.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "Secret(<empty>)" } else { "Secret(<redacted>)" })
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        use serde::de::Error;

        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Source {
            Value(String),
            From(From),
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct From {
            env: Option<String>,
            file: Option<std::path::PathBuf>,
        }

        match Source::deserialize(de)? {
            Source::Value(v) => Ok(Secret(v)),
            Source::From(From { env: Some(var), file: None }) => std::env::var(&var)
                .map(Secret)
                .map_err(|_| D::Error::custom(format!("environment variable {var} is not set"))),
            Source::From(From { env: None, file: Some(path) }) => std::fs::read_to_string(&path)
                .map(|s| Secret(s.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|e| D::Error::custom(format!("cannot read {}: {e}", path.display()))),
            Source::From(_) => Err(D::Error::custom("a secret is a string, { env = \"VAR\" } or { file = \"PATH\" }")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, Default)]
    #[serde(default)]
    struct Sample {
        listen: String,
        nested: Nested,
        key: Secret,
    }

    #[derive(Debug, serde::Deserialize, Default)]
    #[serde(default)]
    struct Nested {
        limit: u32,
    }

    impl Validate for Sample {
        fn validate(&self, problems: &mut Vec<String>) {
            if self.nested.limit > 10 {
                problems.push("nested.limit: at most 10".into());
            }
        }
    }

    #[test]
    fn reports_every_unknown_key_and_every_failed_check_at_once() {
        let err = parse::<Sample>("lisen = \"x\"\n[nested]\nlimit = 11\nextra = 1\n", "t.toml").unwrap_err();
        assert_eq!(err.problems, vec!["lisen: unknown key", "nested.extra: unknown key", "nested.limit: at most 10"],);
        assert!(err.to_string().starts_with("t.toml: 3 problem(s):"));
    }

    #[test]
    fn reports_type_errors_with_the_key() {
        let err = parse::<Sample>("[nested]\nlimit = \"many\"\n", "t.toml").unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].contains("limit"), "{:?}", err.problems);
    }

    #[test]
    fn empty_text_gives_the_defaults() {
        let s = parse::<Sample>("", "defaults").unwrap();
        assert_eq!(s.listen, "");
        assert!(s.key.is_empty());
    }

    #[test]
    fn secrets_come_from_a_file_and_never_show_in_debug() {
        let dir = std::env::temp_dir().join(format!("bitmail-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "SG.very-secret\n").unwrap();
        let text = format!("key = {{ file = {:?} }}\n", file.display().to_string());
        let s = parse::<Sample>(&text, "t").unwrap();
        assert_eq!(s.key.expose(), "SG.very-secret");
        assert!(!format!("{s:?}").contains("very-secret"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_secret_environment_variable_is_named() {
        let err = parse::<Sample>("key = { env = \"BITMAIL_TEST_SURELY_UNSET\" }\n", "t").unwrap_err();
        assert!(err.problems[0].contains("BITMAIL_TEST_SURELY_UNSET"), "{:?}", err.problems);
    }
}
