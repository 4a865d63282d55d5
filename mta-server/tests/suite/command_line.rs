//! The mta-server binary's command line: `--help`, `--version`, mistakes (exit 64,
//! with the usage), and no start on a non-loopback address without `[tls]` (exit 64,
//! naming the key). The checks are shared by every service: `bitmail_tests::command_line`.

#[test]
fn answers_help_version_and_mistakes() {
    let bin = env!("CARGO_BIN_EXE_mta-server");
    bitmail_tests::command_line::check_service(bin, "mta-server", env!("CARGO_PKG_VERSION"));
}

#[test]
fn refuses_to_listen_beyond_loopback_without_tls() {
    bitmail_tests::command_line::check_refuses_plaintext_beyond_loopback(
        env!("CARGO_BIN_EXE_mta-server"),
        "mta-server",
    );
}
