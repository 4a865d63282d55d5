//! The backend-server binary with `engine = "postgres"`, as an operator runs it: a bad
//! URL is a config error (exit 64), an unreachable database stops it with a clear message
//! (exit 1), and against a real PostgreSQL it serves the Store over gRPC, stops on
//! SIGTERM, and finds its documents again after a restart. The password never appears.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStderr, Command, Stdio};

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::store_client::StoreClient;
use bitmail_tests::postgres::PgServer;

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("bitmail-backend-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Kills the server if a test fails before stopping it.
struct Running(Child, Lines<BufReader<ChildStderr>>);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the log until the listening line; returns the address and what was logged.
fn listening(mut child: Child) -> (Running, String, String) {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if let Some(at) = line.find("addr=") {
            let addr = line[at + 5..].split_whitespace().next().unwrap().to_owned();
            return (Running(child, lines), addr, log);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server exited before listening:\n{log}");
}

#[test]
fn a_bad_url_is_a_config_error_and_is_not_shown() {
    let path = write_config(
        "bad-url",
        "engine = \"postgres\"\n[postgres]\nurl = \"postgres://u:hunter2-pw@db/x?nonsense=1\"\npool_size = 0\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_backend-server")).arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in ["2 problem(s)", "postgres.url", "unknown option `nonsense`", "postgres.pool_size"] {
        assert!(stderr.contains(needle), "missing {needle} in:\n{stderr}");
    }
    assert!(!stderr.contains("hunter2-pw"), "{stderr}");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn an_unreachable_database_stops_it_with_a_clear_message() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let path = write_config(
        "unreachable",
        &format!(
            "listen = \"127.0.0.1:0\"\nengine = \"postgres\"\n[postgres]\nurl = \"postgres://u:hunter2-pw@127.0.0.1:{closed}/mail\"\n"
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_backend-server"))
        .arg("--config")
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot start"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{closed}/mail")), "{stderr}");
    assert!(!stderr.contains("hunter2-pw"), "{stderr}");
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn it_serves_from_postgres_and_keeps_documents_across_restarts() {
    let pg = PgServer::shared().unwrap();
    let url = pg.create_database().unwrap();
    // The URL comes from the environment, as a deployment would keep it.
    let path = write_config(
        "serve",
        "listen = \"127.0.0.1:0\"\nengine = \"postgres\"\n[postgres]\nurl = { env = \"BITMAIL_TEST_PG_URL\" }\npool_size = 4\n",
    );
    let launch = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_backend-server"));
        cmd.arg("--config").arg(&path).env("BITMAIL_BACKEND_LOG", "info").env("NO_COLOR", "1");
        cmd.env("BITMAIL_TEST_PG_URL", &url).stderr(Stdio::piped());
        listening(cmd.spawn().unwrap())
    };

    let (mut server, addr, log) = launch();
    assert!(log.contains("engine=Postgres"), "{log}");
    let mut store = StoreClient::connect(format!("http://{addr}")).await.unwrap();
    let fields = [("kind".to_owned(), "user".to_owned()), ("name".to_owned(), "ada".to_owned())].into();
    let id = store.put(pb::PutRequest { fields }).await.unwrap().into_inner().id;

    let killed = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = server.0.wait().unwrap();
    let rest: Vec<String> = server.1.by_ref().map_while(Result::ok).collect();
    assert!(status.success(), "exit {status:?}: {rest:?}");

    let (_server, addr, log2) = launch();
    let mut store = StoreClient::connect(format!("http://{addr}")).await.unwrap();
    let doc = store.get(pb::GetRequest { id }).await.unwrap().into_inner();
    assert_eq!((doc.version, doc.fields["name"].as_str()), (1, "ada"));
    let everything = format!("{log}{}{log2}", rest.join("\n"));
    assert!(!everything.contains(pg.password()), "the password must never be logged:\n{everything}");
    std::fs::remove_file(path).unwrap();
}
