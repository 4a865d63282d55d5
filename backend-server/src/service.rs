//! The gRPC `bitmail.v1.Store` service: wire types in, [`Store`] calls, wire types out.

use std::pin::Pin;
use std::sync::Arc;

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::store_server::StoreServer;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::store::{DEFAULT_LOOKUP_LIMIT, Document, Fields, MAX_LOOKUP_LIMIT, Store, StoreError};

/// Serves the `Store` contract over any engine.
pub struct StoreService {
    store: Arc<dyn Store>,
}

impl StoreService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub fn into_server(self) -> StoreServer<Self> {
        StoreServer::new(self)
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound(_) => Status::not_found(e.to_string()),
            StoreError::VersionMismatch { .. } => Status::aborted(e.to_string()),
            StoreError::InvalidArgument(_) => Status::invalid_argument(e.to_string()),
            StoreError::Unavailable(_) => Status::unavailable(e.to_string()),
        }
    }
}

fn to_wire(doc: Document) -> pb::Document {
    pb::Document { id: doc.id, version: doc.version, fields: doc.fields.into_iter().collect() }
}

fn require_id(id: &str) -> Result<(), Status> {
    if id.is_empty() { Err(Status::invalid_argument("id: required")) } else { Ok(()) }
}

/// Keys are what lookups match on; an empty key can never be asked for sensibly.
fn check_keys<'a>(keys: impl IntoIterator<Item = &'a String>, field: &str) -> Result<(), Status> {
    if keys.into_iter().any(String::is_empty) {
        return Err(Status::invalid_argument(format!("{field}: keys must not be empty")));
    }
    Ok(())
}

type LookupStream = Pin<Box<dyn Stream<Item = Result<pb::LookupResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::store_server::Store for StoreService {
    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let req = request.into_inner();
        check_keys(req.fields.keys(), "fields")?;
        let doc = self.store.put(req.fields.into_iter().collect()).await?;
        Ok(Response::new(pb::PutResponse { id: doc.id, version: doc.version }))
    }

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::Document>, Status> {
        let req = request.into_inner();
        require_id(&req.id)?;
        Ok(Response::new(to_wire(self.store.get(&req.id).await?)))
    }

    async fn update(&self, request: Request<pb::UpdateRequest>) -> Result<Response<pb::UpdateResponse>, Status> {
        let req = request.into_inner();
        require_id(&req.id)?;
        check_keys(req.fields.keys(), "fields")?;
        let expected = (req.expected_version != 0).then_some(req.expected_version);
        let doc = self.store.update(&req.id, req.fields.into_iter().collect(), req.remove, expected).await?;
        Ok(Response::new(pb::UpdateResponse { version: doc.version }))
    }

    async fn delete(&self, request: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        let req = request.into_inner();
        require_id(&req.id)?;
        self.store.delete(&req.id).await?;
        Ok(Response::new(pb::DeleteResponse {}))
    }

    type LookupStream = LookupStream;

    async fn lookup(&self, request: Request<pb::LookupRequest>) -> Result<Response<LookupStream>, Status> {
        let req = request.into_inner();
        check_keys(req.subset.keys(), "subset")?;
        let limit = match req.limit as usize {
            0 => DEFAULT_LOOKUP_LIMIT,
            n if n > MAX_LOOKUP_LIMIT => {
                return Err(Status::invalid_argument(format!("limit: at most {MAX_LOOKUP_LIMIT}, got {n}")));
            }
            n => n,
        };
        let subset: Fields = req.subset.into_iter().collect();
        let token = (!req.page_token.is_empty()).then_some(req.page_token.as_str());
        let page = self.store.lookup(&subset, limit, token).await?;

        let items = page
            .documents
            .into_iter()
            .map(|d| pb::lookup_response::Item::Document(to_wire(d)))
            .chain(page.next_page_token.map(pb::lookup_response::Item::NextPageToken))
            .map(|item| Ok(pb::LookupResponse { item: Some(item) }));
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }
}
