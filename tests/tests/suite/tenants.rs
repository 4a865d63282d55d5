//! Tenants and API keys over real sockets: one backend-server (the shared store) and one
//! or two mta-server nodes on it, a fake SendGrid behind them. Every `Mta` call needs a
//! usable key of the right scope; a tenant sees only its own messages and sends only
//! from its own domains; quotas refuse before anything is stored, naming the quota and
//! when the next message is allowed; a revocation reaches another node within 10 s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::admin_client::AdminClient;
use bitmail_proto::v1::mta_client::MtaClient;
use bitmail_runtime::config::Secret;
use bitmail_runtime::grpc::{Bearer, WithKey};
use bitmail_tests::eventually::eventually;
use bitmail_tests::sendgrid::FakeSendGrid;
use mta_server::config::{ProviderConfig, SendGridConfig};
use mta_server::tenant::{KeyRequest, Quotas, Registry, Scope, Tenant};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

const PROVIDER_KEY: &str = "SG.tenants-test";

struct Gateway {
    nodes: Vec<SocketAddr>,
    registry: Registry,
    fake: FakeSendGrid,
    admin_key: String,
    _stop: watch::Sender<bool>,
    dir: std::path::PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn stopped(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

impl Gateway {
    /// A backend-server and `nodes` mta-server nodes sharing it for tenants.
    async fn start(nodes: usize) -> Gateway {
        let (stop, rx) = watch::channel(false);
        let dir = std::env::temp_dir().join(format!("bitmail-tenants-{}-{}", std::process::id(), fastrand::u64(..)));
        let backend_config = backend_server::config::Config {
            listen: loopback(),
            engine: backend_server::config::Engine::Memory,
            ..Default::default()
        };
        let backend = backend_server::server::Server::bind(&backend_config).await.expect("backend binds");
        let backend_addr = backend.local_addr().unwrap();
        tokio::spawn(backend.serve(stopped(&rx)));

        let fake = FakeSendGrid::start(PROVIDER_KEY).await.unwrap();
        let mut addrs = Vec::new();
        for n in 0..nodes {
            let mut config = mta_server::config::Config { listen: loopback(), ..Default::default() };
            config.spool.path = dir.join(format!("spool-{n}.redb"));
            config.spool.cache_bytes = 4 << 20;
            config.tenants.store = format!("http://{backend_addr}");
            config.tenants.node_id = format!("node-{n}");
            config.tenants.default_domains = vec!["ops.test".into()];
            config.providers = vec![ProviderConfig::Sendgrid(SendGridConfig {
                name: "sendgrid".into(),
                base_url: fake.base_url(),
                api_key: Secret::new(PROVIDER_KEY),
                sandbox: false,
                webhook_public_key: None,
                inbound_password: None,
                connect_timeout_ms: 1000,
                timeout_ms: 5000,
                weight: 1,
                limits: Default::default(),
            })];
            let server = mta_server::server::Server::bind(&config).await.expect("mta binds");
            addrs.push(server.local_addr().unwrap());
            tokio::spawn(server.serve(stopped(&rx)));
        }
        let store = backend_server::proxy::ProxyStore::new(
            &format!("http://{backend_addr}"),
            None,
            Duration::from_secs(1),
            Duration::from_secs(5),
            Default::default(),
        )
        .unwrap();
        let registry = Registry::new(Arc::new(store));
        registry.ensure_default_tenant(&["ops.test".into()]).await.unwrap();
        let admin_key = key(&registry, "default", &[Scope::Admin]).await;
        Gateway { nodes: addrs, registry, fake, admin_key, _stop: stop, dir }
    }

    async fn tenant(&self, id: &str, domains: &[&str], quotas: Quotas) {
        let domains: Vec<String> = domains.iter().map(|d| (*d).to_owned()).collect();
        let tenant = Tenant::new(id, id, &domains, &[], quotas, 1).unwrap();
        self.registry.create_tenant(tenant).await.unwrap();
    }

    async fn mta(&self, key: Option<&str>) -> MtaClient<WithKey> {
        self.mta_on(0, key).await
    }

    async fn mta_on(&self, node: usize, key: Option<&str>) -> MtaClient<WithKey> {
        MtaClient::with_interceptor(channel(self.nodes[node]).await, Bearer::new(key).unwrap())
    }

    async fn admin(&self) -> AdminClient<WithKey> {
        AdminClient::with_interceptor(channel(self.nodes[0]).await, Bearer::new(Some(&self.admin_key)).unwrap())
    }

    /// What the gateway holds, as an admin sees it: queued messages, paused providers,
    /// suppressions.
    async fn state(&self) -> (u64, Vec<i32>, usize) {
        let mut admin = self.mta(Some(&self.admin_key)).await;
        let providers = admin.list_providers(pb::ListProvidersRequest {}).await.unwrap().into_inner();
        let suppressions = admin.list_suppressions(pb::ListSuppressionsRequest::default()).await.unwrap().into_inner();
        (providers.backlog, providers.providers.iter().map(|p| p.circuit).collect(), suppressions.suppressions.len())
    }
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.expect("mta connects")
}

async fn key(registry: &Registry, tenant: &str, scopes: &[Scope]) -> String {
    key_expiring(registry, tenant, scopes, None).await
}

async fn key_expiring(registry: &Registry, tenant: &str, scopes: &[Scope], expires_ms: Option<u64>) -> String {
    let request = KeyRequest {
        tenant: tenant.into(),
        name: format!("{tenant} test key"),
        scopes: scopes.iter().copied().collect(),
        expires_ms,
        created_by: "test".into(),
    };
    registry.create_key(request).await.unwrap().expose().to_owned()
}

fn message(from: &str) -> pb::SubmitRequest {
    pb::SubmitRequest {
        from: from.into(),
        to: vec!["bob@example.net".into()],
        subject: "Hello".into(),
        text: "Hi".into(),
        ..Default::default()
    }
}

fn now_ms() -> u64 {
    bitmail_runtime::time::now_ms()
}

/// Calls every `Mta` RPC with `client` and answers each one's status code (`Ok` for a
/// call that was answered).
async fn every_call(client: &mut MtaClient<WithKey>) -> Vec<(&'static str, Code)> {
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    vec![
        ("Submit", code(client.submit(message("ada@a.test")).await.map(drop))),
        ("GetMessage", code(client.get_message(pb::GetMessageRequest { message_id: "x".into() }).await.map(drop))),
        ("ListProviders", code(client.list_providers(pb::ListProvidersRequest {}).await.map(drop))),
        ("WatchMessages", code(client.watch_messages(pb::WatchMessagesRequest::default()).await.map(drop))),
        ("PauseProvider", code(client.pause_provider(pb::ProviderRequest { name: "sendgrid".into() }).await.map(drop))),
        (
            "ResumeProvider",
            code(client.resume_provider(pb::ProviderRequest { name: "sendgrid".into() }).await.map(drop)),
        ),
        ("RetryMessage", code(client.retry_message(pb::GetMessageRequest { message_id: "x".into() }).await.map(drop))),
        (
            "ReceiveWebhook",
            code(
                client
                    .receive_webhook(pb::WebhookRequest { provider: "sendgrid".into(), ..Default::default() })
                    .await
                    .map(drop),
            ),
        ),
        ("ListSuppressions", code(client.list_suppressions(pb::ListSuppressionsRequest::default()).await.map(drop))),
        (
            "AddSuppression",
            code(
                client
                    .add_suppression(pb::Suppression { address: "eve@example.net".into(), ..Default::default() })
                    .await
                    .map(drop),
            ),
        ),
        (
            "RemoveSuppression",
            code(
                client
                    .remove_suppression(pb::RemoveSuppressionRequest {
                        address: "eve@example.net".into(),
                        tenant: String::new(),
                    })
                    .await
                    .map(drop),
            ),
        ),
    ]
}

#[tokio::test]
async fn every_mta_call_needs_a_usable_key_and_a_refused_call_changes_nothing() {
    let gw = Gateway::start(1).await;
    gw.tenant("a", &["a.test"], Quotas::default()).await;
    gw.tenant("sleepy", &["sleepy.test"], Quotas::default()).await;
    let revoked = key(&gw.registry, "a", &[Scope::Send, Scope::Read]).await;
    let revoked_id = revoked[4..16].to_owned();
    gw.registry.revoke_key(&revoked_id).await.unwrap();
    let expired = key_expiring(&gw.registry, "a", &[Scope::Send], Some(now_ms() + 300)).await;
    let suspended = key(&gw.registry, "sleepy", &[Scope::Send, Scope::Read]).await;
    gw.registry.suspend("sleepy").await.unwrap();
    let good = key(&gw.registry, "a", &[Scope::Send]).await;
    // A key whose id exists, with another secret.
    let forged = format!("{}{}", &good[..good.len() - 4], if good.ends_with("AAAA") { "BBBB" } else { "AAAA" });
    tokio::time::sleep(Duration::from_millis(400)).await; // past `expired`'s expiry

    let cases: [(&str, Option<&str>, Code); 7] = [
        ("no key", None, Code::Unauthenticated),
        ("not a key", Some("hunter2"), Code::Unauthenticated),
        ("unknown", Some("bmk_aaaaaaaaaaaa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), Code::Unauthenticated),
        ("forged secret", Some(&forged), Code::Unauthenticated),
        ("revoked", Some(&revoked), Code::Unauthenticated),
        ("expired", Some(&expired), Code::Unauthenticated),
        ("suspended tenant", Some(&suspended), Code::PermissionDenied),
    ];
    for (case, key, expected) in cases {
        let mut client = gw.mta(key).await;
        for (call, code) in every_call(&mut client).await {
            assert_eq!(code, expected, "{call} with a key that is {case}");
        }
    }

    // The right key for the wrong call: PERMISSION_DENIED. What each scope may do
    // (message "x" is nobody's: NOT_FOUND once the scope is granted).
    let mut send_only = gw.mta(Some(&good)).await;
    for (call, code) in every_call(&mut send_only).await {
        let expected = match call {
            // Its own suppression entry: added, then removed again by the next call.
            "Submit" | "AddSuppression" | "RemoveSuppression" => Code::Ok,
            "RetryMessage" => Code::NotFound,
            _ => Code::PermissionDenied,
        };
        assert_eq!(code, expected, "{call} with a send-only key");
    }
    let mut read_only = gw.mta(Some(&key(&gw.registry, "a", &[Scope::Read]).await)).await;
    for (call, code) in every_call(&mut read_only).await {
        let expected = match call {
            "WatchMessages" | "ListSuppressions" => Code::Ok,
            "GetMessage" => Code::NotFound,
            _ => Code::PermissionDenied,
        };
        assert_eq!(code, expected, "{call} with a read-only key");
    }

    // Nothing the refused calls asked for happened: one message (the send key's), the
    // provider not paused, no suppression added.
    let (backlog_and_sent, circuits, suppressions) = gw.state().await;
    assert!(backlog_and_sent <= 1);
    assert_eq!(circuits, vec![pb::CircuitState::Closed as i32]);
    assert_eq!(suppressions, 0);
    let delivered = eventually(
        Duration::from_secs(10),
        "one message delivered",
        || async { gw.fake.received() },
        |r| !r.is_empty(),
    )
    .await;
    assert_eq!(delivered.len(), 1, "only the send key's message went out");

    // Health and reflection stay open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(gw.nodes[0]).await);
    let answer = health.check(tonic_health::pb::HealthCheckRequest { service: "bitmail.v1.Mta".into() }).await;
    assert!(answer.is_ok(), "health needs no key");
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_messages_and_sends_only_from_its_domains() {
    let gw = Gateway::start(1).await;
    gw.tenant("a", &["a.test"], Quotas::default()).await;
    gw.tenant("b", &["b.test", "bücher.test"], Quotas::default()).await;
    let key_a = key(&gw.registry, "a", &[Scope::Send, Scope::Read]).await;
    let key_b = key(&gw.registry, "b", &[Scope::Send, Scope::Read]).await;
    let mut a = gw.mta(Some(&key_a)).await;
    let mut b = gw.mta(Some(&key_b)).await;

    let mut watch_b = b.watch_messages(pb::WatchMessagesRequest::default()).await.unwrap().into_inner();
    let id_a = a.submit(message("Ada <ada@a.test>")).await.unwrap().into_inner().message_id;
    let mine = a.get_message(pb::GetMessageRequest { message_id: id_a.clone() }).await.unwrap().into_inner();
    assert_eq!(mine.tenant, "a");

    // B cannot see, retry or learn the existence of A's message: exactly as an unknown id.
    for id in [id_a.as_str(), "01234567-89ab-7cde-8f01-23456789abcd"] {
        let seen = b.get_message(pb::GetMessageRequest { message_id: id.into() }).await.unwrap_err();
        assert_eq!((seen.code(), seen.message()), (Code::NotFound, format!("no message with id {id:?}").as_str()));
        let retried = b.retry_message(pb::GetMessageRequest { message_id: id.into() }).await.unwrap_err();
        assert_eq!(
            (retried.code(), retried.message()),
            (Code::NotFound, format!("no message with id {id:?}").as_str())
        );
    }

    // B's watch shows B's own message, and none of A's before it.
    let id_b = b.submit(message("bob@b.test")).await.unwrap().into_inner().message_id;
    let first = tokio::time::timeout(Duration::from_secs(10), watch_b.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.message_id, id_b, "B's watch saw only B's message first");
    assert_eq!(first.tenant, "b");

    // From in another tenant's domain, a look-alike, a subdomain: refused; the same
    // domain in its other (punycode) form: accepted.
    for from in ["ada@b.test", "ada@a.test.evil.test", "ada@evil-a.test", "ada@mail.a.test", "ada@xn--a-test.test"] {
        let refused = a.submit(message(from)).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "From {from}");
        assert!(refused.message().contains("not a sending domain or address of tenant \"a\""), "{}", refused.message());
    }
    b.submit(message("bob@xn--bcher-kva.test")).await.expect("the punycode form of bücher.test is b's domain");
    b.submit(message("bob@BÜCHER.test")).await.expect("and its Unicode form, in capitals");

    // A's idempotency key does not answer B's message id.
    let first_a = a
        .submit(pb::SubmitRequest { idempotency_key: "k-1".into(), ..message("ada@a.test") })
        .await
        .unwrap()
        .into_inner();
    let first_b = b
        .submit(pb::SubmitRequest { idempotency_key: "k-1".into(), ..message("bob@b.test") })
        .await
        .unwrap()
        .into_inner();
    assert!(!first_b.duplicate && first_b.message_id != first_a.message_id);
}

#[tokio::test]
async fn quotas_refuse_before_anything_is_stored_and_say_when_the_next_message_is_allowed() {
    let gw = Gateway::start(1).await;
    let quotas = Quotas { per_second: 1.0, burst: 2, max_recipients: 2, ..Quotas::default() };
    gw.tenant("rate", &["rate.test"], quotas).await;
    gw.tenant("daily", &["daily.test"], Quotas { per_day: 3, ..Quotas::default() }).await;
    let mut rate = gw.mta(Some(&key(&gw.registry, "rate", &[Scope::Send]).await)).await;
    let mut daily = gw.mta(Some(&key(&gw.registry, "daily", &[Scope::Send]).await)).await;

    let too_many = pb::SubmitRequest {
        to: vec!["a@x.test".into(), "b@x.test".into(), "c@x.test".into()],
        ..message("r@rate.test")
    };
    let refused = rate.submit(too_many).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("max_recipients"), "{}", refused.message());

    for _ in 0..2 {
        rate.submit(message("r@rate.test")).await.expect("within the burst");
    }
    let refused = rate.submit(message("r@rate.test")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("per_second"), "{}", refused.message());
    let after: u64 = refused.metadata().get("retry-after-ms").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=1000).contains(&after), "retry after {after} ms");

    for _ in 0..3 {
        daily.submit(message("d@daily.test")).await.expect("within the day");
    }
    let refused = daily.submit(message("d@daily.test")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("per_day"), "{}", refused.message());
    let after: u64 = refused.metadata().get("retry-after-ms").unwrap().to_str().unwrap().parse().unwrap();
    let to_midnight = 86_400_000 - now_ms() % 86_400_000;
    assert!(after.abs_diff(to_midnight) < 5_000, "retry after {after} ms, midnight in {to_midnight} ms");

    // Only the admitted messages went out.
    let sent =
        eventually(Duration::from_secs(10), "5 messages delivered", || async { gw.fake.received() }, |r| r.len() >= 5)
            .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // would a refused one follow?
    assert_eq!(gw.fake.received().len(), sent.len());
    assert_eq!(sent.len(), 5);

    // Usage through the API: today's count.
    let admin = gw.admin().await;
    let usage = eventually(
        Duration::from_secs(10),
        "usage flushed",
        || async {
            admin.clone().get_usage(pb::GetUsageRequest { tenant: "daily".into(), days: 0 }).await.unwrap().into_inner()
        },
        |u| u.days.last().is_some_and(|d| d.messages == 3),
    )
    .await;
    assert_eq!(usage.days.len(), 31, "today and the last 30 days");
    assert_eq!(usage.days.last().unwrap().day, bitmail_runtime::time::date(now_ms()));
    assert_eq!(usage.per_day, 3);
}

/// Two nodes on one store admit at most `per_day` in all: each reserves blocks of the
/// day's allowance in the shared usage document, with an optimistic version, so the
/// total never overshoots; it may fall short by the blocks nodes hold unused (at most
/// 2 × 50 here).
#[tokio::test]
async fn two_nodes_on_one_store_keep_the_daily_count() {
    let gw = Gateway::start(2).await;
    let per_day = 200;
    gw.tenant("busy", &["busy.test"], Quotas { per_day, per_second: 10_000.0, burst: 10_000, ..Quotas::default() })
        .await;
    let busy = key(&gw.registry, "busy", &[Scope::Send]).await;
    let mut tasks = Vec::new();
    for task in 0..8 {
        let mut client = gw.mta_on(task % 2, Some(&busy)).await;
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0u64;
            for _ in 0..40 {
                match client.submit(message("x@busy.test")).await {
                    Ok(_) => accepted += 1,
                    Err(s) => assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}"),
                }
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.unwrap();
    }
    eprintln!("two nodes admitted {accepted} of 320 attempts against per_day = {per_day}");
    assert!(accepted <= per_day, "{accepted} accepted over a daily quota of {per_day}");
    assert!(accepted >= per_day - 2 * 50, "{accepted} accepted: short by more than the nodes' blocks");
}

#[tokio::test]
async fn a_revocation_stops_the_key_on_another_node_within_10_seconds() {
    let gw = Gateway::start(2).await;
    gw.tenant("a", &["a.test"], Quotas::default()).await;
    let key_a = key(&gw.registry, "a", &[Scope::Send]).await;
    let mut on_second = gw.mta_on(1, Some(&key_a)).await;
    on_second.submit(message("ada@a.test")).await.expect("works, and is now cached on node 2");

    let mut admin = gw.admin().await;
    let revoked = admin.revoke_key(pb::RevokeKeyRequest { id: key_a[..16].into() }).await.unwrap().into_inner();
    assert!(revoked.revoked_at_unix_ms > 0);
    let started = Instant::now();
    let refused = eventually(
        Duration::from_secs(10),
        "node 2 refusing the revoked key",
        || async { on_second.clone().submit(message("ada@a.test")).await.err().map(|s| s.code()) },
        |code| *code == Some(Code::Unauthenticated),
    )
    .await;
    assert_eq!(refused, Some(Code::Unauthenticated));
    eprintln!("the revocation reached node 2 after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(10));
    // On the node where it was revoked, at once.
    let mut on_first = gw.mta_on(0, Some(&key_a)).await;
    assert_eq!(on_first.submit(message("ada@a.test")).await.unwrap_err().code(), Code::Unauthenticated);
}

#[tokio::test]
async fn the_admin_api_refuses_bad_input_changes_nothing_and_keeps_an_audit_log() {
    let gw = Gateway::start(1).await;
    let mut admin = gw.admin().await;
    let tenant = |id: &str, name: &str, domains: &[&str], quotas: Option<pb::Quotas>| pb::Tenant {
        id: id.into(),
        display_name: name.into(),
        domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        quotas,
        ..Default::default()
    };
    let absurd = pb::Quotas { per_day: 100, per_second: f64::NAN, burst: 0, max_recipients: 0, max_message_bytes: 0 };
    for (bad, field) in [
        (tenant("ok", "bell\u{7}", &["ok.test"], None), "display_name"),
        (tenant("ok", &"x".repeat(101), &["ok.test"], None), "display_name"),
        (tenant("Not A Slug", "Name", &["ok.test"], None), "id"),
        (tenant("ok", "Name", &["not a domain"], None), "domains[0]"),
        (tenant("ok", "Name", &["ok.test", "127.0.0.1"], None), "domains[1]"),
        (tenant("ok", "Name", &["ok.test"], Some(absurd)), "per_second"),
    ] {
        let refused = admin.create_tenant(bad).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.message().contains(field), "{field}: {}", refused.message());
    }
    let listed = admin.list_tenants(pb::ListTenantsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.tenants.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["default"], "nothing created");

    // A tenant, a key for it; the last admin key cannot be revoked.
    admin.create_tenant(tenant("acme", "Acme", &["acme.test"], None)).await.unwrap();
    let created = admin
        .create_key(pb::CreateKeyRequest {
            tenant: "acme".into(),
            name: "ci".into(),
            scopes: vec!["send".into()],
            expires_at_unix_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(created.secret.starts_with(&created.key.as_ref().unwrap().prefix));
    let refused = admin.revoke_key(pb::RevokeKeyRequest { id: gw.admin_key[..16].into() }).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{}", refused.message());
    admin.who_am_i(pb::WhoAmIRequest {}).await.expect("the admin key still works");
    admin.revoke_key(pb::RevokeKeyRequest { id: created.key.as_ref().unwrap().id.clone() }).await.unwrap();
    let listed = admin.list_keys(pb::ListKeysRequest { tenant: "acme".into() }).await.unwrap().into_inner();
    assert!(listed.keys[0].revoked_at_unix_ms > 0);

    // The three changes are in the audit log, with who, from where, before and after;
    // the refused ones are not.
    let log = admin.list_audit(pb::ListAuditRequest::default()).await.unwrap().into_inner();
    let actions: Vec<&str> = log.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["tenant.create", "key.create", "key.revoke"]);
    let admin_prefix = format!("key:{}", &gw.admin_key[..16]);
    for entry in &log.entries {
        assert_eq!(entry.actor, admin_prefix);
        assert_eq!(entry.address, "127.0.0.1");
        assert_eq!(entry.tenant, "acme");
    }
    assert!(log.entries[0].before.is_empty() && log.entries[0].after.contains("acme.test"));
    assert!(
        log.entries[2].before.contains("\"revoked_ms\":null") && !log.entries[2].after.contains("\"revoked_ms\":null")
    );
    assert!(!log.entries.iter().any(|e| e.after.contains(&created.secret)), "the secret is never logged");
    let by_tenant = admin
        .list_audit(pb::ListAuditRequest { tenant: "nobody".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(by_tenant.entries.is_empty());

    // Refused key uses are counted, not logged one by one.
    let mut bad = gw.mta(Some("bmk_zzzzzzzzzzzz_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")).await;
    for _ in 0..3 {
        let _ = bad.list_providers(pb::ListProvidersRequest {}).await;
    }
    let refused = admin.list_refused_keys(pb::ListRefusedKeysRequest {}).await.unwrap().into_inner();
    let counted = refused.refused.iter().find(|r| r.prefix == "bmk_zzzzzzzzzzzz").expect("counted by prefix");
    assert_eq!((counted.count, counted.address.as_str()), (3, "127.0.0.1"));
    let log = admin.list_audit(pb::ListAuditRequest::default()).await.unwrap().into_inner();
    assert_eq!(log.entries.len(), 3);
}

#[tokio::test]
async fn a_tenant_keeps_its_own_suppressions_and_an_admin_sees_all() {
    let gw = Gateway::start(1).await;
    gw.tenant("a", &["a.test"], Quotas::default()).await;
    gw.tenant("b", &["b.test"], Quotas::default()).await;
    let mut a = gw.mta(Some(&key(&gw.registry, "a", &[Scope::Send, Scope::Read]).await)).await;
    let mut b = gw.mta(Some(&key(&gw.registry, "b", &[Scope::Send, Scope::Read]).await)).await;
    let mut admin = gw.mta(Some(&gw.admin_key)).await;

    let added = a.add_suppression(pb::Suppression { address: "Ann@Example.net".into(), ..Default::default() }).await;
    assert_eq!(added.unwrap().into_inner().tenant, "a", "a tenant's entry is its own");
    let refused = a
        .add_suppression(pb::Suppression { address: "x@example.net".into(), tenant: "b".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    admin
        .add_suppression(pb::Suppression {
            address: "dead@example.net".into(),
            reason: "gone".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // a's entry stops a's mail to ann, not b's; the entry for everyone stops both.
    let to = |address: &str, from: &str| pb::SubmitRequest { to: vec![address.into()], ..message(from) };
    assert_eq!(a.submit(to("ann@example.net", "x@a.test")).await.unwrap_err().code(), Code::InvalidArgument);
    b.submit(to("ann@example.net", "x@b.test")).await.expect("a's suppression is not b's");
    for (client, from) in [(&mut a, "x@a.test"), (&mut b, "x@b.test")] {
        assert_eq!(client.submit(to("dead@example.net", from)).await.unwrap_err().code(), Code::InvalidArgument);
    }

    let listed = |mut client: MtaClient<WithKey>| async move {
        let list = client.list_suppressions(pb::ListSuppressionsRequest::default()).await.unwrap().into_inner();
        list.suppressions.into_iter().map(|s| (s.address, s.tenant)).collect::<Vec<_>>()
    };
    assert_eq!(listed(a.clone()).await, [("ann@example.net".to_owned(), "a".to_owned())]);
    assert!(listed(b.clone()).await.is_empty(), "b sees neither a's entry nor the global one");
    assert_eq!(listed(admin.clone()).await.len(), 2, "an admin sees all");
    let removed = b
        .remove_suppression(pb::RemoveSuppressionRequest { address: "ann@example.net".into(), tenant: String::new() })
        .await
        .unwrap_err();
    assert_eq!(removed.code(), Code::NotFound, "b has no entry of its own to remove");
    a.remove_suppression(pb::RemoveSuppressionRequest { address: "ann@example.net".into(), tenant: String::new() })
        .await
        .expect("a removes its own");
}
