//! A campaign to 20,000 subscribers survives kill -9 of mta-server twice and a pause and
//! resume on the way: every subscriber gets exactly one copy at the provider, none is
//! skipped, and a copy reaches the provider twice only when mta-server flags it a
//! possible duplicate (its delivery attempt was in flight at the kill), as the
//! campaign's figures count them.
//!
//! backend-server and mta-server run as child processes (kill -9 is real) from
//! `target/debug` (`cargo test --workspace` builds them; else `cargo build --bins`), the
//! fake SendGrid in this process. `BITMAIL_CAMPAIGN_SUBSCRIBERS` changes the size.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bitmail_proto::v1 as pb;
use bitmail_runtime::grpc::{Bearer, WithKey};
use bitmail_tests::sendgrid::FakeSendGrid;
use pb::lists_client::ListsClient;

use crate::common::stack::{Service, free_port, until};

const PROVIDER_KEY: &str = "SG.campaign-crash";

fn lists(port: u16, key: &str) -> ListsClient<WithKey> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    ListsClient::with_interceptor(channel, Bearer::new(Some(key)).unwrap())
}

/// The campaign, once mta-server answers (it may be starting again).
async fn campaign(client: &mut ListsClient<WithKey>, id: &str) -> pb::Campaign {
    loop {
        let request = pb::CampaignRequest { tenant: String::new(), campaign_id: id.into() };
        if let Ok(c) = client.get_campaign(request).await {
            return c.into_inner();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn submitted_at_least(client: &mut ListsClient<WithKey>, id: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let c = campaign(client, id).await;
        let stats = c.stats.unwrap_or_default();
        if stats.submitted >= n || c.state == "done" {
            eprintln!("campaign: {} submitted, {} sent, state {}", stats.submitted, stats.sent, c.state);
            return;
        }
        assert!(Instant::now() < deadline, "campaign stuck at {} submitted ({} {})", stats.submitted, c.state, c.error);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_killed_twice_and_paused_sends_every_subscriber_exactly_one_copy() {
    let total: u64 = std::env::var("BITMAIL_CAMPAIGN_SUBSCRIBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("bitmail-campaign-crash-{}", crate::common::uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    eprintln!("campaign crash: logs in {}", dir.display());
    let fake = FakeSendGrid::start(PROVIDER_KEY).await.unwrap();
    let (backend_port, mta_port) = (free_port(), free_port());
    let mut backend = Service::new(
        "backend-server",
        &dir,
        "BITMAIL_BACKEND_LOG",
        format!(
            "listen = \"127.0.0.1:{backend_port}\"\nshutdown_grace_secs = 1\n[embedded]\npath = {:?}\n",
            dir.join("store.redb").display().to_string()
        ),
    );
    backend.start();
    until(Duration::from_secs(30), "backend-server up", || backend.probe()).await;
    let mut mta = Service::new(
        "mta-server",
        &dir,
        "BITMAIL_MTA_LOG",
        format!(
            "listen = \"127.0.0.1:{mta_port}\"\nshutdown_grace_secs = 1\n[spool]\npath = {:?}\n\
             [retry]\ninitial_secs = 1\nmax_delay_secs = 2\n[lists]\npublic_url = \"https://mail.bitmail.test\"\n\
             [tenants]\nstore = \"http://127.0.0.1:{backend_port}\"\nnode_id = \"mta-1\"\ndefault_domains = [\"bitmail.test\"]\n\
             [tenants.default_quotas]\nper_second = 100000.0\nburst = 100000\nper_day = 10000000\n\
             [[providers]]\nname = \"sendgrid\"\nkind = \"sendgrid\"\nbase_url = \"{}\"\napi_key = \"{PROVIDER_KEY}\"\ntimeout_ms = 5000\n",
            dir.join("spool.redb").display().to_string(),
            fake.base_url()
        ),
    );
    let key = bitmail_tests::api_key::create_key(&mta.bin.clone(), &mta.config, "admin", "campaign-test");
    mta.start();
    until(Duration::from_secs(30), "mta-server up", || mta.probe()).await;
    let mut client = lists(mta_port, &key);

    let list = pb::MailingList {
        name: "Field staff".into(),
        from_email: "news@bitmail.test".into(),
        attributes: vec!["region".into()],
        ..Default::default()
    };
    let list = client
        .create_list(pb::CreateListRequest { tenant: String::new(), list: Some(list) })
        .await
        .unwrap()
        .into_inner();
    let mut csv = String::from("email,name,region\n");
    for i in 0..total {
        csv.push_str(&format!("staff{i}@example.net,Staff {i},r{}\n", i % 7));
    }
    let import =
        pb::ImportRequest { list_id: list.id.clone(), csv: csv.into_bytes(), confirmed: true, ..Default::default() };
    let task = client.import_subscribers(import).await.unwrap().into_inner();
    until(Duration::from_secs(300), "the import done", || {
        let (mut client, id) = (client.clone(), task.id.clone());
        async move {
            let t = client.get_task(pb::TaskRequest { tenant: String::new(), task_id: id }).await.unwrap().into_inner();
            assert_ne!(t.state, "failed", "{}", t.error);
            t.state == "done"
        }
    })
    .await;
    eprintln!("campaign crash: {total} subscribers imported after {:?}", started.elapsed());

    let content = pb::Content {
        subject: "Update for {{ region }}".into(),
        markdown: "Dear {{ name }}, the schedule changed.".into(),
    };
    let given = pb::Campaign {
        list_id: list.id.clone(),
        name: "Schedule".into(),
        content: Some(content),
        ..Default::default()
    };
    let c = client
        .create_campaign(pb::CreateCampaignRequest { tenant: String::new(), campaign: Some(given) })
        .await
        .unwrap()
        .into_inner();
    let id = c.id.clone();

    submitted_at_least(&mut client, &id, total / 5).await;
    mta.kill_9();
    mta.start();
    submitted_at_least(&mut client, &id, total * 9 / 20).await;
    let pause = pb::CampaignRequest { tenant: String::new(), campaign_id: id.clone() };
    assert_eq!(client.pause_campaign(pause.clone()).await.unwrap().into_inner().state, "paused");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let paused_at = campaign(&mut client, &id).await.stats.unwrap().submitted;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(campaign(&mut client, &id).await.stats.unwrap().submitted, paused_at, "nothing submitted while paused");
    assert_eq!(client.resume_campaign(pause).await.unwrap().into_inner().state, "running");
    submitted_at_least(&mut client, &id, total * 7 / 10).await;
    mta.kill_9();
    mta.start();

    let deadline = Instant::now() + Duration::from_secs(300);
    let done = loop {
        let c = campaign(&mut client, &id).await;
        let s = c.stats.unwrap_or_default();
        if c.state == "done" && s.sent + s.failed >= total {
            break c;
        }
        assert!(Instant::now() < deadline, "campaign not finished: {} {:?} {}", c.state, s, c.error);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stats = done.stats.unwrap();
    eprintln!("campaign crash: done after {:?}: {stats:?}", started.elapsed());
    assert_eq!((stats.total, stats.submitted, stats.skipped, stats.failed), (total, total, 0, 0));

    // At the provider: every subscriber, each copy under the one id its ledger holds.
    let received = fake.received();
    let mut by_rcpt: HashMap<String, Vec<String>> = HashMap::new();
    for r in &received {
        let to = r.body["personalizations"][0]["to"][0]["email"].as_str().unwrap().to_owned();
        let id = r.body["custom_args"]["bitmail_id"].as_str().unwrap().to_owned();
        by_rcpt.entry(to).or_default().push(id);
    }
    assert_eq!(by_rcpt.len() as u64, total, "every subscriber reached, none skipped");
    let mut repeated = 0;
    let mut mta_client = bitmail_tests::api_key::client(
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{mta_port}")).unwrap().connect_lazy(),
        &key,
    );
    for (to, ids) in &by_rcpt {
        if ids.len() > 1 {
            repeated += 1;
            assert!(ids.iter().all(|i| i == &ids[0]), "{to} got two different copies: {ids:?}");
            let status = mta_client
                .get_message(pb::GetMessageRequest { message_id: ids[0].clone() })
                .await
                .unwrap()
                .into_inner();
            assert!(status.possible_duplicate, "{to} got {} deliveries of an unflagged copy", ids.len());
        }
    }
    assert!(repeated <= stats.possible_duplicates, "{repeated} repeated, {} flagged", stats.possible_duplicates);
    eprintln!("campaign crash: {repeated} copies delivered twice (flagged: {})", stats.possible_duplicates);
    drop(mta);
    drop(backend);
    let _ = std::fs::remove_dir_all(&dir);
}
