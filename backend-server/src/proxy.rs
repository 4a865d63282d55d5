//! The proxy engine: a [`Store`] that forwards every call to another backend-server
//! over gRPC, so that many edge nodes can share one storage node.
//!
//! The channel is lazy: nothing is dialled until the first call, and a broken connection
//! is re-dialled by the next call. Every call has a deadline (sent along as
//! `grpc-timeout`, so the remote gives up too); a remote that cannot be reached or does
//! not answer in time is [`StoreError::Unavailable`]. The remote's answers map back to
//! the variant that produced them (see `service.rs`): a version conflict stays a
//! [`StoreError::VersionMismatch`] with the stored version, a missing document stays
//! [`StoreError::NotFound`], a taken unique key stays [`StoreError::AlreadyExists`] with
//! the holder's id, bad input stays [`StoreError::InvalidArgument`], a full
//! disk stays [`StoreError::Full`]. Input is also checked here first, so bad input never
//! travels.
//!
//! A remote too old to know `Create` answers `UNIMPLEMENTED`, which is `Unavailable`
//! here: never a create without its check.
//!
//! Connections use TCP_NODELAY, and mutual TLS with `[proxy.tls]`
//! (`bitmail_runtime::grpc_tls`). A call cancelled by the caller is `Unavailable` as well.

use std::collections::HashMap;
use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::store_client::StoreClient;
use bitmail_runtime::grpc_tls::ClientTls;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::service::{ACTUAL_VERSION_METADATA, EXISTING_ID_METADATA, wire_limit};
use crate::store::{Count, Document, Fields, Limits, Page, Query, Store, StoreError};
use crate::validate::{self, Request};

pub struct ProxyStore {
    client: StoreClient<Channel>,
    url: String,
    timeout: Duration,
    limits: Limits,
}

impl ProxyStore {
    /// A proxy to the backend-server at `url` (`http://host:port`, or `https://` with
    /// mutual `tls`). Does not connect yet; fails only when the URL is not one or the TLS
    /// files do not load.
    pub fn new(
        url: &str,
        tls: Option<&ClientTls>,
        connect_timeout: Duration,
        timeout: Duration,
        limits: Limits,
    ) -> Result<Self, StoreError> {
        let endpoint = bitmail_runtime::grpc_tls::endpoint(url, tls)
            .map_err(|e| StoreError::InvalidArgument(format!("proxy url {url:?}: {e}")))?
            .connect_timeout(connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let max = wire_limit(&limits);
        let client =
            StoreClient::new(endpoint.connect_lazy()).max_decoding_message_size(max).max_encoding_message_size(max);
        Ok(Self { client, url: url.to_owned(), timeout, limits })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// Runs one call under the deadline, mapping its failure with `map`.
    ///
    /// A call the remote never received (the connection was refused: the remote is
    /// restarting) is made again after a short pause, 50 ms doubling to 400 ms, for as
    /// long as the deadline allows: a storage node's restart costs its callers a wait,
    /// not an error. With `idempotent`, so is a call that failed `UNAVAILABLE` in
    /// any other way (the connection closed under it): a read made twice is still one
    /// read. Any other failure is answered at once.
    async fn call<T, F>(
        &self,
        idempotent: bool,
        mut call: impl FnMut() -> F,
        map: impl Fn(Status) -> StoreError,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            let status = match tokio::time::timeout_at(deadline, call()).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(status)) => status,
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "{}: no answer within {} ms",
                        self.url,
                        self.timeout.as_millis()
                    )));
                }
            };
            let again = never_received(&status) || (idempotent && status.code() == Code::Unavailable);
            if !again || tokio::time::Instant::now() + pause >= deadline {
                return Err(map(status));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(400));
        }
    }

    /// The error a remote status stands for. `id` and `expected` are the call's own, for
    /// the variants that carry them.
    fn error(&self, status: Status, id: &str, expected: Option<u64>) -> StoreError {
        let message = status.message();
        let strip = |prefix: &str| message.strip_prefix(prefix).unwrap_or(message).to_owned();
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange => StoreError::InvalidArgument(strip("invalid argument: ")),
            Code::NotFound => StoreError::NotFound(id.to_owned()),
            Code::Aborted | Code::FailedPrecondition => {
                let actual = status
                    .metadata()
                    .get(ACTUAL_VERSION_METADATA)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                StoreError::VersionMismatch { id: id.to_owned(), expected: expected.unwrap_or(0), actual }
            }
            Code::AlreadyExists => match status.metadata().get(EXISTING_ID_METADATA).and_then(|v| v.to_str().ok()) {
                Some(holder) => StoreError::AlreadyExists { id: holder.to_owned() },
                None => {
                    StoreError::Unavailable(format!("{}: ALREADY_EXISTS without the holder's id: {message}", self.url))
                }
            },
            Code::ResourceExhausted => StoreError::Full(strip("storage full: ")),
            // The deadline passed (tonic enforces the request's timeout as `Cancelled`).
            Code::Cancelled | Code::DeadlineExceeded => StoreError::Unavailable(format!(
                "{}: no answer within {} ms ({message})",
                self.url,
                self.timeout.as_millis()
            )),
            _ => StoreError::Unavailable(format!(
                "{}: {:?}: {}{}",
                self.url,
                status.code(),
                strip("storage unavailable: "),
                causes(&status)
            )),
        }
    }
}

/// What a transport failure's chain of causes says (`: tcp connect error: Connection
/// refused`), each once: the status's own message names only the outermost.
fn causes(status: &Status) -> String {
    let mut said = String::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        let text = error.to_string();
        if !status.message().contains(&text) && !said.contains(&text) {
            said.push_str(": ");
            said.push_str(&text);
        }
        source = error.source();
    }
    said
}

/// Whether a failed call never reached the remote: its connection was refused.
fn never_received(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        source = error.source();
    }
    false
}

/// A page answered as a Lookup or Search stream.
async fn read_page(mut stream: tonic::Streaming<pb::LookupResponse>) -> Result<Page, Status> {
    let mut page = Page { documents: Vec::new(), next_page_token: None };
    while let Some(item) = stream.message().await? {
        match item.item {
            Some(pb::lookup_response::Item::Document(d)) => page.documents.push(from_wire(d)),
            Some(pb::lookup_response::Item::NextPageToken(t)) => page.next_page_token = Some(t),
            None => {}
        }
    }
    Ok(page)
}

fn from_wire(doc: pb::Document) -> Document {
    Document { id: doc.id, version: doc.version, fields: doc.fields.into_iter().collect() }
}

#[async_trait::async_trait]
impl Store for ProxyStore {
    async fn put(&self, fields: Fields) -> Result<Document, StoreError> {
        validate::check(Request::Put { fields: &fields }, &self.limits)?;
        let message = pb::PutRequest { fields: fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect() };
        let answer = self
            .call(
                false,
                || {
                    let (mut client, request) = (self.client.clone(), self.request(message.clone()));
                    async move { client.put(request).await }
                },
                |s| self.error(s, "", None),
            )
            .await?
            .into_inner();
        Ok(Document { id: answer.id, version: answer.version, fields })
    }

    async fn create(&self, unique_key: &str, fields: Fields) -> Result<Document, StoreError> {
        validate::check(Request::Create { unique_key, fields: &fields }, &self.limits)?;
        let message = pb::CreateRequest {
            unique_key: unique_key.to_owned(),
            fields: fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let answer = self
            .call(
                false,
                || {
                    let (mut client, request) = (self.client.clone(), self.request(message.clone()));
                    async move { client.create(request).await }
                },
                |s| self.error(s, "", None),
            )
            .await?
            .into_inner();
        Ok(Document { id: answer.id, version: answer.version, fields })
    }

    async fn get(&self, id: &str) -> Result<Document, StoreError> {
        validate::check(Request::Get { id }, &self.limits)?;
        let message = pb::GetRequest { id: id.to_owned() };
        let doc = self
            .call(
                true,
                || {
                    let (mut client, request) = (self.client.clone(), self.request(message.clone()));
                    async move { client.get(request).await }
                },
                |s| self.error(s, id, None),
            )
            .await?
            .into_inner();
        Ok(from_wire(doc))
    }

    async fn update(
        &self,
        id: &str,
        fields: Fields,
        remove: Vec<String>,
        expected_version: Option<u64>,
    ) -> Result<Document, StoreError> {
        validate::check(Request::Update { id, fields: &fields, remove: &remove }, &self.limits)?;
        let message = pb::UpdateRequest {
            id: id.to_owned(),
            fields: fields.into_iter().collect(),
            remove,
            expected_version: expected_version.unwrap_or(0),
        };
        let answer = self
            .call(
                false,
                || {
                    let (mut client, request) = (self.client.clone(), self.request(message.clone()));
                    async move { client.update(request).await }
                },
                |s| self.error(s, id, expected_version),
            )
            .await?
            .into_inner();
        answer.document.map(from_wire).ok_or_else(|| {
            StoreError::Unavailable(format!("{}: the update was made, but the answer holds no document", self.url))
        })
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        validate::check(Request::Delete { id }, &self.limits)?;
        let message = pb::DeleteRequest { id: id.to_owned() };
        self.call(
            false,
            || {
                let (mut client, request) = (self.client.clone(), self.request(message.clone()));
                async move { client.delete(request).await }
            },
            |s| self.error(s, id, None),
        )
        .await?;
        Ok(())
    }

    async fn lookup(&self, subset: &Fields, limit: usize, page_token: Option<&str>) -> Result<Page, StoreError> {
        validate::check(Request::Lookup { subset, limit, page_token }, &self.limits)?;
        let message = pb::LookupRequest {
            subset: subset.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            limit: limit as u32,
            page_token: page_token.unwrap_or_default().to_owned(),
            newest_first: false,
        };
        let read_all = || {
            let (mut client, request) = (self.client.clone(), self.request(message.clone()));
            async move { read_page(client.lookup(request).await?.into_inner()).await }
        };
        self.call(true, read_all, |s| self.error(s, "", None)).await
    }

    async fn find(&self, query: &Query, limit: usize, page_token: Option<&str>) -> Result<Page, StoreError> {
        validate::check(Request::Find { query, limit, page_token }, &self.limits)?;
        let subset: HashMap<String, String> = query.subset.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let page_token = page_token.unwrap_or_default().to_owned();
        let lookup = query.terms.is_empty().then(|| pb::LookupRequest {
            subset: subset.clone(),
            limit: limit as u32,
            page_token: page_token.clone(),
            newest_first: query.newest_first,
        });
        let search = pb::SearchRequest {
            subset,
            terms: query
                .terms
                .iter()
                .map(|t| pb::SearchTerm { words: t.words.clone(), fields: t.fields.clone() })
                .collect(),
            limit: limit as u32,
            page_token,
            oldest_first: !query.newest_first,
        };
        let read_all = || {
            let mut client = self.client.clone();
            let (lookup, search) = (lookup.clone().map(|m| self.request(m)), self.request(search.clone()));
            async move {
                let stream = match lookup {
                    Some(request) => client.lookup(request).await?.into_inner(),
                    None => client.search(search).await?.into_inner(),
                };
                read_page(stream).await
            }
        };
        self.call(true, read_all, |s| self.error(s, "", None)).await
    }

    async fn count(&self, subset: &Fields, at_most: usize) -> Result<Count, StoreError> {
        validate::check(Request::Count { subset, at_most }, &self.limits)?;
        let message = pb::CountRequest {
            subset: subset.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            at_most: at_most as u64,
        };
        let answer = self
            .call(
                true,
                || {
                    let (mut client, request) = (self.client.clone(), self.request(message.clone()));
                    async move { client.count(request).await }
                },
                |s| self.error(s, "", None),
            )
            .await?
            .into_inner();
        Ok(Count { count: usize::try_from(answer.count).unwrap_or(usize::MAX), capped: answer.capped })
    }
}
