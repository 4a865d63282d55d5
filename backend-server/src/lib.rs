//! BitMail's storage tier: documents that are maps from string to string, with
//! server-assigned ids and versions, behind the gRPC `Store` service.
//!
//! The public surface is what `main.rs`, the conformance suite and the store tests use:
//! the contract, the engines, the config and the server.
//!
//! - [`store`]: the [`store::Store`] trait, the contract every engine keeps (`create`
//!   stores a document once per unique key), and its typed errors;
//! - [`memory`]: the in-memory engine, indexed so that a lookup costs what it answers;
//! - [`embedded`]: the default engine, durable in one redb file, with group commit;
//! - [`postgres`]: the PostgreSQL engine, documents as `jsonb` in one table with a GIN
//!   index; a primary and its standbys in one URL, reconnecting after a promotion;
//! - [`proxy`]: an engine that forwards every call to another backend-server;
//! - [`redb_file`]: a redb file reopened after a failed commit (this engine's and the
//!   MTA's spool's);
//! - [`text`]: full-text search's analysis (words, accents folded, English and French
//!   stems), the same for every engine;
//! - [`config`]: the service's TOML configuration;
//! - [`server`]: opens the engine the config names, binds, serves (with health and
//!   reflection) and shuts down gracefully.
//!
//! Private to the crate:
//! - `postgres_tls`: TLS to PostgreSQL with the server's certificate verified against
//!   the configured CA (`[postgres] ca_file`);
//! - `walk`: the leapfrog walk over sorted posting lists, in either order, shared by
//!   the memory and embedded engines;
//! - `validate`: the one check of bad input every engine and the service run;
//! - `metered`: a `Store` that times and counts every call of the engine it wraps, for
//!   `/metrics`;
//! - `service`: the gRPC `bitmail.v1.Store` service over any `Arc<dyn Store>`.

pub mod config;
pub mod embedded;
pub mod memory;
pub mod postgres;
pub mod proxy;
pub mod redb_file;
pub mod server;
pub mod store;
pub mod text;

mod metered;
mod postgres_tls;
mod service;
mod validate;
mod walk;
