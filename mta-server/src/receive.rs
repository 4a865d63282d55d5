//! The webhooks the edge forwards (`Mta/ReceiveWebhook`): for each provider, how its
//! requests are verified and read, by kind (delivery events or received mail).
//!
//! Layering: this module is above [`crate::events`] and [`crate::inbound`] and is the
//! only place that uses both; [`crate::webhook`] is below them (what both need: the
//! refusal, header lookup, timestamp freshness, Mailgun's HMAC) and imports neither.
//! `events` and `inbound` do not import each other.
//!
//! One `ReceiveWebhook` call, dispatched by provider and kind ([`Webhook::receive`]):
//! - SendGrid events: the Event Webhook's ECDSA signature (`webhook_public_key`; none
//!   configured: 404); SendGrid inbound: the Inbound Parse Basic-auth password
//!   (`inbound_password`; none: 404);
//! - Mailgun events and inbound: the HMAC of timestamp + token (`webhook_signing_key`);
//!   the token is single-use, so the same token for another event or message is a replay;
//! - SES, either kind: an SNS message ([`crate::events::sns`]) that is a subscription to
//!   confirm, SES events, or `notificationType: "Received"` mail.
//!
//! Mail for nobody here gets the refusal each provider understands: Mailgun 406 (it does
//! not retry); 200 for SendGrid and SNS, which would retry anything else for days. Every
//! refusal is a [`Refused`] whose HTTP status goes back to the provider (401, 403, 400,
//! 413, 404, 503).

use bitmail_proto::v1::WebhookKind;
use bitmail_runtime::config::Secret;

use crate::events::{Batch, mailgun, sendgrid, ses, sns};
use crate::inbound;
pub use crate::webhook::Refused;

/// What one verified webhook request carried.
#[derive(Debug)]
pub enum Received {
    /// Delivery events.
    Events(Batch),
    /// One received message. `nonce`: as in [`Batch::nonce`]. `unknown_recipients_status`:
    /// the answer that refuses mail for nobody here, as this provider understands it.
    Mail { mail: Box<bitmail_proto::v1::InboundMail>, nonce: Option<(String, String)>, unknown_recipients_status: u32 },
    /// Nothing to store (an SNS subscription confirmed, an unsubscription, a
    /// notification BitMail does not use); said why.
    Nothing(String),
}

/// How one provider's webhooks are verified and read.
pub enum Webhook {
    SendGrid {
        events: Option<sendgrid::Verifier>,
        inbound_password: Option<Secret>,
    },
    Mailgun(mailgun::Verifier),
    /// Amazon SES, whose events and received mail both come through SNS.
    Ses(sns::Verifier),
}

impl Webhook {
    /// Verifies and parses one webhook request of `kind`. `provider` is the configured
    /// name, recorded with each event.
    pub async fn receive(
        &self,
        provider: &str,
        kind: WebhookKind,
        headers: &[(String, String)],
        body: &[u8],
        now_ms: u64,
    ) -> Result<Received, Refused> {
        match (self, kind) {
            (Webhook::SendGrid { events: Some(v), .. }, WebhookKind::Events) => {
                v.receive(provider, headers, body, now_ms).map(Received::Events)
            }
            (Webhook::SendGrid { events: None, .. }, WebhookKind::Events) => Err(Refused::NotConfigured(format!(
                "provider {provider:?} has no webhook_public_key: its Event Webhook is not taken"
            ))),
            (Webhook::SendGrid { inbound_password: Some(password), .. }, WebhookKind::Inbound) => {
                inbound::sendgrid::check_basic_auth(headers, password.expose())?;
                let mail = inbound::sendgrid::parse(headers, body, now_ms)?;
                // SendGrid retries any answer but 2xx for days: mail for nobody here is
                // taken and dropped.
                Ok(Received::Mail { mail: Box::new(mail), nonce: None, unknown_recipients_status: 200 })
            }
            (Webhook::SendGrid { inbound_password: None, .. }, WebhookKind::Inbound) => Err(Refused::NotConfigured(
                format!("provider {provider:?} has no inbound_password: its Inbound Parse is not taken"),
            )),
            (Webhook::Mailgun(v), WebhookKind::Events) => v.receive(provider, body, now_ms).map(Received::Events),
            (Webhook::Mailgun(v), WebhookKind::Inbound) => {
                let (mail, token) = inbound::mailgun::parse(v.signing_key(), headers, body, now_ms)?;
                // The token signs one message: used again for another, it is a replay.
                let signed = if mail.message_id.is_empty() { &mail.dedupe_key } else { &mail.message_id };
                let nonce = Some((format!("{provider}:{token}"), format!("inbound:{signed}")));
                // 406: Mailgun takes the refusal and does not retry.
                Ok(Received::Mail { mail: Box::new(mail), nonce, unknown_recipients_status: 406 })
            }
            (Webhook::Ses(v), _) => receive_sns(v, provider, body, now_ms).await,
        }
    }
}

/// An SNS message for an SES provider: a subscription to confirm, SES events, or mail.
async fn receive_sns(v: &sns::Verifier, provider: &str, body: &[u8], now_ms: u64) -> Result<Received, Refused> {
    let message = v.verify(body, now_ms).await?;
    match message.kind {
        sns::SnsKind::SubscriptionConfirmation => {
            v.confirm(&message).await.map_err(Refused::Unavailable)?;
            Ok(Received::Nothing(format!("subscription to {} confirmed", message.topic_arn)))
        }
        sns::SnsKind::UnsubscribeConfirmation => {
            Ok(Received::Nothing(format!("unsubscribed from {}; not confirmed", message.topic_arn)))
        }
        sns::SnsKind::Notification => {
            let content: serde_json::Value = serde_json::from_str(&message.message)
                .map_err(|e| Refused::Malformed(format!("the SNS Message is not SES JSON: {e}")))?;
            if content.get("notificationType").and_then(serde_json::Value::as_str) == Some("Received") {
                let mail = inbound::ses::parse(&content, now_ms)?;
                // SNS retries any answer but 2xx: mail for nobody here is taken and dropped.
                return Ok(Received::Mail { mail: Box::new(mail), nonce: None, unknown_recipients_status: 200 });
            }
            let events = ses::events(provider, &message)?;
            Ok(Received::Events(Batch { events, nonce: None }))
        }
    }
}
