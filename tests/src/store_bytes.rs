//! How much a set of documents weighs: the bytes of their keys and values, read over
//! the store's gRPC `Lookup` page by page (what a message stored once takes, against as
//! many copies: the groups test and `cargo xtask bench webmail`).

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::store_client::StoreClient;
use tonic::transport::Channel;

/// The bytes (keys and values) of every document holding `subset`, and how many there are.
pub async fn stored_bytes(store: &StoreClient<Channel>, subset: &[(&str, &str)]) -> Result<(u64, u64), tonic::Status> {
    let (mut bytes, mut n, mut token) = (0u64, 0u64, String::new());
    loop {
        let request = pb::LookupRequest {
            subset: subset.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            limit: 500,
            page_token: std::mem::take(&mut token),
            newest_first: false,
        };
        let mut stream = store.clone().lookup(request).await?.into_inner();
        while let Some(item) = stream.message().await? {
            match item.item {
                Some(pb::lookup_response::Item::Document(d)) => {
                    n += 1;
                    bytes += d.fields.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum::<u64>();
                }
                Some(pb::lookup_response::Item::NextPageToken(t)) => token = t,
                None => {}
            }
        }
        if token.is_empty() {
            return Ok((bytes, n));
        }
    }
}
