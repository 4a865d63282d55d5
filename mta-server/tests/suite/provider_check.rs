//! `bitmail-provider-check` (behind `cargo xtask test-manual`) against the fake
//! providers, with scripted answers (accepted, 401, 500) and scripted operator input:
//! what it prints, what the providers received, and the report file it writes.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use bitmail_tests::mailgun::FakeMailgun;
use bitmail_tests::sendgrid::{Behavior, FakeSendGrid};
use tokio::io::AsyncWriteExt;

const KEY: &str = "key-check";

struct Fakes {
    sg_ok: FakeSendGrid,
    mg_bad_key: FakeMailgun,
    sg_down: FakeSendGrid,
    mg_ok: FakeMailgun,
}

async fn fakes() -> Fakes {
    let sg_down = FakeSendGrid::start(KEY).await.unwrap();
    sg_down.set_behavior(Behavior::Fail { status: 500, body: r#"{"errors":[{"message":"internal error"}]}"#.into() });
    Fakes {
        sg_ok: FakeSendGrid::start(KEY).await.unwrap(),
        mg_bad_key: FakeMailgun::start("key-other").await.unwrap(),
        sg_down,
        mg_ok: FakeMailgun::start(KEY).await.unwrap(),
    }
}

fn write_config(dir: &Path, f: &Fakes) -> PathBuf {
    let sg = |name: &str, url: String| {
        format!("[[providers]]\nname = \"{name}\"\nkind = \"sendgrid\"\nbase_url = \"{url}\"\napi_key = \"{KEY}\"\n\n")
    };
    let mg = |name: &str, url: String| {
        format!(
            "[[providers]]\nname = \"{name}\"\nkind = \"mailgun\"\nbase_url = \"{url}\"\ndomain = \"mg.example.org\"\napi_key = \"{KEY}\"\n\n"
        )
    };
    let text = [
        sg("sg-ok", f.sg_ok.base_url()),
        mg("mg-bad-key", f.mg_bad_key.base_url()),
        sg("sg-down", f.sg_down.base_url()),
        mg("mg-ok", f.mg_ok.base_url()),
    ]
    .concat();
    let path = dir.join("mta.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bitmail-provider-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the binary with `stdin` as the operator's typing; its exit code, stdout, stderr.
async fn check(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bitmail-provider-check"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn the_report(dir: &Path) -> String {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("bitmail-provider-check-"))
        .collect();
    assert_eq!(files.len(), 1, "one dated report: {files:?}");
    std::fs::read_to_string(&files[0]).unwrap()
}

#[tokio::test]
async fn each_provider_is_tried_in_turn_and_the_operator_answers_are_reported() {
    let f = fakes().await;
    let dir = temp_dir("live");
    let config = write_config(&dir, &f);
    let args = ["--config", config.to_str().unwrap(), "--to", "ada@example.org", "--from", "ops@example.org"];
    let args = [&args[..], &["--report-dir", dir.to_str().unwrap()]].concat();
    // Asked twice (for the two accepted): a wrong answer is asked again.
    let (code, out, err) = check(&args, "maybe\ny\nn\n").await;
    assert_eq!(code, 1, "not every provider passed\n{out}\n{err}");

    let sent = f.sg_ok.received();
    assert_eq!(sent.len(), 1);
    let subject = sent[0].body["subject"].as_str().unwrap();
    assert!(subject.starts_with("BitMail provider check: sg-ok 20"), "{subject}");
    assert!(!sent[0].sandbox, "a live run is not in sandbox mode");
    assert_eq!(sent[0].body["personalizations"][0]["to"][0]["email"], "ada@example.org");
    let mg = f.mg_ok.received();
    assert_eq!(mg.len(), 1);
    assert!(mg[0].field("subject").unwrap().starts_with("BitMail provider check: mg-ok "));
    assert!(!mg[0].test_mode);
    assert_eq!((f.mg_bad_key.requests(), f.sg_down.requests()), (1, 1), "one attempt each, no retry");

    assert!(out.contains(&format!("answer: accepted, message id {}", sent[0].message_id)), "{out}");
    assert!(out.contains("please answer y or n"), "{out}");
    assert!(out.contains("[2/4] mg-bad-key (mailgun)") && out.contains("answer: provider-refused"), "{out}");
    assert!(out.contains("[3/4] sg-down (sendgrid)") && out.contains("answer: transient"), "{out}");
    assert!(out.contains("1 of 4 provider(s) passed"), "{out}");

    let report = the_report(&dir);
    assert!(report.starts_with("# BitMail provider check, 20"), "{report}");
    assert!(report.contains("- to: ada@example.org") && report.contains("- mode: live"), "{report}");
    let row = |name: &str| report.lines().find(|l| l.starts_with(&format!("| {name} |"))).unwrap().to_owned();
    let sg_row = row("sg-ok");
    assert!(sg_row.contains("| sendgrid | accepted |") && sg_row.contains(&sent[0].message_id), "{sg_row}");
    assert!(sg_row.ends_with("| yes |"), "{sg_row}");
    assert!(row("mg-ok").contains("| mailgun | accepted |") && row("mg-ok").ends_with("| no |"), "{report}");
    let refused = row("mg-bad-key");
    assert!(refused.contains("provider-refused: ") && refused.contains("Forbidden"), "{refused}");
    assert!(refused.contains("| - |") && refused.ends_with("| not sent |"), "{refused}");
    assert!(row("sg-down").contains("transient: ") && row("sg-down").ends_with("| not sent |"), "{report}");
    assert!(report.contains("1 of 4 provider(s) passed."), "{report}");
}

#[tokio::test]
async fn a_dry_run_uses_sandbox_and_test_mode_and_asks_nothing() {
    let f = fakes().await;
    let dir = temp_dir("dry");
    let config = write_config(&dir, &f);
    let base = ["--config", config.to_str().unwrap(), "--to", "ada@example.org", "--report-dir", dir.to_str().unwrap()];

    // Only Mailgun providers have a default sender: the others need --from, and
    // nothing is sent until the input is right.
    let (code, _, err) = check(&[&base[..], &["--dry-run"]].concat(), "").await;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--from is needed for sg-ok, sg-down"), "{err}");
    let (code, _, err) = check(&[&base[..], &["--provider", "postal"]].concat(), "").await;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("no provider named `postal` (configured: sg-ok, mg-bad-key, sg-down, mg-ok)"), "{err}");
    assert_eq!(f.sg_ok.requests() + f.sg_down.requests() + f.mg_ok.requests() + f.mg_bad_key.requests(), 0);
    assert!(std::fs::read_dir(&dir).unwrap().count() == 1, "no report for bad input");

    let (code, out, err) = check(&[&base[..], &["--dry-run", "--provider", "mg-ok"]].concat(), "").await;
    assert_eq!(code, 0, "{out}\n{err}");
    let got = f.mg_ok.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].test_mode, "o:testmode=yes was sent");
    assert_eq!(got[0].field("from"), Some("BitMail check <bitmail-check@mg.example.org>"));
    assert!(!out.contains("Did it arrive"), "{out}");
    let report = the_report(&dir);
    assert!(report.contains("- mode: dry run"), "{report}");
    assert!(report.contains("| mg-ok | mailgun | accepted |") && report.contains("| dry run |"), "{report}");

    // A live run whose operator types nothing: the accepted one has no answer.
    let dir = temp_dir("no-answer");
    let (code, out, err) = check(
        &[&base[..4], &["--from", "ops@example.org", "--provider", "sg-ok", "--report-dir", dir.to_str().unwrap()]]
            .concat(),
        "",
    )
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("(no answer)"), "{out}");
    assert!(the_report(&dir).contains("| no answer |"));
    let _ = std::fs::remove_dir_all(&dir);

    let dir = temp_dir("dry-sg");
    let (code, out, _) = check(
        &[
            "--config",
            config.to_str().unwrap(),
            "--to",
            "ada@example.org",
            "--from",
            "ops@example.org",
            "--provider",
            "sg-ok",
            "--dry-run",
            "--report-dir",
            dir.to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let last = f.sg_ok.received().pop().unwrap();
    assert!(last.sandbox, "mail_settings.sandbox_mode.enable was sent");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn help_and_version_exit_0_and_bad_arguments_exit_64_with_the_usage() {
    let (code, out, _) = check(&["--help"], "").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Usage: bitmail-provider-check") && out.contains("--report-dir <DIR>"), "{out}");
    let (code, out, _) = check(&["--version"], "").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("bitmail-provider-check "), "{out}");
    for args in [&["--dry-run"][..], &["--to", "ada@example.org", "--bogus"], &["--to"]] {
        let (code, _, err) = check(args, "").await;
        assert_eq!(code, 64, "{args:?}: {err}");
        assert!(err.contains("Usage: bitmail-provider-check"), "{args:?}: {err}");
    }
}
