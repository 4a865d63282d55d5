//! The mail transaction: MAIL (the sender's domains, the rate quota taken), RCPT (the
//! recipient cap, suppressions), DATA (read within SIZE, checked, stored through
//! `submit_as`), and BDAT drained when a client sends it unasked.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use smtp_proto::{MAIL_SMTPUTF8, MailFrom};
use tonic::Code;
use tracing::info;

use super::{End, Next, Session, Transaction};
use crate::smtp::Listener;
use crate::smtp::message;
use crate::tenant::{OverQuota, Tenant};

impl Session {
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

    pub(super) async fn mail(&mut self, from: MailFrom<Cow<'_, str>>) {
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

    pub(super) async fn rcpt(&mut self, address: &str) {
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

    pub(super) fn data_allowed(&mut self) -> Result<Next, End> {
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
    pub(super) async fn data(&mut self) -> Result<(), End> {
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

    pub(super) async fn drain_bdat(&mut self, size: usize) -> Result<(), End> {
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
}
