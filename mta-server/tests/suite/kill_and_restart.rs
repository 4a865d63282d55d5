//! The durability promise, tested on the real binary: kill -9 mta-server in the middle
//! of a burst of submissions, start it again on the same spool, and every acknowledged
//! message is delivered; none is delivered twice unless it is flagged as a possible
//! duplicate. The same over SMTP submission: every message answered `250` is
//! delivered after the restart. Also: a restart resumes deferred mail, and a corrupt
//! spool is refused.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::mta_client::MtaClient;
use bitmail_runtime::grpc::WithKey;
use bitmail_tests::sendgrid::{Behavior, FakeSendGrid};
use tokio::sync::Mutex;

const KEY: &str = "SG.kill-test";

type Mta = MtaClient<WithKey>;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bitmail-kill-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running mta-server, killed when dropped so that a failing test leaves no process
/// behind holding its output open.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts mta-server on an ephemeral port with its spool and tenants file in `dir`;
/// answers the child, the address it listens on (read from its log) and a `send,read`
/// key (made with `mta-server create-key` before the first start; the same after a
/// restart, the tenants file being kept).
fn start(dir: &Path, fake: &FakeSendGrid) -> (Running, SocketAddr, String) {
    let (child, addr, key, _) = start_with(dir, fake, "");
    (child, addr, key)
}

/// [`start`] with `extra` config sections (before the providers); also answers the
/// address of the SMTP listener when `extra` configures one.
fn start_with(dir: &Path, fake: &FakeSendGrid, extra: &str) -> (Running, SocketAddr, String, Option<SocketAddr>) {
    let config = dir.join("mta.toml");
    // The burst is far beyond the default tenant's default rate (50/s): raised for it.
    let tenants = bitmail_tests::api_key::tenants_section(
        dir,
        &["bitmail.test"],
        "[tenants.default_quotas]\nper_second = 100000.0\nburst = 100000\n",
    );
    let text = format!(
        "listen = \"127.0.0.1:0\"\nshutdown_grace_secs = 1\n[spool]\npath = {:?}\ncache_bytes = 4194304\n[retry]\ninitial_secs = 1\nmax_delay_secs = 2\n{tenants}{extra}[[providers]]\nname = \"sg\"\nkind = \"sendgrid\"\nbase_url = \"{}\"\napi_key = \"{KEY}\"\ntimeout_ms = 2000\n",
        dir.join("spool.redb").display().to_string(),
        fake.base_url()
    );
    std::fs::write(&config, text).unwrap();
    let key_file = dir.join("api-key");
    let api_key = match std::fs::read_to_string(&key_file) {
        Ok(key) => key,
        Err(_) => {
            let key = bitmail_tests::api_key::create_key(
                Path::new(env!("CARGO_BIN_EXE_mta-server")),
                &config,
                "send,read",
                "kill-test",
            );
            std::fs::write(&key_file, &key).unwrap();
            key
        }
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_mta-server"))
        .arg("--config")
        .arg(&config)
        .env("BITMAIL_MTA_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (smtp_tx, smtp_rx) = std::sync::mpsc::channel();
    // The log is kept beside the spool, to read when a test fails.
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("mta.log")).unwrap();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut sent = false;
        let addr_in = |line: &str| {
            let at = line.find("addr=")?;
            Some(line[at + 5..].chars().take_while(|c| !c.is_whitespace()).collect::<String>())
        };
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            if line.contains("SMTP listening")
                && let Some(addr) = addr_in(&line)
            {
                let _ = smtp_tx.send(addr);
                continue;
            }
            if !sent && let Some(at) = line.find("addr=") {
                let addr: String = line[at + 5..].chars().take_while(|c| !c.is_whitespace()).collect();
                let _ = tx.send(addr);
                sent = true;
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("mta-server announces its address");
    let smtp = (!extra.is_empty()).then(|| {
        let addr = smtp_rx.recv_timeout(Duration::from_secs(30)).expect("mta-server announces its SMTP listener");
        addr.parse().unwrap()
    });
    (Running(child), addr.parse().unwrap(), api_key, smtp)
}

async fn client(addr: SocketAddr, key: &str) -> Mta {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await {
            Ok(channel) => return bitmail_tests::api_key::client(channel, key),
            Err(e) if Instant::now() > deadline => panic!("cannot connect: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn submission(i: usize) -> pb::SubmitRequest {
    pb::SubmitRequest {
        from: "ada@bitmail.test".into(),
        to: vec![format!("r{i}@example.net")],
        subject: format!("burst {i}"),
        text: "x".repeat(2048),
        ..Default::default()
    }
}

async fn wait_all_settled(mta: &mut Mta, ids: &[String]) -> HashMap<String, pb::MessageStatus> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done = HashMap::new();
    while done.len() < ids.len() && Instant::now() < deadline {
        let pending: Vec<&String> = ids.iter().filter(|id| !done.contains_key(*id)).collect();
        for id in pending {
            let s = mta.get_message(pb::GetMessageRequest { message_id: id.clone() }).await.unwrap().into_inner();
            if matches!(s.state(), pb::DeliveryState::Sent | pb::DeliveryState::Failed) {
                done.insert(id.clone(), s);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_loses_nothing_and_duplicates_only_what_it_flags() {
    let dir = temp_dir("burst");
    let fake = FakeSendGrid::start(KEY).await.unwrap();
    // Slow enough that some messages are mid-send when the process dies.
    fake.set_behavior(Behavior::Delay(Duration::from_millis(30)));
    let (mut child, addr, api_key) = start(&dir, &fake);
    let mta = client(addr, &api_key).await;

    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let mut mta = mta.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..100 {
                match mta.submit(submission(worker * 1000 + i)).await {
                    Ok(r) => acked.lock().await.push(r.into_inner().message_id),
                    Err(_) => return, // the server died: this one was not acknowledged
                }
            }
        }));
    }
    // Let part of the burst in, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().await.len() < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().await.clone();
    assert!(acked.len() >= 300, "only {} acknowledged before the kill", acked.len());
    let before_restart = fake.received().len();
    assert!(before_restart < acked.len(), "the kill came before everything was delivered");

    fake.set_behavior(Behavior::Accept);
    let (child, addr, api_key) = start(&dir, &fake);
    let mut mta = client(addr, &api_key).await;
    let statuses = wait_all_settled(&mut mta, &acked).await;
    assert_eq!(statuses.len(), acked.len(), "every acknowledged message reached a final state");

    let mut times_received: HashMap<String, usize> = HashMap::new();
    for r in fake.received() {
        let id = r.body["custom_args"]["bitmail_id"].as_str().unwrap().to_owned();
        *times_received.entry(id).or_default() += 1;
    }
    let acked_set: HashSet<&String> = acked.iter().collect();
    for id in &acked {
        let s = &statuses[id];
        assert_eq!(s.state(), pb::DeliveryState::Sent, "{id}: {s:?}");
        let n = times_received.get(id).copied().unwrap_or(0);
        assert!(n >= 1, "acknowledged message {id} was never delivered");
        if n > 1 {
            assert!(s.possible_duplicate, "{id} was delivered {n} times without being flagged");
        }
    }
    // A submission can be on disk when the process dies before its answer leaves:
    // the caller saw an error, and the message is still delivered (at least once).
    let unacknowledged = times_received.keys().filter(|id| !acked_set.contains(id)).count();
    let flagged = statuses.values().filter(|s| s.possible_duplicate).count();
    eprintln!(
        "acknowledged {}, delivered before the kill {before_restart}, flagged possible duplicates {flagged}, \
         stored but unacknowledged (delivered anyway) {unacknowledged}",
        acked.len()
    );
    drop(child);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_deferred_mail() {
    let dir = temp_dir("resume");
    let fake = FakeSendGrid::start(KEY).await.unwrap();
    fake.set_behavior(Behavior::Fail { status: 503, body: String::new() });
    let (mut child, addr, api_key) = start(&dir, &fake);
    let mut mta = client(addr, &api_key).await;
    let id = mta.submit(submission(1)).await.unwrap().into_inner().message_id;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = mta.get_message(pb::GetMessageRequest { message_id: id.clone() }).await.unwrap().into_inner();
        if s.state() == pb::DeliveryState::Deferred {
            break;
        }
        assert!(Instant::now() < deadline, "never deferred: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap().success());
    assert!(child.0.wait().unwrap().success());

    fake.set_behavior(Behavior::Accept);
    let (child, addr, api_key) = start(&dir, &fake);
    let mut mta = client(addr, &api_key).await;
    let statuses = wait_all_settled(&mut mta, std::slice::from_ref(&id)).await;
    assert_eq!(statuses[&id].state(), pb::DeliveryState::Sent);
    assert_eq!(fake.received().len(), 1);
    drop(child);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_corrupt_spool_is_reported_and_kept() {
    let dir = temp_dir("corrupt");
    let spool = dir.join("spool.redb");
    std::fs::write(&spool, b"not a spool").unwrap();
    let config = dir.join("mta.toml");
    let tenants = bitmail_tests::api_key::tenants_section(&dir, &["bitmail.test"], "");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:0\"\n[spool]\npath = {:?}\n{tenants}", spool.display().to_string()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mta-server"))
        .arg("--config")
        .arg(&config)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open the spool") && stderr.contains("left untouched"), "{stderr}");
    assert_eq!(std::fs::read(&spool).unwrap(), b"not a spool");
    let _ = std::fs::remove_dir_all(dir);
}

/// One SMTP session on the local listener sending `count` messages; each id answered
/// 250 goes into `acked`. Stops at the first failure (the server died).
async fn smtp_sender(addr: SocketAddr, worker: usize, count: usize, acked: Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else { return };
    let mut stream = BufReader::new(stream);
    let reply = async |stream: &mut BufReader<tokio::net::TcpStream>| -> Option<String> {
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(line);
            }
        }
    };
    reply(&mut stream).await;
    let _ = stream.get_mut().write_all(b"EHLO burst\r\n").await;
    reply(&mut stream).await;
    for i in 0..count {
        let n = worker * 1000 + i;
        // The envelope, pipelined, then the message.
        let head = format!("MAIL FROM:<ada@bitmail.test>\r\nRCPT TO:<r{n}@example.net>\r\nDATA\r\n");
        if stream.get_mut().write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for _ in 0..3 {
            if !reply(&mut stream).await.is_some_and(|r| r.starts_with('2') || r.starts_with('3')) {
                return;
            }
        }
        let body = format!(
            "From: ada@bitmail.test\r\nTo: r{n}@example.net\r\nSubject: burst {n}\r\n\r\n{}\r\n.\r\n",
            "x".repeat(900)
        );
        if stream.get_mut().write_all(body.as_bytes()).await.is_err() {
            return;
        }
        match reply(&mut stream).await {
            Some(r) if r.starts_with("250 2.0.0 OK: queued as ") => {
                acked.lock().await.push(r.trim_end().rsplit(' ').next().unwrap().to_owned());
            }
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_of_smtp_submissions_loses_nothing_answered_250() {
    let dir = temp_dir("smtp-burst");
    let fake = FakeSendGrid::start(KEY).await.unwrap();
    fake.set_behavior(Behavior::Delay(Duration::from_millis(30)));
    let extra = "[smtp.local]\nlisten = \"127.0.0.1:0\"\ntenant = \"default\"\n";
    let (mut child, _, api_key, smtp) = start_with(&dir, &fake, extra);
    let smtp = smtp.unwrap();

    let acked = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..8).map(|w| tokio::spawn(smtp_sender(smtp, w, 200, acked.clone()))).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().await.len() < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().await.clone();
    assert!(acked.len() >= 200, "only {} answered 250 before the kill", acked.len());
    assert!(fake.received().len() < acked.len(), "the kill came before everything was delivered");

    fake.set_behavior(Behavior::Accept);
    let (child, addr, _, _) = start_with(&dir, &fake, extra);
    let mut mta = client(addr, &api_key).await;
    let statuses = wait_all_settled(&mut mta, &acked).await;
    assert_eq!(statuses.len(), acked.len(), "every message answered 250 reached a final state");
    let delivered: HashSet<String> =
        fake.received().iter().map(|r| r.body["custom_args"]["bitmail_id"].as_str().unwrap().to_owned()).collect();
    for id in &acked {
        assert_eq!(statuses[id].state(), pb::DeliveryState::Sent, "{id}");
        assert!(delivered.contains(id), "{id} was answered 250 and never delivered");
    }
    drop(child);
    let _ = std::fs::remove_dir_all(dir);
}
