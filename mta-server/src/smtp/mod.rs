//! SMTP submission (RFC 6409) for applications that speak nothing else: Django's
//! `send_mail`, cron, monitoring, printers.
//!
//! Three listeners, each optional (`[smtp]` in the config, `config/smtp.rs`):
//! - **submission** (port 587): plaintext until `STARTTLS` (RFC 3207); `AUTH` is offered
//!   and accepted only after it;
//! - **submissions** (port 465): TLS from the first byte (RFC 8314);
//! - **local**: loopback only, no TLS and no `AUTH`, everything sent as one configured
//!   tenant (local programs, the benchmark).
//!
//! `AUTH PLAIN` and `AUTH LOGIN` take a tenant API key with the `send` scope as the
//! password; the user name is the tenant's name or `apikey` (as SendGrid's relay takes
//! it), so existing SMTP settings change only the host. A message goes through the same
//! [`crate::service::MtaService::submit_as`] as gRPC `Submit`: validation, the tenant's
//! `From` rule, quotas, suppressions, then the spool; `250` is answered only once it is
//! on disk. The client's MIME is kept (`Bcc` removed, `Message-ID` and `Date` added when
//! missing) and sent whole by the providers that take MIME (SMTP relays, SES `Raw`,
//! Mailgun `messages.mime`); SendGrid gets the parts read from it.
//!
//! - [`session`]: one connection's state machine and its limits (`session/mod.rs` the
//!   command loop, `session/auth.rs` AUTH, `session/mail.rs` MAIL, RCPT and DATA);
//! - [`message`]: the DATA bytes checked (line lengths, NUL, bare LF, 8-bit headers) and
//!   read into a submission;
//! - [`sasl`]: the PLAIN and LOGIN exchanges;
//! - [`gate`]: connection caps per listener and per client address, and failed `AUTH`
//!   per client address;
//! - [`conn`]: a connection before and after TLS.

mod conn;
mod gate;
mod message;
mod sasl;
mod session;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::SmtpListenConfig;
use crate::service::MtaService;
use crate::tenant::KeyCheck;
use bitmail_runtime::metrics::Registry;
use gate::{AuthFailures, Gate};

/// Which listener a session came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// Port 587: STARTTLS, then AUTH.
    Submission,
    /// Port 465: implicit TLS, then AUTH.
    Submissions,
    /// Loopback, no AUTH: the configured tenant.
    Local,
}

impl Listener {
    fn as_str(self) -> &'static str {
        match self {
            Listener::Submission => "submission",
            Listener::Submissions => "submissions",
            Listener::Local => "local",
        }
    }
}

/// The limits of every session, from the config.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub hostname: String,
    /// The largest message as sent (the SIZE advertised): MIME, base64 and all.
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub command_timeout: Duration,
    pub session_timeout: Duration,
    pub max_bad_commands: u32,
    pub auth_failure_delay: Duration,
    /// The tenant of the local listener.
    pub local_tenant: Option<String>,
}

/// What every session shares.
pub(crate) struct Shared {
    pub service: Arc<MtaService>,
    pub keys: Arc<KeyCheck>,
    pub tls: TlsAcceptor,
    pub settings: Settings,
    pub auth_failures: AuthFailures,
    pub metrics: Registry,
}

/// The bound SMTP listeners, not yet serving.
pub struct SmtpServer {
    listeners: Vec<(Listener, TcpListener)>,
    shared: Arc<Shared>,
    gate: Arc<Gate>,
}

/// Where each listener is bound (for logs and tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct SmtpAddrs {
    pub submission: Option<SocketAddr>,
    pub submissions: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("smtp: {0}")]
    Tls(#[from] bitmail_runtime::tls::TlsError),
    #[error("smtp: cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

impl SmtpServer {
    /// Binds the configured listeners; `None` when none is configured. Without
    /// `cert_file`/`key_file`, a self-signed certificate is made in `state_dir/smtp-tls`.
    pub async fn bind(
        config: &SmtpListenConfig,
        max_message_bytes: usize,
        max_recipients: usize,
        state_dir: &Path,
        service: Arc<MtaService>,
        keys: Arc<KeyCheck>,
        metrics: Registry,
    ) -> Result<Option<Self>, SmtpError> {
        if !config.enabled() {
            return Ok(None);
        }
        let configured = config.cert_file.as_deref().zip(config.key_file.as_deref());
        let cert = bitmail_runtime::tls::ensure_certificate(configured, &state_dir.join("smtp-tls"))?;
        let tls = TlsAcceptor::from(Arc::new(bitmail_runtime::tls::server_config(&cert, &[])?));
        let mut listeners = Vec::new();
        for (kind, addr) in [
            (Listener::Submission, config.submission),
            (Listener::Submissions, config.submissions),
            (Listener::Local, config.local.as_ref().map(|l| l.listen)),
        ] {
            if let Some(addr) = addr {
                let bound = TcpListener::bind(addr).await.map_err(|source| SmtpError::Bind { addr, source })?;
                listeners.push((kind, bound));
            }
        }
        let settings = Settings {
            hostname: config.hostname.clone(),
            // Base64 makes attachments a third larger than the content limit counts.
            max_message_bytes: max_message_bytes.saturating_mul(4) / 3 + 64 * 1024,
            max_recipients,
            command_timeout: Duration::from_secs(config.command_timeout_secs),
            session_timeout: Duration::from_secs(config.session_timeout_secs),
            max_bad_commands: config.max_bad_commands,
            auth_failure_delay: Duration::from_millis(config.auth_failure_delay_ms),
            local_tenant: config.local.as_ref().map(|l| l.tenant.clone()),
        };
        let auth_failures =
            AuthFailures::new(config.max_auth_failures, Duration::from_secs(config.auth_failure_window_secs));
        let gate = Arc::new(Gate::new(config.max_connections, config.max_connections_per_client));
        let shared = Arc::new(Shared { service, keys, tls, settings, auth_failures, metrics });
        Ok(Some(Self { listeners, shared, gate }))
    }

    pub fn addrs(&self) -> SmtpAddrs {
        let mut addrs = SmtpAddrs::default();
        for (kind, listener) in &self.listeners {
            let addr = listener.local_addr().ok();
            match kind {
                Listener::Submission => addrs.submission = addr,
                Listener::Submissions => addrs.submissions = addr,
                Listener::Local => addrs.local = addr,
            }
        }
        addrs
    }

    /// Accepts sessions until `stop` turns true; then each session answers `421` at its
    /// next command (a message half received is not stored: the client keeps it).
    pub async fn serve(self, stop: watch::Receiver<bool>) {
        let mut loops = Vec::new();
        for (kind, listener) in self.listeners {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(listener = kind.as_str(), %addr, "SMTP listening");
            }
            loops.push(tokio::spawn(accept_loop(kind, listener, self.shared.clone(), self.gate.clone(), stop.clone())));
        }
        for l in loops {
            let _ = l.await;
        }
    }
}

async fn accept_loop(
    kind: Listener,
    listener: TcpListener,
    shared: Arc<Shared>,
    gate: Arc<Gate>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "SMTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let pass = gate.enter(peer.ip());
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            match pass {
                Ok(pass) => {
                    session::run(kind, tcp, peer, shared, stop).await;
                    drop(pass);
                }
                Err(refusal) => session::refuse(tcp, &shared, refusal).await,
            }
        });
    }
}
