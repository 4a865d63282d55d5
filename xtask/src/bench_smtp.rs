//! `cargo xtask bench smtp`: SMTP submission beside a real Postfix on the same machine,
//! both loaded by Postfix's own generator, `smtp-source` (20 sessions, a new connection
//! per message, no AUTH or TLS: BitMail's local listener).
//!
//! - BitMail: the release mta-server with its local listener, tenant `default` with its
//!   rate quotas raised out of the way, delivering to the SendGrid stand-in; every `250`
//!   means the message is in the spool on disk.
//! - Postfix: Debian's package (installed when missing), relay-only, with the
//!   configuration in `xtask/bench/postfix/` (queue on disk, one fsync per message),
//!   relaying to `smtp-sink`. It is stopped afterwards.
//! - The generator's own ceiling: `smtp-source` straight into `smtp-sink`.
//!
//! Each figure is the median of three runs; BitMail's p99 is read from its
//! `bitmail_smtp_accept_seconds` histogram (the bucket's upper bound).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::out::say;
use crate::run::{Children, wait_for_port};
use crate::{cargo, check, root, step, target_dir};

const BITMAIL_GRPC: &str = "127.0.0.1:50171";
const BITMAIL_SMTP: &str = "127.0.0.1:2725";
const POSTFIX: &str = "127.0.0.1:2525";
const SINK: &str = "127.0.0.1:2526";
const STAND_IN: &str = "127.0.0.1:8125";

pub(crate) fn bench_smtp() -> Result<()> {
    step("cargo build --release (mta-server, bitmail-fakes)");
    check(
        cargo().args(["build", "--release", "-p", "mta-server", "-p", "bitmail-tests", "--bins"]).status(),
        "cargo build --release",
    )?;
    install_postfix()?;
    let release = target_dir().join("release");
    let dir = target_dir().join("bench-smtp");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    let mut children = Children(Vec::new());
    let quiet = |cmd: &mut Command| {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    };
    let mut sink = Command::new("smtp-sink");
    sink.args(["-u", "postfix", SINK, "1000"]);
    quiet(&mut sink);
    children.spawn("smtp-sink", &mut sink)?;
    let mut fakes = Command::new(release.join("bitmail-fakes"));
    fakes.args(["--sendgrid", STAND_IN, "--mailgun", "127.0.0.1:8126", "--ses", "127.0.0.1:8127", "--key", "bench"]);
    quiet(&mut fakes);
    children.spawn("bitmail-fakes", &mut fakes)?;
    std::fs::write(dir.join("mta.toml"), mta_config(&dir))?;
    let mut mta = Command::new(release.join("mta-server"));
    mta.arg("--config").arg(dir.join("mta.toml")).env("BITMAIL_MTA_LOG", "warn");
    children.spawn("mta-server", &mut mta)?;
    wait_for_port(SINK, "smtp-sink", &mut children)?;
    wait_for_port(STAND_IN, "the SendGrid stand-in", &mut children)?;
    wait_for_port(BITMAIL_SMTP, "mta-server's SMTP listener", &mut children)?;
    let postfix = Postfix::start()?;

    say!("\nsmtp-source -s 20 (20 sessions, a connection per message), median of 3 runs\n");
    say!(
        "| messages | BitMail accepted msg/s | Postfix accepted msg/s | ratio | BitMail p99 per message | generator alone |"
    );
    say!("| --- | --- | --- | --- | --- | --- |");
    for (label, count, size) in [("20,000 of 2 KiB", 20_000, 2048), ("2,000 of 50 KiB", 2_000, 51_200)] {
        let before = accept_histogram()?;
        let bitmail = median(|| source_rate(BITMAIL_SMTP, count, size))?;
        let p99 = p99_ms(&before, &accept_histogram()?);
        let rate = median(|| {
            let rate = source_rate(POSTFIX, count, size);
            postfix.drain();
            rate
        })?;
        let ceiling = median(|| source_rate(SINK, count, size))?;
        say!(
            "| {label} | {bitmail:.0} | {rate:.0} | {:.1}x | ≤ {p99} | {ceiling:.0}{} |",
            bitmail / rate,
            if bitmail > 0.8 * ceiling { " (BitMail at the generator's ceiling)" } else { "" }
        );
    }
    drop(postfix);
    Ok(())
}

/// mta-server with the local listener as tenant `default`, out of the quotas' way.
fn mta_config(dir: &Path) -> String {
    format!(
        "listen = \"{BITMAIL_GRPC}\"\nmax_message_bytes = 10485760\n[spool]\npath = {:?}\n[tenants]\npath = {:?}\n\
         default_domains = [\"localhost\"]\n[tenants.default_quotas]\nper_second = 1000000.0\nburst = 1000000\n\
         per_day = 1000000000\n[smtp.local]\nlisten = \"{BITMAIL_SMTP}\"\ntenant = \"default\"\n\
         [[providers]]\nname = \"stand-in\"\nkind = \"sendgrid\"\nbase_url = \"http://{STAND_IN}\"\napi_key = \"bench\"\n",
        dir.join("spool.redb").display().to_string(),
        dir.join("tenants.redb").display().to_string(),
    )
}

/// Messages per second `smtp-source` gets accepted at `addr`; an error when any was
/// refused (it exits non-zero and names the reply).
fn source_rate(addr: &str, count: u32, size: u32) -> Result<f64> {
    let started = Instant::now();
    let out = Command::new("smtp-source")
        .args(["-s", "20", "-m", &count.to_string(), "-l", &size.to_string()])
        .args(["-f", "bench@localhost", "-t", "rcpt@example.com", addr])
        .output()
        .context("cannot run smtp-source")?;
    let elapsed = started.elapsed().as_secs_f64();
    if !out.status.success() || !out.stderr.is_empty() {
        bail!("smtp-source against {addr} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(f64::from(count) / elapsed)
}

fn median(mut run: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut runs = [run()?, run()?, run()?];
    runs.sort_by(f64::total_cmp);
    Ok(runs[1])
}

/// `bitmail_smtp_accept_seconds` as (upper bound, cumulative count) pairs.
fn accept_histogram() -> Result<Vec<(String, u64)>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(BITMAIL_GRPC).context("mta-server /metrics")?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("bitmail_smtp_accept_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, rest) = l.split_once("\"} ")?;
            Some((le.to_owned(), rest.trim().parse().ok()?))
        })
        .collect())
}

/// The first bucket bound holding 99 % of the observations between two scrapes.
fn p99_ms(before: &[(String, u64)], after: &[(String, u64)]) -> String {
    let earlier = |le: &str| before.iter().find(|(b, _)| b == le).map_or(0, |(_, n)| *n);
    let total = after.last().map_or(0, |(le, n)| n - earlier(le));
    for (le, n) in after {
        if (n - earlier(le)) as f64 >= 0.99 * total as f64 {
            return match le.parse::<f64>() {
                Ok(secs) => format!("{} ms", secs * 1000.0),
                Err(_) => format!("{le} s"),
            };
        }
    }
    "n/a".into()
}

/// Debian's Postfix (which brings smtp-source and smtp-sink), installed without a
/// configuration of its own.
fn install_postfix() -> Result<()> {
    if Path::new("/usr/sbin/postfix").exists() && Path::new("/usr/sbin/smtp-source").exists() {
        return Ok(());
    }
    let mut preseed = Command::new("debconf-set-selections");
    preseed.stdin(Stdio::piped());
    let mut child = preseed.spawn().context("debconf-set-selections")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("debconf-set-selections' input")?;
        stdin.write_all(b"postfix postfix/main_mailer_type select No configuration\n")?;
    }
    check(child.wait(), "debconf-set-selections")?;
    crate::test::apt_install("the SMTP benchmark", &["postfix"])
}

/// The reference Postfix, started with the benchmark's configuration and stopped when
/// dropped.
struct Postfix;

impl Postfix {
    fn start() -> Result<Self> {
        let conf = root().join("xtask/bench/postfix");
        for file in ["main.cf", "master.cf"] {
            std::fs::copy(conf.join(file), PathBuf::from("/etc/postfix").join(file))
                .with_context(|| format!("installing {file} into /etc/postfix (run as root)"))?;
        }
        let _ = Command::new("postfix").arg("stop").stderr(Stdio::null()).status();
        check(Command::new("postfix").arg("check").status(), "postfix check")?;
        check(Command::new("postfix").arg("start").status(), "postfix start")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(POSTFIX).is_err() {
            if Instant::now() > deadline {
                bail!("Postfix did not listen on {POSTFIX} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Postfix)
    }

    /// Waits (up to a minute) until Postfix relayed its queue, so that the next run
    /// starts from an empty queue.
    fn drain(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let queue = Command::new("postqueue").arg("-p").output();
            if queue.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("Mail queue is empty")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix").arg("stop").status();
    }
}
