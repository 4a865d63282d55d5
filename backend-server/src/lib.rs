//! BitMail's storage tier: documents that are maps from string to string, with
//! server-assigned ids and versions, behind the gRPC `Store` service.
//!
//! - [`store`]: the [`store::Store`] trait, the contract every engine keeps, and its
//!   typed errors;
//! - [`validate`]: the one check of bad input every engine and the service run;
//! - [`memory`]: the in-memory engine, indexed so that a lookup costs what it answers;
//! - [`embedded`]: the default engine, durable in one redb file, with group commit;
//! - [`proxy`]: an engine that forwards every call to another backend-server;
//! - [`service`]: the gRPC `bitmail.v1.Store` service over any `Arc<dyn Store>`;
//! - [`config`]: the service's TOML configuration;
//! - [`server`]: binds, serves (with health and reflection) and shuts down gracefully.

pub mod config;
pub mod embedded;
pub mod memory;
pub mod metered;
pub mod postgres;
pub mod proxy;
pub mod server;
pub mod service;
pub mod store;
pub mod validate;
