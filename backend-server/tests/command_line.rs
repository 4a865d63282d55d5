//! The backend-server binary's command line: `--help`, `--version`, mistakes (exit 64,
//! with the usage), and no start on a non-loopback address without `[tls]` (exit 64,
//! naming the key). The checks are shared by every service: `bitmail_tests::command_line`.

#[test]
fn answers_help_version_and_mistakes() {
    let bin = env!("CARGO_BIN_EXE_backend-server");
    bitmail_tests::command_line::check_service(bin, "backend-server", env!("CARGO_PKG_VERSION"));
}

#[test]
fn refuses_to_listen_beyond_loopback_without_tls() {
    bitmail_tests::command_line::check_refuses_plaintext_beyond_loopback(
        env!("CARGO_BIN_EXE_backend-server"),
        "backend-server",
    );
}

/// With `[tls]` it starts beyond loopback, warns there that the memory engine keeps
/// nothing, and `--probe` answers over mutual TLS with the server's own certificate.
#[test]
fn serves_beyond_loopback_with_tls_probes_over_it_and_warns_about_memory() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = std::env::temp_dir().join(format!("bitmail-backend-mtls-{}", std::process::id()));
    let ca = bitmail_tests::ca::Ca::new(&dir, "backend-server test CA").unwrap();
    let cert = ca.issue("backend", &["localhost", "127.0.0.1"]).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.join("backend.toml");
    let text = format!(
        "listen = \"0.0.0.0:{port}\"\nengine = \"memory\"\n[tls]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
        ca.ca_file().display().to_string(),
        cert.cert.display().to_string(),
        cert.key.display().to_string()
    );
    std::fs::write(&config, text).unwrap();
    let bin = env!("CARGO_BIN_EXE_backend-server");
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .env("BITMAIL_BACKEND_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening") {
            break;
        }
    }
    let probe = Command::new(bin).arg("--config").arg(&config).arg("--probe").output().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("listening"), "it did not start:\n{log}");
    assert!(log.contains("WARN") && log.contains("engine = \"memory\""), "no warning about memory:\n{log}");
    assert_eq!(probe.status.code(), Some(0), "--probe over mutual TLS: {probe:?}");
    std::fs::remove_dir_all(dir).unwrap();
}
