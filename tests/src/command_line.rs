//! The command line every service shares (`bitmail_runtime::cli`), checked once through
//! each real binary: `--help` and `--version` answer on stdout with exit 0, also when
//! the reader is gone before they write (`mta-server --help | head -n 1`); a mistake
//! exits 64 and shows the usage on stderr.
//!
//! ```text
//! #[test]
//! fn answers_help_version_and_mistakes() {
//!     let bin = env!("CARGO_BIN_EXE_mta-server");
//!     bitmail_tests::command_line::check_service(bin, "mta-server", env!("CARGO_PKG_VERSION"));
//! }
//! ```

use std::process::{Command, Output, Stdio};

/// Runs `bin` with `args`, stdout and stderr captured.
pub fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot start {bin}: {e}"))
}

/// Runs `bin` with `args` and a stdout whose reader has already gone: every write there
/// fails with a broken pipe. Answers the exit code and stderr.
pub fn run_into_a_closed_pipe(bin: &str, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Checks a service binary's `--help`, `--version`, a closed stdout and bad flags.
/// `version` is its crate's: `env!("CARGO_PKG_VERSION")` in the crate's own tests.
pub fn check_service(bin: &str, name: &str, version: &str) {
    let help = run(bin, &["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert_eq!(help.status.code(), Some(0), "{name} --help: {help:?}");
    for needle in [
        &format!("Usage: {name} [-c|--config PATH] [--check-config] [--probe]")[..],
        "-c, --config <PATH>",
        "--check-config",
        "--probe",
        "--version",
    ] {
        assert!(text.contains(needle), "{name} --help lacks {needle:?}:\n{text}");
    }
    assert!(help.stderr.is_empty(), "{name} --help wrote to stderr: {help:?}");

    for flag in ["--version", "-V"] {
        let out = run(bin, &[flag]);
        assert_eq!(out.status.code(), Some(0), "{name} {flag}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{name} {version}\n"));
    }

    for args in [&["--help"][..], &["--version"]] {
        let (code, stderr) = run_into_a_closed_pipe(bin, args);
        assert_eq!(code, Some(0), "{name} {args:?} into a closed pipe: {stderr}");
        assert!(!stderr.contains("panicked"), "{name} {args:?} into a closed pipe:\n{stderr}");
    }

    for args in [&["--bogus"][..], &["--config"], &["--check-config", "extra"]] {
        let out = run(bin, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name} {args:?}: {out:?}");
        assert!(stderr.contains(&format!("Usage: {name} ")), "{name} {args:?} shows no usage:\n{stderr}");
        assert!(out.stdout.is_empty(), "{name} {args:?} wrote to stdout: {out:?}");
    }
}

/// Starts `bin` (not `--check-config`: a real start) with a config whose `listen` is
/// `0.0.0.0` and that has no `[tls]`: it must refuse to start with exit 64 and name the
/// key to set. On loopback the same config is valid (`--check-config` exits 0).
pub fn check_refuses_plaintext_beyond_loopback(bin: &str, name: &str) {
    let path = std::env::temp_dir().join(format!("bitmail-{name}-plaintext-{}.toml", std::process::id()));
    std::fs::write(&path, "listen = \"0.0.0.0:0\"\n").unwrap();
    let out = run(bin, &["--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{name} on 0.0.0.0 without TLS: {out:?}");
    let needle = "tls: required because listen = \"0.0.0.0:0\" is not a loopback address: set [tls] ca_file, cert_file and key_file";
    assert!(stderr.contains(needle), "{name}: missing {needle:?} in:\n{stderr}");

    std::fs::write(&path, "listen = \"127.0.0.1:0\"\n").unwrap();
    let out = run(bin, &["--config", path.to_str().unwrap(), "--check-config"]);
    assert_eq!(out.status.code(), Some(0), "{name} on loopback without TLS: {out:?}");
    std::fs::remove_file(path).unwrap();
}
