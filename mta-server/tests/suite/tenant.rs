//! Tenants, keys, the key check and quotas against the real in-memory store.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backend_server::memory::MemoryStore;
use backend_server::store::Store;
use mta_server::tenant::key::NewKey;
use mta_server::tenant::{
    AuthError, KeyCheck, KeyRequest, OverQuota, Quota, QuotaName, Quotas, Registry, RegistryError, Scope, Tenant,
    TenantEdit, TenantState,
};

const TTL: Duration = Duration::from_millis(200);
const DEADLINE: Duration = Duration::from_secs(5);

fn registry() -> Registry {
    Registry::new(Arc::new(MemoryStore::new()))
}

fn scopes(s: &[Scope]) -> BTreeSet<Scope> {
    s.iter().copied().collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

async fn tenant(registry: &Registry, id: &str, quotas: Quotas) -> Tenant {
    let t = Tenant::new(id, id, &[format!("{id}.example")], &[], quotas, now_ms()).unwrap();
    registry.create_tenant(t).await.unwrap().value
}

async fn key(registry: &Registry, tenant: &str, s: &[Scope], expires_ms: Option<u64>) -> NewKey {
    let request = KeyRequest {
        tenant: tenant.into(),
        name: "test key".into(),
        scopes: scopes(s),
        expires_ms,
        created_by: "test".into(),
    };
    registry.create_key(request).await.unwrap()
}

/// Noon today (UTC), so that a test's few milliseconds never cross midnight.
fn noon() -> u64 {
    now_ms() / 86_400_000 * 86_400_000 + 43_200_000
}

/// Polls `check` until it answers `want`, or panics at the deadline.
async fn until(check: &KeyCheck, key: &str, want: &AuthError) -> Duration {
    let start = Instant::now();
    loop {
        let got = check.authenticate(key).await;
        if got.as_ref().err() == Some(want) {
            return start.elapsed();
        }
        assert!(start.elapsed() < DEADLINE, "still {got:?} after {DEADLINE:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_key_authenticates_and_each_refusal_is_told_apart() {
    let registry = registry();
    tenant(&registry, "acme", Quotas::default()).await;
    let new = key(&registry, "acme", &[Scope::Send], None).await;
    let check = KeyCheck::new(registry.clone(), TTL);

    let caller = check.authenticate(new.expose()).await.unwrap();
    assert_eq!(caller.tenant.id, "acme");
    assert_eq!(caller.key_id, new.record.id);
    assert!(caller.require(Scope::Send).is_ok());
    assert_eq!(
        caller.require(Scope::Read).unwrap_err().to_string(),
        format!("key {} does not grant `read`", caller.prefix())
    );
    assert!(caller.may_submit_for("acme").is_ok() && caller.may_submit_for("other").is_err());
    assert!(!caller.may_read("acme"));

    assert!(matches!(check.authenticate("Bearer nonsense").await, Err(AuthError::Malformed(_))));
    assert!(matches!(check.authenticate(&new.expose()[..50]).await, Err(AuthError::Malformed(_))));
    // Well-formed, never stored.
    let stranger = NewKey::generate("acme", "x", scopes(&[Scope::Send]), None, "t", 1).unwrap();
    assert_eq!(check.authenticate(stranger.expose()).await.unwrap_err(), AuthError::Unknown);
    // The right id with another secret.
    let forged = format!("{}{}", &new.expose()[..17], &stranger.expose()[17..]);
    assert_eq!(check.authenticate(&forged).await.unwrap_err(), AuthError::Unknown);

    let listed = registry.list_keys("acme").await.unwrap();
    assert_eq!(listed, vec![new.record.clone()]);

    registry.revoke_key(&new.record.id).await.unwrap();
    until(&check, new.expose(), &AuthError::Revoked).await;
    assert!(matches!(registry.revoke_key(&new.record.id).await, Err(RegistryError::AlreadyRevoked(_))));
}

#[tokio::test]
async fn expired_and_suspended_keys_are_refused_and_resuming_restores() {
    let registry = registry();
    tenant(&registry, "acme", Quotas::default()).await;
    let short = key(&registry, "acme", &[Scope::Send], Some(now_ms() + 300)).await;
    let lasting = key(&registry, "acme", &[Scope::Send, Scope::Read], None).await;
    let check = KeyCheck::new(registry.clone(), TTL);
    check.authenticate(short.expose()).await.unwrap();
    until(&check, short.expose(), &AuthError::Expired).await;

    check.authenticate(lasting.expose()).await.unwrap();
    let suspended = registry.suspend("acme").await.unwrap();
    assert_eq!(suspended.value.state, TenantState::Suspended);
    until(&check, lasting.expose(), &AuthError::Suspended { tenant: "acme".into() }).await;
    registry.resume("acme").await.unwrap();
    let start = Instant::now();
    while check.authenticate(lasting.expose()).await.is_err() {
        assert!(start.elapsed() < DEADLINE, "not resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_revocation_reaches_a_second_node_within_its_ttl() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (node_a, node_b) = (Registry::new(store.clone()), Registry::new(store));
    tenant(&node_a, "acme", Quotas::default()).await;
    let new = key(&node_a, "acme", &[Scope::Send], None).await;
    let (check_a, check_b) = (KeyCheck::new(node_a.clone(), TTL), KeyCheck::new(node_b, TTL));
    check_a.authenticate(new.expose()).await.unwrap();
    check_b.authenticate(new.expose()).await.unwrap();

    node_a.revoke_key(&new.record.id).await.unwrap();
    check_a.forget(&new.record.id);
    assert_eq!(check_a.authenticate(new.expose()).await.unwrap_err(), AuthError::Revoked);
    let took = until(&check_b, new.expose(), &AuthError::Revoked).await;
    assert!(took < TTL + Duration::from_millis(500), "node B took {took:?} with a TTL of {TTL:?}");
}

#[tokio::test]
async fn unknown_keys_are_cached_and_refusals_counted_per_prefix_and_address() {
    let registry = registry();
    tenant(&registry, "acme", Quotas::default()).await;
    let check = KeyCheck::new(registry.clone(), Duration::from_secs(60));
    let addr: IpAddr = "192.0.2.7".parse().unwrap();
    let stranger = NewKey::generate("acme", "x", scopes(&[Scope::Send]), None, "t", 1).unwrap();
    for _ in 0..3 {
        assert_eq!(check.authenticate_from(stranger.expose(), addr).await.unwrap_err(), AuthError::Unknown);
    }
    check.authenticate_from("bmk_short", addr).await.unwrap_err();
    let counts = check.refused_snapshot();
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert_eq!(
        (counts[0].prefix.as_str(), counts[0].addr, counts[0].count),
        (stranger.record.prefix().as_str(), addr, 3)
    );
    assert_eq!((counts[1].prefix.as_str(), counts[1].count), ("malformed", 1));

    // The negative answer is cached: storing the key now is not seen before the TTL.
    registry.store().put(stranger.record.to_fields()).await.unwrap();
    assert_eq!(check.authenticate(stranger.expose()).await.unwrap_err(), AuthError::Unknown);
    assert!(KeyCheck::new(registry, TTL).authenticate(stranger.expose()).await.is_ok());
}

#[tokio::test]
async fn last_use_is_recorded_in_the_background() {
    let registry = registry();
    tenant(&registry, "acme", Quotas::default()).await;
    let new = key(&registry, "acme", &[Scope::Send], None).await;
    let check = KeyCheck::new(registry.clone(), TTL);
    let before = now_ms();
    check.authenticate(new.expose()).await.unwrap();
    let start = Instant::now();
    loop {
        if let Some(at) = registry.get_key(&new.record.id).await.unwrap().last_used_ms {
            assert!(at >= before);
            break;
        }
        assert!(start.elapsed() < DEADLINE, "last_used_ms never written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_last_admin_key_cannot_be_revoked_nor_its_tenant_suspended() {
    let registry = registry();
    registry.ensure_default_tenant(&["localhost".to_owned()]).await.unwrap();
    let first = key(&registry, "default", &[Scope::Admin], None).await;
    assert_eq!(registry.revoke_key(&first.record.id).await.unwrap_err(), RegistryError::LastAdmin);
    assert_eq!(registry.suspend("default").await.unwrap_err(), RegistryError::LastAdmin);
    assert!(registry.get_key(&first.record.id).await.unwrap().revoked_ms.is_none(), "nothing changed");
    assert!(registry.get_tenant("default").await.unwrap().value.is_active());

    // A second admin key elsewhere: now either may go, but not both.
    tenant(&registry, "ops", Quotas::default()).await;
    let second = key(&registry, "ops", &[Scope::Admin], None).await;
    registry.revoke_key(&first.record.id).await.unwrap();
    assert_eq!(registry.revoke_key(&second.record.id).await.unwrap_err(), RegistryError::LastAdmin);
    assert_eq!(registry.suspend("ops").await.unwrap_err(), RegistryError::LastAdmin);
    registry.suspend("default").await.unwrap();

    // Non-admin keys are never held back.
    let sender = key(&registry, "ops", &[Scope::Send], None).await;
    registry.revoke_key(&sender.record.id).await.unwrap();
}

#[tokio::test]
async fn the_default_tenant_is_created_once_when_nodes_race() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let registry = Registry::new(store.clone());
        tasks.push(tokio::spawn(
            async move { registry.ensure_default_tenant(&["localhost".to_owned()]).await.unwrap() },
        ));
    }
    let mut created = Vec::new();
    for t in tasks {
        created.push(t.await.unwrap());
    }
    assert!(created.iter().all(|t| t.value == created[0].value));
    let (tenants, _) = Registry::new(store).list_tenants(100, None).await.unwrap();
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0].value.id, "default");
    assert_eq!(tenants[0].value.domains, ["localhost"]);
    assert!(tenants[0].value.may_send_from("me@localhost"));
}

#[tokio::test]
async fn edits_use_versions_and_bad_input_changes_nothing() {
    let registry = registry();
    let acme = tenant(&registry, "acme", Quotas::default()).await;
    let again = registry.create_tenant(acme.clone()).await.unwrap_err();
    assert_eq!(again, RegistryError::TenantExists("acme".into()));

    let v = registry.get_tenant("acme").await.unwrap().version;
    let edit = TenantEdit { domains: Some(vec!["bücher.example".into()]), ..TenantEdit::default() };
    let edited = registry.update_tenant("acme", v, edit.clone()).await.unwrap();
    assert_eq!(edited.value.domains, ["xn--bcher-kva.example"]);
    assert_eq!(
        registry.update_tenant("acme", v, edit).await.unwrap_err(),
        RegistryError::Conflict { tenant: "acme".into(), expected: v, actual: edited.version }
    );

    let bad = TenantEdit {
        domains: Some(vec!["ok.example".into(), "exa mple.org".into()]),
        quotas: Some(Quotas { per_second: f64::NAN, ..Quotas::default() }),
        ..TenantEdit::default()
    };
    let err = registry.update_tenant("acme", edited.version, bad).await.unwrap_err().to_string();
    assert!(err.starts_with("domains[1]: \"exa mple.org\" is not a domain name"), "{err}");
    assert!(err.contains("quotas.per_second: NaN is not a finite number"), "{err}");
    assert_eq!(registry.get_tenant("acme").await.unwrap(), edited, "nothing changed");

    let request = KeyRequest {
        tenant: "acme".into(),
        name: "bad\nname".into(),
        scopes: scopes(&[Scope::Send]),
        expires_ms: None,
        created_by: "t".into(),
    };
    assert!(matches!(registry.create_key(request.clone()).await, Err(RegistryError::Invalid(_))));
    let nobody = KeyRequest { tenant: "nobody".into(), name: "k".into(), ..request };
    assert_eq!(registry.create_key(nobody).await.unwrap_err(), RegistryError::NoTenant("nobody".into()));
    assert!(registry.list_keys("acme").await.unwrap().is_empty());
}

#[tokio::test]
async fn the_rate_refuses_with_the_time_of_the_next_token() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let quotas = Quotas { per_second: 10.0, burst: 3, ..Quotas::default() };
    let t = Tenant::new("acme", "Acme", &[], &[], quotas, 0).unwrap();
    let quota = Quota::new(store, "node-a", 10);
    let now = noon();
    for _ in 0..3 {
        quota.admit(&t, now).await.unwrap().commit();
    }
    let err = quota.admit(&t, now).await.unwrap_err();
    assert_eq!(
        err,
        OverQuota::Rate { quota: QuotaName::PerSecond, limit: "10/s, burst 3".into(), retry_after_ms: 100 }
    );
    assert!(quota.admit(&t, now + 99).await.is_err());
    quota.admit(&t, now + 101).await.unwrap().commit();

    // A message given back (not committed) returns its token and its count.
    drop(quota.admit(&t, now + 200).await.unwrap());
    quota.admit(&t, now + 200).await.unwrap().commit();
    quota.flush(now + 200).await.unwrap();
    let today = quota.usage("acme", 1, now + 200).await.unwrap();
    assert_eq!(today[0].1, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_exceed_the_daily_quota() {
    const PER_DAY: u64 = 1000;
    const BLOCK: u64 = 50;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let quotas = Quotas { per_day: PER_DAY, per_second: 100_000.0, burst: 1_000_000, ..Quotas::default() };
    let t = Arc::new(Tenant::new("acme", "Acme", &[], &[], quotas, 0).unwrap());
    let nodes = [Quota::new(store.clone(), "node-a", BLOCK), Quota::new(store.clone(), "node-b", BLOCK)];
    let admitted = Arc::new(AtomicU64::new(0));
    let now = noon();
    let mut tasks = Vec::new();
    for node in &nodes {
        for _ in 0..8 {
            let (node, t, admitted) = (node.clone(), t.clone(), admitted.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..200 {
                    match node.admit(&t, now + i).await {
                        Ok(a) => {
                            a.commit();
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => assert_eq!(e.quota(), Some(QuotaName::PerDay), "{e}"),
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let admitted = admitted.load(Ordering::Relaxed);
    assert!(admitted <= PER_DAY, "{admitted} admitted, over {PER_DAY}");
    assert!(admitted >= PER_DAY - 2 * BLOCK, "{admitted} admitted, under {PER_DAY} - 2 x {BLOCK}");

    let err = nodes[0].admit(&t, now).await.unwrap_err();
    let OverQuota::Rate { quota: QuotaName::PerDay, retry_after_ms, .. } = err else { panic!("{err:?}") };
    assert_eq!(retry_after_ms, (now / 86_400_000 + 1) * 86_400_000 - now);

    for node in &nodes {
        node.flush(now).await.unwrap();
    }
    let usage = nodes[1].usage("acme", 31, now).await.unwrap();
    assert_eq!(usage.len(), 31);
    assert_eq!(usage.last().unwrap().1, admitted, "today is last and counts every node");
    assert!(usage[..30].iter().all(|(_, n)| *n == 0));
}

#[tokio::test]
async fn a_restarted_node_counts_its_old_reservation_as_spent() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let quotas = Quotas { per_day: 100, ..Quotas::default() };
    let t = Tenant::new("acme", "Acme", &[], &[], quotas, 0).unwrap();
    let now = noon();
    let before = Quota::new(store.clone(), "node-a", 60);
    before.admit(&t, now).await.unwrap().commit();
    // "Restart" without flushing: the 60 reserved are assumed used.
    let after = Quota::new(store, "node-a", 60);
    let mut admitted = 1;
    while after.admit(&t, now + admitted).await.map(|a| a.commit()).is_ok() {
        admitted += 1;
    }
    assert_eq!(admitted, 1 + 40);
}
