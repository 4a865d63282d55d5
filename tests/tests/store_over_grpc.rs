//! The Store contract over a real gRPC connection: ids and versions, merge on update,
//! optimistic concurrency, lookup by subset with pages, and clear errors.

mod common;

use std::collections::HashMap;

use bitmail_proto::v1 as pb;
use common::Cluster;
use tonic::Code;

fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[tokio::test]
async fn documents_round_trip_with_versions_and_lookups() {
    let cluster = Cluster::start(vec![], false).await;
    let mut store = cluster.store_client().await;

    let put =
        store.put(pb::PutRequest { fields: fields(&[("kind", "user"), ("name", "ada")]) }).await.unwrap().into_inner();
    assert_eq!(put.version, 1);
    let doc = store.get(pb::GetRequest { id: put.id.clone() }).await.unwrap().into_inner();
    assert_eq!(doc.fields, fields(&[("kind", "user"), ("name", "ada")]));

    let update = pb::UpdateRequest {
        id: put.id.clone(),
        fields: fields(&[("lang", "fr")]),
        remove: vec![],
        expected_version: 1,
    };
    assert_eq!(store.update(update.clone()).await.unwrap().into_inner().version, 2);
    let stale = store.update(update).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let doc = store.get(pb::GetRequest { id: put.id.clone() }).await.unwrap().into_inner();
    assert_eq!((doc.version, doc.fields.len()), (2, 3));

    for i in 0..5 {
        store.put(pb::PutRequest { fields: fields(&[("kind", "note"), ("n", &i.to_string())]) }).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let request = pb::LookupRequest { subset: fields(&[("kind", "note")]), limit: 2, page_token: token.clone() };
        let mut stream = store.lookup(request).await.unwrap().into_inner();
        token.clear();
        while let Some(item) = stream.message().await.unwrap() {
            match item.item.unwrap() {
                pb::lookup_response::Item::Document(d) => seen.push(d.fields["n"].clone()),
                pb::lookup_response::Item::NextPageToken(t) => token = t,
            }
        }
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ["0", "1", "2", "3", "4"]);

    store.delete(pb::DeleteRequest { id: put.id.clone() }).await.unwrap();
    assert_eq!(store.get(pb::GetRequest { id: put.id }).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(store.get(pb::GetRequest { id: String::new() }).await.unwrap_err().code(), Code::InvalidArgument);
    let too_many = pb::LookupRequest { limit: 5000, ..Default::default() };
    assert_eq!(store.lookup(too_many).await.unwrap_err().code(), Code::InvalidArgument);
}
