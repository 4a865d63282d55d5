//! An SMTP relay as a provider, against a real SMTP server (aiosmtpd, from PyPI, installed
//! by `cargo xtask test`): the message arrives whole in a maildir with Bcc only in the
//! envelope; STARTTLS works with a relay whose CA is configured; a message over the
//! relay's SIZE limit (552) goes to another provider instead; recipients beyond one
//! transaction go in several, and a failure part-way resends to nobody already reached.

use crate::common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bitmail_proto::v1 as pb;
use bitmail_tests::mailgun::FakeMailgun;
use bitmail_tests::sendgrid::FakeSendGrid;
use common::{Cluster, mailgun, sendgrid, settled, submission};
use mta_server::config::{ProviderConfig, SchedulerKind, SmtpConfig};
use mta_server::provider::smtp::SmtpSecurity;

/// A running aiosmtpd, stopped when dropped.
struct Relay {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.maildir.parent().unwrap());
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts aiosmtpd storing what it receives in a maildir, with `extra` arguments.
fn relay(name: &str, extra: &[&str]) -> Relay {
    relay_with(name, None, extra)
}

/// A maildir handler that answers the second mail transaction 451 (try again later).
const FAIL_SECOND: &str = r#"
from aiosmtpd.handlers import Mailbox

class FailSecond(Mailbox):
    transactions = 0

    async def handle_DATA(self, server, session, envelope):
        FailSecond.transactions += 1
        if FailSecond.transactions == 2:
            return "451 4.3.0 Try again later"
        return await super().handle_DATA(server, session, envelope)
"#;

/// Like [`relay`], with the handler class `handler` defined in Python source
/// `handler.0` (a module named `bitmail_handler`) instead of aiosmtpd's own Mailbox.
fn relay_with(name: &str, handler: Option<(&str, &str)>, extra: &[&str]) -> Relay {
    let dir = std::env::temp_dir().join(format!("bitmail-smtp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let maildir = dir.join("maildir");
    let port = free_port();
    let class = match handler {
        Some((source, class)) => {
            std::fs::write(dir.join("bitmail_handler.py"), source).unwrap();
            format!("bitmail_handler.{class}")
        }
        None => "aiosmtpd.handlers.Mailbox".to_owned(),
    };
    let child = Command::new("python3")
        .env("PYTHONPATH", &dir)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", &class])
        .args(extra)
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 must be installed; `cargo xtask test` installs aiosmtpd");
    let relay = Relay { child, port, maildir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
        assert!(Instant::now() < deadline, "aiosmtpd did not start (is it installed? python3 -m pip install aiosmtpd)");
        std::thread::sleep(Duration::from_millis(50));
    }
    relay
}

fn smtp(name: &str, host: &str, port: u16, security: SmtpSecurity, ca_file: Option<PathBuf>) -> ProviderConfig {
    ProviderConfig::Smtp(SmtpConfig {
        name: name.into(),
        host: host.into(),
        port: Some(port),
        security,
        username: None,
        password: None,
        ca_file,
        timeout_ms: 5000,
        max_connections: 2,
        max_recipients_per_call: 100,
        weight: 1,
        limits: Default::default(),
    })
}

/// The messages in the maildir's `new/` folder.
fn delivered(maildir: &Path) -> Vec<String> {
    std::fs::read_dir(maildir.join("new"))
        .map(|entries| entries.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_message_arrives_whole_at_a_real_smtp_server() {
    let relay = relay("plain", &[]);
    let cluster = Cluster::start(vec![smtp("relay", "127.0.0.1", relay.port, SmtpSecurity::None, None)], false).await;
    let mut mta = cluster.mta_client().await;
    let request = pb::SubmitRequest {
        from: "Ada Lovelace <ada@bitmail.test>".into(),
        to: vec!["bob@example.net".into()],
        cc: vec!["carol@example.net".into()],
        bcc: vec!["hidden@example.net".into()],
        subject: "Engine notes".into(),
        text: "See the notes.".into(),
        html: "<p>See the <b>notes</b>.</p>".into(),
        headers: vec![pb::Header { name: "X-Project".into(), value: "analytical".into() }],
        attachments: vec![pb::Attachment {
            filename: "notes.csv".into(),
            content_type: "text/csv".into(),
            content: b"engine,cards\nanalytical,1\n".to_vec(),
            content_id: String::new(),
        }],
        ..Default::default()
    };
    let id = mta.submit(request).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(15)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");
    assert_eq!(status.provider, "relay");

    let mail = delivered(&relay.maildir);
    assert_eq!(mail.len(), 1);
    let m = &mail[0];
    for needle in [
        "From: \"Ada Lovelace\" <ada@bitmail.test>",
        "To: bob@example.net",
        "Cc: carol@example.net",
        "Subject: Engine notes",
        &format!("Message-ID: <{id}@bitmail>"),
        "X-Project: analytical",
        "Content-Type: multipart/mixed",
        "Content-Type: multipart/alternative",
        "Content-Disposition: attachment; filename=\"notes.csv\"",
        "engine,cards",
        "See the notes.",
        "<p>See the <b>notes</b>.</p>",
    ] {
        assert!(m.contains(needle), "missing {needle:?} in:\n{m}");
    }
    // aiosmtpd records the envelope: Bcc is a recipient there and nowhere in the headers.
    assert!(m.contains("X-RcptTo: bob@example.net, carol@example.net, hidden@example.net"), "{m}");
    assert!(!m.contains("Bcc:"), "{m}");
}

#[tokio::test]
async fn starttls_with_the_relays_own_ca() {
    let dir = std::env::temp_dir().join(format!("bitmail-smtp-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();

    let relay = relay("tls", &["--tlscert", cert.to_str().unwrap(), "--tlskey", key.to_str().unwrap()]);
    let cluster =
        Cluster::start(vec![smtp("relay", "localhost", relay.port, SmtpSecurity::Starttls, Some(cert.clone()))], false)
            .await;
    let mut mta = cluster.mta_client().await;
    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(15)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");
    assert_eq!(delivered(&relay.maildir).len(), 1);

    // Without the CA the handshake fails: the relay is refused, nothing is sent.
    let cluster =
        Cluster::start(vec![smtp("relay", "localhost", relay.port, SmtpSecurity::Starttls, None)], false).await;
    let mut mta = cluster.mta_client().await;
    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = mta.get_message(pb::GetMessageRequest { message_id: id }).await.unwrap().into_inner();
    assert_ne!(status.state(), pb::DeliveryState::Sent, "{status:?}");
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::ProviderRefused, "{status:?}");
    assert_eq!(delivered(&relay.maildir).len(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_message_over_the_relays_size_limit_goes_to_a_provider_it_fits() {
    let relay = relay("size", &["-s", "4000"]);
    let sg = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start_with(
        vec![
            smtp("relay", "127.0.0.1", relay.port, SmtpSecurity::None, None),
            sendgrid("sendgrid", &sg, Duration::from_secs(5)),
        ],
        false,
        |c| c.scheduler = SchedulerKind::Priority,
    )
    .await;
    let mut mta = cluster.mta_client().await;

    let small = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    assert_eq!(settled(&mut mta, &small, Duration::from_secs(15)).await.provider, "relay");

    let big = pb::SubmitRequest { text: "x".repeat(20_000), ..submission("bob@example.net") };
    let big = mta.submit(big).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &big, Duration::from_secs(15)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");
    assert_eq!(status.provider, "sendgrid");
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::ProviderRefused);
    assert!(status.attempts[0].detail.contains("552"), "{:?}", status.attempts[0]);

    // The relay is still healthy: the next small message goes to it.
    let next = mta.submit(submission("dan@example.net")).await.unwrap().into_inner().message_id;
    assert_eq!(settled(&mut mta, &next, Duration::from_secs(15)).await.provider, "relay");
}

#[tokio::test]
async fn more_recipients_than_one_transaction_takes_go_in_several_with_whole_headers() {
    let relay = relay("batches", &[]);
    let mut provider = smtp("relay", "127.0.0.1", relay.port, SmtpSecurity::None, None);
    if let ProviderConfig::Smtp(c) = &mut provider {
        c.max_recipients_per_call = 2;
    }
    let cluster = Cluster::start(vec![provider], false).await;
    let mut mta = cluster.mta_client().await;
    let request = pb::SubmitRequest {
        to: vec!["a@example.net".into(), "b@example.net".into(), "c@example.net".into()],
        cc: vec!["d@example.net".into(), "A@example.net".into()],
        bcc: vec!["e@example.net".into()],
        ..submission("x@example.net")
    };
    let id = mta.submit(request).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(15)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");
    assert_eq!(status.attempts.len(), 1);

    // Five distinct recipients (A@ is a@ again), two per transaction: three copies,
    // each with the whole header and its own envelope, together reaching each once.
    let mail = delivered(&relay.maildir);
    assert_eq!(mail.len(), 3, "{mail:#?}");
    let mut envelopes: Vec<String> = mail
        .iter()
        .map(|m| {
            assert!(m.contains("To: a@example.net, b@example.net, c@example.net"), "{m}");
            assert!(!m.contains("Bcc:"), "{m}");
            m.lines().find_map(|l| l.strip_prefix("X-RcptTo: ")).unwrap().to_owned()
        })
        .collect();
    envelopes.sort();
    assert_eq!(envelopes, ["a@example.net, b@example.net", "c@example.net, d@example.net", "e@example.net"]);
}

#[tokio::test]
async fn a_failure_part_way_never_resends_to_those_already_reached() {
    let relay = relay_with("partial", Some((FAIL_SECOND, "FailSecond")), &[]);
    let sg = FakeSendGrid::start(common::KEY).await.unwrap();
    let mut provider = smtp("relay", "127.0.0.1", relay.port, SmtpSecurity::None, None);
    if let ProviderConfig::Smtp(c) = &mut provider {
        c.max_recipients_per_call = 2;
    }
    let providers = vec![provider, sendgrid("sendgrid", &sg, Duration::from_secs(5))];
    let cluster = Cluster::start_with(providers, false, |c| c.scheduler = SchedulerKind::Priority).await;
    let mut mta = cluster.mta_client().await;
    let request = pb::SubmitRequest {
        to: vec!["a@example.net".into(), "b@example.net".into(), "c@example.net".into()],
        bcc: vec!["d@example.net".into()],
        ..submission("x@example.net")
    };
    let id = mta.submit(request).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(15)).await;
    assert_eq!((status.state(), status.provider.as_str()), (pb::DeliveryState::Sent, "sendgrid"), "{status:?}");
    assert!(!status.possible_duplicate);
    let first = &status.attempts[0];
    assert_eq!((first.provider.as_str(), first.outcome()), ("relay", pb::AttemptOutcome::Transient));
    assert!(first.detail.starts_with("accepted for 2 recipients, then: "), "{}", first.detail);
    assert!(!first.provider_message_id.is_empty());

    // The relay took a and b; SendGrid got only c and d.
    let mail = delivered(&relay.maildir);
    assert_eq!(mail.len(), 1);
    assert!(mail[0].contains("X-RcptTo: a@example.net, b@example.net"), "{}", mail[0]);
    let body = &sg.received()[0].body;
    let emails = |key: &str| -> Vec<String> {
        body["personalizations"][0][key]
            .as_array()
            .map(|l| l.iter().map(|a| a["email"].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    assert_eq!((emails("to"), emails("bcc")), (vec!["c@example.net".to_owned()], vec!["d@example.net".to_owned()]));
}

#[tokio::test]
async fn after_a_failure_part_way_mailgun_gets_the_whole_header_and_only_the_rest_in_the_envelope() {
    let relay = relay_with("partial-mg", Some((FAIL_SECOND, "FailSecond")), &[]);
    let mg = FakeMailgun::start(common::KEY).await.unwrap();
    let mut provider = smtp("relay", "127.0.0.1", relay.port, SmtpSecurity::None, None);
    if let ProviderConfig::Smtp(c) = &mut provider {
        c.max_recipients_per_call = 2;
    }
    let providers = vec![provider, mailgun("mailgun", &mg, Duration::from_secs(5))];
    let cluster = Cluster::start_with(providers, false, |c| c.scheduler = SchedulerKind::Priority).await;
    let mut mta = cluster.mta_client().await;
    let request = pb::SubmitRequest {
        to: vec!["a@example.net".into(), "b@example.net".into(), "c@example.net".into()],
        ..submission("x@example.net")
    };
    let id = mta.submit(request).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(15)).await;
    assert_eq!((status.state(), status.provider.as_str()), (pb::DeliveryState::Sent, "mailgun"), "{status:?}");

    let got = mg.received();
    let mime = got[0].mime().expect("sent to messages.mime");
    assert!(mime.contains("To: a@example.net, b@example.net, c@example.net"), "{mime}");
    assert_eq!(got[0].all("to"), ["c@example.net"]);
    assert_eq!(got[0].field("v:bitmail_id"), Some(id.as_str()));
}
