//! `cargo xtask run --nodes N` (N ≥ 2): a cluster on one machine. N client-api edges
//! and N mta-servers (each its own spool and `[tenants] node_id`, all sharing one
//! backend-server), that backend-server on a local PostgreSQL cluster in
//! `data/nodes/pg` ([`crate::pg`], reused on the next run), and the provider stand-ins.
//! Every gRPC link is mutual TLS with the certificates `cargo xtask run` makes.
//!
//! Ports, node i counting from 1: edge `8442 + i`, mta-server gRPC `50041 + 10 i`, its
//! SMTP `2586 + i` (STARTTLS), `2464 + i` (TLS), `2524 + i` (local); backend-server
//! 50052, PostgreSQL 55432. Files: `data/nodes/{edge-i,mta-i}/`, configs and keys in
//! `target/xtask-run/nodes/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::out::say;
use crate::root;
use crate::run::{Children, Prepared, tls_section, wait_for_any, wait_for_port};

const BACKEND: &str = "127.0.0.1:50052";
const POSTGRES_PORT: u16 = 55432;

/// The addresses of node `i` (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) i: u8,
    pub(crate) edge: String,
    pub(crate) mta: String,
    pub(crate) smtp: String,
    pub(crate) smtps: String,
    pub(crate) smtp_local: String,
}

impl Node {
    fn new(i: u8) -> Node {
        let i16 = u16::from(i);
        Node {
            i,
            edge: format!("127.0.0.1:{}", 8442 + i16),
            mta: format!("127.0.0.1:{}", 50041 + 10 * i16),
            smtp: format!("127.0.0.1:{}", 2586 + i16),
            smtps: format!("127.0.0.1:{}", 2464 + i16),
            smtp_local: format!("127.0.0.1:{}", 2524 + i16),
        }
    }

    fn mta_name(&self) -> String {
        format!("mta-{}", self.i)
    }

    fn edge_name(&self) -> String {
        format!("edge-{}", self.i)
    }
}

pub(crate) fn nodes(n: u8) -> Vec<Node> {
    (1..=n).map(Node::new).collect()
}

/// What the configs name that is not an address.
pub(crate) struct Inputs {
    /// `data/nodes`: the edges' state, the spools.
    pub(crate) data: PathBuf,
    pub(crate) tls_dir: PathBuf,
    /// The file holding the backend-server's PostgreSQL URL (with the password).
    pub(crate) postgres_url_file: PathBuf,
    pub(crate) service_key_file: PathBuf,
    pub(crate) console_key_file: PathBuf,
    pub(crate) web_dir: PathBuf,
    pub(crate) mail_domain: String,
    pub(crate) providers: String,
}

/// The mta-servers an edge sends to: every node's, each with its `node_id` (so the
/// status page matches a node to its report); the pool takes turns among them.
fn edge_mta_lines(edge: &Node, all: &[Node]) -> String {
    let mut nodes: Vec<&Node> = all.iter().filter(|n| n.mta == edge.mta).collect();
    nodes.extend(all.iter().filter(|n| n.mta != edge.mta));
    let entries: Vec<String> =
        nodes.iter().map(|n| format!("{{ url = \"https://{}\", node_id = \"{}\" }}", n.mta, n.mta_name())).collect();
    format!("mta_urls = [{}]\n", entries.join(", "))
}

/// `(file name without .toml, text)` for every service of an `all.len()`-node cluster.
pub(crate) fn configs(all: &[Node], inputs: &Inputs) -> Vec<(String, String)> {
    let tls = |section: &str, name: &str| tls_section(&inputs.tls_dir, section, name);
    let path = |p: &Path| format!("{:?}", p.display().to_string());
    let mail_domain = &inputs.mail_domain;
    let mut out = vec![(
        "backend-server".to_owned(),
        format!(
            "listen = \"{BACKEND}\"\nengine = \"postgres\"\n[postgres]\nurl = {{ file = {} }}\n{}",
            path(&inputs.postgres_url_file),
            tls("tls", "backend-server")
        ),
    )];
    for node in all {
        let spool = inputs.data.join(node.mta_name()).join("spool.redb");
        out.push((
            node.mta_name(),
            format!(
                "listen = \"{}\"\n{}[spool]\npath = {}\n[retry]\ninitial_secs = 5\n[tenants]\nstore = \"https://{BACKEND}\"\n\
                 node_id = \"{}\"\ndefault_domains = [{mail_domain:?}]\n{}[lists]\npublic_url = \"https://localhost:8443\"\n[smtp]\nsubmission = \"{}\"\nsubmissions = \"{}\"\n\
                 [smtp.local]\nlisten = \"{}\"\ntenant = \"default\"\n\n{}",
                node.mta,
                tls("tls", "mta-server"),
                path(&spool),
                node.mta_name(),
                tls("tenants.tls", "mta-server"),
                node.smtp,
                node.smtps,
                node.smtp_local,
                inputs.providers
            ),
        ));
    }
    for node in all {
        out.push((
            node.edge_name(),
            format!(
                "listen = \"{}\"\nstate_dir = {}\n{}mta_key = {{ file = {} }}\nmta_admin_key = {{ file = {} }}\n\
                 backend_url = \"https://{BACKEND}\"\nmail_domain = {mail_domain:?}\nsignup_on_first_login = true\n\
                 web_dir = {}\n{}{}",
                node.edge,
                path(&inputs.data.join(node.edge_name())),
                edge_mta_lines(node, all),
                path(&inputs.service_key_file),
                path(&inputs.console_key_file),
                path(&inputs.web_dir),
                tls("mta_tls", "client-api"),
                tls("backend_tls", "client-api")
            ),
        ));
    }
    out
}

pub(crate) fn run(p: &Prepared, n: u8) -> Result<()> {
    let dir = p.dir.join("nodes");
    let data = root().join("data/nodes");
    std::fs::create_dir_all(&dir)?;
    std::fs::create_dir_all(&data)?;
    let pg_dir = data.join("pg");
    // Keys made on an earlier run are kept with the store they are in.
    let store_existed = pg_dir.join("PG_VERSION").is_file();
    let inputs = Inputs {
        data: data.clone(),
        tls_dir: p.tls_dir.clone(),
        postgres_url_file: dir.join("postgres.url"),
        service_key_file: dir.join("client-api.key"),
        console_key_file: dir.join("client-api-admin.key"),
        web_dir: p.web_dir.clone(),
        mail_domain: p.providers.mail_domain.clone(),
        providers: p.providers.toml.clone(),
    };
    let all = nodes(n);
    let config_of = |name: &str| dir.join(format!("{name}.toml"));
    for (name, text) in configs(&all, &inputs) {
        std::fs::write(config_of(&name), text)?;
    }

    // Declared before the children, so dropped after them: PostgreSQL stops last.
    let pg = crate::pg::start(&pg_dir, POSTGRES_PORT, &data.join("pg.password"))?;
    crate::run::write_private(&inputs.postgres_url_file, &pg.url())?;
    let mut children = Children(Vec::new());
    p.spawn_stand_ins(&mut children)?;
    children.spawn(
        "backend-server",
        Command::new(p.bin("backend-server")).arg("--config").arg(config_of("backend-server")),
    )?;
    wait_for_port(BACKEND, "backend-server", &mut children)?;
    // The keys live in the shared store: any node's config makes them.
    let mta_config = config_of("mta-1");
    let key = |file: &Path, scopes: &str, name: &str| p.key(&mta_config, file, scopes, name, store_existed);
    let admin_key_file = dir.join("admin.key");
    let smtp_key_file = dir.join("smtp.key");
    let service_state = key(&inputs.service_key_file, "service", "client-api (cargo xtask run --nodes)")?;
    key(&inputs.console_key_file, "admin", "client-api console (cargo xtask run --nodes)")?;
    let admin_state = key(&admin_key_file, "admin", "operator (cargo xtask run --nodes)")?;
    let smtp_state = key(&smtp_key_file, "send", "SMTP clients (cargo xtask run --nodes)")?;
    for node in &all {
        children.spawn(
            &node.mta_name(),
            Command::new(p.bin("mta-server")).arg("--config").arg(config_of(&node.mta_name())),
        )?;
    }
    for node in &all {
        children.spawn(
            &node.edge_name(),
            Command::new(p.bin("client-api")).arg("--config").arg(config_of(&node.edge_name())),
        )?;
    }
    p.wait_for_stand_ins(&mut children)?;
    for node in &all {
        wait_for_port(&node.mta, &node.mta_name(), &mut children)?;
        wait_for_port(&node.edge, &node.edge_name(), &mut children)?;
    }

    let mut lines = String::new();
    for node in &all {
        let port = node.edge.rsplit(':').next().unwrap_or_default();
        lines.push_str(&format!(
            "  {:<18}https://localhost:{port}/   (webmail and API; {})\n",
            node.edge_name(),
            edge_mta_lines(node, &all).trim()
        ));
    }
    for node in &all {
        lines.push_str(&format!(
            "  {:<18}{}   (mutual TLS), node_id {}\n                    SMTP {} (STARTTLS), {} (TLS), {} (local, no AUTH)\n",
            format!("{} gRPC", node.mta_name()),
            node.mta,
            node.mta_name(),
            node.smtp,
            node.smtps,
            node.smtp_local
        ));
    }
    say!(
        "
BitMail is running as {n} nodes.

{lines}  backend gRPC      {BACKEND}   (mutual TLS), engine postgres
  PostgreSQL        127.0.0.1:{POSTGRES_PORT}, data in {} (kept; remove it to start afresh)
  admin key         {}   ({admin_state}; scope admin)
  SMTP key          {}   ({smtp_state}; scope send; SMTP user `apikey`)
  client-api's key  {}   ({service_state}; scope service, every edge's mta_key)
  mail goes to      {}
  configs           {}
  certificates      {} (self-signed edges: accept each once)

Sign in on either edge: the accounts and sessions are in the shared store.
Ctrl-C stops everything.",
        pg_dir.display(),
        admin_key_file.display(),
        smtp_key_file.display(),
        inputs.service_key_file.display(),
        p.providers.sent_to(),
        dir.display(),
        p.tls_dir.display(),
    );
    let done = wait_for_any(&mut children);
    drop(children);
    drop(pg);
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            data: "/d/nodes".into(),
            tls_dir: "/d/tls".into(),
            postgres_url_file: "/t/postgres.url".into(),
            service_key_file: "/t/client-api.key".into(),
            console_key_file: "/t/client-api-admin.key".into(),
            web_dir: "/t/web".into(),
            mail_domain: "localhost".into(),
            providers: "[[providers]]\nname = \"sendgrid-stand-in\"\nkind = \"sendgrid\"\n".into(),
        }
    }

    fn parsed(all: &[Node]) -> Vec<(String, toml::Table)> {
        configs(all, &inputs())
            .into_iter()
            .map(|(name, text)| {
                let table = text.parse::<toml::Table>().unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
                (name, table)
            })
            .collect()
    }

    fn get<'a>(table: &'a toml::Table, path: &str) -> &'a toml::Value {
        let mut at = table.get(path.split('.').next().unwrap()).unwrap_or_else(|| panic!("no {path}"));
        for key in path.split('.').skip(1) {
            let next = match key.parse::<usize>() {
                Ok(index) => at.get(index),
                Err(_) => at.get(key),
            };
            at = next.unwrap_or_else(|| panic!("no {path}"));
        }
        at
    }

    fn str_at<'a>(table: &'a toml::Table, path: &str) -> &'a str {
        get(table, path).as_str().unwrap_or_else(|| panic!("{path} is not a string"))
    }

    #[test]
    fn two_nodes_are_two_edges_two_mtas_and_one_backend_on_postgres() {
        let configs = parsed(&nodes(2));
        let names: Vec<&str> = configs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["backend-server", "mta-1", "mta-2", "edge-1", "edge-2"]);
        let of = |name: &str| &configs.iter().find(|(n, _)| n == name).unwrap().1;

        let backend = of("backend-server");
        assert_eq!(str_at(backend, "engine"), "postgres");
        assert_eq!(str_at(backend, "postgres.url.file"), "/t/postgres.url");
        assert_eq!(str_at(backend, "tls.cert_file"), "/d/tls/backend-server.pem");

        for (i, mta) in [(1, of("mta-1")), (2, of("mta-2"))] {
            assert_eq!(str_at(mta, "tenants.node_id"), format!("mta-{i}"));
            assert_eq!(str_at(mta, "tenants.store"), format!("https://{BACKEND}"));
            assert_eq!(str_at(mta, "spool.path"), format!("/d/nodes/mta-{i}/spool.redb"));
            assert_eq!(str_at(mta, "tls.cert_file"), "/d/tls/mta-server.pem");
            assert_eq!(str_at(mta, "tenants.tls.cert_file"), "/d/tls/mta-server.pem");
            assert_eq!(str_at(mta, "providers.0.name"), "sendgrid-stand-in");
        }
        // Every edge sends to both MTAs (its own first), each with its own state.
        for (i, edge) in [(1, of("edge-1")), (2, of("edge-2"))] {
            let other = 3 - i;
            assert_eq!(str_at(edge, "mta_urls.0.url"), format!("https://{}", Node::new(i).mta));
            assert_eq!(str_at(edge, "mta_urls.0.node_id"), format!("mta-{i}"));
            assert_eq!(str_at(edge, "mta_urls.1.url"), format!("https://{}", Node::new(other).mta));
            assert_eq!(str_at(edge, "mta_urls.1.node_id"), format!("mta-{other}"));
            assert!(edge.get("mta_url").is_none());
            assert_eq!(str_at(edge, "backend_url"), format!("https://{BACKEND}"));
            assert_eq!(str_at(edge, "state_dir"), format!("/d/nodes/edge-{i}"));
            assert_eq!(str_at(edge, "mta_key.file"), "/t/client-api.key");
            assert_eq!(str_at(edge, "mta_tls.cert_file"), "/d/tls/client-api.pem");
            assert_eq!(str_at(edge, "backend_tls.key_file"), "/d/tls/client-api.key");
        }
    }

    /// The configs as the services themselves read them: each binary's `--check-config`,
    /// with real certificates, key files and a webmail folder (the binaries are built as
    /// xtask/tests/deploy_over_ssh.rs builds them, so the two share the build).
    #[test]
    fn each_service_accepts_its_config() {
        let cargo = || {
            let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cmd.current_dir(root());
            cmd
        };
        let built = cargo()
            .args(["build", "--quiet", "-p", "backend-server", "-p", "mta-server", "-p", "client-api", "--bins"])
            .status()
            .unwrap();
        assert!(built.success(), "building the services failed");
        let base = std::env::temp_dir().join(format!("xtask-run-nodes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let certs = cargo()
            .args(["run", "--quiet", "-p", "bitmail-tests", "--bin", "bitmail-certs", "--", "--dir"])
            .arg(base.join("tls"))
            .args(["backend-server", "mta-server", "client-api"].map(|s| format!("{s}=localhost,127.0.0.1")))
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(certs.success(), "bitmail-certs failed");
        std::fs::create_dir_all(base.join("web/assets")).unwrap();
        std::fs::write(base.join("web/index.html"), "<!doctype html><title>BitMail</title>").unwrap();
        let inputs = Inputs {
            data: base.join("data"),
            tls_dir: base.join("tls"),
            postgres_url_file: base.join("postgres.url"),
            service_key_file: base.join("client-api.key"),
            console_key_file: base.join("client-api-admin.key"),
            web_dir: base.join("web"),
            mail_domain: "localhost".into(),
            providers: crate::run::providers().toml,
        };
        std::fs::write(&inputs.postgres_url_file, "postgres://bitmail:pw@127.0.0.1:55432/bitmail\n").unwrap();
        std::fs::write(&inputs.service_key_file, "bmk_example\n").unwrap();
        std::fs::write(&inputs.console_key_file, "bmk_example\n").unwrap();
        let bin = crate::target_dir().join("debug");
        for (name, text) in configs(&nodes(2), &inputs) {
            let file = base.join(format!("{name}.toml"));
            std::fs::write(&file, text).unwrap();
            let service = match name.split('-').next().unwrap() {
                "mta" => "mta-server",
                "edge" => "client-api",
                _ => "backend-server",
            };
            let out =
                Command::new(bin.join(service)).arg("--config").arg(&file).arg("--check-config").output().unwrap();
            assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn no_two_listeners_share_a_port_nor_one_of_the_single_node_layout() {
        let configs = parsed(&nodes(4));
        let mut seen = std::collections::HashSet::new();
        let mut listen = |addr: &str| assert!(seen.insert(addr.to_owned()), "{addr} twice");
        for (name, table) in &configs {
            listen(str_at(table, "listen"));
            if name.starts_with("mta-") {
                for key in ["smtp.submission", "smtp.submissions", "smtp.local.listen"] {
                    listen(str_at(table, key));
                }
            }
        }
        listen(&format!("127.0.0.1:{POSTGRES_PORT}"));
        // The single-node layout's ports: node 1 keeps them, so its habits carry over.
        let one = Node::new(1);
        assert_eq!(
            [one.edge.as_str(), &one.mta, &one.smtp, &one.smtps, &one.smtp_local],
            ["127.0.0.1:8443", "127.0.0.1:50051", "127.0.0.1:2587", "127.0.0.1:2465", "127.0.0.1:2525"]
        );
        // And the stand-ins' ports are not taken.
        for stand_in in ["127.0.0.1:8025", "127.0.0.1:8026", "127.0.0.1:8027"] {
            listen(stand_in);
        }
    }
}
