//! The gRPC `bitmail.v1.Store` service: wire types in, [`Store`] calls, wire types out.
//!
//! Errors, one status each (the proxy engine maps them back):
//!
//! | [`StoreError`] | gRPC status |
//! | --- | --- |
//! | `InvalidArgument` (and a request that is not valid protobuf or UTF-8) | `INVALID_ARGUMENT` |
//! | `NotFound` | `NOT_FOUND` |
//! | `VersionMismatch` | `ABORTED`, stored version in `bitmail-actual-version` metadata |
//! | `AlreadyExists` | `ALREADY_EXISTS`, the holder's id in `bitmail-existing-id` metadata |
//! | `Full` | `RESOURCE_EXHAUSTED` |
//! | `Unavailable` | `UNAVAILABLE` |
//!
//! A request larger than twice the document limit is refused by tonic before it is
//! decoded, with `OUT_OF_RANGE` ("decoded message length too large").

use std::pin::Pin;
use std::sync::Arc;

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::store_server::StoreServer;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::store::{DEFAULT_COUNT_BOUND, Document, Fields, Limits, Page, Query, Store, StoreError, Term};
use crate::validate;

/// The metadata key of the stored version in an `ABORTED` (version conflict) answer.
pub(crate) const ACTUAL_VERSION_METADATA: &str = "bitmail-actual-version";
/// The metadata key of the holder's id in an `ALREADY_EXISTS` (unique key taken) answer.
pub(crate) const EXISTING_ID_METADATA: &str = "bitmail-existing-id";

/// Serves the `Store` contract over any engine.
pub(crate) struct StoreService {
    store: Arc<dyn Store>,
    limits: Limits,
}

impl StoreService {
    pub(crate) fn new(store: Arc<dyn Store>, limits: Limits) -> Self {
        Self { store, limits }
    }

    /// The tonic server. Messages up to twice the document limit are decoded, so that a
    /// document somewhat over the limit gets the store's own clear `INVALID_ARGUMENT`.
    pub(crate) fn into_server(self) -> StoreServer<Self> {
        let max = wire_limit(&self.limits);
        StoreServer::new(self).max_decoding_message_size(max).max_encoding_message_size(max)
    }
}

/// The largest gRPC message a store server or client accepts for these limits.
pub(crate) fn wire_limit(limits: &Limits) -> usize {
    limits.max_document_bytes.saturating_mul(2).saturating_add(64 << 10)
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound(_) => Status::not_found(e.to_string()),
            StoreError::VersionMismatch { actual, .. } => {
                let mut status = Status::aborted(e.to_string());
                if let Ok(v) = actual.to_string().parse() {
                    status.metadata_mut().insert(ACTUAL_VERSION_METADATA, v);
                }
                status
            }
            StoreError::AlreadyExists { id } => {
                let mut status = Status::already_exists(e.to_string());
                if let Ok(v) = id.parse() {
                    status.metadata_mut().insert(EXISTING_ID_METADATA, v);
                }
                status
            }
            StoreError::InvalidArgument(_) => Status::invalid_argument(e.to_string()),
            StoreError::Full(_) => Status::resource_exhausted(e.to_string()),
            StoreError::Unavailable(_) => Status::unavailable(e.to_string()),
        }
    }
}

fn to_wire(doc: Document) -> pb::Document {
    pb::Document { id: doc.id, version: doc.version, fields: doc.fields.into_iter().collect() }
}

type LookupStream = Pin<Box<dyn Stream<Item = Result<pb::LookupResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::store_server::Store for StoreService {
    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let req = request.into_inner();
        let doc = self.store.put(req.fields.into_iter().collect()).await?;
        Ok(Response::new(pb::PutResponse { id: doc.id, version: doc.version }))
    }

    async fn create(&self, request: Request<pb::CreateRequest>) -> Result<Response<pb::CreateResponse>, Status> {
        let req = request.into_inner();
        let doc = self.store.create(&req.unique_key, req.fields.into_iter().collect()).await?;
        Ok(Response::new(pb::CreateResponse { id: doc.id, version: doc.version }))
    }

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::Document>, Status> {
        let req = request.into_inner();
        Ok(Response::new(to_wire(self.store.get(&req.id).await?)))
    }

    async fn update(&self, request: Request<pb::UpdateRequest>) -> Result<Response<pb::UpdateResponse>, Status> {
        let req = request.into_inner();
        let expected = (req.expected_version != 0).then_some(req.expected_version);
        let doc = self.store.update(&req.id, req.fields.into_iter().collect(), req.remove, expected).await?;
        Ok(Response::new(pb::UpdateResponse { version: doc.version, document: Some(to_wire(doc)) }))
    }

    async fn delete(&self, request: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        let req = request.into_inner();
        self.store.delete(&req.id).await?;
        Ok(Response::new(pb::DeleteResponse {}))
    }

    type LookupStream = LookupStream;

    async fn lookup(&self, request: Request<pb::LookupRequest>) -> Result<Response<LookupStream>, Status> {
        let req = request.into_inner();
        let subset: Fields = req.subset.into_iter().collect();
        let limit = validate::wire_lookup_limit(&subset, req.limit)?;
        let token = (!req.page_token.is_empty()).then_some(req.page_token.as_str());
        let page = if req.newest_first {
            self.store.find(&Query { subset, terms: Vec::new(), newest_first: true }, limit, token).await?
        } else {
            self.store.lookup(&subset, limit, token).await?
        };
        Ok(Response::new(page_stream(page)))
    }

    async fn count(&self, request: Request<pb::CountRequest>) -> Result<Response<pb::CountResponse>, Status> {
        let req = request.into_inner();
        let subset: Fields = req.subset.into_iter().collect();
        let at_most = match req.at_most {
            0 => DEFAULT_COUNT_BOUND,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let count = self.store.count(&subset, at_most).await?;
        Ok(Response::new(pb::CountResponse { count: count.count as u64, capped: count.capped }))
    }

    type SearchStream = LookupStream;

    async fn search(&self, request: Request<pb::SearchRequest>) -> Result<Response<LookupStream>, Status> {
        let req = request.into_inner();
        let subset: Fields = req.subset.into_iter().collect();
        let limit = validate::wire_lookup_limit(&subset, req.limit)?;
        if req.terms.is_empty() {
            return Err(Status::invalid_argument("terms: a search needs at least one term"));
        }
        let query = Query {
            subset,
            terms: req.terms.into_iter().map(|t| Term { words: t.words, fields: t.fields }).collect(),
            newest_first: !req.oldest_first,
        };
        let token = (!req.page_token.is_empty()).then_some(req.page_token.as_str());
        Ok(Response::new(page_stream(self.store.find(&query, limit, token).await?)))
    }
}

fn page_stream(page: Page) -> LookupStream {
    let items = page
        .documents
        .into_iter()
        .map(|d| pb::lookup_response::Item::Document(to_wire(d)))
        .chain(page.next_page_token.map(pb::lookup_response::Item::NextPageToken))
        .map(|item| Ok(pb::LookupResponse { item: Some(item) }));
    Box::pin(tokio_stream::iter(items))
}
