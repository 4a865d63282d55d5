//! Webhooks to the tenants' apps: every entry of a tenant's event log (the spool's
//! `event_log.rs`: BitMail's `queued`, `sent`, `deferred`, `failed` and the providers'
//! `delivered`, `bounced`, ...) is POSTed to each URL the tenant registered, signed.
//!
//! The event log is the durable outbox: an entry is on disk with the change it
//! describes, and each webhook keeps a cursor into it (the spool's `outbox` table), moved
//! only once the app answered 2xx. So a restart, a crash or an app that is down loses
//! nothing, and events reach each webhook in the order they were stored (thus in order
//! per message). A webhook gets the events from its registration on. Delivery is at
//! least once: each event carries an `id` to deduplicate.
//! A failing webhook is retried from the same cursor after `retry_initial_ms`, doubling
//! up to `retry_max_ms`, for `give_up_hours` (72 by default); then that batch is
//! dropped and counted. Each node delivers its own spool's events.
//!
//! - [`store`]: the registrations, as documents in the tenancy store (`kind=app_webhook`)
//!   so every node sees them, and the rule for URLs ([`check_url`]);
//! - [`payload`]: the JSON bodies (BitMail's, or SendGrid's Event Webhook shape) and the
//!   signature;
//! - [`dispatch`]: the per-node loop that delivers them.
//!
//! Signature: header `X-BitMail-Signature: t=<unix seconds>,v1=<hex>`, where `<hex>`
//! is the lowercase hex HMAC-SHA256, keyed with the webhook's secret (shown once, when
//! it is registered), of `<unix seconds>.` followed by the raw body. Receivers check it
//! in constant time and refuse timestamps more than a few minutes old. SendGrid-shaped
//! webhooks are signed as SendGrid signs its Event Webhook too (ECDSA P-256 over the
//! timestamp and the body, `X-Twilio-Email-Event-Webhook-Signature` and `-Timestamp`,
//! with a key per webhook whose public half is in its registration), so code that
//! verifies SendGrid's events works unchanged.

pub mod dispatch;
pub mod payload;
pub mod store;

pub use store::{Webhook, WebhookError, WebhookFormat, Webhooks, check_url};
