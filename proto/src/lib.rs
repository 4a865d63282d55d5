//! The wire contracts of BitMail, package `bitmail.v1`.
//!
//! - `bitmail/v1/mta.proto`: service `Mta`, mail submission and delivery status
//!   (served by `mta-server`);
//! - `bitmail/v1/lists.proto`: service `Lists`, mailing lists, campaigns and their
//!   background tasks (served by `mta-server`);
//! - `bitmail/v1/store.proto`: service `Store`, the JSON-map document store (served by
//!   `backend-server`).
//!
//! - [`v1`]: the generated messages and tonic clients and servers; [`FILE_DESCRIPTOR_SET`],
//!   the descriptors for server reflection;
//! - [`codec`]: prost's codec, answering `INVALID_ARGUMENT` (not `INTERNAL`) for a request
//!   that does not decode, such as a `string` field holding invalid UTF-8.
//!
//! Only generated code (and its codec) lives here. Services convert these wire types into their own
//! domain types at the edge, so a change of the wire does not ripple through the logic.

pub mod codec;

/// Generated types and tonic stubs of package `bitmail.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
    tonic::include_proto!("bitmail.v1");
}

/// The encoded `FileDescriptorSet` of every BitMail contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("bitmail_descriptor");
