//! `cargo xtask`'s command line through the real binary: help per subcommand on stdout
//! with exit 0, also into a closed pipe (`cargo xtask deploy --help | head -n 1`), and
//! mistakes with the usage and exit 64. Nothing here builds, tests or deploys anything.

use std::process::{Command, Output, Stdio};

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

fn run(args: &[&str]) -> Output {
    Command::new(XTASK).args(args).stdin(Stdio::null()).output().unwrap()
}

#[test]
fn every_subcommand_has_help() {
    for (args, needle) in [
        (&["--help"][..], "Usage: cargo xtask <COMMAND>"),
        (&["run", "--help"], "--release"),
        (&["test", "--help"], "Usage: cargo xtask test"),
        (&["web", "--help"], "Usage: cargo xtask web"),
        (&["bench", "--help"], "store"),
        (&["bench", "mta", "--help"], "Usage: cargo xtask bench mta"),
        (&["deploy", "--help"], "--skip-tests"),
        (&["help", "test-manual"], "bitmail-provider-check"),
    ] {
        let out = run(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(stdout.contains(needle), "{args:?} lacks {needle:?}:\n{stdout}");
    }
}

#[test]
fn help_into_a_closed_pipe_exits_quietly() {
    for args in [&["deploy", "--help"][..], &["--help"], &["--version"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(XTASK).args(args).stdout(writer).stderr(Stdio::piped()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}:\n{stderr}");
    }
}

#[test]
fn mistakes_show_the_usage_and_exit_64() {
    for (args, usage) in [
        (&["frobnicate"][..], "Usage: cargo xtask <COMMAND>"),
        (&["deploy", "--host", "a"], "Usage: cargo xtask deploy [--config FILE]"),
        (&["deploy", "--config"], "Usage: cargo xtask deploy [--config FILE]"),
        (&["deploy", "--web-dir", "w"], "Usage: cargo xtask deploy [--config FILE]"),
        (&["run", "--relase"], "Usage: cargo xtask run [--release]"),
        (&["bench", "disk"], "Usage: cargo xtask bench <COMMAND>"),
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {out:?}");
        assert!(stderr.contains(usage), "{args:?} lacks {usage:?}:\n{stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
}
