//! `ReceiveWebhook`: what a provider's webhook brought, verified by its module, then
//! stored (events) or answered (received mail) for the edge.

use bitmail_proto::v1 as pb;
use tonic::{Response, Status};
use tracing::{info, warn};

use super::MtaService;
use crate::events::Batch;
use crate::receive::Received;
use bitmail_runtime::time::now_ms;

impl MtaService {
    /// A webhook the edge forwarded: verified and read by its provider's module, events
    /// stored once, received mail handed back parsed.
    pub(super) async fn receive(&self, request: pb::WebhookRequest) -> Result<Response<pb::WebhookResponse>, Status> {
        let answer =
            |http_status: u32, message: String| pb::WebhookResponse { http_status, message, ..Default::default() };
        let Some(webhook) = self.webhooks.get(&request.provider) else {
            return Ok(Response::new(answer(
                404,
                format!("no provider {:?} with a webhook key configured", request.provider),
            )));
        };
        let kind = pb::WebhookKind::try_from(request.kind).unwrap_or(pb::WebhookKind::Events);
        let headers: Vec<(String, String)> = request.headers.into_iter().map(|h| (h.name, h.value)).collect();
        let now = now_ms();
        let received = match webhook.receive(&request.provider, kind, &headers, &request.body, now).await {
            Ok(received) => received,
            Err(refused) => {
                let status = refused.http_status().to_string();
                self.metrics.count(
                    "bitmail_mta_webhooks_refused_total",
                    "Webhook requests refused (bad signature, stale, malformed), by HTTP status.",
                    &[("provider", &request.provider), ("status", &status)],
                    1,
                );
                warn!(provider = %request.provider, reason = %refused, "webhook refused; nothing stored");
                return Ok(Response::new(answer(refused.http_status(), refused.to_string())));
            }
        };
        let batch = match received {
            Received::Events(batch) => batch,
            Received::Nothing(why) => {
                info!(provider = %request.provider, "webhook: {why}");
                return Ok(Response::new(answer(200, why)));
            }
            Received::Mail { mail, nonce, unknown_recipients_status } => {
                if nonce.is_some() {
                    let seen = self.spool.record_events(Batch { events: vec![], nonce }, self.suppression, now).await?;
                    if seen.replay {
                        warn!(provider = %request.provider, "inbound mail with a token used before for another message; refused as a replay");
                        return Ok(Response::new(answer(
                            401,
                            "signature: this token was used before (a replay)".into(),
                        )));
                    }
                }
                self.metrics.count(
                    "bitmail_mta_inbound_total",
                    "Received mail verified and parsed, by provider.",
                    &[("provider", &request.provider)],
                    1,
                );
                info!(provider = %request.provider, key = %mail.dedupe_key, attachments = mail.attachments.len(), "inbound mail verified");
                return Ok(Response::new(pb::WebhookResponse {
                    http_status: 200,
                    mail: Some(*mail),
                    unknown_recipients_status,
                    ..Default::default()
                }));
            }
        };
        let stored = self.spool.record_events(batch, self.suppression, now).await?;
        for (result, n) in
            [("stored", stored.stored), ("duplicate", stored.duplicates), ("unknown_message", stored.unknown)]
        {
            if n > 0 {
                self.metrics.count(
                    "bitmail_mta_webhook_events_total",
                    "Delivery events received by webhook, by result.",
                    &[("provider", &request.provider), ("result", result)],
                    u64::from(n),
                );
            }
        }
        if stored.replay {
            warn!(provider = %request.provider, "webhook token used before for another event; refused as a replay");
            return Ok(Response::new(answer(401, "signature: this token was used before (a replay)".into())));
        }
        info!(provider = %request.provider, stored = stored.stored, duplicates = stored.duplicates, unknown = stored.unknown, "webhook events");
        Ok(Response::new(pb::WebhookResponse {
            http_status: 200,
            stored: stored.stored,
            duplicates: stored.duplicates,
            unknown: stored.unknown,
            ..Default::default()
        }))
    }
}
