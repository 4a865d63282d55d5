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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use smtp_proto::{Error as ParseError, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::debug;

mod auth;
mod mail;

use super::conn::Conn;
use super::gate::Refusal;
use super::message::MAX_LINE;
use super::{Listener, Shared};
use crate::tenant::{Admitted, Tenant};

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
