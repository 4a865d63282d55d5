//! `cargo xtask run`: the whole gateway and the webmail locally, with provider
//! stand-ins for the providers whose credentials are not in the environment. Tenants and
//! keys live in the backend-server it starts; it makes an admin key for the operator and a
//! service key for client-api (files in `target/xtask-run/`, mode 0600) before client-api
//! starts. Every gRPC link is mutual TLS, with a throwaway CA and a certificate per
//! service that `bitmail-certs` makes once under `data/tls/` (and an `operator` one for
//! grpcurl).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::out::{say, tell};
use crate::web::web;
use crate::{cargo, check, root, step};

/// The local gateway's fixed addresses (the services' defaults) and the stand-in's.
const BACKEND: &str = "127.0.0.1:50052";
const MTA: &str = "127.0.0.1:50051";
const EDGE: &str = "127.0.0.1:8443";
/// SMTP submission: STARTTLS (as port 587), implicit TLS (as 465), and the local
/// listener without AUTH (tenant `default`).
const SMTP: &str = "127.0.0.1:2587";
const SMTPS: &str = "127.0.0.1:2465";
const SMTP_LOCAL: &str = "127.0.0.1:2525";
const FAKE_SENDGRID: &str = "127.0.0.1:8025";
const FAKE_MAILGUN: &str = "127.0.0.1:8026";
const FAKE_SES: &str = "127.0.0.1:8027";
const FAKE_KEY: &str = "bitmail-dev-key";

/// Children killed (SIGTERM, then waited for) when this guard is dropped.
pub(crate) struct Children(pub(crate) Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &self.0 {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        for (name, child) in &mut self.0 {
            match child.wait() {
                Ok(status) if !status.success() => tell!("{name} exited with {status}"),
                _ => {}
            }
        }
    }
}

pub(crate) fn wait_for_port(addr: &str, name: &str, children: &mut Children) -> Result<()> {
    let addr: SocketAddr = addr.parse()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        for (child_name, child) in &mut children.0 {
            if let Some(status) = child.try_wait()? {
                bail!("{child_name} exited while starting ({status}); see its log above");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{name} did not listen on {addr} within 30 s")
}

impl Children {
    pub(crate) fn spawn(&mut self, name: &str, cmd: &mut Command) -> Result<()> {
        let child = cmd.spawn().with_context(|| format!("cannot start {name}"))?;
        self.0.push((name.to_owned(), child));
        Ok(())
    }
}

/// Writes `text` to a file only its owner can read (an API key).
pub(crate) fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{text}").with_context(|| format!("cannot write {}", path.display()))
}

/// The providers' `[[providers]]` TOML: the real ones whose credentials are in the
/// environment, the local stand-ins for the others.
pub(crate) struct Providers {
    pub(crate) toml: String,
    pub(crate) real_sendgrid: bool,
    pub(crate) real_mailgun: bool,
    pub(crate) real_ses: bool,
    /// The webmail's (and tenant `default`'s) domain: SES's verified one when SES is real.
    pub(crate) mail_domain: String,
}

impl Providers {
    pub(crate) fn stand_ins(&self) -> bool {
        !(self.real_sendgrid && self.real_mailgun && self.real_ses)
    }

    /// Where mail goes, for the banner.
    pub(crate) fn sent_to(&self) -> String {
        let describe = |real: bool, name: &str, addr: &str| {
            if real {
                format!("{name} (its key is set: mail is sent for real)")
            } else {
                format!("the {name} stand-in; what it received: http://{addr}/_fake/messages")
            }
        };
        let ses_line = if self.real_ses {
            format!(
                "\n                    Amazon SES (its keys are set: mail is sent for real, from @{})",
                self.mail_domain
            )
        } else {
            format!("\n                    {}", describe(false, "Amazon SES", FAKE_SES))
        };
        format!(
            "{}\n                    {}{ses_line}   (round-robin, failing over)",
            describe(self.real_sendgrid, "SendGrid", FAKE_SENDGRID),
            describe(self.real_mailgun, "Mailgun", FAKE_MAILGUN)
        )
    }
}

pub(crate) fn providers() -> Providers {
    // Each provider is the real one when its credentials are in the environment, and
    // the local stand-in otherwise.
    let real_sendgrid = std::env::var_os("SENDGRID_API_KEY").is_some();
    let real_mailgun = std::env::var_os("MAILGUN_API_KEY").is_some() && std::env::var_os("MAILGUN_DOMAIN").is_some();
    let sendgrid = if real_sendgrid {
        "[[providers]]\nname = \"sendgrid\"\nkind = \"sendgrid\"\napi_key = { env = \"SENDGRID_API_KEY\" }\n".to_owned()
    } else {
        format!(
            "[[providers]]\nname = \"sendgrid-stand-in\"\nkind = \"sendgrid\"\nbase_url = \"http://{FAKE_SENDGRID}\"\napi_key = \"{FAKE_KEY}\"\n"
        )
    };
    let mailgun = match std::env::var("MAILGUN_DOMAIN") {
        Ok(domain) if real_mailgun => format!(
            "[[providers]]\nname = \"mailgun\"\nkind = \"mailgun\"\ndomain = {domain:?}\napi_key = {{ env = \"MAILGUN_API_KEY\" }}\n"
        ),
        _ => format!(
            "[[providers]]\nname = \"mailgun-stand-in\"\nkind = \"mailgun\"\nbase_url = \"http://{FAKE_MAILGUN}\"\ndomain = \"mg.localhost\"\napi_key = \"{FAKE_KEY}\"\n"
        ),
    };
    // SES needs a verified sender: the webmail then sends as name@BITMAIL_SES_DOMAIN.
    let ses_domain = std::env::var("BITMAIL_SES_DOMAIN").ok().filter(|d| !d.is_empty());
    let ses_region = std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty());
    let real_ses = ses_domain.is_some()
        && ses_region.is_some()
        && std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        && std::env::var_os("AWS_SECRET_ACCESS_KEY").is_some();
    let ses = match &ses_region {
        Some(region) if real_ses => {
            let token = if std::env::var_os("AWS_SESSION_TOKEN").is_some() {
                "session_token = { env = \"AWS_SESSION_TOKEN\" }\n"
            } else {
                ""
            };
            format!(
                "[[providers]]\nname = \"ses\"\nkind = \"ses\"\nregion = {region:?}\naccess_key_id = {{ env = \"AWS_ACCESS_KEY_ID\" }}\nsecret_access_key = {{ env = \"AWS_SECRET_ACCESS_KEY\" }}\n{token}"
            )
        }
        _ => format!(
            "[[providers]]\nname = \"ses-stand-in\"\nkind = \"ses\"\nregion = \"us-east-1\"\nendpoint_url = \"http://{FAKE_SES}\"\naccess_key_id = \"{FAKE_KEY}\"\nsecret_access_key = \"stand-in-secret\"\n"
        ),
    };
    let mail_domain = ses_domain.filter(|_| real_ses).unwrap_or_else(|| "localhost".to_owned());
    Providers { toml: format!("{sendgrid}\n{mailgun}\n{ses}"), real_sendgrid, real_mailgun, real_ses, mail_domain }
}

/// What every layout of `cargo xtask run` needs: the services built, the webmail, the
/// providers, and the throwaway CA with a certificate per service.
pub(crate) struct Prepared {
    bin_dir: PathBuf,
    /// `target/xtask-run`: the configs and key files.
    pub(crate) dir: PathBuf,
    pub(crate) web_dir: PathBuf,
    pub(crate) tls_dir: PathBuf,
    pub(crate) providers: Providers,
}

impl Prepared {
    pub(crate) fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// A `[section]` of mutual-TLS files: the CA, and `name`'s certificate and key.
    pub(crate) fn tls(&self, section: &str, name: &str) -> String {
        tls_section(&self.tls_dir, section, name)
    }

    /// The provider stand-ins, for the providers that are not real.
    pub(crate) fn spawn_stand_ins(&self, children: &mut Children) -> Result<()> {
        if self.providers.stand_ins() {
            children.spawn(
                "bitmail-fakes",
                Command::new(self.bin("bitmail-fakes")).args([
                    "--sendgrid",
                    FAKE_SENDGRID,
                    "--mailgun",
                    FAKE_MAILGUN,
                    "--ses",
                    FAKE_SES,
                    "--key",
                    FAKE_KEY,
                ]),
            )?;
        }
        Ok(())
    }

    pub(crate) fn wait_for_stand_ins(&self, children: &mut Children) -> Result<()> {
        if self.providers.stand_ins() {
            wait_for_port(FAKE_SENDGRID, "the SendGrid stand-in", children)?;
            wait_for_port(FAKE_MAILGUN, "the Mailgun stand-in", children)?;
            wait_for_port(FAKE_SES, "the SES stand-in", children)?;
        }
        Ok(())
    }

    /// Makes an API key with `mta-server create-key` (the backend-server must be up) into
    /// `file`, unless `keep` and the file is there already.
    pub(crate) fn key(
        &self,
        mta_config: &Path,
        file: &Path,
        scopes: &str,
        name: &str,
        keep: bool,
    ) -> Result<&'static str> {
        if keep && file.is_file() {
            return Ok("kept from an earlier run");
        }
        let out = Command::new(self.bin("mta-server"))
            .arg("create-key")
            .arg("--config")
            .arg(mta_config)
            .args(["--scopes", scopes, "--name", name])
            .output()
            .context("cannot run mta-server create-key")?;
        if !out.status.success() {
            bail!(
                "mta-server create-key --scopes {scopes} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        write_private(file, String::from_utf8_lossy(&out.stdout).trim())?;
        Ok("new")
    }
}

pub(crate) fn tls_section(tls_dir: &Path, section: &str, name: &str) -> String {
    let file = |f: String| format!("{:?}", tls_dir.join(f).display().to_string());
    format!(
        "[{section}]\nca_file = {}\ncert_file = {}\nkey_file = {}\n",
        file("ca.pem".into()),
        file(format!("{name}.pem")),
        file(format!("{name}.key"))
    )
}

pub(crate) fn prepare(release: bool) -> Result<Prepared> {
    let profile = if release { "release" } else { "debug" };
    let web_dir = web()?;
    step("building the services");
    let mut build = cargo();
    build.args(["build", "--workspace", "--bins"]);
    if release {
        build.arg("--release");
    }
    check(build.status(), "cargo build")?;
    let bin_dir = crate::target_dir().join(profile);
    let dir = crate::target_dir().join("xtask-run");
    std::fs::create_dir_all(&dir)?;
    // Mutual TLS on every gRPC link: a throwaway CA under data/tls/, made once.
    let tls_dir = root().join("data/tls");
    let certs = Command::new(bin_dir.join("bitmail-certs"))
        .arg("--dir")
        .arg(&tls_dir)
        .arg("--keep")
        .args(["backend-server", "mta-server", "client-api"].map(|s| format!("{s}=localhost,127.0.0.1")))
        .arg("operator=localhost")
        .output()
        .context("cannot run bitmail-certs")?;
    if !certs.status.success() {
        bail!("bitmail-certs failed ({}): {}", certs.status, String::from_utf8_lossy(&certs.stderr).trim());
    }
    Ok(Prepared { bin_dir, dir, web_dir, tls_dir, providers: providers() })
}

/// Runs until a service exits (Ctrl-C reaches the whole process group: the services
/// shut down on their own). Here, stop everything as soon as any one of them exits.
pub(crate) fn wait_for_any(children: &mut Children) -> Result<()> {
    loop {
        for (name, child) in &mut children.0 {
            if let Some(status) = child.try_wait()? {
                tell!("{name} exited ({status}); stopping the others");
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `cargo xtask run`: one of each service, the store in a redb file
/// (`data/backend/store.redb`). With `--nodes N`, `main` hands the prepared run to
/// `run_nodes` instead (which uses this module's pieces, so this one does not call it).
pub(crate) fn run_one(p: &Prepared) -> Result<()> {
    let dir = &p.dir;
    let mail_domain = &p.providers.mail_domain;
    let provider = &p.providers.toml;
    let tls = |section: &str, name: &str| p.tls(section, name);
    let store_file = root().join("data/backend/store.redb");
    // Keys made on an earlier run are kept with the store they are in.
    let store_existed = store_file.is_file();
    let service_key_file = dir.join("client-api.key");
    let admin_key_file = dir.join("admin.key");
    let console_key_file = dir.join("client-api-admin.key");
    let smtp_key_file = dir.join("smtp.key");
    let configs = [
        (
            "backend-server",
            format!(
                "listen = \"{BACKEND}\"\nengine = \"embedded\"\n[embedded]\npath = {:?}\n{}",
                store_file.display().to_string(),
                tls("tls", "backend-server")
            ),
        ),
        (
            "mta-server",
            // Tenants and keys in the backend-server started here; tenant `default`
            // sends from the webmail's domain.
            format!(
                "listen = \"{MTA}\"\n{}[spool]\npath = {:?}\n[retry]\ninitial_secs = 5\n[tenants]\nstore = \"https://{BACKEND}\"\ndefault_domains = [{mail_domain:?}]\n{}[lists]\npublic_url = \"https://localhost:8443\"\n[smtp]\nsubmission = \"{SMTP}\"\nsubmissions = \"{SMTPS}\"\n[smtp.local]\nlisten = \"{SMTP_LOCAL}\"\ntenant = \"default\"\n\n{provider}",
                tls("tls", "mta-server"),
                root().join("data/mta/spool.redb").display().to_string(),
                tls("tenants.tls", "mta-server")
            ),
        ),
        (
            "client-api",
            format!(
                "listen = \"{EDGE}\"\nstate_dir = {:?}\nmta_url = \"https://{MTA}\"\nmta_key = {{ file = {:?} }}\nmta_admin_key = {{ file = {:?} }}\nbackend_url = \"https://{BACKEND}\"\nmail_domain = {mail_domain:?}\nsignup_on_first_login = true\nweb_dir = {:?}\n{}{}",
                root().join("data/client-api").display().to_string(),
                service_key_file.display().to_string(),
                console_key_file.display().to_string(),
                p.web_dir.display().to_string(),
                tls("mta_tls", "client-api"),
                tls("backend_tls", "client-api")
            ),
        ),
    ];
    for (name, text) in &configs {
        std::fs::write(dir.join(format!("{name}.toml")), text)?;
    }

    let mut children = Children(Vec::new());
    p.spawn_stand_ins(&mut children)?;
    let config_of = |name: &str| dir.join(format!("{name}.toml"));
    children.spawn(
        "backend-server",
        Command::new(p.bin("backend-server")).arg("--config").arg(config_of("backend-server")),
    )?;
    wait_for_port(BACKEND, "backend-server", &mut children)?;
    // The keys live in the backend's store: made once it is up, before client-api reads
    // its own. Kept from an earlier run when the store is too.
    let mta_config = config_of("mta-server");
    let key = |file: &PathBuf, scopes: &str, name: &str| p.key(&mta_config, file, scopes, name, store_existed);
    let service_key_state = key(&service_key_file, "service", "client-api (cargo xtask run)")?;
    let admin_key_state = key(&admin_key_file, "admin", "operator (cargo xtask run)")?;
    // The admin console's own key (client-api's mta_admin_key).
    key(&console_key_file, "admin", "client-api console (cargo xtask run)")?;
    let smtp_key_state = key(&smtp_key_file, "send", "SMTP clients (cargo xtask run)")?;
    for name in ["mta-server", "client-api"] {
        children.spawn(name, Command::new(p.bin(name)).arg("--config").arg(config_of(name)))?;
    }

    p.wait_for_stand_ins(&mut children)?;
    wait_for_port(MTA, "mta-server", &mut children)?;
    wait_for_port(SMTP, "mta-server's SMTP submission", &mut children)?;
    wait_for_port(EDGE, "client-api", &mut children)?;

    let sent_to = p.providers.sent_to();
    let tls_dir = &p.tls_dir;
    let grpcurl_tls = format!("-cacert {0}/ca.pem -cert {0}/operator.pem -key {0}/operator.key", tls_dir.display());
    say!(
        "
BitMail is running.

  webmail and API   https://localhost:8443/   (self-signed certificate: accept it once)
                    sign in with any name (a-z, 0-9, . _ -) and a password of 8+ characters;
                    the first sign-in creates the account
  mta-server gRPC   {MTA}   (mutual TLS; reflection on: grpcurl {grpcurl_tls} {MTA} list)
                    every call needs an API key; tenant `default` sends from @{mail_domain}
  admin key         {}   ({admin_key_state}; scope admin)
  client-api's keys {}   ({service_key_state}; scope service, its mta_key)
                    and client-api-admin.key beside it (scope admin, its mta_admin_key: the console)
  SMTP submission   {SMTP} (STARTTLS)   {SMTPS} (TLS)   user `apikey`, password: the key in
                    {}   ({smtp_key_state}; scope send)
                    {SMTP_LOCAL}: no TLS, no AUTH, sends as tenant `default` (this host only)
                    certificate (self-signed): {}
  backend gRPC      {BACKEND}   (mutual TLS)
  certificates      {}   (a throwaway CA, certificates per service; operator.pem for you)
  mail goes to      {sent_to}
  configs           {}

Submit over gRPC with the admin key, for example:
  grpcurl {grpcurl_tls} -H \"authorization: Bearer $(cat {})\" \\
    -d '{{\"from\":\"me@{mail_domain}\",\"to\":[\"you@example.org\"],\"subject\":\"Hi\",\"text\":\"Hello\"}}' \\
    {MTA} bitmail.v1.Mta/Submit
or over SMTP:
  swaks --server {SMTP} --tls --auth PLAIN --auth-user apikey --auth-password \"$(cat {})\" \\
    --from me@{mail_domain} --to you@example.org
More keys: {} create-key --config {} --scopes send --name NAME

Ctrl-C stops everything.",
        admin_key_file.display(),
        service_key_file.display(),
        smtp_key_file.display(),
        root().join("data/mta/smtp-tls/cert.pem").display(),
        tls_dir.display(),
        dir.display(),
        admin_key_file.display(),
        smtp_key_file.display(),
        p.bin("mta-server").display(),
        config_of("mta-server").display(),
    );

    wait_for_any(&mut children)
}
