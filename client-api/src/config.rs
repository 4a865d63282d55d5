//! client-api's configuration (`--config PATH`, TOML). Every key has a default.
//!
//! ```toml
//! listen = "127.0.0.1:8443"
//! state_dir = "data/client-api"        # the generated certificate lives here
//! mta_url = "http://127.0.0.1:50051"   # one mta-server; the default when neither is set
//! # or several, which the edge spreads submissions over (mta_pool.rs); not both keys:
//! # mta_urls = ["https://mta-1:50051", "https://mta-2:50051",
//! #             { url = "https://10.0.0.13:50051", server_name = "mta-3.internal", node_id = "mta-3" }]
//! mta_timeout_ms = 10000               # one call's wait for one mta-server; then Submit tries the next
//! mta_key = { env = "BITMAIL_MTA_KEY" }  # a key with the `service` scope: mta-server create-key --scopes service --name client-api
//! mta_admin_key = { env = "BITMAIL_MTA_ADMIN_KEY" }  # scope `admin`, for the admin console; omit: the console API answers 503
//! backend_url = "http://127.0.0.1:50052"
//! mail_domain = "localhost"            # a user `ada` sends as ada@localhost
//! signup_on_first_login = false        # true: an unknown name + password creates the account
//! session_hours = 168
//! session_sweep_secs = 600             # how often sessions past expiry are deleted
//! signin_failures_per_address = 50     # failed sign-ins from one address in 15 min, all edges together
//! signin_failures_per_name = 200       # failed sign-ins for one name in 15 min, all edges together
//! user_sends_per_minute = 30           # messages one webmail user may send per minute
//! user_max_recipients = 50             # recipients (to, cc, bcc) of one message
//! max_body_bytes = 11534336
//! max_attachment_bytes = 7340032      # all attachments of one message together
//! max_inbound_bytes = 33554432         # one inbound-mail webhook request (received mail)
//! web_dir = "target/web"               # the built webmail (`cargo xtask`); omit for a bare page
//!
//! [limits]                             # see limits.rs; every key optional
//! request_timeout_ms = 30000           # headers in to headers out; then 504
//! max_concurrent_requests = 512        # more: 503 with Retry-After, at once
//! webhook_max_concurrent = 32          # /webhooks/* within those
//! webhook_max_body_bytes = 2097152     # one event webhook request; more: 413
//! max_connections = 1024               # open connections; more are closed at once
//! tls_handshake_timeout_ms = 10000
//! header_read_timeout_ms = 10000       # a request's headers (slow-loris); then the connection is closed
//! retry_after_secs = 1                 # the Retry-After of a 503
//!
//! [tls]                                # omit to use a generated self-signed certificate
//! cert_path = "/etc/bitmail/cert.pem"
//! key_path = "/etc/bitmail/key.pem"
//!
//! [mta_tls]                            # mutual TLS to mta-server; needs an https:// mta_url
//! ca_file = "/etc/bitmail/ca.pem"      # mta-server's certificate must chain to this CA
//! cert_file = "/etc/bitmail/client-api.pem"   # client-api's client certificate
//! key_file = "/etc/bitmail/client-api.key"
//! server_name = "mta.internal"         # the name in mta-server's certificate; default: mta_url's host
//!                                      # (with several mta_urls: per entry, `server_name`, default its host)
//!
//! [backend_tls]                        # the same for backend_url (https://)
//! ca_file = "/etc/bitmail/ca.pem"
//! cert_file = "/etc/bitmail/client-api.pem"
//! key_file = "/etc/bitmail/client-api.key"
//! ```
//!
//! `[tls]` is the edge's own HTTPS certificate, for browsers and apps; `[mta_tls]` and
//! `[backend_tls]` are the gRPC links behind it (`bitmail_runtime::grpc_tls`). One
//! `[mta_tls]` serves every entry of `mta_urls`; each entry's certificate name is its
//! own `server_name`, else its host. An entry's `node_id` is the `[tenants] node_id` of
//! that mta-server, which names its reports in the store (`mta-node/<node_id>`) on the
//! status page; default: the host's first label (`mta-2` for `mta-2.internal`), none for
//! an IP address.

use std::net::SocketAddr;
use std::path::PathBuf;

use bitmail_runtime::config::{Secret, Validate};
use bitmail_runtime::grpc_tls::ClientTls;
use serde::Deserialize;

use crate::limits::EdgeLimits;
use crate::mta_pool::nodes;
pub use crate::mta_pool::nodes::{DEFAULT_MTA_URL, MtaNode, MtaNodeEntry, MtaNodeTable};

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    /// One mta-server. Empty (the default) when `mta_urls` is used; neither set means
    /// [`DEFAULT_MTA_URL`]. Read both through [`Config::mta_nodes`].
    pub mta_url: String,
    /// Several mta-servers, for the pool ([`crate::mta_pool`]).
    pub mta_urls: Vec<MtaNodeEntry>,
    /// How long one call waits for one mta-server's answer before the node counts as
    /// failing: a Submit then goes to the next node (flagged `possible_duplicate`).
    pub mta_timeout_ms: u64,
    /// The edge's API key at mta-server (scope `service`). Without it, mta-server refuses
    /// every call: nothing can be sent.
    pub mta_key: Option<Secret>,
    /// The admin console's key at mta-server (scope `admin`), sent with the signed-in
    /// admin's name (`x-bitmail-actor`). Without it, the console API answers 503.
    pub mta_admin_key: Option<Secret>,
    pub backend_url: String,
    pub mail_domain: String,
    pub signup_on_first_login: bool,
    pub session_hours: u64,
    /// How often the sessions past their expiry are deleted (a bounded batch each time,
    /// `session_sweep`), in seconds.
    pub session_sweep_secs: u64,
    /// Failed sign-ins from one client address in a quarter of an hour, on every edge
    /// together ([`crate::shared_counts`]); more: 429.
    pub signin_failures_per_address: u32,
    /// Failed sign-ins for one name in a quarter of an hour, from every address and
    /// edge together; more: 429.
    pub signin_failures_per_name: u32,
    /// Messages one webmail user may send per minute; more: 429.
    pub user_sends_per_minute: u32,
    /// Recipients (To, Cc and Bcc together) of one webmail message; more: 400.
    pub user_max_recipients: usize,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// The largest total size of one message's attachments, in bytes (before base64).
    pub max_attachment_bytes: usize,
    /// The largest inbound-mail webhook request (`/webhooks/{provider}/inbound`), in bytes:
    /// received mail with its attachments, as the provider encodes it.
    pub max_inbound_bytes: usize,
    /// The built webmail: `index.html` and `assets/`. Without it `/` serves a bare page.
    pub web_dir: Option<PathBuf>,
    pub shutdown_grace_secs: u64,
    pub tls: Option<TlsFiles>,
    /// Mutual TLS to mta-server (with an `https://` `mta_url`).
    pub mta_tls: Option<ClientTls>,
    /// Mutual TLS to backend-server (with an `https://` `backend_url`).
    pub backend_tls: Option<ClientTls>,
    /// `[limits]`: concurrency, timeouts and budgets ([`crate::limits`]).
    pub limits: EdgeLimits,
}

impl Config {
    /// Every configured mta-server, in order: `mta_urls`, else `mta_url`, else
    /// [`DEFAULT_MTA_URL`].
    pub fn mta_nodes(&self) -> Vec<MtaNode> {
        nodes::resolve(&self.mta_url, &self.mta_urls, self.mta_tls.as_ref())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            state_dir: PathBuf::from("data/client-api"),
            mta_url: String::new(),
            mta_urls: Vec::new(),
            mta_timeout_ms: 10_000,
            mta_key: None,
            mta_admin_key: None,
            backend_url: "http://127.0.0.1:50052".into(),
            mail_domain: "localhost".into(),
            signup_on_first_login: false,
            session_hours: 24 * 7,
            session_sweep_secs: 600,
            signin_failures_per_address: crate::limiter::MAX_FAILURES_PER_ADDRESS,
            signin_failures_per_name: crate::limiter::MAX_FAILURES_PER_NAME,
            user_sends_per_minute: 30,
            user_max_recipients: 50,
            max_body_bytes: 11 * 1024 * 1024,
            max_attachment_bytes: 7 * 1024 * 1024,
            max_inbound_bytes: 32 * 1024 * 1024,
            web_dir: None,
            shutdown_grace_secs: 10,
            tls: None,
            mta_tls: None,
            backend_tls: None,
            limits: EdgeLimits::default(),
        }
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        self.limits.validate(problems);
        nodes::check(&self.mta_url, &self.mta_urls, self.mta_tls.as_ref(), problems);
        if !(100..=300_000).contains(&self.mta_timeout_ms) {
            problems.push(format!("mta_timeout_ms: {} is not within 100 to 300000", self.mta_timeout_ms));
        }
        nodes::check_upstream("backend_url", &self.backend_url, problems);
        let backend_tls = self.backend_tls.as_ref();
        bitmail_runtime::grpc_tls::check_link("backend_url", &self.backend_url, "backend_tls", backend_tls, problems);
        let domain_ok = !self.mail_domain.is_empty()
            && self
                .mail_domain
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !domain_ok {
            problems.push(format!("mail_domain: `{}` is not a domain name", self.mail_domain));
        }
        if self.session_hours == 0 {
            problems.push("session_hours: must be more than 0".into());
        }
        if self.session_sweep_secs == 0 {
            problems.push("session_sweep_secs: must be more than 0".into());
        }
        for (key, cap) in [
            ("signin_failures_per_address", self.signin_failures_per_address),
            ("signin_failures_per_name", self.signin_failures_per_name),
        ] {
            if !(1..=100_000).contains(&cap) {
                problems.push(format!("{key}: {cap} is not within 1 to 100000"));
            }
        }
        if self.user_sends_per_minute == 0 {
            problems.push("user_sends_per_minute: must be more than 0".into());
        }
        if !(1..=1000).contains(&self.user_max_recipients) {
            problems.push(format!("user_max_recipients: {} is not within 1 to 1000", self.user_max_recipients));
        }
        if self.max_inbound_bytes < 1024 {
            problems.push("max_inbound_bytes: must be at least 1024".into());
        }
        if self.max_body_bytes < 1024 {
            problems.push("max_body_bytes: must be at least 1024".into());
        }
        // Attachments travel base64-encoded inside the JSON body.
        if self.max_attachment_bytes / 3 * 4 + 64 * 1024 > self.max_body_bytes {
            problems.push(format!(
                "max_attachment_bytes: {} does not fit in max_body_bytes ({}) once base64-encoded",
                self.max_attachment_bytes, self.max_body_bytes
            ));
        }
        if let Some(dir) = &self.web_dir
            && !dir.join("index.html").is_file()
        {
            problems.push(format!(
                "web_dir: {} has no index.html (build the webmail with `cargo xtask web`)",
                dir.display()
            ));
        }
        if let Some(tls) = &self.tls {
            for (field, path) in [("tls.cert_path", &tls.cert_path), ("tls.key_path", &tls.key_path)] {
                if !path.is_file() {
                    problems.push(format!("{field}: {} is not a readable file", path.display()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitmail_runtime::config::parse;

    #[test]
    fn defaults_and_all_problems_at_once() {
        let c: Config = parse("", "t").unwrap();
        assert_eq!(c.listen.port(), 8443);
        assert!(!c.signup_on_first_login);
        assert_eq!((c.user_sends_per_minute, c.user_max_recipients), (30, 50));
        assert!(c.mta_admin_key.is_none());

        let text = "mta_url = \"localhost:1\"\nuser_sends_per_minute = 0\nuser_max_recipients = 0\nmail_domain = \"a b\"\n[tls]\ncert_path = \"/nonexistent/c.pem\"\nkey_path = \"/nonexistent/k.pem\"\n";
        let err = parse::<Config>(text, "t").unwrap_err();
        let all = err.problems.join("\n");
        for needle in
            ["mta_url", "user_sends_per_minute", "user_max_recipients", "mail_domain", "tls.cert_path", "tls.key_path"]
        {
            assert!(all.contains(needle), "missing {needle} in {all}");
        }
    }

    #[test]
    fn an_https_upstream_needs_its_tls_section_and_the_files_are_named() {
        let err = parse::<Config>("mta_url = \"https://10.0.0.11:50051\"\n", "t").unwrap_err();
        assert_eq!(
            err.problems,
            vec!["mta_tls: required for the https:// mta_url (ca_file, cert_file, key_file: mutual TLS)"]
        );
        let text = "[backend_tls]\nca_file = \"/nonexistent/ca.pem\"\ncert_file = \"/nonexistent/c.pem\"\nkey_file = \"/nonexistent/k.pem\"\n";
        let all = parse::<Config>(text, "t").unwrap_err().problems.join("\n");
        for needle in [
            "backend_url: \"http://127.0.0.1:50052\" must be an https:// URL",
            "backend_tls.cert_file: cannot read /nonexistent/c.pem",
        ] {
            assert!(all.contains(needle), "missing {needle} in {all}");
        }
    }
    #[test]
    fn several_mta_servers_are_listed_and_checked() {
        let c: Config = parse("", "t").unwrap();
        assert_eq!(c.mta_nodes().iter().map(|n| n.url.as_str()).collect::<Vec<_>>(), [DEFAULT_MTA_URL]);
        let c: Config = parse("mta_url = \"http://mta-1.internal:1\"\n", "t").unwrap();
        assert_eq!(c.mta_nodes()[0].node_id.as_deref(), Some("mta-1"));

        let text = "mta_urls = [\"http://mta-1:1\", { url = \"http://10.0.0.2:1\", node_id = \"mta-2\" }, \"http://10.0.0.3:1\"]\n";
        let nodes = parse::<Config>(text, "t").unwrap().mta_nodes();
        let ids: Vec<_> = nodes.iter().map(|n| (n.key.as_str(), n.node_id.as_deref())).collect();
        assert_eq!(ids, [("mta_urls[0]", Some("mta-1")), ("mta_urls[1]", Some("mta-2")), ("mta_urls[2]", None)]);
        assert_eq!(nodes[2].name(), "http://10.0.0.3:1", "no node id: named by its URL");

        let typo = parse::<Config>("mta_urls = [{ url = \"http://a:1\", nodeid = \"x\" }]\n", "t").unwrap_err();
        assert!(typo.problems.join("\n").contains("mta_urls"), "an unknown key in an entry: {:?}", typo.problems);

        let text = "mta_url = \"http://a:1\"\nmta_urls = [\"http://b:1\", \"nope\", \"http://b:1\", { url = \"http://c:1\", server_name = \"c\" }]\nmta_timeout_ms = 5\n";
        let all = parse::<Config>(text, "t").unwrap_err().problems.join("\n");
        for needle in [
            "mta_url and mta_urls: set one of them",
            "mta_urls[1]: `nope` must be an http:// or https:// URL",
            "mta_urls[2]: `http://b:1` is listed twice",
            "mta_urls[2].node_id: `b` names another entry too",
            "mta_urls[3].server_name: only with [mta_tls]",
            "mta_timeout_ms: 5 is not within 100 to 300000",
        ] {
            assert!(all.contains(needle), "missing {needle} in {all}");
        }
    }

    #[test]
    fn one_mta_tls_serves_every_node_with_its_own_server_name() {
        let tls = "[mta_tls]\nca_file = \"/nonexistent/ca.pem\"\ncert_file = \"/nonexistent/c.pem\"\nkey_file = \"/nonexistent/k.pem\"\nserver_name = \"mta.internal\"\n";
        let text = format!("mta_urls = [\"https://mta-1:1\", \"https://mta-2:1\"]\n{tls}");
        let problems = parse::<Config>(&text, "t").unwrap_err().problems;
        let all = problems.join("\n");
        assert!(all.contains("mta_tls.server_name: `mta.internal` cannot name several mta-servers"), "{all}");
        assert_eq!(problems.iter().filter(|p| p.contains("/nonexistent/c.pem")).count(), 1, "files named once: {all}");
        let c = Config {
            mta_urls: vec![
                MtaNodeEntry::Url("https://mta-1:1".into()),
                MtaNodeEntry::Table(MtaNodeTable {
                    url: "https://mta-2:1".into(),
                    server_name: Some("two".into()),
                    node_id: None,
                }),
            ],
            mta_tls: Some(ClientTls {
                ca_file: "ca.pem".into(),
                cert_file: "c.pem".into(),
                key_file: "k.pem".into(),
                server_name: None,
            }),
            ..Default::default()
        };
        let names: Vec<_> = c.mta_nodes().into_iter().map(|n| n.server_name).collect();
        assert_eq!(names, [None, Some("two".to_owned())]);
    }
}
