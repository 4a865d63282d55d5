//! The client-api binary as an operator runs it: it generates its certificate on first
//! start, serves HTTPS even while its upstreams are down (reporting itself degraded),
//! and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn first_start_generates_a_certificate_and_sigterm_stops_it() {
    let dir = std::env::temp_dir().join(format!("bitmail-edge-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("client-api.toml");
    // Upstreams on a port nothing listens on: the edge must still start.
    let text = format!(
        "listen = \"127.0.0.1:0\"\nstate_dir = {:?}\nmta_url = \"http://127.0.0.1:9\"\nbackend_url = \"http://127.0.0.1:9\"\n",
        dir.display().to_string()
    );
    std::fs::write(&config, text).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_client-api"))
        .arg("--config")
        .arg(&config)
        .env("BITMAIL_CLIENT_API_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    while Instant::now() < deadline && !log.contains("listening") {
        log.push_str(&lines.next().expect("the server logs before exiting").unwrap());
        log.push('\n');
    }
    assert!(log.contains("generated a self-signed TLS certificate"), "{log}");
    assert!(log.contains("https://127.0.0.1:"), "{log}");
    assert!(dir.join("tls/cert.pem").is_file() && dir.join("tls/key.pem").is_file());

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "exit {status:?}; log:\n{}", rest.join("\n"));
    assert!(rest.iter().any(|l| l.contains("client-api stopped")), "{rest:?}");
    std::fs::remove_dir_all(dir).unwrap();
}
