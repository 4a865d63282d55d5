//! One SMTP connection: a loop that handles every complete command already buffered
//! (that is PIPELINING: replies are written together and flushed before waiting for
//! more), then reads.
//!
//! ```text
//!   connect ──220──▶ Greeted ──EHLO──▶ Ready ──STARTTLS (587)──▶ TLS: buffer dropped,
//!                                      │                         EHLO again
//!                                      ├──AUTH (after TLS)──▶ Authenticated
//!   Authenticated (or local) ──MAIL──▶ Sender ──RCPT──▶ Recipients ──DATA──▶ 354
//!     ──body . ──▶ stored ──250 2.0.0 <id>──▶ Authenticated   (RSET: back, keeping AUTH)
//! ```
//!
//! Limits: a command line of at most 1000 bytes; each command within the command
//! timeout and the whole session within the session timeout (then 421 4.4.2); at most
//! `max_bad_commands` refused commands (syntax, order, credentials; then 421 4.7.0); recipients per message as the
//! tenant and the config allow (452 4.5.3); the message within SIZE, whether announced
//! (552 at MAIL) or not (552 after DATA, the rest of it read and dropped); refused AUTH
//! answered after a delay and counted per client address.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, Error as ParseError, MAIL_SMTPUTF8, MailFrom, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tonic::Code;
use tracing::{debug, info};

use super::conn::Conn;
use super::gate::Refusal;
use super::message::{self, MAX_LINE};
use super::sasl::{self, Decoded};
use super::{Listener, Shared};
use crate::tenant::{Admitted, AuthError, OverQuota, Scope, Tenant};

/// Why a session ends.
enum End {
    /// The client closed, or the connection broke.
    Closed,
    Timeout,
    Shutdown,
    /// The session answered its own last reply (QUIT, too many errors).
    Done,
}

/// What a handled command asks of the loop.
enum Next {
    Go,
    StartTls,
    Data,
    Quit,
}

/// A mail transaction, from MAIL to the end of DATA.
struct Transaction {
    from: String,
    smtputf8: bool,
    recipients: Vec<String>,
    /// The tenant's allowance for this message, taken at MAIL; given back if no
    /// message is stored.
    admitted: Admitted,
}

struct Session {
    shared: Arc<Shared>,
    listener: Listener,
    peer: SocketAddr,
    conn: Option<Conn>,
    stop: watch::Receiver<bool>,
    /// Bytes read and not yet handled start at `start`.
    input: Vec<u8>,
    start: usize,
    /// Inside an over-long command line: dropped up to its LF.
    discarding: bool,
    out: Vec<u8>,
    tls: bool,
    helo: bool,
    /// Who sends: the authenticated key's tenant, or the local listener's.
    sender: Option<(Arc<Tenant>, String)>,
    txn: Option<Transaction>,
    bad_commands: u32,
    deadline: Instant,
}

/// Serves one accepted connection to its end.
pub(super) async fn run(
    listener: Listener,
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let deadline = Instant::now() + shared.settings.session_timeout;
    shared.metrics.count(
        "bitmail_smtp_sessions_total",
        "SMTP sessions, by listener.",
        &[("listener", listener.as_str())],
        1,
    );
    let conn = match listener {
        Listener::Submissions => {
            match tokio::time::timeout(shared.settings.command_timeout, shared.tls.accept(tcp)).await {
                Ok(Ok(tls)) => Conn::Tls(Box::new(tls)),
                Ok(Err(e)) => return debug!(%peer, error = %e, "SMTP TLS handshake failed"),
                Err(_) => return debug!(%peer, "SMTP TLS handshake timed out"),
            }
        }
        Listener::Submission | Listener::Local => Conn::Plain(tcp),
    };
    let mut session = Session {
        tls: matches!(conn, Conn::Tls(_)),
        shared,
        listener,
        peer,
        conn: Some(conn),
        stop,
        input: Vec::with_capacity(8 * 1024),
        start: 0,
        discarding: false,
        out: Vec::with_capacity(1024),
        helo: false,
        sender: None,
        txn: None,
        bad_commands: 0,
        deadline,
    };
    let end = session.serve().await;
    let host = session.shared.settings.hostname.clone();
    match end {
        End::Timeout => session.reply(421, "4.4.2", &format!("{host} timeout: closing the connection")),
        End::Shutdown => session.reply(421, "4.3.2", &format!("{host} shutting down: try again later")),
        End::Closed | End::Done => {}
    }
    if let Some(mut conn) = session.conn.take() {
        let _ = conn.write_all(&session.out).await;
        let _ = conn.shutdown().await;
    }
}

/// Answers a connection over the caps with 421 and closes it.
pub(super) async fn refuse(mut tcp: TcpStream, shared: &Shared, refusal: Refusal) {
    let text = match refusal {
        Refusal::Full => "too many connections: try again later",
        Refusal::TooManyFromClient => "too many connections from your address: try again later",
    };
    shared.metrics.count("bitmail_smtp_refusals_total", "SMTP refusals, by reply code.", &[("code", "421")], 1);
    let line = format!("421 4.7.0 {} {text}\r\n", shared.settings.hostname);
    let _ = tokio::time::timeout(shared.settings.command_timeout, tcp.write_all(line.as_bytes())).await;
    let _ = tcp.shutdown().await;
}

impl Session {
    async fn serve(&mut self) -> End {
        let host = self.shared.settings.hostname.clone();
        self.reply(220, "", &format!("{host} ESMTP BitMail submission"));
        loop {
            if let Err(end) = self.handle_buffered().await {
                return end;
            }
            if let Err(end) = self.flush().await {
                return end;
            }
            if let Err(end) = self.fill().await {
                return end;
            }
        }
    }

    /// Handles every complete command in the buffer.
    async fn handle_buffered(&mut self) -> Result<(), End> {
        while let Some(line) = self.take_line()? {
            self.check_bad()?;
            match self.command(&line).await? {
                Next::Go => {}
                Next::Quit => {
                    self.reply(221, "2.0.0", "bye");
                    return Err(End::Done);
                }
                Next::StartTls => self.start_tls().await?,
                Next::Data => {
                    self.flush().await?;
                    self.data().await?;
                }
            }
            self.check_bad()?;
        }
        self.check_bad()
    }

    /// The next command line, with its line end; `None` when none is complete. A line
    /// over [`MAX_LINE`] is answered 500 5.5.2 and dropped up to its end.
    fn take_line(&mut self) -> Result<Option<Vec<u8>>, End> {
        loop {
            let pending = &self.input[self.start..];
            let Some(lf) = pending.iter().position(|&b| b == b'\n') else {
                if pending.len() > MAX_LINE && !self.discarding {
                    self.discarding = true;
                    self.start = self.input.len();
                    self.refuse_bad(500, "5.5.2", "line too long: at most 1000 bytes")?;
                } else if self.discarding {
                    self.start = self.input.len();
                }
                return Ok(None);
            };
            let line = pending[..=lf].to_vec();
            self.start += lf + 1;
            if std::mem::take(&mut self.discarding) {
                continue;
            }
            if line.len() > MAX_LINE {
                self.refuse_bad(500, "5.5.2", "line too long: at most 1000 bytes")?;
                continue;
            }
            return Ok(Some(line));
        }
    }

    async fn command(&mut self, line: &[u8]) -> Result<Next, End> {
        if line.contains(&0) {
            self.refuse_bad(500, "5.5.2", "NUL in a command")?;
            return Ok(Next::Go);
        }
        let request = match Request::parse(&mut line.iter()) {
            Ok(request) => request,
            Err(e) => {
                let (code, enhanced, text) = parse_error(&e);
                self.refuse_bad(code, enhanced, &text)?;
                return Ok(Next::Go);
            }
        };
        match request {
            Request::Ehlo { .. } => self.ehlo(true),
            Request::Helo { .. } => self.ehlo(false),
            Request::StartTls => return Ok(self.starttls_allowed()),
            Request::Auth { mechanism, initial_response } => self.auth(mechanism, &initial_response).await?,
            Request::Mail { from } => self.mail(from).await,
            Request::Rcpt { to } => self.rcpt(&to.address).await,
            Request::Data => return self.data_allowed(),
            Request::Rset => {
                self.txn = None;
                self.reply(250, "2.0.0", "reset");
            }
            Request::Noop { .. } => self.reply(250, "2.0.0", "OK"),
            Request::Quit => return Ok(Next::Quit),
            Request::Vrfy { .. } => self.reply(252, "2.5.0", "cannot verify addresses; send and see"),
            Request::Bdat { chunk_size, .. } => {
                // Not offered (no CHUNKING): its bytes are drained so they never run
                // as commands.
                self.drain_bdat(chunk_size).await?;
                self.refuse_bad(502, "5.5.1", "BDAT is not offered here; use DATA")?;
            }
            _ => self.refuse_bad(502, "5.5.1", "command not implemented")?,
        }
        Ok(Next::Go)
    }

    fn ehlo(&mut self, extended: bool) {
        self.txn = None;
        self.helo = true;
        let host = self.shared.settings.hostname.clone();
        if !extended {
            return self.reply(250, "", &host);
        }
        let mut lines = vec![
            host,
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.shared.settings.max_message_bytes),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
        ];
        if self.listener == Listener::Submission && !self.tls {
            lines.push("STARTTLS".to_owned());
        }
        if self.tls && self.sender.is_none() {
            lines.push("AUTH PLAIN LOGIN".to_owned());
        }
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            self.out.extend_from_slice(format!("250{sep}{line}\r\n").as_bytes());
        }
    }

    fn starttls_allowed(&mut self) -> Next {
        if self.tls {
            self.reply(503, "5.5.1", "TLS is already active");
            Next::Go
        } else if self.listener != Listener::Submission {
            self.reply(502, "5.5.1", "STARTTLS is not offered on this port");
            Next::Go
        } else {
            self.reply(220, "2.0.0", "ready to start TLS");
            Next::StartTls
        }
    }

    /// Upgrades to TLS. Whatever the client sent after STARTTLS in plaintext is dropped
    /// unread (a command injected there must not run), and the session starts over:
    /// a new EHLO, no sender, no transaction.
    async fn start_tls(&mut self) -> Result<(), End> {
        self.flush().await?;
        self.input.clear();
        self.start = 0;
        let Some(Conn::Plain(tcp)) = self.conn.take() else { return Err(End::Closed) };
        let accepted = tokio::time::timeout(self.shared.settings.command_timeout, self.shared.tls.accept(tcp)).await;
        match accepted {
            Ok(Ok(tls)) => {
                self.conn = Some(Conn::Tls(Box::new(tls)));
                self.tls = true;
                self.helo = false;
                self.sender = None;
                self.txn = None;
                Ok(())
            }
            Ok(Err(e)) => {
                debug!(peer = %self.peer, error = %e, "SMTP STARTTLS handshake failed");
                Err(End::Closed)
            }
            Err(_) => Err(End::Closed),
        }
    }

    async fn auth(&mut self, mechanism: u64, initial: &str) -> Result<(), End> {
        if self.listener == Listener::Local {
            return self.refuse_bad(503, "5.5.1", "no AUTH here: this listener sends as its configured tenant");
        }
        if !self.tls {
            return self.refuse_bad(538, "5.7.11", "encryption required: send STARTTLS first");
        }
        if self.sender.is_some() {
            return self.refuse_bad(503, "5.5.1", "already authenticated");
        }
        if self.txn.is_some() {
            return self.refuse_bad(503, "5.5.1", "AUTH is not allowed within a mail transaction");
        }
        if self.shared.auth_failures.blocked(self.peer.ip(), Instant::now()) {
            self.reply(421, "4.7.0", "too many failed AUTH attempts from your address: try again later");
            return Err(End::Done);
        }
        let credentials = match mechanism {
            AUTH_PLAIN => self.plain(initial).await?,
            AUTH_LOGIN => self.login(initial).await?,
            _ => return self.refuse_bad(504, "5.5.4", "unrecognized authentication type: use PLAIN or LOGIN"),
        };
        match credentials {
            Ok((user, password)) => self.verify(&user, &password).await,
            Err(refusal) => {
                let (code, enhanced, text) = refusal;
                self.refuse_bad(code, enhanced, text)
            }
        }
    }

    /// A 334 challenge and the client's decoded answer.
    async fn challenge(&mut self, prompt: &str) -> Result<Result<String, (u16, &'static str, &'static str)>, End> {
        self.out.extend_from_slice(format!("334 {prompt}\r\n").as_bytes());
        self.flush().await?;
        let line = loop {
            if let Some(line) = self.take_line()? {
                break line;
            }
            self.fill().await?;
        };
        Ok(match sasl::decode(&String::from_utf8_lossy(&line)) {
            Decoded::Value(v) => Ok(v),
            Decoded::Cancelled => Err((501, "5.0.0", "authentication cancelled")),
            Decoded::Invalid(why) => Err((501, "5.5.2", why)),
        })
    }

    async fn plain(
        &mut self,
        initial: &str,
    ) -> Result<Result<(String, String), (u16, &'static str, &'static str)>, End> {
        let message = if initial.is_empty() {
            match self.challenge("").await? {
                Ok(m) => m,
                Err(e) => return Ok(Err(e)),
            }
        } else {
            match sasl::decode(initial) {
                Decoded::Value(v) => v,
                Decoded::Cancelled => return Ok(Err((501, "5.0.0", "authentication cancelled"))),
                Decoded::Invalid(why) => return Ok(Err((501, "5.5.2", why))),
            }
        };
        Ok(sasl::plain(&message).map_err(|why| (501, "5.5.2", why)))
    }

    async fn login(
        &mut self,
        initial: &str,
    ) -> Result<Result<(String, String), (u16, &'static str, &'static str)>, End> {
        let user = if initial.is_empty() {
            self.challenge(sasl::LOGIN_USER).await?
        } else {
            match sasl::decode(initial) {
                Decoded::Value(v) => Ok(v),
                Decoded::Cancelled => Err((501, "5.0.0", "authentication cancelled")),
                Decoded::Invalid(why) => Err((501, "5.5.2", why)),
            }
        };
        let Ok(user) = user else { return Ok(user.map(|u| (u, String::new()))) };
        Ok(self.challenge(sasl::LOGIN_PASSWORD).await?.map(|password| (user, password)))
    }

    /// Checks the key: user name `apikey` or the key's tenant, and the `send` scope.
    async fn verify(&mut self, user: &str, password: &str) -> Result<(), End> {
        let ip = self.peer.ip();
        let checked = self.shared.keys.authenticate_from(password, ip).await;
        let why = match checked {
            Ok(caller) => {
                let user_fits = user.eq_ignore_ascii_case("apikey") || user.eq_ignore_ascii_case(&caller.tenant.id);
                if user_fits && caller.require(Scope::Send).is_ok() {
                    info!(peer = %self.peer, tenant = %caller.tenant.id, key = %caller.prefix(), "SMTP AUTH accepted");
                    self.sender = Some((caller.tenant.clone(), caller.prefix()));
                    self.reply(235, "2.7.0", "authentication succeeded");
                    return Ok(());
                }
                if user_fits {
                    "the key lacks the send scope"
                } else {
                    "the user name is neither `apikey` nor the key's tenant"
                }
            }
            Err(AuthError::Unavailable(_)) => {
                self.reply(454, "4.7.0", "cannot check credentials now: try again later");
                return Ok(());
            }
            Err(AuthError::Revoked) => "the key is revoked",
            Err(AuthError::Expired) => "the key has expired",
            Err(AuthError::Suspended { .. }) => "the key's tenant is suspended",
            Err(AuthError::Malformed(_) | AuthError::Unknown) => "unknown key",
        };
        self.shared.auth_failures.failed(ip, Instant::now());
        debug!(peer = %self.peer, reason = why, "SMTP AUTH refused");
        tokio::time::sleep(self.shared.settings.auth_failure_delay).await;
        self.refuse_bad(535, "5.7.8", &format!("authentication credentials invalid: {why}"))
    }

    /// The sender for MAIL: the authenticated one, or the local listener's tenant.
    async fn sender(&mut self) -> Result<(Arc<Tenant>, String), (u16, &'static str, String)> {
        if let Some(sender) = &self.sender {
            return Ok(sender.clone());
        }
        let (Listener::Local, Some(id)) = (self.listener, self.shared.settings.local_tenant.clone()) else {
            return Err((530, "5.7.0", "authentication required: STARTTLS, then AUTH".into()));
        };
        match self.shared.service.tenant_named(&id).await {
            Ok(tenant) if tenant.is_active() => Ok((tenant, "local".to_owned())),
            Ok(_) => Err((550, "5.7.1", format!("tenant {id:?} is suspended"))),
            Err(e) if e.code() == Code::InvalidArgument => Err((550, "5.7.1", format!("no tenant {id:?}"))),
            Err(_) => Err((451, "4.3.0", "cannot read the tenant now: try again later".into())),
        }
    }

    async fn mail(&mut self, from: MailFrom<Cow<'_, str>>) {
        if !self.helo {
            return self.reply(503, "5.5.1", "send EHLO first");
        }
        if self.txn.is_some() {
            return self.reply(503, "5.5.1", "a transaction is open: RSET first");
        }
        let (tenant, _) = match self.sender().await {
            Ok(sender) => sender,
            Err((code, enhanced, text)) => return self.reply(code, enhanced, &text),
        };
        let max = self.shared.settings.max_message_bytes;
        if from.size > max {
            return self.reply(552, "5.3.4", &format!("message too big: at most {max} bytes"));
        }
        let address = from.address.trim().to_owned();
        if address.is_empty() {
            return self.reply(550, "5.7.1", "a null sender is not taken for submission");
        }
        if !tenant.may_send_from(&address) {
            return self.reply(
                550,
                "5.7.1",
                &format!("{address} is not a sending domain or address of tenant {:?}", tenant.id),
            );
        }
        match self.shared.service.admit(&tenant).await {
            Ok(admitted) => {
                let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
                self.txn = Some(Transaction { from: address.clone(), smtputf8, recipients: Vec::new(), admitted });
                self.reply(250, "2.1.0", &format!("sender <{address}> OK"));
            }
            Err(OverQuota::Unavailable(_)) => self.reply(451, "4.7.1", "cannot read the quota now: try again later"),
            Err(e) => {
                let wait = match &e {
                    OverQuota::Rate { retry_after_ms, .. } => {
                        format!("; try again in {} s", retry_after_ms.div_ceil(1000))
                    }
                    _ => String::new(),
                };
                self.reply(452, "4.7.1", &format!("tenant {:?} is over its quota: {e}{wait}", tenant.id));
            }
        }
    }

    async fn rcpt(&mut self, address: &str) {
        if self.txn.is_none() {
            return self.reply(503, "5.5.1", "send MAIL first");
        }
        let tenant = match self.sender().await {
            Ok((tenant, _)) => tenant,
            Err((code, enhanced, text)) => return self.reply(code, enhanced, &text),
        };
        let address = address.trim().to_owned();
        let max = self.shared.settings.max_recipients.min(tenant.quotas.max_recipients as usize);
        let Some(txn) = &self.txn else { return };
        if txn.recipients.iter().any(|r| r.eq_ignore_ascii_case(&address)) {
            return self.reply(250, "2.1.5", &format!("recipient <{address}> OK (already given)"));
        }
        if txn.recipients.len() >= max {
            return self.reply(452, "4.5.3", &format!("too many recipients: at most {max} per message"));
        }
        if !address.contains('@') {
            return self.reply(550, "5.1.3", &format!("<{address}> is not an address: local@domain"));
        }
        match self.shared.service.suppression_of(&address, &tenant.id).await {
            Ok(None) => {}
            Ok(Some(why)) => return self.reply(550, "5.7.1", &format!("<{address}> is suppressed ({why}): not sent")),
            Err(_) => return self.reply(451, "4.3.0", "cannot read the suppression list now: try again later"),
        }
        if let Some(txn) = &mut self.txn {
            txn.recipients.push(address.clone());
        }
        self.reply(250, "2.1.5", &format!("recipient <{address}> OK"));
    }

    fn data_allowed(&mut self) -> Result<Next, End> {
        match &self.txn {
            None => self.refuse_bad(503, "5.5.1", "send MAIL first")?,
            Some(txn) if txn.recipients.is_empty() => self.refuse_bad(554, "5.5.1", "no valid recipients")?,
            Some(_) => {
                self.reply(354, "", "end data with <CR><LF>.<CR><LF>");
                return Ok(Next::Data);
            }
        }
        Ok(Next::Go)
    }

    /// Reads the message up to its lone dot, within SIZE, then stores it.
    async fn data(&mut self) -> Result<(), End> {
        let max = self.shared.settings.max_message_bytes;
        let mut body = Vec::new();
        let mut receiver = DataReceiver::new();
        let mut dropping: Option<DummyDataReceiver> = None;
        loop {
            let mut bytes = self.input[self.start..].iter();
            let done = match &mut dropping {
                None => receiver.ingest(&mut bytes, &mut body),
                Some(d) => d.ingest(&mut bytes),
            };
            self.start = self.input.len() - bytes.as_slice().len();
            if dropping.is_none() && body.len() > max {
                dropping = Some(DummyDataReceiver::new_data(&receiver));
                body = Vec::new();
            }
            if done {
                break;
            }
            self.fill().await?;
        }
        let Some(txn) = self.txn.take() else { return Ok(()) };
        if dropping.is_some() {
            self.reply(552, "5.3.4", &format!("message too big: at most {max} bytes"));
            return Ok(());
        }
        self.store(txn, &body).await;
        Ok(())
    }

    async fn store(&mut self, txn: Transaction, body: &[u8]) {
        let started = Instant::now();
        let (tenant, key) = match self.sender().await {
            Ok(sender) => sender,
            Err((code, enhanced, text)) => return self.reply(code, enhanced, &text),
        };
        let request = match message::check_bytes(body, txn.smtputf8)
            .and_then(|()| message::to_submission(body, &txn.from, &txn.recipients))
        {
            Ok(request) => request,
            Err(refused) => return self.reply(refused.code, refused.enhanced, &refused.text),
        };
        let recipients = txn.recipients.len();
        let raw = message::spooled_mime(body, &self.shared.settings.hostname, bitmail_runtime::time::now_ms());
        match self.shared.service.submit_as(&tenant, &key, request, Some(txn.admitted), Some(raw)).await {
            Ok(stored) => {
                info!(
                    client = %self.peer,
                    tenant = %tenant.id,
                    size = body.len(),
                    recipients,
                    message_id = %stored.message_id,
                    "SMTP message accepted"
                );
                self.shared.metrics.count("bitmail_smtp_messages_total", "Messages accepted over SMTP.", &[], 1);
                self.shared.metrics.observe(
                    "bitmail_smtp_accept_seconds",
                    "From the end of DATA to the 250 (checks, parsing and the durable spool commit).",
                    &[],
                    started.elapsed(),
                );
                self.reply(250, "2.0.0", &format!("OK: queued as {}", stored.message_id));
            }
            Err(status) => {
                let (code, enhanced) = match status.code() {
                    Code::InvalidArgument => (554, "5.6.0"),
                    Code::PermissionDenied => (550, "5.7.1"),
                    Code::ResourceExhausted => (452, "4.3.1"),
                    _ => (451, "4.3.0"),
                };
                self.reply(code, enhanced, status.message());
            }
        }
    }

    async fn drain_bdat(&mut self, size: usize) -> Result<(), End> {
        let mut receiver = DummyDataReceiver::new_bdat(size);
        loop {
            let mut bytes = self.input[self.start..].iter();
            let done = receiver.ingest(&mut bytes);
            self.start = self.input.len() - bytes.as_slice().len();
            if done {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    /// A refusal of a command (its syntax, its order, or credentials), answered and
    /// counted by [`Session::reply`]; [`Session::check_bad`] closes the session past the
    /// limit.
    fn refuse_bad(&mut self, code: u16, enhanced: &str, text: &str) -> Result<(), End> {
        self.reply(code, enhanced, text);
        Ok(())
    }

    /// Past `max_bad_commands` refused commands: 421 and the end.
    fn check_bad(&mut self) -> Result<(), End> {
        if self.bad_commands > self.shared.settings.max_bad_commands {
            self.reply(421, "4.7.0", "too many bad commands: closing the connection");
            return Err(End::Done);
        }
        Ok(())
    }

    fn reply(&mut self, code: u16, enhanced: &str, text: &str) {
        // Refused commands, not refused mail (550, 552, 554 and 4xx are about the
        // message or the sender's quota, and a client may rightly go on).
        if matches!(code, 500..=504 | 530 | 535 | 538 | 555) {
            self.bad_commands += 1;
        }
        if code >= 400 {
            let code = code.to_string();
            self.shared.metrics.count(
                "bitmail_smtp_refusals_total",
                "SMTP refusals, by reply code.",
                &[("code", code.as_str())],
                1,
            );
        }
        let line = match enhanced {
            "" => format!("{code} {text}\r\n"),
            _ => format!("{code} {enhanced} {text}\r\n"),
        };
        self.out.extend_from_slice(line.as_bytes());
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let Some(conn) = self.conn.as_mut() else { return Err(End::Closed) };
        let timeout = self.shared.settings.command_timeout;
        match tokio::time::timeout(timeout, async {
            conn.write_all(&self.out).await?;
            conn.flush().await
        })
        .await
        {
            Ok(Ok(())) => {
                self.out.clear();
                Ok(())
            }
            Ok(Err(_)) | Err(_) => Err(End::Closed),
        }
    }

    /// Reads more, within the command timeout and the session's deadline.
    async fn fill(&mut self) -> Result<(), End> {
        if self.start > 0 {
            self.input.drain(..self.start);
            self.start = 0;
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        let timeout = self.shared.settings.command_timeout.min(left);
        self.input.reserve(16 * 1024);
        let Some(conn) = self.conn.as_mut() else { return Err(End::Closed) };
        tokio::select! {
            read = tokio::time::timeout(timeout, conn.read_buf(&mut self.input)) => match read {
                Ok(Ok(0)) | Ok(Err(_)) => Err(End::Closed),
                Ok(Ok(_)) => Ok(()),
                Err(_) => Err(End::Timeout),
            },
            _ = self.stop.wait_for(|s| *s) => Err(End::Shutdown),
        }
    }
}

/// The reply to a command that does not parse.
fn parse_error(e: &ParseError) -> (u16, &'static str, String) {
    match e {
        ParseError::UnknownCommand => (500, "5.5.1", "command unrecognized".into()),
        ParseError::SyntaxError { syntax } => (501, "5.5.4", format!("syntax: {syntax}")),
        ParseError::InvalidSenderAddress => (501, "5.1.7", "bad sender address syntax".into()),
        ParseError::InvalidRecipientAddress => (501, "5.1.3", "bad recipient address syntax".into()),
        ParseError::InvalidParameter { param } => (501, "5.5.4", format!("invalid parameter {param}")),
        ParseError::UnsupportedParameter { param } => (555, "5.5.4", format!("unsupported parameter {param}")),
        ParseError::NeedsMoreData { .. } | ParseError::ResponseTooLong | ParseError::InvalidResponse { .. } => {
            (500, "5.5.2", "line not understood".into())
        }
    }
}
