//! `cargo xtask`: what cargo alone does not do for BitMail.
//!
//! - `cargo xtask run [--release]`: builds everything and starts backend-server,
//!   mta-server and client-api, with SendGrid and Mailgun as providers: the real ones
//!   when `SENDGRID_API_KEY` (and `MAILGUN_API_KEY` with `MAILGUN_DOMAIN`) are set, local
//!   stand-ins otherwise; prints where each listens and how to sign in. Ctrl-C stops
//!   everything.
//! - `cargo xtask bench mta`: mta-server's throughput, latency and memory against a
//!   fake provider (release build); prints a Markdown table.
//! - `cargo xtask test`: what CI runs: `cargo fmt --check`, clippy with warnings as
//!   errors, the test servers the tests need (aiosmtpd, from PyPI; OpenSSH's server,
//!   from Debian), and every test of the workspace.
//! - `cargo xtask deploy`: builds, tests, and puts a release on the hosts of a deploy
//!   config over SSH, one at a time, rolling a host back when it does not come up
//!   healthy ([`deploy`]); `--rollback` goes back one release.
//! - `cargo xtask test-manual --to ADDRESS`: one labelled message through each
//!   configured provider, asking the operator whether it arrived
//!   (`bitmail-provider-check`, in mta-server).

mod deploy;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  run [--release]   build and start the whole gateway locally (Ctrl-C stops it)
  test              formatting, clippy, and every test (what CI runs)
  bench mta         mta-server throughput, latency and memory (release build)
  deploy [--config deploy.toml] [--hosts a,b] [--skip-tests] [--rollback] [--bin-dir DIR]
                    build, test, and deploy to the configured hosts over SSH
  test-manual --to ADDRESS [--provider NAME] [--config mta.toml] [--from ADDRESS] [--dry-run]
                    send one labelled message through each provider and ask if it arrived";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
        Some("deploy") => deploy::main(&args[1..], &root(), test),
        Some("test-manual") => test_manual(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
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
    eprintln!("\n==> {what}");
}

fn test() -> Result<()> {
    // A fresh rustup toolchain may lack these components; adding them is a no-op when
    // present.
    if Command::new("rustup").arg("--version").output().is_ok() {
        step("rustup component add rustfmt clippy");
        check(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]).status(), "rustup component add")?;
    }
    step("cargo fmt --all --check");
    check(cargo().args(["fmt", "--all", "--check"]).status(), "cargo fmt --check (run `cargo fmt --all` to fix)")?;
    step("cargo clippy --workspace --all-targets -- -D warnings");
    check(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]).status(), "cargo clippy")?;
    // The SMTP provider is tested against a real SMTP server, aiosmtpd from PyPI.
    step("python3 -m pip install aiosmtpd");
    check(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--root-user-action=ignore",
                "aiosmtpd",
            ])
            .status(),
        "installing aiosmtpd (python3 with pip is needed)",
    )?;
    install_sshd()?;
    step("cargo test --workspace");
    check(cargo().args(["test", "--workspace"]).status(), "cargo test")?;
    eprintln!("\nall checks passed");
    Ok(())
}

/// `cargo xtask deploy` is tested against real OpenSSH servers (Debian's
/// `openssh-server`, which brings the client too).
fn install_sshd() -> Result<()> {
    if Path::new("/usr/sbin/sshd").exists() && Command::new("ssh").arg("-V").output().is_ok() {
        return Ok(());
    }
    step("apt-get install openssh-server");
    let sudo = |args: &[&str]| {
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let mut cmd = Command::new(if root { "apt-get" } else { "sudo" });
        if !root {
            cmd.args(["-n", "apt-get"]);
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd.status()
    };
    check(sudo(&["update", "-qq"]), "apt-get update")?;
    check(sudo(&["install", "-y", "-qq", "openssh-server"]), "apt-get install openssh-server")
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

fn bench(args: &[String]) -> Result<()> {
    if args.first().map(String::as_str) != Some("mta") || args.len() > 1 {
        bail!("usage: cargo xtask bench mta");
    }
    step("cargo build --release (mta-server, bitmail-bench)");
    check(
        cargo().args(["build", "--release", "-p", "mta-server", "-p", "bitmail-tests", "--bins"]).status(),
        "cargo build --release",
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let release = target.join("release");
    println!(
        "\n| run | messages | callers | provider latency | accepted msg/s (durable) | delivered msg/s | submit p50 / p99 | mta-server peak RSS |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let runs: [(&str, &str, &str, &str); 4] = [
        ("2 KiB, fast provider", "20000", "2048", "0"),
        ("2 KiB, 50 ms provider", "20000", "2048", "50"),
        ("100 KiB, fast provider", "1000", "102400", "0"),
        ("100 KiB, 50 ms provider", "1000", "102400", "50"),
    ];
    let bench = |label: &str, args: &[&str]| {
        let status = Command::new(release.join("bitmail-bench"))
            .arg("--mta-bin")
            .arg(release.join("mta-server"))
            .args(["--concurrency", "64", "--label", label])
            .args(args)
            .status();
        check(status, label)
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
                Ok(status) if !status.success() => eprintln!("{name} exited with {status}"),
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

fn run(args: &[String]) -> Result<()> {
    let release = match args {
        [] => false,
        [flag] if flag == "--release" => true,
        _ => bail!("usage: cargo xtask run [--release]"),
    };
    let profile = if release { "release" } else { "debug" };
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
    let provider = format!("{sendgrid}\n{mailgun}");
    let stand_ins = !(real_sendgrid && real_mailgun);
    let configs = [
        ("backend-server", format!("listen = \"{BACKEND}\"\nengine = \"memory\"\n")),
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
                "listen = \"{EDGE}\"\nstate_dir = {:?}\nmta_url = \"http://{MTA}\"\nbackend_url = \"http://{BACKEND}\"\nmail_domain = \"localhost\"\nsignup_on_first_login = true\n",
                root().join("data/client-api").display().to_string()
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
    let sent_to = format!(
        "{}\n                    {}   (round-robin, failing over)",
        describe(real_sendgrid, "SendGrid", FAKE_SENDGRID),
        describe(real_mailgun, "Mailgun", FAKE_MAILGUN)
    );
    println!(
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
                eprintln!("{name} exited ({status}); stopping the others");
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
