//! The scheduling strategies end to end, against fake providers: `priority` keeps a
//! backup idle while the primary works; `adaptive` moves traffic away from a slow
//! provider by itself.

use crate::common;

use std::time::Duration;

use bitmail_tests::sendgrid::{Behavior, FakeSendGrid};
use common::{Cluster, sendgrid, settled, submission};
use mta_server::config::SchedulerKind;

async fn wave(cluster: &Cluster, tag: &str, n: usize) {
    let mut ids = Vec::new();
    let mut mta = cluster.mta_client().await;
    for i in 0..n {
        ids.push(mta.submit(submission(&format!("{tag}{i}@example.net"))).await.unwrap().into_inner().message_id);
    }
    for id in &ids {
        settled(&mut mta, id, Duration::from_secs(20)).await;
    }
}

#[tokio::test]
async fn priority_uses_the_backup_only_when_the_primary_fails() {
    let primary = FakeSendGrid::start(common::KEY).await.unwrap();
    let backup = FakeSendGrid::start(common::KEY).await.unwrap();
    let t = Duration::from_secs(5);
    let cluster =
        Cluster::start_with(vec![sendgrid("primary", &primary, t), sendgrid("backup", &backup, t)], false, |c| {
            c.scheduler = SchedulerKind::Priority;
        })
        .await;
    wave(&cluster, "a", 10).await;
    assert_eq!((primary.received().len(), backup.requests()), (10, 0));

    primary.set_behavior(Behavior::Fail { status: 503, body: String::new() });
    wave(&cluster, "b", 5).await;
    assert_eq!(backup.received().len(), 5);
}

#[tokio::test]
async fn adaptive_sends_less_to_a_slow_provider() {
    let slow = FakeSendGrid::start(common::KEY).await.unwrap();
    let fast = FakeSendGrid::start(common::KEY).await.unwrap();
    slow.set_behavior(Behavior::Delay(Duration::from_millis(500)));
    let t = Duration::from_secs(5);
    let cluster = Cluster::start_with(vec![sendgrid("slow", &slow, t), sendgrid("fast", &fast, t)], false, |c| {
        c.scheduler = SchedulerKind::Adaptive;
    })
    .await;
    // Learn, then measure a later wave on its own. After learning, the scores give the
    // fast provider about 91 % of first choices (500 ms against a few ms); 75 of 100 is
    // more than four standard deviations below that, so this fails only if adaptive
    // does not adapt.
    wave(&cluster, "learn", 40).await;
    let (slow_before, fast_before) = (slow.received().len(), fast.received().len());
    wave(&cluster, "measure", 100).await;
    let to_slow = slow.received().len() - slow_before;
    let to_fast = fast.received().len() - fast_before;
    assert_eq!(to_slow + to_fast, 100);
    assert!(to_fast >= 75, "the fast provider should take most of the later wave: slow {to_slow}, fast {to_fast}");
}
