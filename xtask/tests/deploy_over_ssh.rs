//! `cargo xtask deploy` against two real OpenSSH servers on loopback, each with its own
//! throwaway host key and root folder standing in for a host: deploy, a release whose
//! health check fails (rolled back, the next host untouched), `--rollback`, pruning,
//! bad input that stops before any host is touched, and a rolling deploy over five
//! "hosts" (root folders behind one sshd: storage, two MTAs, two edges) while a client
//! sends through the edges.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace's debug binaries, built if needed (cheap when the test run built them).
fn bin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_xtask")).parent().unwrap().to_owned();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
        .args(["build", "--quiet", "-p", "backend-server", "-p", "mta-server", "-p", "client-api", "--bins"])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the services failed");
    dir
}

/// A free port below Linux's ephemeral range (32768 and up): the services restart on
/// their ports, and while one is down an outgoing connection (ssh, a probe) could take
/// a port from that range as its own.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let offset = (std::process::id() % 1_000) as u16 * 12;
    loop {
        let port = 20_000 + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn keygen(path: &Path) -> String {
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "bitmail-test", "-f"]).arg(path));
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    // `type key` without the comment.
    public.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// One OpenSSH server standing in for a host; killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    host_key: String,
    root: PathBuf,
}

impl Sshd {
    fn at(&self) -> (u16, &Path) {
        (self.port, &self.root)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sshd(dir: &Path, authorized: &str) -> Sshd {
    std::fs::create_dir_all(dir).unwrap();
    let host_key = keygen(&dir.join("ssh_host_ed25519_key"));
    std::fs::write(dir.join("authorized_keys"), format!("{authorized}\n")).unwrap();
    let root_user = String::from_utf8(run(Command::new("id").arg("-u")).stdout).unwrap().trim() == "0";
    if root_user {
        // sshd's privilege separation folder.
        std::fs::create_dir_all("/run/sshd").unwrap();
    }
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/ssh_host_ed25519_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
             PrintMotd no\nLogLevel ERROR\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
    let mut child = Command::new("/usr/sbin/sshd")
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("/usr/sbin/sshd runs (cargo xtask test installs openssh-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("sshd exited ({status}): {}", std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "sshd did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let root = dir.join("root");
    Sshd { child, port, host_key, root }
}

/// Stops every service a deploy started under these roots, whatever the test's end.
struct Services(Vec<PathBuf>);

impl Drop for Services {
    fn drop(&mut self) {
        for root in &self.0 {
            for entry in std::fs::read_dir(root.join("run")).into_iter().flatten().flatten() {
                if let Ok(pid) = std::fs::read_to_string(entry.path()) {
                    let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
                }
            }
        }
    }
}

fn user() -> String {
    String::from_utf8(run(Command::new("id").arg("-un")).stdout).unwrap().trim().to_owned()
}

struct Fixture {
    base: PathBuf,
    key: PathBuf,
    a: Sshd,
    b: Sshd,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Kept after a failure, to look at the hosts' logs.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

fn fixture(name: &str) -> Fixture {
    let base = std::env::temp_dir().join(format!("bitmail-deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let key = base.join("id_deploy");
    let authorized = keygen(&key);
    let a = start_sshd(&base.join("host-a"), &authorized);
    let b = start_sshd(&base.join("host-b"), &authorized);
    // Host a is verified through a known_hosts file, host b through its key in the config.
    std::fs::write(base.join("known_hosts_a"), format!("[127.0.0.1]:{} {}\n", a.port, a.host_key)).unwrap();
    Fixture { base, key, a, b }
}

/// The [[hosts]] entry for a host: `services` maps service → config file name in base.
fn host_entry(f: &Fixture, name: &str, (port, root): (u16, &Path), verify: &str, services: &[(&str, &str)]) -> String {
    let mut s = format!(
        "[[hosts]]\nname = \"{name}\"\naddress = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nkey_file = {:?}\n{verify}\n\
         root = {:?}\nsupervisor = \"script\"\n[hosts.services]\n",
        port,
        user(),
        f.key.display().to_string(),
        root.display().to_string()
    );
    for (service, file) in services {
        s.push_str(&format!("{service} = {:?}\n", f.base.join(file).display().to_string()));
    }
    s
}

fn xtask(args: &[&str]) -> (bool, String) {
    // One deploy at a time, as deploy/README.md asks: two at once stage the same binaries
    // as hard links, and each link made or removed changes the inode's ctime under the
    // other's tar ("file changed as we read it").
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Shown when the test fails (or with --nocapture).
    eprintln!("$ xtask {}\n{text}", args.join(" "));
    (out.status.success(), text)
}

fn current(root: &Path) -> String {
    let link = std::fs::read_link(root.join("current")).expect("a current link");
    link.strip_prefix("releases").unwrap().to_string_lossy().into_owned()
}

fn releases(root: &Path) -> BTreeSet<String> {
    std::fs::read_dir(root.join("releases")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect()
}

/// The pid of a running service and the release its binary comes from.
fn running(root: &Path, service: &str) -> (String, String) {
    let pid = std::fs::read_to_string(root.join(format!("run/{service}.pid"))).expect("a pid file");
    let pid = pid.trim().to_owned();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_else(|_| panic!("{service} ({pid}) runs"));
    let release = exe.strip_prefix(root.join("releases")).expect("runs from a release").iter().next().unwrap();
    (pid, release.to_string_lossy().into_owned())
}

/// The service answers its health check on its port (the deployed binary's `--probe`).
fn healthy(root: &Path, service: &str) -> bool {
    Command::new(root.join("current/bin").join(service))
        .args(["--config", &format!("current/config/{service}.toml"), "--probe"])
        .current_dir(root)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn deploy_roll_back_on_failed_health_and_rollback_on_request() {
    let f = fixture("flow");
    let _services = Services(vec![f.a.root.clone(), f.b.root.clone()]);
    let bins = bin_dir();
    let bins = bins.to_str().unwrap();
    let (backend, mta_a, edge, mta_b) = (free_port(), free_port(), free_port(), free_port());
    let write = |file: &str, text: String| std::fs::write(f.base.join(file), text).unwrap();
    write("backend-a.toml", format!("listen = \"127.0.0.1:{backend}\"\n"));
    write("mta-a.toml", format!("listen = \"127.0.0.1:{mta_a}\"\n[spool]\npath = \"data/mta/spool.redb\"\n"));
    write(
        "edge-a.toml",
        format!(
            "listen = \"127.0.0.1:{edge}\"\nstate_dir = \"data/client-api\"\nmta_url = \"http://127.0.0.1:{mta_a}\"\n\
             backend_url = \"http://127.0.0.1:{backend}\"\n"
        ),
    );
    write("mta-b.toml", format!("listen = \"127.0.0.1:{mta_b}\"\n[spool]\npath = \"data/mta/spool.redb\"\n"));
    let deploy_toml = |mta_a_file: &str| {
        let head = "keep_releases = 2\nhealth_timeout_secs = 20\n\n";
        let a = host_entry(
            &f,
            "a",
            f.a.at(),
            &format!("known_hosts = {:?}", f.base.join("known_hosts_a").display().to_string()),
            &[("backend-server", "backend-a.toml"), ("mta-server", mta_a_file), ("client-api", "edge-a.toml")],
        );
        let b =
            host_entry(&f, "b", f.b.at(), &format!("host_key = {:?}", f.b.host_key), &[("mta-server", "mta-b.toml")]);
        format!("{head}{a}\n{b}")
    };
    write("deploy.toml", deploy_toml("mta-a.toml"));
    let config = f.base.join("deploy.toml");
    let config = config.to_str().unwrap();
    // A stand-in for the built webmail, shipped with client-api.
    let web = f.base.join("web");
    std::fs::create_dir_all(web.join("assets")).unwrap();
    std::fs::write(web.join("index.html"), "<!doctype html><title>BitMail</title>").unwrap();
    std::fs::write(web.join("assets/app-0123.js"), "console.log('hi')").unwrap();
    let web = web.to_str().unwrap();
    let deploy = || xtask(&["deploy", "--config", config, "--skip-tests", "--bin-dir", bins, "--web-dir", web]);
    let services_a = ["backend-server", "mta-server", "client-api"];

    // 1. A first release on both hosts: every service runs it and answers its health check.
    let (ok, out) = deploy();
    assert!(ok, "{out}");
    let r1 = current(&f.a.root);
    assert_eq!(current(&f.b.root), r1, "{out}");
    assert!(r1.starts_with(concat!(env!("CARGO_PKG_VERSION"), "-")), "{r1}");
    for service in services_a {
        assert_eq!(running(&f.a.root, service).1, r1);
        assert!(healthy(&f.a.root, service), "{service} on a");
    }
    assert!(healthy(&f.b.root, "mta-server"));
    assert!(out.contains("ok: running") && out.contains(&r1), "{out}");
    // The webmail went with client-api, and the edge's config points at this release's copy.
    let release_a = f.a.root.join("releases").join(&r1);
    assert!(release_a.join("web/assets/app-0123.js").is_file());
    let edge_config = std::fs::read_to_string(release_a.join("config/client-api.toml")).unwrap();
    let expected = format!("web_dir = {:?}", release_a.join("web").display().to_string());
    assert!(edge_config.starts_with(&expected), "{edge_config}");
    assert!(!f.b.root.join("releases").join(&r1).join("web").exists(), "host b runs no client-api");

    // 2. A second release replaces it; the first is kept for rollback. The binaries did
    // not change: the hosts link them from the first release instead of receiving them.
    let (ok, out) = deploy();
    assert!(ok, "{out}");
    assert!(out.contains("unchanged: bin/backend-server, bin/mta-server, bin/client-api"), "{out}");
    let r2 = current(&f.a.root);
    assert_ne!(r2, r1);
    for root in [&f.a.root, &f.b.root] {
        assert_eq!(current(root), r2);
        assert_eq!(releases(root), [r1.clone(), r2.clone()].into());
        assert_eq!(running(root, "mta-server").1, r2);
    }
    assert!(services_a.iter().all(|s| healthy(&f.a.root, s)));
    let b_before = running(&f.b.root, "mta-server");

    // 3. A release whose mta-server cannot listen (the port is taken): host a goes back
    // to the second release, host b is not touched.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    write("mta-a-bad.toml", format!("listen = \"127.0.0.1:{port}\"\n[spool]\npath = \"data/mta/spool.redb\"\n"));
    write("deploy.toml", deploy_toml("mta-a-bad.toml"));
    let (ok, out) = deploy();
    assert!(!ok, "{out}");
    assert!(out.contains("mta-server is not running"), "{out}");
    assert!(out.contains(&format!("back on {r2}")) && out.contains("not touched (an earlier host failed)"), "{out}");
    assert_eq!(current(&f.a.root), r2);
    assert_eq!(releases(&f.a.root), [r1.clone(), r2.clone()].into(), "the failed release is removed");
    for service in services_a {
        assert_eq!(running(&f.a.root, service).1, r2);
        assert!(healthy(&f.a.root, service), "{service} on a after the rollback");
    }
    assert_eq!(current(&f.b.root), r2);
    assert_eq!(releases(&f.b.root), [r1.clone(), r2.clone()].into());
    assert_eq!(running(&f.b.root, "mta-server"), b_before, "host b's service was not restarted");
    drop(taken);

    // 4. --rollback: both hosts go back to the first release.
    write("deploy.toml", deploy_toml("mta-a.toml"));
    let (ok, out) = xtask(&["deploy", "--config", config, "--rollback"]);
    assert!(ok, "{out}");
    for root in [&f.a.root, &f.b.root] {
        assert_eq!(current(root), r1, "{out}");
        assert_eq!(running(root, "mta-server").1, r1);
        assert!(healthy(root, "mta-server"));
    }
    assert!(services_a.iter().all(|s| healthy(&f.a.root, s)));

    // 5. The next deploy keeps 2 releases: the new one and the one it replaced.
    let (ok, out) = deploy();
    assert!(ok, "{out}");
    let r4 = current(&f.a.root);
    for root in [&f.a.root, &f.b.root] {
        assert_eq!(releases(root), [r1.clone(), r4.clone()].into(), "{out}");
    }
    let leftovers: Vec<_> = releases(&f.a.root).into_iter().filter(|r| r.starts_with('.')).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn bad_input_stops_before_any_host_is_touched() {
    let f = fixture("preflight");
    let _services = Services(vec![f.a.root.clone(), f.b.root.clone()]);
    std::fs::write(f.base.join("mta.toml"), "listen = \"127.0.0.1:1\"\n").unwrap();
    let known_a = format!("known_hosts = {:?}", f.base.join("known_hosts_a").display().to_string());
    let other_key = f.base.join("id_other");
    keygen(&other_key);
    let services = [("mta-server", "mta.toml")];

    // A wrong host key, a key the host does not accept, and a host nobody listens on:
    // each is named with its problem, and the good host first in line is not touched.
    let good = host_entry(&f, "good", f.a.at(), &known_a, &services);
    let spoofed = host_entry(&f, "spoofed", f.b.at(), &format!("host_key = {:?}", f.a.host_key), &services);
    let wrong_key = host_entry(&f, "wrong-key", f.b.at(), &format!("host_key = {:?}", f.b.host_key), &services)
        .replace(f.key.to_str().unwrap(), other_key.to_str().unwrap());
    let nowhere = f.base.join("host-c/root");
    let unreachable =
        host_entry(&f, "unreachable", (free_port(), &nowhere), &format!("host_key = {:?}", f.a.host_key), &services);
    std::fs::write(f.base.join("deploy.toml"), format!("{good}\n{spoofed}\n{wrong_key}\n{unreachable}")).unwrap();
    let config = f.base.join("deploy.toml");
    let config = config.to_str().unwrap();
    let bins = bin_dir();
    let (ok, out) = xtask(&["deploy", "--config", config, "--skip-tests", "--bin-dir", bins.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("no host was touched"), "{out}");
    assert!(out.contains("host spoofed") && out.contains("its host key does not match"), "{out}");
    assert!(out.contains("host wrong-key") && out.contains("was not accepted for user"), "{out}");
    assert!(out.contains("host unreachable") && out.contains("cannot be reached"), "{out}");
    assert!(!out.contains("host good ("), "{out}");
    assert!(!f.a.root.exists() && !f.b.root.exists(), "nothing was created on any host");

    // A missing binary stops it before anything is sent, naming the host and binary.
    std::fs::write(f.base.join("deploy.toml"), &good).unwrap();
    let empty = f.base.join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, out) = xtask(&["deploy", "--config", config, "--skip-tests", "--bin-dir", empty.to_str().unwrap()]);
    assert!(!ok && out.contains("host good: the mta-server binary is missing"), "{out}");
    assert!(!f.a.root.exists());

    // Unknown keys are errors, every one reported at once.
    std::fs::write(f.base.join("deploy.toml"), good.replace("[[hosts]]", "keep = 3\n[[hosts]]\nport_number = 22"))
        .unwrap();
    let (ok, out) = xtask(&["deploy", "--config", config, "--skip-tests"]);
    assert!(!ok && out.contains("keep: unknown key") && out.contains("port_number: unknown key"), "{out}");
    assert!(!f.a.root.exists());

    // A certificate the config names but the host lacks: named in the pre-flight.
    std::fs::write(f.base.join("deploy.toml"), &good).unwrap();
    let tls =
        "[tls]\nca_file = \"tls/ca.pem\"\ncert_file = \"tls/mta.pem\"\nkey_file = \"/etc/bitmail-none/mta.key\"\n";
    std::fs::write(f.base.join("mta.toml"), format!("listen = \"127.0.0.1:1\"\n{tls}")).unwrap();
    let (ok, out) = xtask(&["deploy", "--config", config, "--skip-tests", "--bin-dir", bins.to_str().unwrap()]);
    assert!(!ok && out.contains("no host was touched"), "{out}");
    for key in ["tls.ca_file: tls/ca.pem", "tls.cert_file: tls/mta.pem", "tls.key_file: /etc/bitmail-none/mta.key"] {
        assert!(out.contains(&format!("mta-server {key} is not a readable file there")), "{key}: {out}");
    }
    assert!(!f.a.root.exists());
}

#[test]
fn the_example_layout_s_configs_pass_check_config() {
    let bins = bin_dir();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/example");
    // The certificates the configs name, where an operator puts them: tls/ under the
    // host's root (the services' working folder). A throwaway CA stands in for theirs.
    let host_root = std::env::temp_dir().join(format!("bitmail-example-root-{}", std::process::id()));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
        .args(["run", "--quiet", "-p", "bitmail-tests", "--bin", "bitmail-certs", "--", "--dir"])
        .arg(host_root.join("tls"))
        .args([
            "backend-server=storage.bitmail.internal",
            "mta-server=mta.bitmail.internal",
            "client-api=edge.bitmail.internal",
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "bitmail-certs failed");
    for (service, file) in [
        ("backend-server", "storage/backend-server.toml"),
        ("mta-server", "mta-1/mta-server.toml"),
        ("mta-server", "mta-2/mta-server.toml"),
        ("client-api", "edge-1/client-api.toml"),
        ("client-api", "edge-2/client-api.toml"),
    ] {
        let out = Command::new(bins.join(service))
            .arg("--config")
            .arg(example.join(file))
            .arg("--check-config")
            .env("SENDGRID_API_KEY", "example")
            .env("MAILGUN_API_KEY", "example")
            .env("BITMAIL_MTA_KEY", "bmk_example")
            .current_dir(&host_root)
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Without the certificates, each config is refused, naming the key and the file.
    std::fs::remove_dir_all(host_root.join("tls")).unwrap();
    let out = Command::new(bins.join("backend-server"))
        .arg("--config")
        .arg(example.join("storage/backend-server.toml"))
        .arg("--check-config")
        .current_dir(&host_root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("tls.cert_file: cannot read tls/backend-server.pem"), "{stderr}");
    std::fs::remove_dir_all(host_root).unwrap();
}

/// One `POST /v3/mail/send` through the edge on `port` (curl, the edge's self-signed
/// certificate accepted): whether it was accepted (202).
fn send_through(port: u16, key: &str) -> bool {
    let body = r#"{"personalizations":[{"to":[{"email":"you@example.org"}]}],"from":{"email":"me@localhost"},"subject":"Rolling","content":[{"type":"text/plain","value":"Hello"}]}"#;
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "-H"])
        .arg(format!("Authorization: Bearer {key}"))
        .args(["-H", "Content-Type: application/json", "-d", body])
        .arg(format!("https://127.0.0.1:{port}/v3/mail/send"))
        .output()
        .expect("curl runs");
    out.stdout == b"202"
}

#[test]
fn a_rolling_deploy_over_two_edges_and_two_mtas_loses_no_request() {
    let f = fixture("rolling");
    let names = ["storage", "mta-1", "mta-2", "edge-1", "edge-2"];
    // Five hosts on one sshd: each its own root folder.
    let roots: Vec<PathBuf> = names.iter().map(|n| f.base.join(format!("host-a/root-{n}"))).collect();
    let root_of = |name: &str| &roots[names.iter().position(|n| *n == name).unwrap()];
    let _services = Services(roots.clone());
    let bins = bin_dir();
    let bins = bins.to_str().unwrap();
    let (backend, mtas, edges) = (free_port(), [free_port(), free_port()], [free_port(), free_port()]);
    let write = |file: &str, text: String| std::fs::write(f.base.join(file), text).unwrap();
    write("storage.toml", format!("listen = \"127.0.0.1:{backend}\"\n"));
    for i in 0..2 {
        write(
            &format!("mta-{}.toml", i + 1),
            format!(
                "listen = \"127.0.0.1:{}\"\n[spool]\npath = \"data/mta/spool.redb\"\n[tenants]\n\
                 store = \"http://127.0.0.1:{backend}\"\nnode_id = \"mta-{}\"\ndefault_domains = [\"localhost\"]\n",
                mtas[i],
                i + 1
            ),
        );
        // Every edge sends to both mta-servers.
        write(
            &format!("edge-{}.toml", i + 1),
            format!(
                "listen = \"127.0.0.1:{}\"\nstate_dir = \"data/client-api\"\n\
                 mta_urls = [{{ url = \"http://127.0.0.1:{}\", node_id = \"mta-{}\" }}, {{ url = \"http://127.0.0.1:{}\", node_id = \"mta-{}\" }}]\n\
                 backend_url = \"http://127.0.0.1:{backend}\"\n",
                edges[i],
                mtas[i],
                i + 1,
                mtas[1 - i],
                2 - i
            ),
        );
    }
    let known = format!("known_hosts = {:?}", f.base.join("known_hosts_a").display().to_string());
    let host = |name: &str, service: &str| {
        host_entry(&f, name, (f.a.port, root_of(name)), &known, &[(service, &format!("{name}.toml"))])
    };
    // Written edges first: the deploy goes by role whatever the order here.
    let deploy_toml = [
        "keep_releases = 2\nhealth_timeout_secs = 20\n".to_owned(),
        host("edge-1", "client-api"),
        host("edge-2", "client-api"),
        host("mta-1", "mta-server"),
        host("mta-2", "mta-server"),
        host("storage", "backend-server"),
    ]
    .join("\n");
    write("deploy.toml", deploy_toml);
    let config = f.base.join("deploy.toml");
    let config = config.to_str().unwrap();
    let deploy = || xtask(&["deploy", "--config", config, "--skip-tests", "--bin-dir", bins]);

    // 1. The first release, host by host in rolling order.
    let (ok, out) = deploy();
    assert!(ok, "{out}");
    let at: Vec<usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            out.find(&format!("[{}/5] {n}: ", i + 1)).unwrap_or_else(|| panic!("{n} is not {}th: {out}", i + 1))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{out}");
    let r1 = current(root_of("storage"));

    // A sending key, in the shared store (made with mta-1's deployed binary and config).
    let made = run(Command::new(root_of("mta-1").join("current/bin/mta-server"))
        .args(["create-key", "--config", "current/config/mta-server.toml", "--scopes", "send", "--name", "rolling"])
        .current_dir(root_of("mta-1")));
    let key = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    assert!(edges.iter().all(|&port| send_through(port, &key)), "both edges send before the rolling deploy");

    // 2. A client sends without pause through the edges, alternating, and retries a
    // failed request once on the other edge, while the next release rolls over every host.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (stop, key) = (stop.clone(), key.clone());
        std::thread::spawn(move || {
            let (mut sent, mut retried, mut failed) = (0u32, 0u32, 0u32);
            let mut next = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if send_through(edges[next], &key) {
                    sent += 1;
                } else if send_through(edges[1 - next], &key) {
                    sent += 1;
                    retried += 1;
                } else {
                    failed += 1;
                }
                next = 1 - next;
            }
            (sent, retried, failed)
        })
    };
    let started = Instant::now();
    let (ok, out) = deploy();
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, retried, failed) = client.join().unwrap();
    println!(
        "rolling deploy of 5 hosts in {:.1} s: {sent} requests accepted ({retried} of them after a retry on the other \
         edge), {failed} failed on both edges",
        took.as_secs_f64()
    );
    assert!(ok, "{out}");
    let r2 = current(root_of("storage"));
    assert_ne!(r1, r2);
    for (name, service) in [
        ("storage", "backend-server"),
        ("mta-1", "mta-server"),
        ("mta-2", "mta-server"),
        ("edge-1", "client-api"),
        ("edge-2", "client-api"),
    ] {
        assert_eq!(running(root_of(name), service).1, r2, "{name}");
    }
    assert_eq!(failed, 0, "requests failed on both edges during the rolling deploy: {out}");
    assert!(sent > 10, "the client sent too little to tell ({sent})");
    // Some request did meet a host that was down: the retries are what kept it whole.
    assert!(retried > 0, "no request met a restarting edge or MTA; the test proved nothing");
    assert!(edges.iter().all(|&port| send_through(port, &key)), "both edges send after the rolling deploy");
}
