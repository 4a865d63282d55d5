//! The mta-server binary as an operator runs it: a bad config is reported whole with
//! exit code 64, `--check-config` validates without serving, and SIGTERM stops it
//! cleanly with exit code 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Writes a config file whose spool and tenants file live beside it, in the temporary
/// folder (never in `data/` under the crate).
fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let base = std::env::temp_dir().join(format!("bitmail-mta-{}-{name}", std::process::id()));
    let spool = format!(
        "[spool]\npath = {:?}\n[tenants]\npath = {:?}\n",
        base.with_extension("redb").display().to_string(),
        base.with_extension("tenants.redb").display().to_string()
    );
    let path = base.with_extension("toml");
    // Top-level keys first, then the [spool] and [tenants] tables, then the rest.
    let (top, tables) = text.split_at(text.find('[').unwrap_or(text.len()));
    std::fs::write(&path, format!("{top}{spool}{tables}")).unwrap();
    path
}

/// Removes the config file and whatever the server made beside it.
fn remove(path: &std::path::Path) {
    std::fs::remove_file(path).unwrap();
    for extension in ["redb", "tenants.redb"] {
        let _ = std::fs::remove_file(path.with_extension(extension));
    }
}

#[test]
fn a_bad_config_lists_every_problem_and_exits_64() {
    let path = write_config(
        "bad",
        "queue_size = 3\nmax_recipients = 0\n[[providers]]\nname = \"sg\"\nkind = \"sendgrid\"\nbase_url = \"ftp://x\"\napi_key = \"k\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_mta-server")).arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in ["3 problem(s)", "queue_size: unknown key", "max_recipients", "providers[0].base_url"] {
        assert!(stderr.contains(needle), "missing {needle} in:\n{stderr}");
    }
    remove(&path);
}

#[test]
fn check_config_validates_and_exits() {
    let path =
        write_config("good", "[[providers]]\nname = \"sg\"\nkind = \"sendgrid\"\napi_key = \"SG.secret-value\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_mta-server"))
        .arg("--check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
    remove(&path);

    let out = Command::new(env!("CARGO_BIN_EXE_mta-server")).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn sigterm_stops_it_cleanly() {
    let path = write_config(
        "term",
        "listen = \"127.0.0.1:0\"\n[[providers]]\nname = \"sg\"\nkind = \"sendgrid\"\napi_key = \"SG.secret-value\"\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_mta-server"))
        .arg("--config")
        .arg(&path)
        .env("BITMAIL_MTA_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    while Instant::now() < deadline {
        let line = lines.next().expect("the server logs before exiting").unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening") {
            break;
        }
    }
    assert!(log.contains("listening"), "{log}");
    assert!(!log.contains("secret-value"), "the API key must never be logged:\n{log}");

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "exit {status:?}; log:\n{}", rest.join("\n"));
    assert!(rest.iter().any(|l| l.contains("SIGTERM received")), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("mta-server stopped")), "{rest:?}");
    remove(&path);
}
