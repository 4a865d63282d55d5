//! SMTP submission with real clients: Python's `smtplib` (STARTTLS with AUTH PLAIN on
//! the submission port, AUTH LOGIN on port 465), Django 5.2's SMTP backend, `swaks` and
//! `msmtp`, each verifying the server against a throwaway CA; each message then reaches
//! the fake SendGrid with its bodies, attachments, headers and recipients intact, and
//! Bcc only in the envelope. Then bad input, over a raw socket: each answered with the
//! right code, and nothing stored that should not be.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bitmail_tests::ca::{self, CaFiles};
use bitmail_tests::mailgun::FakeMailgun;
use bitmail_tests::sendgrid::{FakeSendGrid, Received};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::common::{self, Cluster, sendgrid};

struct Smtp {
    cluster: Cluster,
    fake: FakeSendGrid,
    /// The only provider instead of `fake`, when started with [`start_mailgun`].
    mailgun: Option<FakeMailgun>,
    /// A `send` key of tenant `default`.
    key: String,
    ca: CaFiles,
    dir: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Smtp {
    fn port(&self) -> u16 {
        self.cluster.smtp.submission.expect("submission listener").port()
    }

    fn port_465(&self) -> u16 {
        self.cluster.smtp.submissions.expect("submissions listener").port()
    }

    fn local(&self) -> SocketAddr {
        self.cluster.smtp.local.expect("local listener")
    }

    /// What the provider received, `n` messages, within 10 s.
    async fn delivered(&self, n: usize) -> Vec<Received> {
        let got = self.fake.wait_for(n, Duration::from_secs(10)).await;
        assert_eq!(got.len(), n, "messages delivered: {got:#?}");
        got
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The three listeners on loopback, a certificate from a throwaway CA, and `tune`; the
/// fake SendGrid as the provider.
async fn start(tune: impl FnOnce(&mut mta_server::config::SmtpListenConfig)) -> Smtp {
    start_with(None, tune).await
}

/// As [`start`], with the fake Mailgun as the only provider (it takes MIME whole).
async fn start_mailgun() -> Smtp {
    start_with(Some(FakeMailgun::start(common::KEY).await.unwrap()), |_| {}).await
}

async fn start_with(
    mailgun: Option<FakeMailgun>,
    tune: impl FnOnce(&mut mta_server::config::SmtpListenConfig),
) -> Smtp {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let provider = match &mailgun {
        Some(mg) => common::mailgun("mg", mg, Duration::from_secs(5)),
        None => sendgrid("sg", &fake, Duration::from_secs(5)),
    };
    let dir = std::env::temp_dir().join(format!("bitmail-smtp-{}", common::uuid_like()));
    let ca = ca::write(&dir).unwrap();
    let (cert, key) = (ca.cert.clone(), ca.key.clone());
    let cluster = Cluster::start_with(vec![provider], false, move |c| {
        c.smtp.submission = Some(loopback());
        c.smtp.submissions = Some(loopback());
        c.smtp.local = Some(mta_server::config::LocalSubmission { listen: loopback(), tenant: "default".into() });
        c.smtp.cert_file = Some(cert);
        c.smtp.key_file = Some(key);
        c.smtp.auth_failure_delay_ms = 20;
        tune(&mut c.smtp);
    })
    .await;
    let key = common::create_key(&cluster.mta_config, "send", "smtp-clients").await;
    Smtp { cluster, fake, mailgun, key, ca, dir }
}

/// Runs a program to its end (at most 60 s), answering its stdout; panics with its
/// output when it fails.
async fn run(program: &str, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> String {
    let mut command = tokio::process::Command::new(program);
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap_or_else(|e| panic!("{program}: {e} (cargo xtask test installs it)"));
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).await.unwrap();
    }
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} did not finish within 60 s"))
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{program} failed ({}):\n{stdout}\n{stderr}", output.status);
    stdout.into_owned()
}

/// The body a provider got, as text (for "contains" checks of the parts).
fn text(r: &Received) -> String {
    r.body.to_string()
}

fn emails(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|m| m["email"].as_str().map(String::from)).collect()).unwrap_or_default()
}

const SMTPLIB: &str = r#"
import os, smtplib, ssl
from email.message import EmailMessage
ctx = ssl.create_default_context(cafile=os.environ["CA"])
key = os.environ["KEY"]
msg = EmailMessage()
msg["From"] = "Ada <ada@bitmail.test>"
msg["To"] = "Bob <bob@example.net>"
msg["Subject"] = "Monthly report"
msg["X-Report-Id"] = "r-42"
msg.set_content("the text body")
msg.add_alternative("<p>the <b>html</b> body</p>", subtype="html")
msg.add_attachment(b"%PDF-1.4 report", maintype="application", subtype="pdf", filename="report.pdf")
with smtplib.SMTP("localhost", int(os.environ["PORT"]), timeout=20) as s:
    s.starttls(context=ctx)
    s.login("apikey", key)
    print("plain", s.send_message(msg, to_addrs=["bob@example.net", "hidden@example.net"]))
with smtplib.SMTP_SSL("localhost", int(os.environ["PORT465"]), context=ctx, timeout=20) as s:
    s.user, s.password = "default", key
    code, _ = s.auth("LOGIN", s.auth_login)
    m = EmailMessage()
    m["From"] = "ada@bitmail.test"
    m["To"] = "carol@example.net"
    m["Subject"] = "Second"
    m.set_content("over 465")
    print("login", code, s.send_message(m))
"#;

#[tokio::test]
async fn python_smtplib_sends_over_starttls_with_plain_and_over_465_with_login() {
    let smtp = start(|_| {}).await;
    let (port, port465) = (smtp.port().to_string(), smtp.port_465().to_string());
    let ca = smtp.ca.ca.to_string_lossy().into_owned();
    let out = run(
        "python3",
        &["-c", SMTPLIB],
        &[("CA", &ca), ("KEY", &smtp.key), ("PORT", &port), ("PORT465", &port465)],
        None,
    )
    .await;
    assert!(out.contains("plain {}") && out.contains("login 235 {}"), "{out}");

    let got = smtp.delivered(2).await;
    let report = got.iter().find(|r| r.body["subject"] == "Monthly report").expect("the report");
    let p = &report.body["personalizations"][0];
    assert_eq!(emails(&p["to"]), vec!["bob@example.net"]);
    assert_eq!(emails(&p["bcc"]), vec!["hidden@example.net"], "the envelope's extra recipient is a Bcc");
    assert_eq!(report.body["from"]["email"], "ada@bitmail.test");
    assert_eq!(report.body["headers"]["X-Report-Id"], "r-42");
    let content = &report.body["content"];
    assert!(content[0]["value"].as_str().unwrap().contains("the text body"), "{content}");
    assert!(content[1]["value"].as_str().unwrap().contains("<b>html</b>"), "{content}");
    let attachment = &report.body["attachments"][0];
    assert_eq!(
        (attachment["filename"].as_str(), attachment["type"].as_str()),
        (Some("report.pdf"), Some("application/pdf"))
    );
    assert_eq!(attachment["content"], "JVBERi0xLjQgcmVwb3J0", "base64 of the file as sent");
    assert!(!text(report).contains("Bcc"), "no Bcc header anywhere");
    let second = got.iter().find(|r| r.body["subject"] == "Second").expect("the second message");
    assert_eq!(emails(&second.body["personalizations"][0]["to"]), vec!["carol@example.net"]);
}

const DJANGO: &str = r#"
import os
from django.conf import settings
settings.configure(
    EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
    EMAIL_HOST="localhost",
    EMAIL_PORT=int(os.environ["PORT"]),
    EMAIL_USE_TLS=True,
    EMAIL_HOST_USER="default",
    EMAIL_HOST_PASSWORD=os.environ["KEY"],
    EMAIL_TIMEOUT=20,
    DEFAULT_FROM_EMAIL="Health platform <noreply@bitmail.test>",
)
import django
django.setup()
from django.core.mail import EmailMultiAlternatives
m = EmailMultiAlternatives("Reset your password", "Follow the link", None, ["dana@example.net"],
                           bcc=["audit@example.net"], headers={"X-Django": "5.2"})
m.attach_alternative("<a href='https://example.net/reset'>reset</a>", "text/html")
m.attach("export.csv", "a,b\n1,2\n", "text/csv")
print("sent", m.send())
"#;

#[tokio::test]
async fn django_send_mail_over_starttls_verifying_the_certificate() {
    let smtp = start(|_| {}).await;
    let port = smtp.port().to_string();
    let ca = smtp.ca.ca.to_string_lossy().into_owned();
    let out =
        run("python3", &["-c", DJANGO], &[("SSL_CERT_FILE", &ca), ("KEY", &smtp.key), ("PORT", &port)], None).await;
    assert!(out.contains("sent 1"), "{out}");

    let got = smtp.delivered(1).await;
    let body = &got[0].body;
    assert_eq!(body["subject"], "Reset your password");
    assert_eq!(body["from"], serde_json::json!({"email": "noreply@bitmail.test", "name": "Health platform"}));
    assert_eq!(emails(&body["personalizations"][0]["to"]), vec!["dana@example.net"]);
    assert_eq!(emails(&body["personalizations"][0]["bcc"]), vec!["audit@example.net"]);
    assert_eq!(body["headers"]["X-Django"], "5.2");
    assert!(body["content"][1]["value"].as_str().unwrap().contains("https://example.net/reset"));
    assert_eq!(body["attachments"][0]["filename"], "export.csv");
    // A text part travels with CRLF line ends, as Django wrote it on the wire.
    assert_eq!(body["attachments"][0]["content"], "YSxiDQoxLDINCg==", "the CSV as Django sent it");

    // Without the CA, Django refuses the certificate: nothing is sent.
    let failed = tokio::process::Command::new("python3")
        .args(["-c", DJANGO])
        .env("SSL_CERT_FILE", "/nonexistent")
        .env("KEY", &smtp.key)
        .env("PORT", &port)
        .output()
        .await
        .unwrap();
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("CERTIFICATE_VERIFY_FAILED"));
}

#[tokio::test]
async fn swaks_pipelines_with_auth_login_and_msmtp_sends_with_auth_plain() {
    let smtp = start(|_| {}).await;
    let server = format!("localhost:{}", smtp.port());
    let ca = smtp.ca.ca.to_string_lossy().into_owned();
    #[rustfmt::skip]
    let out = run("swaks", &[
        "--server", &server, "--tls", "--tls-verify", "--tls-ca-path", &ca,
        "--auth", "LOGIN", "--auth-user", "apikey", "--auth-password", &smtp.key,
        "--pipeline", "--from", "ada@bitmail.test", "--to", "erin@example.net,frank@example.net",
        "--header", "Subject: from swaks", "--body", "swaks body",
    ], &[], None).await;
    assert!(out.contains("250 2.0.0 OK: queued as"), "{out}");

    let message = b"From: Ada <ada@bitmail.test>\r\nTo: gina@example.net\r\nSubject: from msmtp\r\n\r\nmsmtp body\r\n";
    let port = smtp.port().to_string();
    let password = format!("--passwordeval=echo {}", smtp.key);
    let trust = format!("--tls-trust-file={ca}");
    #[rustfmt::skip]
    run("msmtp", &[
        "--host=localhost", &format!("--port={port}"), "--tls=on", "--tls-starttls=on", &trust,
        "--auth=plain", "--user=apikey", &password, "--from=ada@bitmail.test", "gina@example.net",
    ], &[], Some(message)).await;

    let got = smtp.delivered(2).await;
    let swaks = got.iter().find(|r| r.body["subject"] == "from swaks").expect("swaks' message");
    let mut to = emails(&swaks.body["personalizations"][0]["to"]);
    to.extend(emails(&swaks.body["personalizations"][0]["bcc"]));
    to.sort();
    assert_eq!(to, vec!["erin@example.net", "frank@example.net"]);
    let msmtp = got.iter().find(|r| r.body["subject"] == "from msmtp").expect("msmtp's message");
    assert!(msmtp.body["content"][0]["value"].as_str().unwrap().contains("msmtp body"));
}

/// A client on a raw socket (the local listener needs neither TLS nor AUTH).
struct Raw {
    stream: BufReader<TcpStream>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> (Raw, String) {
        let mut raw = Raw { stream: BufReader::new(TcpStream::connect(addr).await.unwrap()) };
        let greeting = raw.reply().await;
        (raw, greeting)
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.unwrap();
    }

    /// One whole reply, its lines joined; empty when the server closed.
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read_line(&mut line)).await;
            match read.expect("a reply within 10 s") {
                Ok(0) | Err(_) => return all,
                Ok(_) => {}
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// EHLO, MAIL and RCPT accepted.
    async fn ready(addr: SocketAddr, rcpt: &str) -> Raw {
        let (mut raw, _) = Raw::connect(addr).await;
        assert!(raw.cmd("EHLO client.test").await.starts_with("250"));
        assert!(raw.cmd("MAIL FROM:<ada@bitmail.test>").await.starts_with("250 2.1.0"));
        assert!(raw.cmd(&format!("RCPT TO:<{rcpt}>")).await.starts_with("250 2.1.5"));
        raw
    }

    /// The server closed the connection.
    async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(tokio::time::timeout(Duration::from_secs(5), self.stream.read_to_end(&mut rest)).await, Ok(Ok(0)))
    }
}

#[tokio::test]
async fn commands_out_of_order_and_bad_lines_get_the_rfc_replies() {
    let smtp = start(|c| c.max_bad_commands = 4).await;
    let (mut raw, greeting) = Raw::connect(smtp.local()).await;
    assert!(greeting.starts_with("220 localhost ESMTP"), "{greeting}");
    assert!(raw.cmd("MAIL FROM:<ada@bitmail.test>").await.starts_with("503 5.5.1 send EHLO first"));
    let ehlo = raw.cmd("EHLO client.test").await;
    for ext in ["PIPELINING", "SIZE ", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"] {
        assert!(ehlo.contains(ext), "{ext} in {ehlo}");
    }
    assert!(!ehlo.contains("AUTH"), "no AUTH on the local listener: {ehlo}");
    assert!(raw.cmd("RCPT TO:<bob@example.net>").await.starts_with("503 5.5.1 send MAIL first"));
    assert!(raw.cmd("DATA").await.starts_with("503 5.5.1"));
    assert!(raw.cmd("MAIL FROM:<ada@bitmail.test>").await.starts_with("250"));
    assert!(raw.cmd("DATA").await.starts_with("554 5.5.1 no valid recipients"));
    assert!(raw.cmd(&format!("NOOP {}", "x".repeat(2000))).await.starts_with("500 5.5.2 line too long"));
    // Refused so far: MAIL, RCPT and DATA out of order, the long line; the limit is 4,
    // so the fifth is answered, then 421.
    let closing = raw.cmd("NO\0OP").await;
    assert!(closing.starts_with("500 5.5.2 NUL"), "{closing}");
    assert!(
        closing.contains("\r\n421 4.7.0 too many bad commands")
            || raw.reply().await.starts_with("421 4.7.0 too many bad commands")
    );
    assert!(raw.closed().await);
    assert_eq!(smtp.fake.requests(), 0);
}

#[tokio::test]
async fn auth_before_starttls_a_wrong_key_and_a_revoked_key_are_refused() {
    let smtp = start(|_| {}).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], smtp.port()));
    let (mut raw, _) = Raw::connect(addr).await;
    let ehlo = raw.cmd("EHLO client.test").await;
    assert!(ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "AUTH only after TLS: {ehlo}");
    assert!(raw.cmd("AUTH PLAIN AGFwaWtleQBrZXk=").await.starts_with("538 5.7.11 encryption required"));
    assert!(raw.cmd("MAIL FROM:<ada@bitmail.test>").await.starts_with("530 5.7.0 authentication required"));

    // Over TLS, with Python: a wrong key, then a revoked one; and a command pipelined in
    // plaintext right after STARTTLS never runs.
    let revoked = common::create_key(&smtp.cluster.mta_config, "send", "to-revoke").await;
    revoke(&smtp.cluster, &revoked[..16]).await;
    let port = smtp.port().to_string();
    let ca = smtp.ca.ca.to_string_lossy().into_owned();
    let out = run(
        "python3",
        &["-c", AUTH_REFUSALS],
        &[("CA", &ca), ("PORT", &port), ("GOOD", &smtp.key), ("REVOKED", &revoked)],
        None,
    )
    .await;
    assert!(out.contains("wrong 535 5.7.8 authentication credentials invalid: unknown key"), "{out}");
    assert!(out.contains("revoked 535 5.7.8 authentication credentials invalid: the key is revoked"), "{out}");
    assert!(out.contains("injected 250"), "the EHLO after TLS is answered, the injected MAIL is not: {out}");
    assert!(out.contains("after-tls-mail 503"), "the injected MAIL opened no transaction: {out}");
    assert!(!out.contains(&smtp.key), "no key is echoed");
    assert_eq!(smtp.fake.requests(), 0);
}

/// Revokes the key whose id is `id` (`bmk_` and 12 characters) with the admin key.
async fn revoke(cluster: &Cluster, id: &str) {
    use bitmail_proto::v1 as pb;
    use bitmail_proto::v1::admin_client::AdminClient;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.mta)).unwrap();
    let bearer = bitmail_runtime::grpc::Bearer::new(Some(&cluster.admin_key)).unwrap();
    let mut admin = AdminClient::with_interceptor(endpoint.connect().await.unwrap(), bearer);
    admin.revoke_key(pb::RevokeKeyRequest { id: id.into() }).await.unwrap();
}

const AUTH_REFUSALS: &str = r#"
import base64, os, smtplib, socket, ssl
ctx = ssl.create_default_context(cafile=os.environ["CA"])
port = int(os.environ["PORT"])
def attempt(name, key):
    with smtplib.SMTP("localhost", port, timeout=20) as s:
        s.starttls(context=ctx)
        try:
            s.login("apikey", key)
            print(name, "accepted")
        except smtplib.SMTPAuthenticationError as e:
            print(name, e.smtp_code, e.smtp_error.decode())
attempt("wrong", "bmk_aaaaaaaaaaaa_" + "b" * 43)
attempt("revoked", os.environ["REVOKED"])
# STARTTLS and a MAIL in one plaintext write: the MAIL must be dropped unread.
raw = socket.create_connection(("localhost", port), timeout=20)
f = raw.makefile("rb")
def reply(f):
    lines = []
    while True:
        line = f.readline().decode()
        lines.append(line)
        if line[3:4] != "-":
            return "".join(lines)
reply(f)
raw.sendall(b"EHLO c\r\n"); reply(f)
raw.sendall(b"STARTTLS\r\nMAIL FROM:<ada@bitmail.test>\r\n")
assert reply(f).startswith("220"), "STARTTLS"
tls = ctx.wrap_socket(raw, server_hostname="localhost")
g = tls.makefile("rb")
tls.sendall(b"EHLO c\r\n")
print("injected", reply(g)[:3])
tls.sendall(b"RCPT TO:<bob@example.net>\r\n")
print("after-tls-mail", reply(g)[:3])
"#;

#[tokio::test]
async fn bad_message_bytes_are_refused_and_nothing_is_stored() {
    let smtp = start(|_| {}).await;
    let addr = smtp.local();
    let cases: [(&[u8], &str); 4] = [
        (b"Subject: a\r\n\r\nbo\0dy\r\n.\r\n", "554 5.6.0 the message holds a NUL byte"),
        (b"Subject: a\r\n\r\nline one\nline two\r\n.\r\n", "554 5.6.0 the message holds a bare LF"),
        ("Subject: caf\u{e9}\r\n\r\nbody\r\n.\r\n".as_bytes(), "554 5.6.7 the header holds 8-bit characters"),
        (
            format!("Subject: a\r\n\r\n{}\r\n.\r\n", "x".repeat(2000)).leak().as_bytes(),
            "554 5.6.0 a line of the message is over 1000 bytes",
        ),
    ];
    for (body, expected) in cases {
        let mut raw = Raw::ready(addr, "bob@example.net").await;
        assert!(raw.cmd("DATA").await.starts_with("354"));
        raw.send(body).await;
        let reply = raw.reply().await;
        assert!(reply.starts_with(expected), "{expected:?}, got {reply:?}");
        // The session goes on: a good message after a refused one is taken.
        assert!(raw.cmd("MAIL FROM:<ada@bitmail.test>").await.starts_with("250"));
    }
    // A header From outside the tenant's domains, with a good envelope sender.
    let mut raw = Raw::ready(addr, "bob@example.net").await;
    raw.cmd("DATA").await;
    raw.send(b"From: mallory@elsewhere.test\r\nSubject: a\r\n\r\nbody\r\n.\r\n").await;
    assert!(raw.reply().await.starts_with("550 5.7.1 from: mallory@elsewhere.test is not a sending domain"));
    let (mut raw, _) = Raw::connect(addr).await;
    raw.cmd("EHLO c").await;
    assert!(raw.cmd("MAIL FROM:<mallory@elsewhere.test>").await.starts_with("550 5.7.1"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.fake.requests(), 0, "nothing was sent");
}

#[tokio::test]
async fn size_is_enforced_announced_or_not() {
    let smtp = start(|_| {}).await;
    let (mut raw, _) = Raw::connect(smtp.local()).await;
    let ehlo = raw.cmd("EHLO c").await;
    let size: usize = ehlo.lines().find_map(|l| l.strip_prefix("250-SIZE ")).unwrap().trim().parse().unwrap();
    let announced = raw.cmd(&format!("MAIL FROM:<ada@bitmail.test> size={}", size + 1)).await;
    assert!(announced.starts_with("552 5.3.4 message too big"), "{announced}");

    let mut raw = Raw::ready(smtp.local(), "bob@example.net").await;
    assert!(raw.cmd("DATA").await.starts_with("354"));
    raw.send(b"Subject: big\r\n\r\n").await;
    let line = format!("{}\r\n", "y".repeat(998));
    let mut sent = 0;
    while sent <= size {
        raw.send(line.repeat(64).as_bytes()).await;
        sent += line.len() * 64;
    }
    raw.send(b".\r\n").await;
    let reply = raw.reply().await;
    assert!(reply.starts_with("552 5.3.4 message too big"), "{reply}");
    assert!(raw.cmd("NOOP").await.starts_with("250"), "the rest was read, the session goes on");
    assert_eq!(smtp.fake.requests(), 0);
}

#[tokio::test]
async fn a_client_that_stops_mid_data_stores_nothing_and_a_slow_one_is_timed_out() {
    let smtp = start(|c| c.command_timeout_secs = 1).await;
    let mut raw = Raw::ready(smtp.local(), "bob@example.net").await;
    raw.cmd("DATA").await;
    raw.send(b"Subject: cut\r\n\r\nhalf a mess").await;
    drop(raw);

    let (mut slow, _) = Raw::connect(smtp.local()).await;
    slow.cmd("EHLO c").await;
    let started = std::time::Instant::now();
    let reply = slow.reply().await;
    assert!(reply.starts_with("421 4.4.2 localhost timeout"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(slow.closed().await);
    assert_eq!(smtp.fake.requests(), 0, "the cut message was not stored");
}

#[tokio::test]
async fn recipients_are_capped_suppressed_ones_refused_and_the_rest_delivered() {
    let smtp = start(|_| {}).await;
    // Suppress one address through the admin API, as an operator would.
    let mut mta = smtp.cluster.mta_client().await;
    mta.add_suppression(bitmail_proto::v1::Suppression {
        address: "gone@example.net".into(),
        reason: "asked to stop".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let (mut raw, _) = Raw::connect(smtp.local()).await;
    raw.cmd("EHLO c").await;
    raw.cmd("MAIL FROM:<ada@bitmail.test>").await;
    let refused = raw.cmd("RCPT TO:<gone@example.net>").await;
    assert!(refused.starts_with("550 5.7.1 <gone@example.net> is suppressed"), "{refused}");
    // 10,000 recipients pipelined in one write: the first 100 (tenant default's quota)
    // are taken, each after that is answered 452 4.5.3.
    let mut batch = String::new();
    for i in 0..10_000 {
        batch.push_str(&format!("RCPT TO:<r{i}@example.net>\r\n"));
    }
    raw.send(batch.as_bytes()).await;
    let mut ok = 0;
    let mut over = 0;
    for _ in 0..10_000 {
        let reply = raw.reply().await;
        if reply.starts_with("250 2.1.5") {
            ok += 1;
        } else if reply.starts_with("452 4.5.3 too many recipients") {
            over += 1;
        } else {
            panic!("unexpected reply {reply:?}");
        }
    }
    assert_eq!((ok, over), (100, 9_900));
    assert!(raw.cmd("DATA").await.starts_with("354"));
    raw.send(b"From: ada@bitmail.test\r\nTo: r0@example.net\r\nSubject: many\r\n\r\nhello\r\n.\r\n").await;
    let stored = raw.reply().await;
    assert!(stored.starts_with("250 2.0.0 OK: queued as "), "{stored}");
    let got = smtp.delivered(1).await;
    let p = &got[0].body["personalizations"][0];
    assert_eq!(emails(&p["to"]).len() + emails(&p["bcc"]).len(), 100);
    assert!(!text(&got[0]).contains("gone@example.net"));
}

#[tokio::test]
async fn a_provider_that_takes_mime_gets_the_clients_own_bytes_without_bcc() {
    let smtp = start_mailgun().await;
    let mut raw = Raw::ready(smtp.local(), "bob@example.net").await;
    assert!(raw.cmd("RCPT TO:<hidden@example.net>").await.starts_with("250"));
    assert!(raw.cmd("DATA").await.starts_with("354"));
    // Dot-stuffed line, a folded Bcc, a To the envelope does not name, the client's id.
    raw.send(
        b"From: Ada <ada@bitmail.test>\r\nTo: bob@example.net, list@example.net\r\n\
          Bcc: hidden@example.net,\r\n  other@example.net\r\nSubject: as sent\r\n\
          Message-ID: <client-1@app.example.org>\r\nX-Custom: kept\r\n\r\nfirst line\r\n..dot line\r\n.\r\n",
    )
    .await;
    let stored = raw.reply().await;
    assert!(stored.starts_with("250 2.0.0 OK: queued as "), "{stored}");
    let id = stored.trim_end().rsplit(' ').next().unwrap().to_owned();

    let mailgun = smtp.mailgun.as_ref().unwrap();
    let got = mailgun.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    let mime = got[0].mime().expect("sent to messages.mime").into_owned();
    assert!(mime.starts_with(&format!("X-BitMail-Id: {id}\r\nDate: ")), "{mime}");
    assert!(
        mime.contains(
            "\r\nFrom: Ada <ada@bitmail.test>\r\nTo: bob@example.net, list@example.net\r\nSubject: as sent\r\n"
        )
    );
    assert!(
        mime.contains("Message-ID: <client-1@app.example.org>\r\nX-Custom: kept\r\n\r\nfirst line\r\n.dot line\r\n")
    );
    assert!(!mime.contains("Bcc") && !mime.contains("hidden@") && !mime.contains("other@"), "{mime}");
    let mut to: Vec<&str> = got[0].fields.iter().filter(|(k, _)| k == "to").map(|(_, v)| v.as_str()).collect();
    to.sort();
    assert_eq!(to, vec!["bob@example.net", "hidden@example.net"], "the envelope decides who receives");
}

const AUTH_LIMIT: &str = r#"
import base64, os, smtplib, ssl
ctx = ssl.create_default_context(cafile=os.environ["CA"])
# One AUTH PLAIN per connection (smtplib's login() would go on to LOGIN after a 535).
for attempt, key in enumerate(os.environ["KEYS"].split(",")):
    s = smtplib.SMTP("localhost", int(os.environ["PORT"]), timeout=20)
    s.starttls(context=ctx)
    s.ehlo()
    code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0apikey\0" + key.encode()).decode())
    print(attempt, code, text.decode())
    s.close()
"#;

#[tokio::test]
async fn failed_auth_is_limited_per_address_connections_are_capped_and_metrics_count_it() {
    let smtp = start(|c| {
        c.max_auth_failures = 2;
        c.max_connections_per_client = 2;
    })
    .await;
    let read_only = common::create_key(&smtp.cluster.mta_config, "read", "reader").await;
    let wrong = format!("bmk_aaaaaaaaaaaa_{}", "c".repeat(43));
    let keys = format!("{read_only},{wrong},{}", smtp.key);
    let port = smtp.port().to_string();
    let ca = smtp.ca.ca.to_string_lossy().into_owned();
    let out = run("python3", &["-c", AUTH_LIMIT], &[("CA", &ca), ("PORT", &port), ("KEYS", &keys)], None).await;
    assert!(out.contains("0 535 5.7.8 authentication credentials invalid: the key lacks the send scope"), "{out}");
    assert!(out.contains("1 535 5.7.8 authentication credentials invalid: unknown key"), "{out}");
    // Past two failures even the right key is turned away, with the reason.
    assert!(out.contains("2 421 4.7.0 too many failed AUTH attempts from your address"), "{out}");

    // Two sessions from one address are allowed; the third is turned away at once.
    let (_a, _) = Raw::connect(smtp.local()).await;
    let (_b, _) = Raw::connect(smtp.local()).await;
    let (mut c, greeting) = Raw::connect(smtp.local()).await;
    assert!(greeting.starts_with("421 4.7.0 localhost too many connections from your address"), "{greeting}");
    assert!(c.closed().await);

    let metrics = reqwest::get(format!("http://{}/metrics", smtp.cluster.mta)).await.unwrap().text().await.unwrap();
    for series in [
        "bitmail_smtp_sessions_total{listener=\"submission\"} 3",
        "bitmail_smtp_refusals_total{code=\"535\"} 2",
        "bitmail_smtp_refusals_total{code=\"421\"} 2",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    assert_eq!(smtp.fake.requests(), 0);
}
