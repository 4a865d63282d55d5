//! The spool through its handle: what is stored survives reopening, and each write
//! does what its doc says.

use super::*;
use crate::events::{Event, EventDetails};
use crate::message::Mailbox;
use bitmail_proto::v1::EventKind;
use record::State;
use redb::{ReadableDatabase, ReadableTableMetadata};

pub(super) fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("bitmail-spool-{}-{name}.redb", std::process::id()))
}

pub(super) fn settings() -> SpoolSettings {
    SpoolSettings { max_bytes: u64::MAX, cache_bytes: 4 << 20 }
}

pub(super) fn message(id: &str) -> Message {
    Message {
        id: id.into(),
        from: Mailbox { name: Some("Ada".into()), email: "ada@example.org".into() },
        to: vec![Mailbox { name: None, email: "bob@example.net".into() }],
        cc: vec![],
        bcc: vec![],
        reply_to: vec![],
        subject: "s".into(),
        text: Some("t".into()),
        html: None,
        headers: vec![("X-A".into(), "1".into())],
        attachments: vec![crate::message::Attachment {
            filename: "a.bin".into(),
            content_type: "application/octet-stream".into(),
            content: vec![0, 1, 2, 255],
            content_id: None,
        }],
        tags: vec!["t".into()],
        metadata: [("k".to_owned(), "v".to_owned())].into(),
        submitted_at: std::time::SystemTime::now(),
        raw: None,
        already_sent_to: Default::default(),
    }
}

/// The schedule as delivery reads it, on the blocking pool.
async fn due(spool: &Spool, now_ms: u64) -> (Vec<String>, Option<u64>) {
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || spool.due_blocking(now_ms, 10, |_| false)).await.unwrap().unwrap()
}

/// The number of stored statuses and idempotency keys.
fn counts(spool: &Spool) -> (u64, u64) {
    let txn = spool.db().unwrap().begin_read().unwrap();
    let statuses = txn.open_table(schema::STATUSES).unwrap().len().unwrap();
    let keys = txn.open_table(schema::IDEMPOTENCY).unwrap().len().unwrap();
    (statuses, keys)
}

fn event(message_id: &str, kind: EventKind, event_id: &str, permanent: bool) -> Event {
    Event {
        message_id: message_id.into(),
        record: EventDetails {
            kind: kind as i32,
            recipient: "bob@example.net".into(),
            at_ms: 1,
            provider: "sendgrid".into(),
            event_id: event_id.into(),
            detail: "550 no such user".into(),
            permanent,
        },
    }
}

/// Opens a fresh spool (any earlier file of that name removed).
fn fresh(name: &str) -> (Spool, PathBuf) {
    let path = temp_path(name);
    let _ = std::fs::remove_file(&path);
    (Spool::open(&path, settings()).unwrap(), path)
}

#[tokio::test]
async fn accepted_messages_survive_reopening_and_follow_the_schedule() {
    let path = temp_path("reopen");
    let _ = std::fs::remove_file(&path);
    {
        let spool = Spool::open(&path, settings()).unwrap();
        for id in ["m1", "m2"] {
            assert_eq!(spool.accept(&message(id), "default", None, None).await.unwrap(), Accepted::New);
        }
        let mut s = spool.status("m1").await.unwrap().unwrap();
        s.state = State::Deferred as i32;
        s.due_ms = record::now_ms() + 60_000;
        spool.update(s, false).await.unwrap();
        let mut s = spool.status("m2").await.unwrap().unwrap();
        s.state = State::Sent as i32;
        s.due_ms = 0;
        spool.update(s, true).await.unwrap();
    }
    // The writer thread may still hold the file for an instant after the handles go.
    let spool = loop {
        match Spool::open(&path, settings()) {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    };
    assert_eq!(spool.message("m1").await.unwrap().unwrap(), message_with_time("m1", &spool).await);
    assert_eq!(spool.message("m2").await.unwrap(), None, "a sent message's body is dropped");
    assert_eq!(spool.status("m2").await.unwrap().unwrap().state(), State::Sent);
    let (now, next) = due(&spool, record::now_ms()).await;
    assert!(now.is_empty(), "m1 is deferred, m2 is done");
    assert!(next.is_some());
    let (later, _) = due(&spool, record::now_ms() + 120_000).await;
    assert_eq!(later, vec!["m1".to_owned()]);
    drop(spool);
    let _ = std::fs::remove_file(&path);
}

async fn message_with_time(id: &str, spool: &Spool) -> Message {
    let stored = spool.message(id).await.unwrap().unwrap();
    Message { submitted_at: stored.submitted_at, ..message(id) }
}

#[tokio::test]
async fn prune_forgets_expired_keys_and_old_final_statuses_only() {
    let path = temp_path("prune");
    let _ = std::fs::remove_file(&path);
    let spool = Spool::open(&path, settings()).unwrap();
    let day = 24 * 3600 * 1000;
    for (id, key) in [("m1", "k1"), ("m2", "k2"), ("m3", "k3")] {
        spool.accept(&message(id), "default", Some(key.into()), None).await.unwrap();
    }
    let submitted = spool.status("m1").await.unwrap().unwrap().submitted_at_ms;
    // m1 sent, m2 failed, m3 still deferred.
    for (id, state) in [("m1", State::Sent), ("m2", State::Failed), ("m3", State::Deferred)] {
        let mut st = spool.status(id).await.unwrap().unwrap();
        st.state = state as i32;
        st.due_ms = if state == State::Deferred { submitted + 1000 } else { 0 };
        spool.update(st, state != State::Deferred).await.unwrap();
    }

    // Within the windows nothing goes.
    assert_eq!(spool.prune(submitted + 1000, 30 * day).await.unwrap(), Pruned::default());
    assert_eq!(counts(&spool), (3, 3));

    // A day later the keys expire (and the key answers no more), statuses stay.
    let later = submitted + day + 60_000;
    assert_eq!(spool.prune(later, 30 * day).await.unwrap(), Pruned { statuses: 0, keys: 3, events: 0 });
    assert_eq!(counts(&spool), (3, 0));

    // Past retention, the final statuses go; the deferred one stays.
    let much_later = submitted + 31 * day;
    assert_eq!(spool.prune(much_later, 30 * day).await.unwrap(), Pruned { statuses: 2, keys: 0, events: 6 });
    assert!(spool.status("m1").await.unwrap().is_none());
    assert!(spool.status("m3").await.unwrap().is_some());
    assert_eq!(spool.backlog().unwrap(), 1);
    drop(spool);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn an_idempotency_key_answers_the_first_id() {
    let path = temp_path("idem");
    let _ = std::fs::remove_file(&path);
    let spool = Spool::open(&path, settings()).unwrap();
    let key = Some("order-42".to_owned());
    assert_eq!(spool.accept(&message("a"), "default", key.clone(), None).await.unwrap(), Accepted::New);
    assert_eq!(spool.accept(&message("b"), "default", key, None).await.unwrap(), Accepted::Existing("a".into()));
    assert!(spool.status("b").await.unwrap().is_none());
    assert_eq!(spool.backlog().unwrap(), 1);
    drop(spool);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_submission_retried_from_another_node_is_stored_flagged() {
    let path = temp_path("flagged");
    let _ = std::fs::remove_file(&path);
    let spool = Spool::open(&path, settings()).unwrap();
    let key = Some("edge-1".to_owned());
    assert_eq!(spool.accept_for(&message("a"), "default", key, None, true, None).await.unwrap(), Accepted::New);
    spool.accept(&message("b"), "default", None, None).await.unwrap();
    assert!(spool.status("a").await.unwrap().unwrap().possible_duplicate);
    assert!(!spool.status("b").await.unwrap().unwrap().possible_duplicate);
    drop(spool);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn over_quota_refuses_new_mail_and_keeps_the_old() {
    let path = temp_path("quota");
    let _ = std::fs::remove_file(&path);
    let spool = Spool::open(&path, SpoolSettings { max_bytes: 1, cache_bytes: 4 << 20 }).unwrap();
    assert!(matches!(spool.accept(&message("a"), "default", None, None).await, Err(SpoolError::Full { .. })));
    drop(spool);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_corrupt_file_is_reported_and_left_alone() {
    let path = temp_path("corrupt");
    std::fs::write(&path, b"this is not a spool, but someone's data").unwrap();
    let err = Spool::open(&path, settings()).err().expect("refused");
    assert!(err.to_string().contains("left untouched"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"this is not a spool, but someone's data");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn backlog_and_oldest_unfinished_follow_each_commit_and_reopening() {
    let path = temp_path("figures");
    let _ = std::fs::remove_file(&path);
    {
        let spool = Spool::open(&path, settings()).unwrap();
        assert_eq!((spool.backlog().unwrap(), spool.oldest_unfinished().unwrap()), (0, None));
        spool.accept(&message("m1"), "default", None, None).await.unwrap();
        spool.accept(&message("m2"), "default", None, None).await.unwrap();
        let first = spool.status("m1").await.unwrap().unwrap();
        assert_eq!(spool.backlog().unwrap(), 2);
        assert_eq!(spool.oldest_unfinished().unwrap(), Some(first.submitted_at_ms));
        let mut sent = first;
        sent.state = State::Sent as i32;
        sent.due_ms = 0;
        spool.update(sent, true).await.unwrap();
        assert_eq!(spool.backlog().unwrap(), 1);
        let second = spool.status("m2").await.unwrap().unwrap();
        assert_eq!(spool.oldest_unfinished().unwrap(), Some(second.submitted_at_ms));
    }
    let spool = loop {
        match Spool::open(&path, settings()) {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    };
    assert_eq!(spool.backlog().unwrap(), 1, "figures are read again when the file is opened");
    assert!(spool.oldest_unfinished().unwrap().is_some());
    drop(spool);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn events_are_stored_once_and_a_hard_bounce_suppresses_its_recipient() {
    let (spool, path) = fresh("events");
    spool.accept(&message("m1"), "default", None, None).await.unwrap();
    let rules = SuppressionRules { hard_bounce_ms: 1000, complaint_ms: 0 };
    let batch = Batch {
        events: vec![
            event("m1", EventKind::Delivered, "e1", false),
            event("m1", EventKind::Bounced, "e2", true),
            event("elsewhere", EventKind::Delivered, "e3", false),
        ],
        nonce: None,
    };
    let stored = spool.record_events(batch.clone(), rules, 5000).await.unwrap();
    assert_eq!(stored, Stored { stored: 2, duplicates: 0, unknown: 1, replay: false });
    let again = spool.record_events(batch, rules, 5000).await.unwrap();
    assert_eq!(again, Stored { stored: 0, duplicates: 3, unknown: 0, replay: false });
    assert_eq!(spool.status("m1").await.unwrap().unwrap().events.len(), 2);

    let list = spool.suppressions("", None, 10, 5000).await.unwrap();
    assert_eq!(list.len(), 1);
    let (address, record) = &list[0];
    assert_eq!(address, "bob@example.net");
    assert_eq!(record.reason, "hard bounce: 550 no such user");
    assert_eq!(record.source, "sendgrid event e2");
    assert_eq!(record.expires_ms, 6000);
    assert!(spool.suppressions("", None, 10, 6000).await.unwrap().is_empty(), "expired");
    drop(spool);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_token_used_again_for_another_event_is_a_replay() {
    let (spool, path) = fresh("replay");
    let rules = SuppressionRules { hard_bounce_ms: 0, complaint_ms: 0 };
    let with_token = |event_id: &str| Batch {
        events: vec![event("m1", EventKind::Delivered, event_id, false)],
        nonce: Some(("mailgun:t1".into(), event_id.into())),
    };
    assert!(!spool.record_events(with_token("e1"), rules, 1).await.unwrap().replay);
    assert!(!spool.record_events(with_token("e1"), rules, 2).await.unwrap().replay, "the same event again");
    let replay = spool.record_events(with_token("e2"), rules, 3).await.unwrap();
    assert_eq!(replay, Stored { replay: true, ..Stored::default() });
    drop(spool);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn only_hard_bounces_and_complaints_with_a_recipient_suppress() {
    let rules = SuppressionRules { hard_bounce_ms: 10, complaint_ms: 0 };
    let complaint =
        suppression::for_event(&event("m", EventKind::Complained, "c", false), Some("acme"), rules, 100).unwrap();
    assert_eq!((complaint.reason.as_str(), complaint.expires_ms), ("complaint: 550 no such user", 0));
    assert_eq!(complaint.tenant, "acme", "a complaint is the sending tenant's");
    let bounce = suppression::for_event(&event("m", EventKind::Bounced, "b", true), Some("acme"), rules, 100).unwrap();
    assert_eq!((bounce.created_ms, bounce.expires_ms), (100, 110));
    assert_eq!(bounce.tenant, "", "a hard bounce is for every tenant");
    assert!(
        suppression::for_event(&event("m", EventKind::Bounced, "s", false), Some("acme"), rules, 100).is_none(),
        "soft"
    );
    assert!(suppression::for_event(&event("m", EventKind::Delivered, "d", false), Some("acme"), rules, 100).is_none());
    let mut anonymous = event("m", EventKind::Complained, "a", false);
    anonymous.record.recipient.clear();
    assert!(suppression::for_event(&anonymous, Some("acme"), rules, 100).is_none());
}

#[tokio::test]
async fn suppressions_page_after_an_address_and_unsuppress_removes() {
    let (spool, path) = fresh("suppressions");
    let record =
        SuppressionRecord { reason: "operator".into(), source: "test".into(), created_ms: 1, ..Default::default() };
    for address in ["a@x.org", "b@x.org", "c@x.org"] {
        spool.suppress(address.into(), record.clone()).await.unwrap();
    }
    let page: Vec<String> =
        spool.suppressions("a@x.org", None, 1, 5).await.unwrap().into_iter().map(|(a, _)| a).collect();
    assert_eq!(page, ["b@x.org"]);
    let spooled = spool.clone();
    let hit = tokio::task::spawn_blocking(move || {
        spooled.suppressed_blocking(["z@x.org", "c@x.org"], "default", 5).map(|h| h.map(|(a, _)| a.to_owned()))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(hit.as_deref(), Some("c@x.org"));
    assert!(spool.unsuppress("c@x.org".into(), String::new()).await.unwrap());
    assert!(!spool.unsuppress("c@x.org".into(), String::new()).await.unwrap());
    assert_eq!(spool.suppressions("", None, 10, 5).await.unwrap().len(), 2);
    drop(spool);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_tenants_entry_suppresses_only_for_that_tenant() {
    let (spool, path) = fresh("tenant-suppressions");
    let of =
        |tenant: &str| SuppressionRecord { reason: "complaint".into(), tenant: tenant.into(), ..Default::default() };
    spool.suppress("ann@x.org".into(), of("acme")).await.unwrap();
    spool.suppress("ann@x.org".into(), of("zeta")).await.unwrap();
    spool.suppress("dead@x.org".into(), of("")).await.unwrap();
    let check = |tenant: &'static str, address: &'static str| {
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || spool.suppressed_blocking([address], tenant, 5).unwrap().is_some())
    };
    assert!(check("acme", "ann@x.org").await.unwrap());
    assert!(!check("other", "ann@x.org").await.unwrap(), "another tenant's complaint");
    assert!(check("other", "dead@x.org").await.unwrap(), "an entry for every tenant");
    let acme = spool.suppressions("", Some("acme"), 10, 5).await.unwrap();
    assert_eq!(acme.iter().map(|(a, r)| (a.as_str(), r.tenant.as_str())).collect::<Vec<_>>(), [("ann@x.org", "acme")]);
    let all = spool.suppressions("", None, 10, 5).await.unwrap();
    assert_eq!(all.len(), 3, "each tenant's entry for the same address is its own");
    assert!(spool.unsuppress("ann@x.org".into(), "zeta".into()).await.unwrap());
    assert!(check("acme", "ann@x.org").await.unwrap(), "acme's entry stays");
    drop(spool);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_complaint_suppresses_for_the_tenant_whose_message_it_was() {
    let (spool, path) = fresh("complaint-tenant");
    spool.accept(&message("m1"), "acme", None, None).await.unwrap();
    let rules = SuppressionRules { hard_bounce_ms: 0, complaint_ms: 0 };
    let batch = Batch { events: vec![event("m1", EventKind::Complained, "c1", false)], nonce: None };
    spool.record_events(batch, rules, 5000).await.unwrap();
    let list = spool.suppressions("", None, 10, 5000).await.unwrap();
    assert_eq!(
        list.iter().map(|(a, r)| (a.as_str(), r.tenant.as_str())).collect::<Vec<_>>(),
        [("bob@example.net", "acme")]
    );
    drop(spool);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_scheduled_message_waits_in_the_spool_until_its_time() {
    let (spool, path) = fresh("not-before");
    let now = record::now_ms();
    let at = now + 3_600_000;
    spool.accept(&message("later"), "default", None, Some(at)).await.unwrap();
    spool.accept(&message("past"), "default", None, Some(now - 1000)).await.unwrap();
    assert_eq!(due(&spool, now + 1000).await, (vec!["past".to_owned()], Some(at)));
    assert_eq!(due(&spool, at).await.0, ["past", "later"]);
    let status = spool.status("later").await.unwrap().unwrap();
    assert_eq!((status.state(), status.due_ms, status.not_before_ms), (State::Queued, at, at));
    assert_eq!(spool.status("past").await.unwrap().unwrap().not_before_ms, 0);
    // The oldest unfinished message is the one due now: one waiting for its time is not late.
    let past = spool.status("past").await.unwrap().unwrap();
    assert_eq!(spool.oldest_unfinished().unwrap(), Some(past.submitted_at_ms));
    let mut done = past;
    done.sent("sendgrid", "sg-1".into());
    spool.update(done, true).await.unwrap();
    assert_eq!(spool.oldest_unfinished().unwrap(), Some(at));
    drop(spool);
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn the_event_log_pages_a_tenants_changes_in_order_with_their_metadata() {
    let (spool, path) = fresh("event-log");
    spool.accept(&message("m1"), "acme", None, None).await.unwrap();
    spool.accept(&message("m2"), "other", None, None).await.unwrap();
    let mut st = spool.status("m1").await.unwrap().unwrap();
    st.state = State::Deferred as i32;
    st.error = "every provider failed".into();
    st.due_ms = record::now_ms() + 60_000;
    spool.update(st.clone(), false).await.unwrap();
    // The same state again (a round's bookkeeping) logs nothing more.
    spool.update(st.clone(), false).await.unwrap();
    st.sent("sendgrid", "sg-1".into());
    spool.update(st, true).await.unwrap();
    let batch = Batch { events: vec![event("m1", EventKind::Delivered, "e1", false)], nonce: None };
    spool
        .record_events(batch, SuppressionRules { hard_bounce_ms: 0, complaint_ms: 0 }, record::now_ms())
        .await
        .unwrap();

    let page = spool.events("acme", 0, 10).await.unwrap();
    let seen: Vec<(&str, &str)> = page.iter().map(|(_, e)| (e.event.as_str(), e.source.as_str())).collect();
    assert_eq!(seen, [("queued", "bitmail"), ("deferred", "bitmail"), ("sent", "sendgrid"), ("delivered", "sendgrid")]);
    assert!(page.iter().all(|(_, e)| e.message_id == "m1" && e.metadata["k"] == "v"));
    assert_eq!((page[1].1.detail.as_str(), page[2].1.detail.as_str()), ("every provider failed", "sg-1"));
    assert_eq!(page[3].1.recipient, "bob@example.net");
    // From a cursor: what follows it only; another tenant's never.
    let rest = spool.events("acme", page[1].0, 10).await.unwrap();
    assert_eq!(rest.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [page[2].0, page[3].0]);
    assert_eq!(spool.events("acme", page[3].0, 10).await.unwrap(), vec![]);
    assert_eq!(spool.events("other", 0, 10).await.unwrap().len(), 1);
    assert_eq!(spool.events("acme", 0, 2).await.unwrap().len(), 2);
    drop(spool);
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn a_campaign_copy_and_its_ledger_entry_are_one_commit_and_a_second_copy_is_the_first() {
    use super::ledger::LedgerKey;
    let path = temp_path("ledger");
    let _ = std::fs::remove_file(&path);
    let spool = Spool::open(&path, settings()).unwrap();
    let key = LedgerKey { campaign: "c1".into(), subscriber: "s1".into() };
    let first = message("a");
    let answer = spool.accept_for(&first, "default", None, None, false, Some(key.clone())).await.unwrap();
    assert_eq!(answer, Accepted::New);
    let entry = spool.ledger_entry(key.clone()).await.unwrap().unwrap();
    assert_eq!((entry.message_id.as_str(), entry.state.as_str()), (first.id.as_str(), "submitted"));
    // Another copy for the same subscriber, however long after: nothing stored.
    let again = spool.accept_for(&message("b"), "default", None, None, false, Some(key.clone())).await.unwrap();
    assert_eq!(again, Accepted::Existing(first.id.clone()));
    assert!(spool.status(&message("b").id).await.unwrap().is_none());
    let other = LedgerKey { campaign: "c1".into(), subscriber: "s2".into() };
    spool.skip_subscriber(other.clone(), "suppressed".into()).await.unwrap();
    spool.move_cursor("c1".into(), "s2".into()).await.unwrap();
    let held = spool.in_ledger("c1", vec!["s1".into(), "s2".into(), "s3".into()]).await.unwrap();
    assert_eq!(held, ["s1".to_owned(), "s2".to_owned()].into());
    let r = spool.campaign_record("c1").await.unwrap();
    assert_eq!((r.submitted, r.skipped, r.cursor.as_str()), (1, 1, "s2"));
    drop(spool);
    let _ = std::fs::remove_file(&path);
}
