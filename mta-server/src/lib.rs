//! BitMail's MTA: it accepts messages over gRPC, spools them durably, and delivers each through
//! the providers in the order a [`scheduler::Scheduler`] chooses, failing over when a
//! provider breaks.
//!
//! - [`message`]: the domain message, immutable once accepted, and its validation from
//!   the wire;
//! - [`provider`]: the [`provider::Provider`] trait, the [`provider::Outcome`] classes
//!   the delivery round acts on, and one module per provider;
//! - [`scheduler`]: the [`scheduler::Scheduler`] trait and its strategies;
//! - [`spool`]: the durable store of accepted messages, their status and schedule
//!   (redb, group commit);
//! - [`delivery`]: the dispatcher and delivery rounds over the spool;
//! - [`health`]: a circuit breaker per provider, operator pauses, live figures;
//! - [`limits`]: per-provider in-flight, rate and size limits;
//! - [`receive`]: the webhooks the edge forwards (`ReceiveWebhook`), verified and read by
//!   provider and kind; above [`events`] and [`inbound`], the only module using both;
//! - [`events`]: delivery events from the providers' webhooks;
//! - [`inbound`]: inbound mail from the providers' inbound webhooks, parsed into one
//!   `InboundMail`;
//! - [`webhook`]: what [`events`] and [`inbound`] share, below both (the refusal, header
//!   lookup, timestamp freshness, Mailgun's HMAC);
//! - [`tenant`]: who may send: tenants, API keys and the one key check every surface
//!   calls, quotas;
//! - [`admin`]: the gRPC `bitmail.v1.Admin` service: tenants, keys, usage, the audit log;
//! - [`auth`]: every gRPC call authenticated by its API key before it reaches a service;
//! - [`tenancy`]: a node's tenant store and what is built on it, from `[tenants]`; the
//!   `create-key` command;
//! - [`service`]: the gRPC `bitmail.v1.Mta` service;
//! - [`smtp`]: SMTP submission (587 with STARTTLS, 465, a local listener), each message
//!   through the same submit path as gRPC;
//! - [`outbox`]: webhooks to the tenants' apps, delivered from the spool's event log;
//! - [`config`], [`server`]: configuration, binding, serving, graceful shutdown (only
//!   `main.rs` uses [`server`]; providers and the scheduler are built by
//!   [`provider::from_config`] and [`scheduler::from_config`], the other settings by
//!   their own modules from their config sections). [`config`] is a leaf: data and
//!   validation, importing only [`keys`] (the parsing of configured keys);
//! - [`provider_check`]: the operator's provider check (`bitmail-provider-check`,
//!   `cargo xtask test-manual`), straight through each provider, bypassing spool and
//!   scheduler.

pub mod admin;
pub mod auth;
pub mod config;
pub mod delivery;
pub mod events;
pub mod health;
pub mod inbound;
pub mod keys;
pub mod limits;
pub mod lists;
pub mod message;
pub mod node_report;
pub mod outbox;
pub mod provider;
pub mod provider_check;
pub mod receive;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod smtp;
pub mod spool;
pub mod tenancy;
pub mod tenant;
pub mod webhook;
