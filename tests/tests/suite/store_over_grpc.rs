//! The Store contract over a real gRPC connection: ids and versions, merge on update,
//! optimistic concurrency, lookup by subset with pages, and clear errors.

use crate::common;

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
        let request = pb::LookupRequest {
            subset: fields(&[("kind", "note")]),
            limit: 2,
            page_token: token.clone(),
            newest_first: false,
        };
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

    // A taken unique key: ALREADY_EXISTS naming the holder; deleting it frees the key.
    let create = |key: &str| pb::CreateRequest { unique_key: key.into(), fields: fields(&[("kind", "user")]) };
    let held = store.create(create("user/ada")).await.unwrap().into_inner();
    assert_eq!(held.version, 1);
    let taken = store.create(create("user/ada")).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    assert_eq!(taken.metadata().get("bitmail-existing-id").unwrap().to_str().unwrap(), held.id);
    assert_eq!(store.create(create("")).await.unwrap_err().code(), Code::InvalidArgument);
    store.delete(pb::DeleteRequest { id: held.id }).await.unwrap();
    store.create(create("user/ada")).await.unwrap();

    store.delete(pb::DeleteRequest { id: put.id.clone() }).await.unwrap();
    assert_eq!(store.get(pb::GetRequest { id: put.id }).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(store.get(pb::GetRequest { id: String::new() }).await.unwrap_err().code(), Code::InvalidArgument);
    let too_many = pb::LookupRequest { limit: 5000, ..Default::default() };
    assert_eq!(store.lookup(too_many).await.unwrap_err().code(), Code::InvalidArgument);
}

/// PutRequest's wire shape with `bytes` where the contract says `string`, to send what a
/// conforming client cannot: invalid UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct RawPut {
    #[prost(message, repeated, tag = "1")]
    fields: Vec<RawEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawEntry {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// Every document but mta-server's node report, which it writes on its own schedule.
async fn everything(store: &mut bitmail_proto::v1::store_client::StoreClient<tonic::transport::Channel>) -> usize {
    let request =
        pb::LookupRequest { subset: HashMap::new(), limit: 1000, page_token: String::new(), newest_first: false };
    let mut stream = store.lookup(request).await.unwrap().into_inner();
    let mut n = 0;
    while let Some(item) = stream.message().await.unwrap() {
        let report = matches!(&item.item, Some(pb::lookup_response::Item::Document(d))
            if d.fields.get("kind").map(String::as_str) == Some("mta-node"));
        n += usize::from(!report);
    }
    n
}

#[tokio::test]
async fn each_bad_input_answers_its_own_status_and_changes_nothing() {
    let cluster = Cluster::start(vec![], false).await;
    let mut store = cluster.store_client().await;
    // What the cluster stored already: its tenant `default` and API keys.
    let before = everything(&mut store).await;
    let put = store.put(pb::PutRequest { fields: fields(&[("kind", "user")]) }).await.unwrap().into_inner();
    store
        .update(pb::UpdateRequest {
            id: put.id.clone(),
            fields: fields(&[("n", "1")]),
            remove: vec![],
            expected_version: 1,
        })
        .await
        .unwrap();

    // Invalid UTF-8 in a `string` field: refused by the codec before the service runs.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", cluster.backend)).unwrap();
    let mut raw = tonic::client::Grpc::new(channel.connect().await.unwrap());
    raw.ready().await.unwrap();
    let bad = RawPut { fields: vec![RawEntry { key: b"name".to_vec(), value: vec![0x61, 0xff, 0xfe] }] };
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/bitmail.v1.Store/Put");
    let codec = tonic_prost::ProstCodec::<RawPut, pb::PutResponse>::default();
    let err = raw.unary(tonic::Request::new(bad), path, codec).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("not a valid protobuf message"), "{err:?}");

    let invalid = [
        ("empty key", store.put(pb::PutRequest { fields: fields(&[("", "v")]) }).await.unwrap_err()),
        ("long key", store.put(pb::PutRequest { fields: fields(&[(&"k".repeat(257), "v")]) }).await.unwrap_err()),
        (
            "document over 16 MiB",
            store.put(pb::PutRequest { fields: fields(&[("body", &"x".repeat(16 << 20))]) }).await.unwrap_err(),
        ),
        (
            "empty subset without a limit",
            store
                .lookup(pb::LookupRequest {
                    subset: HashMap::new(),
                    limit: 0,
                    page_token: String::new(),
                    newest_first: false,
                })
                .await
                .unwrap_err(),
        ),
        ("empty id", store.delete(pb::DeleteRequest { id: String::new() }).await.unwrap_err()),
    ];
    for (what, status) in invalid {
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(status.message().starts_with("invalid argument: "), "{what}: {status:?}");
    }

    let missing = store.get(pb::GetRequest { id: "no-such-id".into() }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let stale =
        pb::UpdateRequest { id: put.id.clone(), fields: fields(&[("n", "2")]), remove: vec![], expected_version: 1 };
    let conflict = store.update(stale).await.unwrap_err();
    assert_eq!(conflict.code(), Code::Aborted, "{conflict:?}");
    assert_eq!(conflict.metadata().get("bitmail-actual-version").unwrap(), "2");

    let doc = store.get(pb::GetRequest { id: put.id }).await.unwrap().into_inner();
    assert_eq!((doc.version, doc.fields), (2, fields(&[("kind", "user"), ("n", "1")])));
    assert_eq!(everything(&mut store).await, before + 1, "nothing else was stored");
}
