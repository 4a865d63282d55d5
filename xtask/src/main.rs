//! `cargo xtask`: what cargo alone does not do for BitMail.
//!
//! - `cargo xtask run [--release]`: builds everything and starts backend-server,
//!   mta-server and client-api, with SendGrid, Mailgun and Amazon SES as providers: the
//!   real ones when `SENDGRID_API_KEY` (`MAILGUN_API_KEY` with `MAILGUN_DOMAIN`;
//!   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` and `BITMAIL_SES_DOMAIN`, a
//!   domain verified in SES that becomes the webmail's mail domain) are set, local
//!   stand-ins otherwise. Prints where each listens and how to sign in. Ctrl-C stops
//!   everything.
//! - `cargo xtask web`: builds the webmail (`web/`, Leptos) to WebAssembly in release
//!   mode into `target/web/` (`index.html` and content-hashed `assets/`), installing what
//!   that needs when missing: the wasm32 target, the wasm-bindgen CLI of the exact
//!   version in Cargo.lock, and wasm-opt (npm package `binaryen`, into `target/tools/`).
//!   `run` and `test` do this first.
//! - `cargo xtask bench mta`: mta-server's throughput, latency and memory against a
//!   fake provider (release build); prints a Markdown table.
//! - `cargo xtask bench store`: each store engine (memory, embedded at 100,000 and
//!   1,000,000 documents; proxy to embedded and postgres at 100,000): put throughput,
//!   get and lookup latency (answers of 1 and 100 documents), peak memory (release
//!   build); prints a Markdown table.
//! - `cargo xtask test`: what CI runs: `cargo fmt --check`, clippy with warnings as
//!   errors, the test servers the tests need (aiosmtpd and moto, from PyPI, when missing;
//!   PostgreSQL's server binaries, from Debian's `postgresql` package when missing), and
//!   every test of the workspace.
//! - `cargo xtask deploy`: builds, tests, and puts a release on the hosts of a deploy
//!   config over SSH, one at a time, rolling a host back when it does not come up
//!   healthy ([`deploy`]); `--rollback` goes back one release.
//! - `cargo xtask test-manual --to ADDRESS`: one labelled message through each
//!   configured provider, asking the operator whether it arrived
//!   (`bitmail-provider-check`, in mta-server).
//!
//! `cargo xtask test` also runs clippy for wasm32 and installs Debian's `chromium` and
//! `chromium-driver` for the browser tests when missing. Few dependencies on purpose
//! (anyhow, clap, serde, toml, serde_ignored): xtask drives the services only through
//! their binaries (`--check-config`, `--probe`), never by linking them.

mod cli;
mod deploy;
mod out;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use out::{say, tell};

fn main() -> ExitCode {
    let cli = cli::parse();
    let done = match cli.command {
        cli::Command::Run { release } => run(release),
        cli::Command::Test => test(),
        cli::Command::Web => web().map(drop),
        cli::Command::Bench(cli::Bench::Mta) => bench_mta(),
        cli::Command::Bench(cli::Bench::Store) => bench_store(),
        cli::Command::Deploy(options) => deploy::main(options, &root(), test, web),
        cli::Command::TestManual { args } => test_manual(&args),
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

fn test() -> Result<()> {
    // A fresh rustup toolchain may lack these components; adding them is a no-op when
    // present.
    if Command::new("rustup").arg("--version").output().is_ok() {
        step("rustup component add rustfmt clippy");
        check(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]).status(), "rustup component add")?;
    }
    let web_dir = web()?;
    step("cargo clippy -p bitmail-web --target wasm32-unknown-unknown -- -D warnings");
    check(
        cargo()
            .args(["clippy", "-p", "bitmail-web", "--target", "wasm32-unknown-unknown", "--", "-D", "warnings"])
            .status(),
        "cargo clippy (web, wasm32)",
    )?;
    browser_tools()?;
    step("cargo fmt --all --check");
    check(cargo().args(["fmt", "--all", "--check"]).status(), "cargo fmt --check (run `cargo fmt --all` to fix)")?;
    step("cargo clippy --workspace --all-targets -- -D warnings");
    check(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]).status(), "cargo clippy")?;
    // The SMTP provider is tested against a real SMTP server, aiosmtpd from PyPI; the SES
    // provider against moto, an Amazon SES emulator from PyPI (`moto_server`).
    for (module, package) in [("aiosmtpd", "aiosmtpd"), ("moto.server", "moto[server]")] {
        pip_install_missing(module, package)?;
    }
    ensure_postgres()?;
    install_sshd()?;
    step("cargo test --workspace");
    check(cargo().args(["test", "--workspace"]).env("BITMAIL_WEB_DIR", &web_dir).status(), "cargo test")?;
    tell!("\nall checks passed");
    Ok(())
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

/// The PostgreSQL engine is tested against a real server (tests/src/postgres.rs starts a
/// throwaway cluster from Debian's binaries). Installs Debian's `postgresql` when no
/// server binaries are found; `BITMAIL_PG_BIN` names another folder holding them.
fn ensure_postgres() -> Result<()> {
    if let Some(dir) = std::env::var_os("BITMAIL_PG_BIN") {
        if Path::new(&dir).join("initdb").is_file() {
            return Ok(());
        }
        bail!("BITMAIL_PG_BIN={} holds no initdb", Path::new(&dir).display());
    }
    let installed = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.flatten().any(|d| d.path().join("bin/initdb").is_file() && d.path().join("bin/postgres").is_file())
        })
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    apt_install("the PostgreSQL engine's tests", &["postgresql"])
}

/// Installs Debian packages with apt-get (through `sudo -n` unless root), updating the
/// package lists first.
fn apt_install(what_for: &str, packages: &[&str]) -> Result<()> {
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

/// `cargo xtask deploy` is tested against real OpenSSH servers (Debian's
/// `openssh-server`, which brings the client too).
fn install_sshd() -> Result<()> {
    if Path::new("/usr/sbin/sshd").exists() && Command::new("ssh").arg("-V").output().is_ok() {
        return Ok(());
    }
    apt_install("the deploy test", &["openssh-server", "openssh-client"])
}

/// Builds and runs `bitmail-provider-check` (mta-server), which does the work.
fn test_manual(args: &[String]) -> Result<()> {
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

/// The store engines at 100,000 and 1,000,000 documents (the proxy at 100,000): put
/// throughput, get and lookup latency, peak memory. One process per run.
fn bench_store() -> Result<()> {
    step("cargo build --release (backend-server, bitmail-store-bench)");
    check(
        cargo().args(["build", "--release", "-p", "backend-server", "-p", "bitmail-tests", "--bins"]).status(),
        "cargo build --release",
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let release = target.join("release");
    say!(
        "\n| engine | documents | puts/s (512 callers) | get p50 / p99 ms | lookup, answer of 1: p50 / p99 ms | lookup, answer of 100: p50 / p99 ms | peak RSS | file |"
    );
    say!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let runs = [
        ("memory", "100000"),
        ("memory", "1000000"),
        ("embedded", "100000"),
        ("embedded", "1000000"),
        ("proxy", "100000"),
        ("postgres", "100000"),
    ];
    for (engine, docs) in runs {
        let mut bench = Command::new(release.join("bitmail-store-bench"));
        bench.args(["--engine", engine, "--docs", docs]).arg("--backend-bin").arg(release.join("backend-server"));
        table_rows(&mut bench, &format!("bench store {engine} {docs}"))?;
    }
    Ok(())
}

/// Runs one benchmark and prints the table rows it answers. Its stdout is a pipe to
/// here, so that once our reader is gone (`| head`) the remaining runs are skipped
/// instead of failing one by one.
fn table_rows(bench: &mut Command, what: &str) -> Result<()> {
    if out::stdout_gone() {
        return Ok(());
    }
    let run = bench.stdin(Stdio::null()).stderr(Stdio::inherit()).output();
    let rows = run.as_ref().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    for row in rows.lines() {
        say!("{row}");
    }
    check(run.map(|o| o.status), what)
}

fn bench_mta() -> Result<()> {
    step("cargo build --release (mta-server, bitmail-bench)");
    check(
        cargo().args(["build", "--release", "-p", "mta-server", "-p", "bitmail-tests", "--bins"]).status(),
        "cargo build --release",
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let release = target.join("release");
    say!(
        "\n| run | messages | callers | provider latency | accepted msg/s (durable) | delivered msg/s | submit p50 / p99 | mta-server peak RSS |"
    );
    say!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let runs: [(&str, &str, &str, &str); 4] = [
        ("2 KiB, fast provider", "20000", "2048", "0"),
        ("2 KiB, 50 ms provider", "20000", "2048", "50"),
        ("100 KiB, fast provider", "1000", "102400", "0"),
        ("100 KiB, 50 ms provider", "1000", "102400", "50"),
    ];
    let bench = |label: &str, args: &[&str]| {
        let mut bench = Command::new(release.join("bitmail-bench"));
        bench
            .arg("--mta-bin")
            .arg(release.join("mta-server"))
            .args(["--concurrency", "64", "--label", label])
            .args(args);
        table_rows(&mut bench, label)
    };
    for (label, count, size, latency) in runs {
        bench(label, &["--count", count, "--size", size, "--latency-ms", latency])?;
    }
    bench(
        "2 KiB, a and b round-robin, a fails mid-run",
        &["--count", "20000", "--size", "2048", "--latency-ms", "0", "--fail-over-at", "5000"],
    )?;
    bench("2 KiB, provider down: 1,000,000 queued", &["--count", "1000000", "--size", "2048", "--backlog"])?;
    Ok(())
}

/// The local gateway's fixed addresses (the services' defaults) and the stand-in's.
const BACKEND: &str = "127.0.0.1:50052";
const MTA: &str = "127.0.0.1:50051";
const EDGE: &str = "127.0.0.1:8443";
const FAKE_SENDGRID: &str = "127.0.0.1:8025";
const FAKE_MAILGUN: &str = "127.0.0.1:8026";
const FAKE_SES: &str = "127.0.0.1:8027";
const FAKE_KEY: &str = "bitmail-dev-key";

/// Children killed (SIGTERM, then waited for) when this guard is dropped.
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &self.0 {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        for (name, child) in &mut self.0 {
            match child.wait() {
                Ok(status) if !status.success() => tell!("{name} exited with {status}"),
                _ => {}
            }
        }
    }
}

fn wait_for_port(addr: &str, name: &str, children: &mut Children) -> Result<()> {
    let addr: SocketAddr = addr.parse()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        for (child_name, child) in &mut children.0 {
            if let Some(status) = child.try_wait()? {
                bail!("{child_name} exited while starting ({status}); see its log above");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{name} did not listen on {addr} within 30 s")
}

fn run(release: bool) -> Result<()> {
    let profile = if release { "release" } else { "debug" };
    let web_dir = web()?;
    step("building the services");
    let mut build = cargo();
    build.args(["build", "--workspace", "--bins"]);
    if release {
        build.arg("--release");
    }
    check(build.status(), "cargo build")?;

    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let bin = |name: &str| target.join(profile).join(name);
    let dir = target.join("xtask-run");
    std::fs::create_dir_all(&dir)?;

    // Each provider is the real one when its credentials are in the environment, and
    // the local stand-in otherwise.
    let real_sendgrid = std::env::var_os("SENDGRID_API_KEY").is_some();
    let real_mailgun = std::env::var_os("MAILGUN_API_KEY").is_some() && std::env::var_os("MAILGUN_DOMAIN").is_some();
    let sendgrid = if real_sendgrid {
        "[[providers]]\nname = \"sendgrid\"\nkind = \"sendgrid\"\napi_key = { env = \"SENDGRID_API_KEY\" }\n".to_owned()
    } else {
        format!(
            "[[providers]]\nname = \"sendgrid-stand-in\"\nkind = \"sendgrid\"\nbase_url = \"http://{FAKE_SENDGRID}\"\napi_key = \"{FAKE_KEY}\"\n"
        )
    };
    let mailgun = match std::env::var("MAILGUN_DOMAIN") {
        Ok(domain) if real_mailgun => format!(
            "[[providers]]\nname = \"mailgun\"\nkind = \"mailgun\"\ndomain = {domain:?}\napi_key = {{ env = \"MAILGUN_API_KEY\" }}\n"
        ),
        _ => format!(
            "[[providers]]\nname = \"mailgun-stand-in\"\nkind = \"mailgun\"\nbase_url = \"http://{FAKE_MAILGUN}\"\ndomain = \"mg.localhost\"\napi_key = \"{FAKE_KEY}\"\n"
        ),
    };
    // SES needs a verified sender: the webmail then sends as name@BITMAIL_SES_DOMAIN.
    let ses_domain = std::env::var("BITMAIL_SES_DOMAIN").ok().filter(|d| !d.is_empty());
    let ses_region = std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty());
    let real_ses = ses_domain.is_some()
        && ses_region.is_some()
        && std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        && std::env::var_os("AWS_SECRET_ACCESS_KEY").is_some();
    let ses = match &ses_region {
        Some(region) if real_ses => {
            let token = if std::env::var_os("AWS_SESSION_TOKEN").is_some() {
                "session_token = { env = \"AWS_SESSION_TOKEN\" }\n"
            } else {
                ""
            };
            format!(
                "[[providers]]\nname = \"ses\"\nkind = \"ses\"\nregion = {region:?}\naccess_key_id = {{ env = \"AWS_ACCESS_KEY_ID\" }}\nsecret_access_key = {{ env = \"AWS_SECRET_ACCESS_KEY\" }}\n{token}"
            )
        }
        _ => format!(
            "[[providers]]\nname = \"ses-stand-in\"\nkind = \"ses\"\nregion = \"us-east-1\"\nendpoint_url = \"http://{FAKE_SES}\"\naccess_key_id = \"{FAKE_KEY}\"\nsecret_access_key = \"stand-in-secret\"\n"
        ),
    };
    let mail_domain = ses_domain.filter(|_| real_ses).unwrap_or_else(|| "localhost".to_owned());
    let provider = format!("{sendgrid}\n{mailgun}\n{ses}");
    let stand_ins = !(real_sendgrid && real_mailgun && real_ses);
    let configs = [
        (
            "backend-server",
            format!(
                "listen = \"{BACKEND}\"\nengine = \"embedded\"\n[embedded]\npath = {:?}\n",
                root().join("data/backend/store.redb").display().to_string()
            ),
        ),
        (
            "mta-server",
            format!(
                "listen = \"{MTA}\"\n[spool]\npath = {:?}\n[retry]\ninitial_secs = 5\n\n{provider}",
                root().join("data/mta/spool.redb").display().to_string()
            ),
        ),
        (
            "client-api",
            format!(
                "listen = \"{EDGE}\"\nstate_dir = {:?}\nmta_url = \"http://{MTA}\"\nbackend_url = \"http://{BACKEND}\"\nmail_domain = {mail_domain:?}\nsignup_on_first_login = true\nweb_dir = {:?}\n",
                root().join("data/client-api").display().to_string(),
                web_dir.display().to_string()
            ),
        ),
    ];
    for (name, text) in &configs {
        std::fs::write(dir.join(format!("{name}.toml")), text)?;
    }

    let mut children = Children(Vec::new());
    let mut spawn = |name: &str, cmd: &mut Command| -> Result<()> {
        let child = cmd.spawn().with_context(|| format!("cannot start {name}"))?;
        children.0.push((name.to_owned(), child));
        Ok(())
    };
    if stand_ins {
        spawn(
            "bitmail-fakes",
            Command::new(bin("bitmail-fakes")).args([
                "--sendgrid",
                FAKE_SENDGRID,
                "--mailgun",
                FAKE_MAILGUN,
                "--ses",
                FAKE_SES,
                "--key",
                FAKE_KEY,
            ]),
        )?;
    }
    for (name, _) in &configs {
        spawn(name, Command::new(bin(name)).arg("--config").arg(dir.join(format!("{name}.toml"))))?;
    }

    if stand_ins {
        wait_for_port(FAKE_SENDGRID, "the SendGrid stand-in", &mut children)?;
        wait_for_port(FAKE_MAILGUN, "the Mailgun stand-in", &mut children)?;
        wait_for_port(FAKE_SES, "the SES stand-in", &mut children)?;
    }
    wait_for_port(BACKEND, "backend-server", &mut children)?;
    wait_for_port(MTA, "mta-server", &mut children)?;
    wait_for_port(EDGE, "client-api", &mut children)?;

    let describe = |real: bool, name: &str, addr: &str| {
        if real {
            format!("{name} (its key is set: mail is sent for real)")
        } else {
            format!("the {name} stand-in; what it received: http://{addr}/_fake/messages")
        }
    };
    let ses_line = if real_ses {
        format!("\n                    Amazon SES (its keys are set: mail is sent for real, from @{mail_domain})")
    } else {
        format!("\n                    {}", describe(false, "Amazon SES", FAKE_SES))
    };
    let sent_to = format!(
        "{}\n                    {}{ses_line}   (round-robin, failing over)",
        describe(real_sendgrid, "SendGrid", FAKE_SENDGRID),
        describe(real_mailgun, "Mailgun", FAKE_MAILGUN)
    );
    say!(
        "
BitMail is running.

  webmail and API   https://localhost:8443/   (self-signed certificate: accept it once)
                    sign in with any name (a-z, 0-9, . _ -) and a password of 8+ characters;
                    the first sign-in creates the account
  mta-server gRPC   {MTA}   (reflection on: grpcurl -plaintext {MTA} list)
  backend gRPC      {BACKEND}
  mail goes to      {sent_to}
  configs           {}

Submit over gRPC, for example:
  grpcurl -plaintext -d '{{\"from\":\"me@localhost\",\"to\":[\"you@example.org\"],\"subject\":\"Hi\",\"text\":\"Hello\"}}' {MTA} bitmail.v1.Mta/Submit

Ctrl-C stops everything.",
        dir.display()
    );

    // Ctrl-C reaches the whole process group: the services shut down on their own.
    // Here, stop everything as soon as any one of them exits.
    loop {
        for (name, child) in &mut children.0 {
            if let Some(status) = child.try_wait()? {
                tell!("{name} exited ({status}); stopping the others");
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// The version of `package` that Cargo.lock records.
fn locked_version(package: &str) -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{package}\"")
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \""))
        {
            return Ok(v.trim_end_matches('"').to_owned());
        }
    }
    bail!("Cargo.lock names no {package}")
}

fn output_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// FNV-1a, 64 bits: names a file after its content so it can be cached forever.
fn content_hash(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The pinned binaryen (wasm-opt) from npm. Debian's binaryen is too old: its wasm-opt
/// writes modules that fail in the browser.
const BINARYEN: &str = "binaryen@132.0.0";

/// wasm-opt from npm, installed into target/tools when missing; None without npm.
fn wasm_opt() -> Result<Option<PathBuf>> {
    let tools = target_dir().join("tools/binaryen");
    let bin = tools.join("node_modules/.bin/wasm-opt");
    if bin.exists() {
        return Ok(Some(bin));
    }
    if output_of(Command::new("npm").arg("--version")).is_none() {
        tell!("npm is missing: the webmail is built without wasm-opt (larger)");
        return Ok(None);
    }
    step(&format!("npm install {BINARYEN} (wasm-opt)"));
    std::fs::create_dir_all(&tools)?;
    check(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&tools)
            .arg(BINARYEN)
            .status(),
        "npm install binaryen",
    )?;
    Ok(Some(bin))
}

/// Builds the webmail into target/web and answers that folder.
fn web() -> Result<PathBuf> {
    let installed = output_of(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if !installed.lines().any(|l| l.trim() == "wasm32-unknown-unknown") {
        step("rustup target add wasm32-unknown-unknown");
        check(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]).status(), "rustup target add")?;
    }
    let version = locked_version("wasm-bindgen")?;
    let have = output_of(Command::new("wasm-bindgen").arg("--version")).unwrap_or_default();
    if have.split_whitespace().nth(1) != Some(version.as_str()) {
        // Without --locked: the CLI's own lock file names a crate version the registry
        // mirror here lacks.
        step(&format!("cargo install wasm-bindgen-cli --version {version} (a few minutes, once)"));
        check(
            Command::new("cargo").args(["install", "wasm-bindgen-cli", "--version", &version]).status(),
            "cargo install wasm-bindgen-cli",
        )?;
    }
    let wasm_opt = wasm_opt()?;

    step("cargo build -p bitmail-web --target wasm32-unknown-unknown --profile wasm-release");
    check(
        cargo()
            .args(["build", "-p", "bitmail-web", "--target", "wasm32-unknown-unknown", "--profile", "wasm-release"])
            .status(),
        "building the webmail",
    )?;
    let target = target_dir();
    let built = target.join("wasm32-unknown-unknown/wasm-release/bitmail_web.wasm");
    let staging = target.join("web-bindgen");
    let _ = std::fs::remove_dir_all(&staging);
    step("wasm-bindgen --target web");
    check(
        Command::new("wasm-bindgen")
            .args(["--target", "web", "--no-typescript", "--out-dir"])
            .arg(&staging)
            .arg(&built)
            .status(),
        "wasm-bindgen",
    )?;
    let wasm_path = staging.join("bitmail_web_bg.wasm");
    if let Some(wasm_opt) = wasm_opt {
        step("wasm-opt -Oz");
        let features = [
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-mutable-globals",
            "--enable-reference-types",
            "--enable-multivalue",
        ];
        check(
            Command::new(wasm_opt).arg("-Oz").args(features).arg(&wasm_path).arg("-o").arg(&wasm_path).status(),
            "wasm-opt",
        )?;
    }

    // Content-hashed names under assets/, and the page that names them.
    let out = target.join("web");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(out.join("assets"))?;
    let write_hashed = |stem: &str, ext: &str, data: &[u8]| -> Result<String> {
        let name = format!("{stem}-{}.{ext}", content_hash(data));
        std::fs::write(out.join("assets").join(&name), data)?;
        say!("  assets/{name:<40} {:>8} bytes", data.len());
        Ok(name)
    };
    let wasm = write_hashed("bitmail_web_bg", "wasm", &std::fs::read(&wasm_path)?)?;
    let js = write_hashed("bitmail_web", "js", &std::fs::read(staging.join("bitmail_web.js"))?)?;
    let style = write_hashed("style", "css", &std::fs::read(root().join("web/style.css"))?)?;
    let boot_js =
        format!("import init from './{js}';\ninit({{ module_or_path: new URL('./{wasm}', import.meta.url) }});\n");
    let boot = write_hashed("boot", "js", boot_js.as_bytes())?;
    let page = std::fs::read_to_string(root().join("web/index.html"))?
        .replace("{style}", &style)
        .replace("{js}", &js)
        .replace("{boot}", &boot);
    std::fs::write(out.join("index.html"), page)?;
    say!("  webmail built into {}", out.display());
    Ok(out)
}

/// Headless Chromium and its WebDriver for the browser tests (Debian's packages).
fn browser_tools() -> Result<()> {
    if Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists() {
        return Ok(());
    }
    apt_install("the browser tests", &["chromium", "chromium-driver"])
}
