//! Mailing lists over gRPC (`bitmail.v1.Lists`) against backend-server, mta-server and a
//! fake SendGrid: double opt-in with the confirmation mail's link, a campaign whose
//! copies carry RFC 8058's headers, one-click unsubscribe and the next campaign passing
//! the subscriber over; filters, schedules, triggers that notify once, imports with
//! their rejected rows, exports, and bad input refused with nothing stored.

use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_runtime::grpc::{Bearer, WithKey};
use bitmail_tests::sendgrid::{FakeSendGrid, Received};
use pb::lists_client::ListsClient;
use tonic::Code;

use crate::common::{Cluster, create_key, sendgrid};

type Lists = ListsClient<WithKey>;

const URL: &str = "https://mail.bitmail.test";

async fn start() -> (Cluster, FakeSendGrid, Lists, Lists) {
    let fake = FakeSendGrid::start(crate::common::KEY).await.unwrap();
    let cluster = Cluster::start_with(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))], false, |c| {
        c.lists.public_url = URL.into();
        c.lists.unsubscribe_domain = "bitmail.test".into();
        c.tenants.default_quotas.per_second = Some(100_000.0);
        c.tenants.default_quotas.burst = Some(100_000);
    })
    .await;
    let app = create_key(&cluster.mta_config, "send", "list-app").await;
    let (app, edge) = (client(&cluster, &app).await, client(&cluster, &cluster.service_key).await);
    (cluster, fake, app, edge)
}

pub async fn client(cluster: &Cluster, key: &str) -> Lists {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.mta)).unwrap().connect().await.unwrap();
    ListsClient::with_interceptor(channel, Bearer::new(Some(key)).unwrap())
}

fn list(double_opt_in: bool) -> pb::CreateListRequest {
    pb::CreateListRequest {
        tenant: String::new(),
        list: Some(pb::MailingList {
            name: "Power cuts".into(),
            double_opt_in,
            from_email: "notices@bitmail.test".into(),
            from_name: "Power notices".into(),
            attributes: vec!["area".into()],
            templates: [(
                "cut".to_owned(),
                pb::Content {
                    subject: "Power cut in {{ area }}".into(),
                    markdown: "Dear {{ name }}, a cut is planned.".into(),
                },
            )]
            .into(),
            ..Default::default()
        }),
    }
}

fn campaign(list: &str, subject: &str, filter: &[(&str, &str)]) -> pb::CreateCampaignRequest {
    pb::CreateCampaignRequest {
        tenant: String::new(),
        campaign: Some(pb::Campaign {
            list_id: list.into(),
            name: subject.into(),
            content: Some(pb::Content {
                subject: subject.into(),
                markdown: "Hello **{{ name }}** of {{ area }}.".into(),
            }),
            filter: filter.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }),
    }
}

fn subscribe(list: &str, email: &str, area: &str, language: &str) -> pb::SubscribeRequest {
    pb::SubscribeRequest {
        list_id: list.into(),
        email: email.into(),
        name: format!("Name of {email}"),
        language: language.into(),
        attributes: [("area".to_owned(), area.to_owned())].into(),
        ..Default::default()
    }
}

async fn finished(app: &mut Lists, id: &str) -> pb::Campaign {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let c = app
            .get_campaign(pb::CampaignRequest { tenant: String::new(), campaign_id: id.into() })
            .await
            .unwrap()
            .into_inner();
        if ["done", "failed", "cancelled"].contains(&c.state.as_str()) {
            return c;
        }
        assert!(tokio::time::Instant::now() < deadline, "campaign {id} still {} ({})", c.state, c.error);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn to(r: &Received) -> String {
    r.body["personalizations"][0]["to"][0]["email"].as_str().unwrap_or_default().to_owned()
}

fn header(r: &Received, name: &str) -> String {
    r.body["headers"][name].as_str().unwrap_or_default().to_owned()
}

/// The path and token of a link to `URL` in a mail's text.
fn link(r: &Received, path: &str) -> String {
    let text = r.body["content"][0]["value"].as_str().unwrap_or_default();
    let start = text.find(&format!("{URL}{path}")).unwrap_or_else(|| panic!("no {path} link in {text}"));
    let rest = &text[start + URL.len() + path.len()..];
    rest.split(|c: char| c.is_whitespace() || c == ')').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_opt_in_then_a_campaign_with_one_click_unsubscribe_and_the_next_campaign_skips_them() {
    let (_cluster, fake, mut app, mut edge) = start().await;
    let l = app.create_list(list(true)).await.unwrap().into_inner();
    assert_eq!(l.subscribe_url, format!("{URL}/lists/{}/subscribe", l.id));
    assert!(l.form_html.contains("name=\"area\""), "{}", l.form_html);

    for (email, language) in [("ann@example.net", "en"), ("zoe@example.net", "fr")] {
        let answer = edge.subscribe(subscribe(&l.id, email, "Colombo 7", language)).await.unwrap().into_inner();
        assert!(answer.confirmation_sent);
        assert_eq!(answer.subscriber.unwrap().state, "unconfirmed");
    }
    // The same address again is the same subscriber, and no second mail so soon.
    let again = edge.subscribe(subscribe(&l.id, "ANN@example.net", "Colombo 7", "en")).await.unwrap().into_inner();
    assert!(!again.confirmation_sent);
    let mails = fake.wait_for(2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.received().len(), 2, "one confirmation per address");
    let fr = mails.iter().find(|m| to(m) == "zoe@example.net").unwrap();
    assert_eq!(fr.body["subject"], "Confirmez votre abonnement à Power cuts");
    for mail in &mails {
        let token = link(mail, "/lists/confirm/");
        // Reading the link (a GET of the page) changes nothing.
        let info = edge
            .read_token(pb::TokenRequest { token: token.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((info.kind.as_str(), info.subscriber.unwrap().state.as_str()), ("confirm", "unconfirmed"));
        // A changed token is refused.
        let mut bad = token.clone();
        bad.insert(2, '0');
        let e = edge.confirm(pb::TokenRequest { token: bad, ..Default::default() }).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let s = edge.confirm(pb::TokenRequest { token, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(s.state, "confirmed");
    }

    let c = app.create_campaign(campaign(&l.id, "Cut on Monday", &[])).await.unwrap().into_inner();
    let done = finished(&mut app, &c.id).await;
    assert_eq!(done.state, "done", "{}", done.error);
    let copies: Vec<Received> = fake.wait_for(4, Duration::from_secs(20)).await.into_iter().skip(2).collect();
    assert_eq!(copies.len(), 2);
    let ann = copies.iter().find(|m| to(m) == "ann@example.net").unwrap();
    let both = header(ann, "List-Unsubscribe");
    let (unsubscribe, mailto) = both.split_once(", ").unwrap_or_else(|| panic!("{both}"));
    assert!(unsubscribe.starts_with(&format!("<{URL}/lists/u/")) && unsubscribe.ends_with('>'), "{unsubscribe}");
    let token = unsubscribe.trim_start_matches(&format!("<{URL}/lists/u/")).trim_end_matches('>').to_owned();
    assert_eq!(mailto, format!("<mailto:unsubscribe@bitmail.test?subject=unsubscribe%20{token}>"));
    assert_eq!(header(ann, "List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
    assert!(
        ann.body["content"][1]["value"]
            .as_str()
            .unwrap()
            .contains("Hello <strong>Name of ann@example.net</strong> of Colombo 7.")
    );
    let zoe = copies.iter().find(|m| to(m) == "zoe@example.net").unwrap();
    assert!(zoe.body["content"][0]["value"].as_str().unwrap().contains("Se désabonner: "));

    // RFC 8058's POST, as a mail provider makes it (through the edge, reason one-click).
    let s = edge
        .unsubscribe(pb::UnsubscribeRequest { token: token.clone(), reason: "one-click".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((s.state.as_str(), s.unsubscribe_reason.as_str()), ("unsubscribed", "one-click"));
    // Again: still unsubscribed, counted once.
    edge.unsubscribe(pb::UnsubscribeRequest { token, reason: "one-click".into(), ..Default::default() }).await.unwrap();
    let after = app
        .get_campaign(pb::CampaignRequest { tenant: String::new(), campaign_id: c.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.stats.as_ref().unwrap().unsubscribed, 1);

    let next = app.create_campaign(campaign(&l.id, "Cut on Friday", &[])).await.unwrap().into_inner();
    let next = finished(&mut app, &next.id).await;
    let stats = next.stats.unwrap();
    assert_eq!((stats.total, stats.submitted), (1, 1));
    let mut later = fake.wait_for(5, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.received().len(), 5);
    assert_eq!(to(&later.pop().unwrap()), "zoe@example.net");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_schedules_triggers_and_bad_templates() {
    let (_cluster, fake, mut app, _edge) = start().await;
    let l = app.create_list(list(false)).await.unwrap().into_inner();
    for (i, area) in ["Colombo 7", "Kandy", "Colombo 7", "Galle"].iter().enumerate() {
        let s = app.subscribe(subscribe(&l.id, &format!("p{i}@example.net"), area, "en")).await.unwrap().into_inner();
        assert_eq!(s.subscriber.unwrap().state, "confirmed", "single opt-in");
    }
    // A template error stops the campaign before anything is stored or sent.
    for (markdown, wanted) in [("Hi {{ nmae }}", "unknown variable `nmae`"), ("Hi {{ name", "never closed")] {
        let mut bad = campaign(&l.id, "Bad", &[]);
        bad.campaign.as_mut().unwrap().content.as_mut().unwrap().markdown = markdown.into();
        let e = app.create_campaign(bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains(wanted), "{}", e.message());
    }
    let e = app.create_campaign(campaign(&l.id, "Bad", &[("zone", "x")])).await.unwrap_err();
    assert!(e.message().contains("filter.zone"), "{}", e.message());
    let listed = app.list_campaigns(pb::ListCampaignsRequest::default()).await.unwrap().into_inner();
    assert!(listed.campaigns.is_empty());

    let c = app.create_campaign(campaign(&l.id, "Colombo only", &[("area", "Colombo 7")])).await.unwrap().into_inner();
    assert_eq!(finished(&mut app, &c.id).await.stats.unwrap().submitted, 2);
    let got = fake.wait_for(2, Duration::from_secs(20)).await;
    let mut rcpts: Vec<String> = got.iter().map(to).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["p0@example.net", "p2@example.net"]);

    // Scheduled 1.5 s ahead: waits, then goes.
    let mut later = campaign(&l.id, "Kandy later", &[("area", "Kandy")]);
    later.campaign.as_mut().unwrap().start_at_unix_ms = bitmail_runtime::time::now_ms() as i64 + 1500;
    let c = app.create_campaign(later).await.unwrap().into_inner();
    assert_eq!(c.state, "scheduled");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(fake.received().len(), 2, "not before its time");
    assert_eq!(finished(&mut app, &c.id).await.state, "done");
    assert_eq!(to(&fake.wait_for(3, Duration::from_secs(20)).await[2]), "p1@example.net");

    // A trigger notifies once per key, however often it is called.
    let trigger = pb::TriggerRequest {
        list_id: l.id.clone(),
        template: "cut".into(),
        filter: [("area".to_owned(), "Galle".to_owned())].into(),
        idempotency_key: "schedule-2026-12-02-galle".into(),
        ..Default::default()
    };
    let first = app.trigger(trigger.clone()).await.unwrap().into_inner();
    let second = app.trigger(trigger.clone()).await.unwrap().into_inner();
    assert_eq!(first.id, second.id);
    finished(&mut app, &first.id).await;
    let got = fake.wait_for(4, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.received().len(), 4);
    assert_eq!(got[3].body["subject"], "Power cut in Galle");
    let e = app.trigger(pb::TriggerRequest { idempotency_key: String::new(), ..trigger }).await.unwrap_err();
    assert!(e.message().contains("idempotency_key: required"), "{}", e.message());
}

async fn task_done(app: &mut Lists, id: &str) -> pb::Task {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let t = app.get_task(pb::TaskRequest { tenant: String::new(), task_id: id.into() }).await.unwrap().into_inner();
        if ["done", "failed", "cancelled"].contains(&t.state.as_str()) {
            return t;
        }
        assert!(tokio::time::Instant::now() < deadline, "task {id} still {} at {}/{}", t.state, t.done, t.total);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_of_ten_thousand_rows_reports_its_bad_rows_and_an_export_reads_them_back() {
    let (_cluster, _fake, mut app, _edge) = start().await;
    let l = app.create_list(list(true)).await.unwrap().into_inner();
    let import = |csv: Vec<u8>| pb::ImportRequest { list_id: l.id.clone(), csv, confirmed: true, ..Default::default() };
    // Bad files: refused whole, nothing stored.
    for (csv, wanted) in [
        (b"email,area\n\xff\xfe,x\n".to_vec(), "line 2 is not UTF-8"),
        (b"mail,area\n".to_vec(), "column \"mail\""),
        (format!("email\n{}\n", "a".repeat(70_000)).into_bytes(), "line 2 is 70000 bytes"),
    ] {
        let e = app.import_subscribers(import(csv)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains(wanted), "{}", e.message());
    }
    assert!(app.list_tasks(pb::ListTasksRequest::default()).await.unwrap().into_inner().tasks.is_empty());

    let mut csv = String::from("email,name,area\n");
    for i in 0..10_000 {
        match i {
            17 => csv.push_str("not-an-address,X,Kandy\n"),
            4242 => csv.push_str("q@example.net,\"unclosed,Kandy\n"),
            _ => csv.push_str(&format!(
                "user{i}@example.net,\"User, {i}\",{}\n",
                if i % 2 == 0 { "Kandy" } else { "Galle" }
            )),
        }
    }
    let t = app.import_subscribers(import(csv.into_bytes())).await.unwrap().into_inner();
    assert_eq!((t.kind.as_str(), t.total), ("import", 10_000));
    let t = task_done(&mut app, &t.id).await;
    let r = t.result.unwrap();
    assert_eq!((t.state.as_str(), r.added, r.rejected), ("done", 9_998, 2), "{}", t.error);
    assert_eq!(r.rejected_rows[0].line, 19);
    assert!(r.rejected_rows[0].reason.contains("not an email address"), "{:?}", r.rejected_rows);
    assert_eq!(r.rejected_rows[1].line, 4244);

    let e = app
        .export_subscribers(pb::ExportRequest { list_id: l.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let e = task_done(&mut app, &e.id).await;
    assert_eq!((e.state.as_str(), e.result.as_ref().unwrap().exported), ("done", 9_998));
    let mut stream =
        app.read_export(pb::TaskRequest { tenant: String::new(), task_id: e.id.clone() }).await.unwrap().into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        bytes.extend(chunk.data);
    }
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("email,name,language,state,area,created_ms\n"));
    assert!(text.contains("\nuser10@example.net,\"User, 10\",en,confirmed,Kandy,"), "{}", &text[..300]);
    assert_eq!(text.lines().count(), 9_999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_bounce_of_a_campaign_copy_unsubscribes_the_subscriber_and_is_counted() {
    use crate::delivery_events::{MAILGUN_WEBHOOK_KEY, mailgun_webhook, now_secs};
    use bitmail_runtime::config::Secret;
    use mta_server::config::ProviderConfig;
    let mg = bitmail_tests::mailgun::FakeMailgun::start(crate::common::KEY).await.unwrap();
    let mut provider = crate::common::mailgun("mailgun", &mg, Duration::from_secs(5));
    if let ProviderConfig::Mailgun(c) = &mut provider {
        c.webhook_signing_key = Some(Secret::new(MAILGUN_WEBHOOK_KEY));
    }
    let cluster = Cluster::start_with(vec![provider], false, |c| c.lists.public_url = URL.into()).await;
    let mut app = client(&cluster, &cluster.admin_key).await;
    let l = app.create_list(list(false)).await.unwrap().into_inner();
    for email in ["gone@example.net", "here@example.net"] {
        app.subscribe(subscribe(&l.id, email, "Kandy", "en")).await.unwrap();
    }
    let c = app.create_campaign(campaign(&l.id, "News", &[])).await.unwrap().into_inner();
    finished(&mut app, &c.id).await;
    let copies = mg.wait_for(2, Duration::from_secs(20)).await;
    let gone = copies.iter().find(|m| m.field("to").is_some_and(|t| t.contains("gone@"))).unwrap();
    let id = gone.field("v:bitmail_id").expect("the copy's id").to_owned();
    let ts = now_secs();
    let bounce = serde_json::json!({
        "event": "failed", "severity": "permanent", "id": "mg-ev-list", "timestamp": ts,
        "recipient": "gone@example.net", "user-variables": {"bitmail_id": id},
        "delivery-status": {"code": 550, "message": "5.1.1 mailbox unavailable", "description": ""},
    });
    let mut mta = cluster.mta_client().await;
    let answer = mta.receive_webhook(mailgun_webhook(MAILGUN_WEBHOOK_KEY, ts, "tok-list", bounce)).await.unwrap();
    assert_eq!(answer.into_inner().stored, 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = app
            .list_subscribers(pb::ListSubscribersRequest {
                list_id: l.id.clone(),
                state: "unsubscribed".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let stats = app
            .get_campaign(pb::CampaignRequest { tenant: String::new(), campaign_id: c.id.clone() })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        if let [s] = &page.subscribers[..]
            && stats.bounced == 1
        {
            assert_eq!((s.email.as_str(), s.unsubscribe_reason.as_str()), ("gone@example.net", "bounce"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not unsubscribed: {page:?} {stats:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_subscribes_to_any_tenants_list_but_tenants_see_only_their_own_and_suppressed_addresses_get_no_mail() {
    let (cluster, fake, mut app, mut edge) = start().await;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.mta)).unwrap().connect().await.unwrap();
    let mut admin =
        pb::admin_client::AdminClient::with_interceptor(channel, Bearer::new(Some(&cluster.admin_key)).unwrap());
    let acme = pb::Tenant {
        id: "acme".into(),
        display_name: "Acme".into(),
        domains: vec!["acme.test".into()],
        ..Default::default()
    };
    admin.create_tenant(acme).await.unwrap();
    let mut root = client(&cluster, &cluster.admin_key).await;
    let mut given = list(true);
    given.tenant = "acme".into();
    // Its sender must be one of acme's addresses.
    let e = root.create_list(given.clone()).await.unwrap_err();
    assert!(e.message().contains("from_email: notices@bitmail.test is not a sending domain"), "{}", e.message());
    given.list.as_mut().unwrap().from_email = "news@acme.test".into();
    let l = root.create_list(given).await.unwrap().into_inner();
    assert_eq!(l.tenant, "acme");

    // Tenant default's key sees nothing of it.
    let get = pb::GetListRequest { tenant: String::new(), list_id: l.id.clone() };
    assert_eq!(app.get_list(get.clone()).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(app.subscribe(subscribe(&l.id, "a@example.net", "x", "en")).await.unwrap_err().code(), Code::NotFound);
    // The edge reads and subscribes to it, but may not vouch for consent.
    assert_eq!(edge.get_list(get).await.unwrap().into_inner().name, "Power cuts");
    let mut vouched = subscribe(&l.id, "b@example.net", "x", "en");
    vouched.confirmed = true;
    let e = edge.subscribe(vouched).await.unwrap_err();
    assert!(e.message().contains("confirmed: only the tenant's own key"), "{}", e.message());

    let mut mta = cluster.mta_client().await;
    let suppression = pb::Suppression {
        address: "gone@example.net".into(),
        reason: "asked".into(),
        tenant: "acme".into(),
        ..Default::default()
    };
    mta.add_suppression(suppression).await.unwrap();
    let s = edge.subscribe(subscribe(&l.id, "gone@example.net", "x", "en")).await.unwrap().into_inner();
    assert!(!s.confirmation_sent);
    let s = edge.subscribe(subscribe(&l.id, "here@example.net", "x", "en")).await.unwrap().into_inner();
    assert!(s.confirmation_sent);
    let mail = fake.wait_for(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.received().len(), 1);
    assert_eq!(
        (to(&mail[0]).as_str(), mail[0].body["from"]["email"].as_str()),
        ("here@example.net", Some("news@acme.test"))
    );

    // Bad input, each naming its field; nothing stored.
    let mut bad = subscribe(&l.id, "not an address", "x", "en");
    bad.name = "Eve\r\nBcc: all@example.net".into();
    bad.attributes.insert("area".into(), "x".repeat(10 << 20));
    bad.attributes.insert("zone".into(), "y".into());
    let e = edge.subscribe(bad).await.unwrap_err();
    for field in [
        "email: ",
        "name: holds the control character U+000D",
        "attributes.area: 10485760 characters",
        "attributes.zone: not an attribute",
    ] {
        assert!(e.message().contains(field), "{field} in {}", e.message());
    }
    let page = root
        .list_subscribers(pb::ListSubscribersRequest {
            tenant: "acme".into(),
            list_id: l.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.subscribers.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_carries_its_attachment_and_a_cancelled_one_sends_no_more() {
    let (_cluster, fake, mut app, _edge) = start().await;
    let l = app.create_list(list(false)).await.unwrap().into_inner();
    for i in 0..30 {
        app.subscribe(subscribe(&l.id, &format!("s{i}@example.net"), "Kandy", "en")).await.unwrap();
    }
    let mut with_file = campaign(&l.id, "Timetable", &[]);
    let pdf = b"%PDF-1.4 timetable".to_vec();
    with_file.campaign.as_mut().unwrap().attachments = vec![pb::Attachment {
        filename: "timetable.pdf".into(),
        content_type: "application/pdf".into(),
        content: pdf.clone(),
        ..Default::default()
    }];
    let c = app.create_campaign(with_file).await.unwrap().into_inner();
    assert_eq!(c.attachments[0].filename, "timetable.pdf");
    assert!(c.attachments[0].content.is_empty(), "a campaign's answer does not carry the bytes");
    finished(&mut app, &c.id).await;
    let got = fake.wait_for(30, Duration::from_secs(30)).await;
    use base64::Engine as _;
    let attached = got[0].body["attachments"][0]["content"].as_str().unwrap();
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(attached).unwrap(), pdf);

    // Too big for every copy to carry: refused, nothing stored.
    let mut big = campaign(&l.id, "Big", &[]);
    big.campaign.as_mut().unwrap().attachments =
        vec![pb::Attachment { filename: "big.bin".into(), content: vec![0; 3 << 20], ..Default::default() }];
    let e = app.create_campaign(big).await.unwrap_err();
    assert!(e.message().contains("attachments: 3145728 bytes together, at most 2097152"), "{}", e.message());

    // One copy a second, cancelled after the first: no more go out, and it cannot resume.
    let mut slow = campaign(&l.id, "Slow", &[]);
    slow.campaign.as_mut().unwrap().rate_per_second = 1.0;
    let c = app.create_campaign(slow).await.unwrap().into_inner();
    fake.wait_for(31, Duration::from_secs(20)).await;
    let request = pb::CampaignRequest { tenant: String::new(), campaign_id: c.id.clone() };
    assert_eq!(app.cancel_campaign(request.clone()).await.unwrap().into_inner().state, "cancelled");
    let sent = fake.received().len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(fake.received().len() <= sent + 1, "at most the copy in flight: {} then {}", sent, fake.received().len());
    assert!(fake.received().len() < 40);
    let e = app.resume_campaign(request).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}
