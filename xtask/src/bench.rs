//! `cargo xtask bench mta|store|api|keys|capacity|lists|webmail`: release builds of the benchmark binaries (in
//! bitmail-tests), run one process per configuration, their Markdown table rows printed.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Result;

use crate::out::{self, say};
use crate::{cargo, check, root, step};

/// The store engines at 100,000 and 1,000,000 documents (the proxy at 100,000): put
/// throughput, get and lookup latency, peak memory. One process per run.
/// `mta-server/benches/key_check.rs`, in release: what the key check adds to each call.
pub(crate) fn bench_keys() -> Result<()> {
    step("cargo bench -p mta-server --bench key_check");
    check(cargo().args(["bench", "-p", "mta-server", "--bench", "key_check"]).status(), "cargo bench")
}

/// Debian's PostgreSQL installed for `what` when neither it nor `BITMAIL_PG_BIN` is there.
fn postgres_server(what: &str) -> Result<()> {
    let postgres = std::fs::read_dir("/usr/lib/postgresql")
        .is_ok_and(|dirs| dirs.flatten().any(|d| d.path().join("bin/initdb").is_file()));
    if !postgres && std::env::var_os("BITMAIL_PG_BIN").is_none() {
        crate::test::apt_install(what, &["postgresql"])?;
    }
    Ok(())
}

/// `bitmail-capacity` on release builds of the three services: the per-message costs
/// the capacity model in ARCHITECTURE.md is built from.
pub(crate) fn bench_capacity() -> Result<()> {
    postgres_server("bench capacity")?;
    step("cargo build --release (the services, bitmail-capacity)");
    check(
        cargo()
            .args(["build", "--release", "-p", "backend-server", "-p", "mta-server", "-p", "client-api"])
            .args(["-p", "bitmail-tests", "--bins"])
            .status(),
        "cargo build --release",
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    say!(
        "\nOne node of each role, PostgreSQL with fsync on, a fake SendGrid; counted from the first message to the last delivery settled.\n"
    );
    table_rows(&mut Command::new(target.join("release/bitmail-capacity")), "bench capacity")
}

/// `bitmail-lists-bench` on release builds of backend-server and mta-server: a campaign
/// to 100,000 subscribers beside 100,000 messages submitted straight, in one run.
pub(crate) fn bench_lists() -> Result<()> {
    step("cargo build --release (backend-server, mta-server, bitmail-lists-bench)");
    check(
        cargo()
            .args(["build", "--release", "-p", "backend-server", "-p", "mta-server", "-p", "bitmail-tests", "--bins"])
            .status(),
        "cargo build --release",
    )?;
    say!(
        "\nbackend-server (embedded store) and mta-server, its tenants in that backend, a fake SendGrid answering at once; \
         the campaign's target: at least 80 % of the baseline's delivered msg/s, every service under 300 MB.\n"
    );
    table_rows(&mut Command::new(crate::target_dir().join("release/bitmail-lists-bench")), "bench lists")
}

/// `bitmail-webmail-bench` on release builds of backend-server and client-api, once per
/// engine: a mailbox of 100,000 messages read through the edge.
pub(crate) fn bench_webmail() -> Result<()> {
    postgres_server("bench webmail")?;
    step("cargo build --release (backend-server, client-api, bitmail-webmail-bench)");
    check(
        cargo()
            .args(["build", "--release", "-p", "backend-server", "-p", "client-api", "-p", "bitmail-tests", "--bins"])
            .status(),
        "cargo build --release",
    )?;
    say!(
        "\nbackend-server and client-api, ada's inbox filled straight into the store; each request through the edge's HTTPS API. Target: first page and search under 50 ms p99 on the embedded engine."
    );
    for engine in ["embedded", "postgres"] {
        table_rows(
            Command::new(crate::target_dir().join("release/bitmail-webmail-bench")).args(["--engine", engine]),
            "bench webmail",
        )?;
    }
    Ok(())
}

pub(crate) fn bench_store() -> Result<()> {
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

pub(crate) fn bench_mta() -> Result<()> {
    step("cargo build --release (mta-server, bitmail-bench)");
    check(
        cargo().args(["build", "--release", "-p", "mta-server", "-p", "bitmail-tests", "--bins"]).status(),
        "cargo build --release",
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let release = target.join("release");
    say!(
        "\nEvery Submit is authenticated: it carries a `send` key (authorization: Bearer bmk_...), checked by mta-server; the figures include the key check."
    );
    say!(
        "\n| run | messages | callers | provider latency | accepted msg/s (durable, authenticated) | delivered msg/s | submit p50 / p99 | mta-server peak RSS |"
    );
    say!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    // What it was before keys: the same command on a tree before mta-server required
    // them (the key check must cost under 5 %).
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

/// `cargo xtask bench api`: the same 20,000 messages of 2 KiB from 64 callers, once over
/// gRPC `Submit` and once as SendGrid's `POST /v3/mail/send` at the edge (HTTPS, the
/// app's key forwarded to mta-server), in one run; the HTTP surface's share of gRPC's
/// rate. The target: at least 70 %.
pub(crate) fn bench_api() -> Result<()> {
    step("cargo build --release (mta-server, client-api, bitmail-bench)");
    check(
        cargo()
            .args(["build", "--release", "-p", "mta-server", "-p", "client-api", "-p", "bitmail-tests", "--bins"])
            .status(),
        "cargo build --release",
    )?;
    let release = crate::target_dir().join("release");
    say!(
        "\n| run | messages | callers | provider latency | accepted msg/s (durable) | delivered msg/s | p50 / p99 | mta-server peak RSS |"
    );
    say!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut rates = Vec::new();
    for (label, edge) in [("gRPC Submit", false), ("HTTPS POST /v3/mail/send", true)] {
        let mut bench = Command::new(release.join("bitmail-bench"));
        bench.arg("--mta-bin").arg(release.join("mta-server"));
        if edge {
            bench.arg("--edge-bin").arg(release.join("client-api"));
        }
        bench.args([
            "--count",
            "20000",
            "--size",
            "2048",
            "--concurrency",
            "64",
            "--latency-ms",
            "0",
            "--label",
            label,
        ]);
        let out = bench.stdin(Stdio::null()).stderr(Stdio::inherit()).output();
        let rows = out.as_ref().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        for row in rows.lines() {
            say!("{row}");
        }
        check(out.map(|o| o.status), label)?;
        // The sixth column of the row: accepted msg/s.
        let rate = rows.lines().next().and_then(|r| r.split('|').nth(5)).and_then(|c| c.trim().parse::<f64>().ok());
        rates.push(rate.unwrap_or(0.0));
    }
    if let [grpc, http] = rates[..]
        && grpc > 0.0
    {
        say!("\nHTTPS reaches {:.0} % of gRPC's accepted rate (target: at least 70 %).", 100.0 * http / grpc);
    }
    Ok(())
}
