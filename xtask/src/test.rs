//! `cargo xtask test`: what CI runs (formatting, clippy, every test), installing the
//! test servers and tools the tests need when missing: aiosmtpd, moto, Django,
//! django-anymail and the official SendGrid and Mailgun SDKs (pip; their Node SDKs with
//! npm); PostgreSQL's server binaries, OpenSSH's server (and curl), Chromium and its WebDriver,
//! swaks and msmtp (apt, in one run); and `cargo xtask test-manual`, the operator's
//! check of the real providers.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::out::tell;
use crate::web::web;
use crate::{cargo, check, root, step, target_dir};

pub(crate) fn test() -> Result<()> {
    // A fresh rustup toolchain may lack these components; adding them is a no-op when
    // present.
    if Command::new("rustup").arg("--version").output().is_ok() {
        step("rustup component add rustfmt clippy");
        check(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]).status(), "rustup component add")?;
    }
    let web_dir = web()?;
    // Both bundles: the webmail, and the webmail with the admin console.
    for features in [&[][..], &["--features", "console"]] {
        let shown: String = features.iter().map(|f| format!(" {f}")).collect();
        step(&format!("cargo clippy -p bitmail-web --target wasm32-unknown-unknown{shown} -- -D warnings"));
        check(
            cargo()
                .args(["clippy", "-p", "bitmail-web", "--target", "wasm32-unknown-unknown"])
                .args(features)
                .args(["--", "-D", "warnings"])
                .status(),
            "cargo clippy (web, wasm32)",
        )?;
    }
    debian_packages()?;
    step("cargo fmt --all --check");
    check(cargo().args(["fmt", "--all", "--check"]).status(), "cargo fmt --check (run `cargo fmt --all` to fix)")?;
    step("cargo clippy --workspace --all-targets -- -D warnings");
    check(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]).status(), "cargo clippy")?;
    // The SMTP provider is tested against a real SMTP server, aiosmtpd from PyPI; the SES
    // provider against moto, an Amazon SES emulator from PyPI (`moto_server`).
    // SMTP submission is tested with Django's SMTP backend (5.2: 6.x needs a newer
    // Python); the SendGrid- and Mailgun-shaped APIs with the providers' official SDKs
    // and django-anymail.
    for (module, package) in [
        ("aiosmtpd", "aiosmtpd"),
        ("moto.server", "moto[server]"),
        ("django", "django==5.2.*"),
        ("sendgrid", "sendgrid>=6.12,<6.13"),
        ("mailgun.client", "mailgun>=1.10,<1.11"),
        ("anymail", "django-anymail>=15,<16"),
    ] {
        pip_install_missing(module, package)?;
    }
    let node_sdks = node_sdks()?;
    if let Some(dir) = std::env::var_os("BITMAIL_PG_BIN")
        && !Path::new(&dir).join("initdb").is_file()
    {
        bail!("BITMAIL_PG_BIN={} holds no initdb", Path::new(&dir).display());
    }
    step("cargo test --workspace");
    check(
        cargo()
            .args(["test", "--workspace"])
            .env("BITMAIL_WEB_DIR", &web_dir)
            .env("BITMAIL_NODE_SDKS", &node_sdks)
            .status(),
        "cargo test",
    )?;
    tell!("\nall checks passed");
    Ok(())
}

/// The official Node SDKs the SendGrid- and Mailgun-shaped APIs are tested with, from
/// npm into target/node-sdks when missing; answers that folder.
const NODE_SDKS: [&str; 3] = ["@sendgrid/mail@8.1", "mailgun.js@14", "form-data@4"];

fn node_sdks() -> Result<PathBuf> {
    let dir = target_dir().join("node-sdks");
    let modules = dir.join("node_modules");
    if modules.join("@sendgrid/mail").is_dir() && modules.join("mailgun.js").is_dir() {
        return Ok(dir);
    }
    step(&format!("npm install {} (the Node SDKs' tests)", NODE_SDKS.join(" ")));
    std::fs::create_dir_all(&dir)?;
    check(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&dir)
            .args(NODE_SDKS)
            .status(),
        "npm install of the Node SDKs (Node.js with npm is needed)",
    )?;
    Ok(dir)
}

/// `python3 -m pip install PACKAGE` unless `import MODULE` already works.
fn pip_install_missing(module: &str, package: &str) -> Result<()> {
    let present = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    step(&format!("python3 -m pip install '{package}'"));
    check(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--root-user-action=ignore",
                package,
            ])
            .status(),
        &format!("installing {package} (python3 with pip is needed)"),
    )
}

/// The Debian packages the tests use, installed in one apt-get run when any is missing:
/// - `postgresql`: the PostgreSQL engine is tested against a real server
///   (tests/src/postgres.rs starts a throwaway cluster; `BITMAIL_PG_BIN` names another
///   folder of server binaries);
/// - `openssh-server`, `openssh-client`: `cargo xtask deploy` against real sshd, and
///   `curl`, the client that sends through the edges during its rolling deploy;
/// - `chromium`, `chromium-driver`: the browser tests;
/// - `swaks` (with `libnet-ssleay-perl` for its `--tls`) and `msmtp`: SMTP submission.
fn debian_packages() -> Result<()> {
    let postgres = std::env::var_os("BITMAIL_PG_BIN").is_some()
        || std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|dirs| {
            dirs.flatten().any(|d| d.path().join("bin/initdb").is_file() && d.path().join("bin/postgres").is_file())
        });
    let sshd = Path::new("/usr/sbin/sshd").exists()
        && Command::new("ssh").arg("-V").output().is_ok()
        && Command::new("curl").arg("--version").output().is_ok();
    let browser = Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists();
    let swaks = Path::new("/usr/bin/swaks").exists()
        && Command::new("perl").args(["-MNet::SSLeay", "-e", "1"]).output().is_ok_and(|o| o.status.success());
    let msmtp = Path::new("/usr/bin/msmtp").exists();
    let mut missing = Vec::new();
    for (present, packages) in [
        (postgres, &["postgresql"][..]),
        (sshd, &["openssh-server", "openssh-client", "curl"]),
        (browser, &["chromium", "chromium-driver"]),
        (swaks, &["swaks", "libnet-ssleay-perl"]),
        (msmtp, &["msmtp"]),
    ] {
        if !present {
            missing.extend_from_slice(packages);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    apt_install("the tests' servers and clients", &missing)
}

/// Installs Debian packages with apt-get (through `sudo -n` unless root), updating the
/// package lists first.
pub(crate) fn apt_install(what_for: &str, packages: &[&str]) -> Result<()> {
    step(&format!("apt-get install {} (for {what_for})", packages.join(" ")));
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let apt = |args: &[&str]| {
        let mut cmd = Command::new(if root { "apt-get" } else { "sudo" });
        if !root {
            cmd.args(["-n", "apt-get"]);
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        check(cmd.status(), &format!("apt-get {}", args.join(" ")))
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend_from_slice(packages);
    apt(&install)
}

/// Builds and runs `bitmail-provider-check` (mta-server), which does the work.
pub(crate) fn test_manual(args: &[String]) -> Result<()> {
    step("cargo build -p mta-server --bin bitmail-provider-check");
    check(
        cargo().args(["build", "--quiet", "-p", "mta-server", "--bin", "bitmail-provider-check"]).status(),
        "cargo build",
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let status = Command::new(target.join("debug/bitmail-provider-check"))
        .args(args)
        .status()
        .context("cannot start bitmail-provider-check")?;
    // Its own words are enough: 0 all passed, 1 some did not, 64 bad input.
    std::process::exit(status.code().unwrap_or(1))
}
