//! AUTH PLAIN and LOGIN (RFC 4954): offered only after TLS; the password is a tenant
//! key with the `send` scope, checked by the one `KeyCheck`; the user name `apikey` or
//! the key's tenant. A refusal is answered after `auth_failure_delay` and counted per
//! client address.

use std::time::Instant;

use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};
use tracing::{debug, info};

use super::{End, Session};
use crate::smtp::Listener;
use crate::smtp::sasl::{self, Decoded};
use crate::tenant::{AuthError, Scope};

/// A refused exchange: the reply's code, enhanced code and text.
type Refused = (u16, &'static str, &'static str);

impl Session {
    pub(super) async fn auth(&mut self, mechanism: u64, initial: &str) -> Result<(), End> {
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
    async fn challenge(&mut self, prompt: &str) -> Result<Result<String, Refused>, End> {
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

    async fn plain(&mut self, initial: &str) -> Result<Result<(String, String), Refused>, End> {
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

    async fn login(&mut self, initial: &str) -> Result<Result<(String, String), Refused>, End> {
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
}
