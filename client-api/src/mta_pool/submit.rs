//! A Submit over several nodes, never stored twice by one node.
//!
//! Every submission carries an idempotency key: the caller's, or one made here. It is
//! tried on the nodes in [`MtaPool::order`], at most once each, until one answers:
//! - an answer of any code but the transport ones (the id; INVALID_ARGUMENT,
//!   PERMISSION_DENIED, RESOURCE_EXHAUSTED, ...) is the answer, not retried;
//! - a failure before the request left (`tonic::ConnectError` in the error's chain:
//!   refused, unresolvable, TLS handshake) moves on to the next node as it is;
//! - an ambiguous failure (no answer within `mta_timeout_ms`, the connection lost
//!   after sending, UNAVAILABLE, UNKNOWN, CANCELLED) moves on with `possible_duplicate`
//!   set: the node may have stored the message, and only it knows the key, so the
//!   next one stores it flagged and GetMessage shows the flag.
//!
//! A caller's key picks the first node by its hash, so that the same request sent
//! again (after a 429, or a lost answer) goes to the node that remembers the key.

use std::error::Error as _;
use std::hash::{Hash, Hasher};

use bitmail_proto::v1 as pb;
use bitmail_runtime::grpc::Bearer;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use super::MtaPool;

/// What became of a call, for the decision to try another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The node answered: that is the result.
    Answer,
    /// The request never reached the node.
    NotSent,
    /// It may have reached the node, and been acted on.
    Ambiguous,
}

/// Whether a failed call is an answer, never sent, or ambiguous.
pub(crate) fn classify(s: &Status) -> Failure {
    let mut source = s.source();
    while let Some(e) = source {
        if e.downcast_ref::<tonic::ConnectError>().is_some() {
            return Failure::NotSent;
        }
        source = e.source();
    }
    match s.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => Failure::Ambiguous,
        _ => Failure::Answer,
    }
}

/// A submission a node took.
#[derive(Debug)]
pub(crate) struct Submitted {
    pub(crate) response: pb::SubmitResponse,
    /// The node that took it.
    pub(crate) node: usize,
    /// Sent flagged, after an ambiguous failure on another node.
    pub(crate) possible_duplicate: bool,
}

/// An idempotency key for a submission that came without one: 128 random bits.
fn edge_key() -> String {
    let mut bytes = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("edge-{hex}")
}

/// The first node for a caller's key: the same on every edge.
fn home_of(key: &str) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    h.finish() as usize
}

impl MtaPool {
    /// Submits `request` with `bearer` and `metadata` (`x-bitmail-actor`) on one node
    /// after another (module doc). Every node failing in transport: UNAVAILABLE naming
    /// what each did, and whether one may have stored the message.
    pub(crate) async fn submit(
        &self,
        bearer: &Bearer,
        metadata: &MetadataMap,
        mut request: pb::SubmitRequest,
    ) -> Result<Submitted, Status> {
        let home = if request.idempotency_key.is_empty() {
            request.idempotency_key = edge_key();
            None
        } else {
            Some(home_of(&request.idempotency_key))
        };
        let mut possible_duplicate = false;
        let mut tried = Vec::new();
        for i in self.order(home) {
            let node = &self.nodes[i];
            let message = pb::SubmitRequest { possible_duplicate, ..request.clone() };
            let call = tonic::Request::from_parts(metadata.clone(), Default::default(), message);
            let mut client = node.mta(bearer).max_encoding_message_size(usize::MAX);
            let answer = match tokio::time::timeout(self.timeout, client.submit(call)).await {
                Ok(answer) => answer,
                Err(_) => Err(Status::deadline_exceeded(format!("no answer within {} ms", self.timeout.as_millis()))),
            };
            let status = match answer {
                Ok(response) => {
                    self.succeeded(i);
                    let response = response.into_inner();
                    if !response.message_id.is_empty() {
                        self.place(&response.message_id, i);
                    }
                    if possible_duplicate {
                        tracing::warn!(node = %node.name(), message_id = %response.message_id, "submitted again after an ambiguous failure: flagged possible_duplicate");
                    }
                    return Ok(Submitted { response, node: i, possible_duplicate });
                }
                Err(status) => status,
            };
            let class = classify(&status);
            match class {
                Failure::Answer => {
                    self.succeeded(i);
                    return Err(status);
                }
                Failure::NotSent => {
                    tracing::info!(node = %node.name(), error = %status.message(), "mta-server not reached: trying the next");
                    tried.push(format!("{}: not reached ({})", node.name(), status.message()));
                }
                Failure::Ambiguous => {
                    tracing::warn!(node = %node.name(), code = ?status.code(), error = %status.message(), "no clear answer to a submission: trying the next node");
                    tried.push(format!("{}: may have stored it ({})", node.name(), status.message()));
                    possible_duplicate = true;
                }
            }
            self.failed(i, status.message());
            let reason = if class == Failure::NotSent { "not_sent" } else { "ambiguous" };
            self.metrics.count(
                "bitmail_edge_submit_failovers_total",
                "submissions that failed on one mta-server in transport, then tried on the next",
                &[("node", node.name()), ("reason", reason)],
                1,
            );
        }
        Err(Status::unavailable(format!("no mta-server took the message: {}", tried.join("; "))))
    }
}
