//! The mta-server binary's command line: `--help`, `--version`, and mistakes (exit 64,
//! with the usage). The checks are shared by every service: `bitmail_tests::command_line`.

#[test]
fn answers_help_version_and_mistakes() {
    let bin = env!("CARGO_BIN_EXE_mta-server");
    bitmail_tests::command_line::check_service(bin, "mta-server", env!("CARGO_PKG_VERSION"));
}
