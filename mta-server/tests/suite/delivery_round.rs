//! Delivery rounds in process, against providers that answer from a script: one test
//! per outcome class, backoff of deferred mail, the circuit breaker's cool-down and
//! probe, and a round cut short by shutdown. Everything is asserted as `GetMessage`
//! and `ListProviders` show it, through the service's own handlers.
//!
//! Time: due times, cool-downs and the maximum age are all read from the system clock
//! (`spool::record::now_ms`), which tokio's paused time does not move; so these tests
//! run in real time with short delays (tens to hundreds of ms), wait by polling to a
//! deadline, and assert on the times the status records (an attempt never starts
//! before the message was due, a probe never before the circuit's cool-down ended),
//! which holds however slow the machine is.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::mta_server::Mta as _;
use bitmail_runtime::metrics::Registry;
use bitmail_tests::eventually::eventually;
use mta_server::delivery::{AmbiguousPolicy, Clock, Delivery, DeliverySettings, Providers, RetryPolicy};
use mta_server::health::{Health, HealthSettings};
use mta_server::limits::Limiter;
use mta_server::message::{Limits, Message};
use mta_server::provider::{Outcome, Provider, RefusalScope};
use mta_server::scheduler::Priority;
use mta_server::service::{MtaService, Tenancy};
use mta_server::spool::record::now_ms;
use mta_server::spool::{Spool, SpoolSettings, SuppressionRules};
use mta_server::tenant::audit::Audit;
use mta_server::tenant::{Caller, Quota, Quotas, Registry as Tenants, Scope, Tenant};
use tokio::sync::{Notify, oneshot};
use tonic::Request;

/// What a scripted provider does with its next call.
enum Step {
    Answer(Outcome),
    /// Never answers (until the round is dropped).
    Hang,
}

/// One call a scripted provider got: when (ms since the epoch) and for whom.
#[derive(Debug, Clone)]
struct Call {
    at_ms: u64,
    recipients: Vec<String>,
}

/// A provider that answers each call with the next step of its script, and accepts
/// once the script is used up.
struct Scripted {
    name: String,
    script: Mutex<VecDeque<Step>>,
    calls: Mutex<Vec<Call>>,
}

impl Scripted {
    fn new(name: &str, script: impl IntoIterator<Item = Step>) -> Arc<Self> {
        Arc::new(Scripted {
            name: name.into(),
            script: Mutex::new(script.into_iter().collect()),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Provider for Scripted {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, message: &Message) -> Outcome {
        let recipients = message.envelope_batches(usize::MAX).concat().iter().map(|m| m.email.clone()).collect();
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(Call { at_ms: now_ms(), recipients });
            calls.len()
        };
        let step = self.script.lock().unwrap().pop_front();
        match step {
            Some(Step::Answer(outcome)) => outcome,
            Some(Step::Hang) => std::future::pending().await,
            None => Outcome::Accepted { provider_message_id: format!("{}-{n}", self.name) },
        }
    }
}

fn transient(detail: &str) -> Step {
    Step::Answer(Outcome::Transient { detail: detail.into(), retry_after: None })
}

fn refused(detail: &str, scope: RefusalScope) -> Step {
    Step::Answer(Outcome::ProviderRefused { detail: detail.into(), scope })
}

struct Settings {
    health: HealthSettings,
    retry: RetryPolicy,
    ambiguous: AmbiguousPolicy,
    /// Where delivery reads the time: the system clock unless a test pauses tokio's.
    clock: Clock,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            health: HealthSettings {
                failure_threshold: 5,
                cool_down: Duration::from_secs(3600),
                refused_cool_down: Duration::from_secs(3600),
            },
            // Long enough that no test sees a second round unless it asks for one.
            retry: RetryPolicy {
                initial: Duration::from_secs(3600),
                max_delay: Duration::from_secs(3600),
                max_age: Duration::from_secs(24 * 3600),
            },
            ambiguous: AmbiguousPolicy::FailOver,
            clock: Clock::system(),
        }
    }
}

/// The spool, the service's handlers and a running delivery, wired as `server.rs`
/// wires them, with providers tried in the given order (the priority scheduler).
struct Gateway {
    service: MtaService,
    spool: Spool,
    providers: Vec<Arc<dyn Provider>>,
    health: Arc<Health>,
    wake: Arc<Notify>,
    settings: DeliverySettings,
    clock: Clock,
    delivery: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    dir: PathBuf,
}

impl Gateway {
    fn start(providers: &[&Arc<Scripted>], settings: Settings) -> Gateway {
        let dir = std::env::temp_dir().join(format!("bitmail-round-{}-{}", std::process::id(), unique()));
        let spool = Spool::open(&dir.join("spool.redb"), SpoolSettings { max_bytes: 1 << 30, cache_bytes: 4 << 20 })
            .expect("the spool opens");
        let providers: Vec<Arc<dyn Provider>> = providers.iter().map(|p| Arc::clone(p) as Arc<dyn Provider>).collect();
        let names = providers.iter().map(|p| p.name().to_owned()).collect();
        let health = Arc::new(Health::new(names, settings.health));
        let wake = Arc::new(Notify::new());
        let service = MtaService::new(
            spool.clone(),
            Limits { max_message_bytes: 1 << 20, max_recipients: 50 },
            health.clone(),
            wake.clone(),
            HashMap::new(),
            SuppressionRules { hard_bounce_ms: 0, complaint_ms: 0 },
            Registry::new(),
            tenancy(),
        );
        let clock = settings.clock;
        let settings = DeliverySettings { concurrency: 8, retry: settings.retry, ambiguous: settings.ambiguous };
        let mut gateway = Gateway { service, spool, providers, health, wake, settings, clock, delivery: None, dir };
        gateway.run_delivery();
        gateway
    }

    /// Starts a delivery on this spool, as a (re)start of the process would.
    fn run_delivery(&mut self) {
        let limiter =
            Arc::new(Limiter::new(self.providers.iter().map(|p| (Default::default(), p.max_message_bytes()))));
        let delivery = Delivery::new(
            self.spool.clone(),
            Providers {
                list: self.providers.clone(),
                scheduler: Arc::new(Priority),
                health: self.health.clone(),
                limiter,
            },
            Registry::new(),
            self.settings,
            self.wake.clone(),
        )
        .with_clock(self.clock);
        let (stop, stopped) = oneshot::channel::<()>();
        let run = tokio::spawn(delivery.run(
            async move {
                let _ = stopped.await;
            },
            Duration::from_millis(100),
        ));
        self.delivery = Some((stop, run));
    }

    /// Signals shutdown and waits for the delivery to end: within its grace period,
    /// whatever its rounds are doing.
    async fn stop_delivery(&mut self) {
        let (stop, run) = self.delivery.take().expect("delivery is running");
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("delivery ends soon after shutdown")
            .expect("delivery does not panic");
    }

    async fn submit(&self, to: &[&str]) -> String {
        let request = pb::SubmitRequest {
            from: "Ada <ada@bitmail.test>".into(),
            to: to.iter().map(|s| (*s).to_owned()).collect(),
            subject: "Hello".into(),
            text: "Hi there".into(),
            ..Default::default()
        };
        self.service.submit(as_admin(request)).await.expect("accepted").into_inner().message_id
    }

    async fn status(&self, id: &str) -> pb::MessageStatus {
        let request = as_admin(pb::GetMessageRequest { message_id: id.into() });
        self.service.get_message(request).await.expect("GetMessage answers").into_inner()
    }

    /// Polls GetMessage until `done` holds.
    async fn status_until(&self, id: &str, what: &str, done: impl Fn(&pb::MessageStatus) -> bool) -> pb::MessageStatus {
        eventually(Duration::from_secs(10), what, || self.status(id), done).await
    }

    async fn settled(&self, id: &str) -> pb::MessageStatus {
        self.status_until(id, "sent or failed", |s| {
            matches!(s.state(), pb::DeliveryState::Sent | pb::DeliveryState::Failed)
        })
        .await
    }

    async fn provider(&self, name: &str) -> (pb::ProviderStatus, bool) {
        let list = self.service.list_providers(as_admin(pb::ListProvidersRequest {})).await.unwrap().into_inner();
        let found = list.providers.into_iter().find(|p| p.name == name).expect("provider listed");
        (found, list.degraded)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some((stop, _)) = self.delivery.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Tenants in a store of their own: only the default tenant, sending from bitmail.test.
fn tenancy() -> Tenancy {
    let store: Arc<dyn backend_server::store::Store> = Arc::new(backend_server::memory::MemoryStore::new());
    Tenancy {
        registry: Tenants::new(store.clone()),
        quota: Arc::new(Quota::new(store.clone(), "test", 50)),
        audit: Audit::new(store),
    }
}

/// A request as the authentication layer hands it on for an admin key of the default
/// tenant (these tests call the service's handlers directly).
fn as_admin<T>(message: T) -> Request<T> {
    let tenant = Tenant::new("default", "Default", &["bitmail.test".into()], &[], Quotas::default(), 0).unwrap();
    let mut request = Request::new(message);
    request.extensions_mut().insert(Caller {
        tenant: Arc::new(tenant),
        key_id: "abcdefghijkl".into(),
        scopes: [Scope::Admin].into(),
    });
    request
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) * 1_000_000 + now_ms() % 1_000_000
}

fn outcomes(status: &pb::MessageStatus) -> Vec<(&str, pb::AttemptOutcome)> {
    status.attempts.iter().map(|a| (a.provider.as_str(), a.outcome())).collect()
}

#[tokio::test]
async fn accepted_is_sent_with_the_providers_id() {
    let a = Scripted::new("a", [Step::Answer(Outcome::Accepted { provider_message_id: "a-id-1".into() })]);
    let mut gw = Gateway::start(&[&a], Settings::default());
    let id = gw.submit(&["bob@example.net"]).await;

    let status = gw.settled(&id).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:#?}");
    assert_eq!((status.provider.as_str(), status.provider_message_id.as_str()), ("a", "a-id-1"));
    assert_eq!(outcomes(&status), [("a", pb::AttemptOutcome::Accepted)]);
    assert_eq!(status.attempts[0].provider_message_id, "a-id-1");
    assert!(status.error.is_empty() && !status.possible_duplicate && status.next_attempt_at_unix_ms == 0);
    assert_eq!(a.calls()[0].recipients, ["bob@example.net"]);
    gw.stop_delivery().await;
}

#[tokio::test]
async fn a_transient_failure_moves_the_message_to_the_next_provider_at_once() {
    let a = Scripted::new("a", [transient("503 Service Unavailable")]);
    let b = Scripted::new("b", []);
    let mut gw = Gateway::start(&[&a, &b], Settings::default());
    let id = gw.submit(&["bob@example.net"]).await;

    let status = gw.settled(&id).await;
    assert_eq!((status.state(), status.provider.as_str()), (pb::DeliveryState::Sent, "b"), "{status:#?}");
    assert_eq!(outcomes(&status), [("a", pb::AttemptOutcome::Transient), ("b", pb::AttemptOutcome::Accepted)]);
    assert_eq!(status.attempts[0].detail, "503 Service Unavailable");
    assert!(!status.possible_duplicate);
    // One failure under the threshold: a stays in use.
    assert_eq!(gw.provider("a").await.0.circuit(), pb::CircuitState::Closed);
    gw.stop_delivery().await;
}

#[tokio::test]
async fn a_provider_refusal_sets_the_provider_aside_for_later_messages() {
    let a = Scripted::new("a", [refused("401 bad API key", RefusalScope::Provider)]);
    let b = Scripted::new("b", []);
    let mut gw = Gateway::start(&[&a, &b], Settings::default());
    let first = gw.submit(&["bob@example.net"]).await;
    let status = gw.settled(&first).await;
    assert_eq!((status.state(), status.provider.as_str()), (pb::DeliveryState::Sent, "b"), "{status:#?}");
    assert_eq!(outcomes(&status)[0], ("a", pb::AttemptOutcome::ProviderRefused));

    let (a_status, degraded) = gw.provider("a").await;
    assert_eq!(a_status.circuit(), pb::CircuitState::Open, "{a_status:?}");
    assert_eq!(a_status.last_error, "401 bad API key");
    assert!(!degraded, "b still sends");

    // The next message goes straight to b: a is not asked again.
    let second = gw.submit(&["carol@example.net"]).await;
    let status = gw.settled(&second).await;
    assert_eq!(outcomes(&status), [("b", pb::AttemptOutcome::Accepted)], "{status:#?}");
    assert_eq!(a.calls().len(), 1);
    gw.stop_delivery().await;
}

#[tokio::test]
async fn a_refusal_of_one_message_tries_the_next_and_leaves_the_provider_in_use() {
    let a = Scripted::new("a", [refused("too large for a", RefusalScope::Message)]);
    let b = Scripted::new("b", []);
    let mut gw = Gateway::start(&[&a, &b], Settings::default());
    let first = gw.submit(&["bob@example.net"]).await;
    let status = gw.settled(&first).await;
    assert_eq!((status.state(), status.provider.as_str()), (pb::DeliveryState::Sent, "b"), "{status:#?}");
    assert_eq!(outcomes(&status)[0], ("a", pb::AttemptOutcome::ProviderRefused));
    assert_eq!(gw.provider("a").await.0.circuit(), pb::CircuitState::Closed);

    let second = gw.submit(&["carol@example.net"]).await;
    assert_eq!(gw.settled(&second).await.provider, "a", "a takes the next message");
    gw.stop_delivery().await;
}

#[tokio::test]
async fn a_rejected_message_fails_without_trying_another_provider() {
    let a = Scripted::new("a", [Step::Answer(Outcome::MessageRejected { detail: "no such mailbox".into() })]);
    let b = Scripted::new("b", []);
    let mut gw = Gateway::start(
        &[&a, &b],
        Settings {
            health: HealthSettings { failure_threshold: 1, ..Settings::default().health },
            ..Settings::default()
        },
    );
    let id = gw.submit(&["nobody@example.net"]).await;

    let status = gw.settled(&id).await;
    assert_eq!(status.state(), pb::DeliveryState::Failed, "{status:#?}");
    assert_eq!(status.error, "no such mailbox");
    assert_eq!(outcomes(&status), [("a", pb::AttemptOutcome::MessageRejected)]);
    assert!(b.calls().is_empty(), "no other provider is tried");
    assert_eq!(status.next_attempt_at_unix_ms, 0);
    // Even with a threshold of one failure, a rejected message does not harm a.
    let (a_status, _) = gw.provider("a").await;
    assert_eq!((a_status.circuit(), a_status.success_rate), (pb::CircuitState::Closed, 1.0));
    gw.stop_delivery().await;
}

#[tokio::test]
async fn an_ambiguous_answer_fails_over_and_the_resend_is_flagged() {
    let a = Scripted::new("a", [Step::Answer(Outcome::Ambiguous { detail: "timed out after sending".into() })]);
    let b = Scripted::new("b", []);
    let mut gw = Gateway::start(&[&a, &b], Settings::default());
    let id = gw.submit(&["bob@example.net"]).await;

    let status = gw.settled(&id).await;
    assert_eq!((status.state(), status.provider.as_str()), (pb::DeliveryState::Sent, "b"), "{status:#?}");
    assert_eq!(outcomes(&status), [("a", pb::AttemptOutcome::Ambiguous), ("b", pb::AttemptOutcome::Accepted)]);
    assert!(status.possible_duplicate, "a may have sent it too");
    gw.stop_delivery().await;
}

#[tokio::test]
async fn an_ambiguous_answer_under_the_fail_policy_fails_the_message() {
    let a = Scripted::new("a", [Step::Answer(Outcome::Ambiguous { detail: "timed out after sending".into() })]);
    let b = Scripted::new("b", []);
    let mut gw = Gateway::start(&[&a, &b], Settings { ambiguous: AmbiguousPolicy::Fail, ..Settings::default() });
    let id = gw.submit(&["bob@example.net"]).await;

    let status = gw.settled(&id).await;
    assert_eq!(status.state(), pb::DeliveryState::Failed, "{status:#?}");
    assert!(
        status.error.contains("may have been sent") && status.error.contains("timed out after sending"),
        "{}",
        status.error
    );
    assert!(!status.possible_duplicate);
    assert!(b.calls().is_empty(), "no second copy went out");
    gw.stop_delivery().await;
}

#[tokio::test]
async fn a_partly_accepted_message_goes_to_the_others_elsewhere_and_nobody_twice() {
    let a = Scripted::new(
        "a",
        [Step::Answer(Outcome::PartlyAccepted {
            sent_to: vec!["bob@example.net".into()],
            provider_message_id: "a-batch-1".into(),
            then: Box::new(Outcome::Transient { detail: "503 on the second batch".into(), retry_after: None }),
        })],
    );
    let b = Scripted::new("b", []);
    let mut gw = Gateway::start(&[&a, &b], Settings::default());
    let id = gw.submit(&["bob@example.net", "carol@example.net"]).await;

    let status = gw.settled(&id).await;
    assert_eq!((status.state(), status.provider.as_str()), (pb::DeliveryState::Sent, "b"), "{status:#?}");
    assert_eq!(outcomes(&status), [("a", pb::AttemptOutcome::Transient), ("b", pb::AttemptOutcome::Accepted)]);
    assert_eq!(status.attempts[0].provider_message_id, "a-batch-1");
    assert_eq!(status.attempts[0].detail, "accepted for 1 recipients, then: 503 on the second batch");
    assert!(!status.possible_duplicate, "what a accepted was not sent again");
    assert_eq!(a.calls()[0].recipients, ["bob@example.net", "carol@example.net"]);
    assert_eq!(b.calls()[0].recipients, ["carol@example.net"], "b is not asked to send to bob again");
    gw.stop_delivery().await;
}

#[tokio::test]
async fn when_every_provider_fails_the_message_is_deferred_with_backoff_and_retried_when_due() {
    let a = Scripted::new("a", [transient("503 first"), transient("503 second")]);
    let retry = RetryPolicy {
        initial: Duration::from_millis(300),
        max_delay: Duration::from_secs(10),
        max_age: Duration::from_secs(3600),
    };
    let mut gw = Gateway::start(&[&a], Settings { retry, ..Settings::default() });
    let id = gw.submit(&["bob@example.net"]).await;

    // Round 1 fails: deferred by `initial` (300 ms) ± 20 % jitter after the attempt.
    let first = gw
        .status_until(&id, "deferred after one attempt", |s| {
            s.state() == pb::DeliveryState::Deferred && s.attempts.len() == 1
        })
        .await;
    let seen = now_ms() as i64;
    assert_eq!(outcomes(&first), [("a", pb::AttemptOutcome::Transient)]);
    assert_eq!(first.error, "503 first");
    let due1 = first.next_attempt_at_unix_ms;
    let started1 = first.attempts[0].started_at_unix_ms;
    assert!((started1 + 240..=seen + 360).contains(&due1), "due {due1}, attempt at {started1}, seen at {seen}");

    // Round 2, not before it was due; it fails too and waits twice as long.
    let second = gw
        .status_until(&id, "deferred after two attempts", |s| {
            s.state() == pb::DeliveryState::Deferred && s.attempts.len() == 2
        })
        .await;
    let seen = now_ms() as i64;
    let started2 = second.attempts[1].started_at_unix_ms;
    assert!(started2 >= due1, "round 2 started at {started2}, before it was due at {due1}");
    let due2 = second.next_attempt_at_unix_ms;
    assert!((started2 + 480..=seen + 720).contains(&due2), "due {due2}, attempt at {started2}, seen at {seen}");

    // Round 3 sends it.
    let sent = gw.settled(&id).await;
    assert_eq!(sent.state(), pb::DeliveryState::Sent, "{sent:#?}");
    assert_eq!(sent.attempts.len(), 3);
    assert!(sent.attempts[2].started_at_unix_ms >= due2);
    assert!(!sent.possible_duplicate);
    gw.stop_delivery().await;
}

#[tokio::test]
async fn past_the_maximum_age_a_failing_message_fails_for_good() {
    let a = Scripted::new("a", [transient("503 still down")]);
    let retry = RetryPolicy {
        initial: Duration::from_secs(60),
        max_delay: Duration::from_secs(60),
        max_age: Duration::from_secs(10),
    };
    let mut gw = Gateway::start(&[&a], Settings { retry, ..Settings::default() });
    let id = gw.submit(&["bob@example.net"]).await;

    // The next round would be past the maximum age: failed now, not deferred.
    let status = gw.settled(&id).await;
    assert_eq!(status.state(), pb::DeliveryState::Failed, "{status:#?}");
    assert_eq!(status.error, "not delivered after 1 round(s); last error: 503 still down");
    assert_eq!(status.next_attempt_at_unix_ms, 0);
    gw.stop_delivery().await;
}

#[tokio::test]
async fn an_open_circuit_holds_mail_until_its_cool_down_ends_and_one_probe_closes_it() {
    const COOL_DOWN_MS: u64 = 400;
    // The first call fails and opens the circuit; the first probe fails and opens it
    // again; the second probe is accepted.
    let a = Scripted::new("a", [transient("503 down"), transient("503 still down")]);
    let settings = Settings {
        health: HealthSettings {
            failure_threshold: 1,
            cool_down: Duration::from_millis(COOL_DOWN_MS),
            refused_cool_down: Duration::from_secs(3600),
        },
        // Due again long before the circuit lets a probe through.
        retry: RetryPolicy {
            initial: Duration::from_millis(20),
            max_delay: Duration::from_millis(20),
            max_age: Duration::from_secs(3600),
        },
        ambiguous: AmbiguousPolicy::FailOver,
        clock: Clock::system(),
    };
    let mut gw = Gateway::start(&[&a], settings);
    let first = gw.submit(&["bob@example.net"]).await;
    gw.status_until(&first, "deferred", |s| s.state() == pb::DeliveryState::Deferred).await;

    let (a_status, degraded) = gw.provider("a").await;
    assert_eq!(a_status.circuit(), pb::CircuitState::Open, "{a_status:?}");
    assert!(degraded, "no provider can be tried");
    assert!(a_status.open_until_unix_ms > 0);

    // Mail that arrives while the circuit is open waits on disk, untried.
    let second = gw.submit(&["carol@example.net"]).await;
    assert!(gw.status(&second).await.attempts.is_empty());

    let first = gw.settled(&first).await;
    let second = gw.settled(&second).await;
    for status in [&first, &second] {
        assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:#?}");
    }
    // Four calls in all: the failure, the failed probe, the accepted probe, the other
    // message once the circuit closed. The probes wait out a cool-down each: the
    // circuit let nothing through while open, and one call only while half-open.
    let calls = a.calls();
    assert_eq!(calls.len(), 4, "{calls:#?}");
    let gaps: Vec<u64> = calls.windows(2).map(|w| w[1].at_ms - w[0].at_ms).collect();
    assert!(gaps[0] >= COOL_DOWN_MS && gaps[1] >= COOL_DOWN_MS, "calls {gaps:?} ms apart");
    assert_eq!(outcomes(&first).len() + outcomes(&second).len(), 4);
    let (a_status, degraded) = gw.provider("a").await;
    assert_eq!((a_status.circuit(), degraded), (pb::CircuitState::Closed, false));
    gw.stop_delivery().await;
}

#[tokio::test]
async fn a_round_cut_short_by_shutdown_resumes_and_flags_the_resend() {
    let a = Scripted::new("a", [Step::Hang]);
    let mut gw = Gateway::start(&[&a], Settings::default());
    let id = gw.submit(&["bob@example.net"]).await;

    // The attempt is on disk before the provider hears of it.
    let sending = gw.status_until(&id, "sending", |s| s.state() == pb::DeliveryState::Sending).await;
    assert_eq!(outcomes(&sending), [("a", pb::AttemptOutcome::Unspecified)], "{sending:#?}");
    assert_eq!(a.calls().len(), 1);

    // Shutdown does not wait for a provider that never answers beyond the grace.
    gw.stop_delivery().await;

    // The next start treats the unanswered attempt as ambiguous and sends again.
    gw.run_delivery();
    let status = gw.settled(&id).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:#?}");
    assert_eq!(outcomes(&status), [("a", pb::AttemptOutcome::Ambiguous), ("a", pb::AttemptOutcome::Accepted)]);
    assert!(status.possible_duplicate, "the first call may have been accepted");
    gw.stop_delivery().await;
}

/// Under tokio's paused time, with delivery reading tokio's clock: hours of backoff and
/// cool-down pass in no real time, and each wait is as long as the policy says.
#[tokio::test(start_paused = true)]
async fn backoff_and_cool_down_in_paused_time_wait_as_long_as_the_policy_says() {
    const MINUTE: i64 = 60_000;
    // Threshold 2: the first failure defers, the second opens the circuit for 30 min.
    let a = Scripted::new("a", [transient("503 one"), transient("503 two")]);
    let settings = Settings {
        health: HealthSettings {
            failure_threshold: 2,
            cool_down: Duration::from_secs(30 * 60),
            refused_cool_down: Duration::from_secs(3600),
        },
        retry: RetryPolicy {
            initial: Duration::from_secs(10 * 60),
            max_delay: Duration::from_secs(3600),
            max_age: Duration::from_secs(24 * 3600),
        },
        ambiguous: AmbiguousPolicy::FailOver,
        clock: Clock::tokio(),
    };
    let real = std::time::Instant::now();
    let mut gw = Gateway::start(&[&a], settings);
    let id = gw.submit(&["bob@example.net"]).await;
    // Looks once a (paused) second, so that tokio's clock runs ahead in steps of a
    // second while the runtime waits; the deadline is on the wall clock.
    let sent = loop {
        let status = gw.status(&id).await;
        if status.state() == pb::DeliveryState::Sent || real.elapsed() > Duration::from_secs(20) {
            break status;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(sent.state(), pb::DeliveryState::Sent, "{sent:#?}");
    let started: Vec<i64> = sent.attempts.iter().map(|a| a.started_at_unix_ms).collect();
    assert_eq!(started.len(), 3, "{sent:#?}");
    // Never early; late by a bounded slack. While the spool's own thread writes or reads,
    // the runtime looks idle and paused time jumps to its next timer (a second at most,
    // again and again), so a round can start some virtual minutes after it was due: up to
    // 5 seen in 20 runs on a loaded machine. The slack still catches a wrong delay.
    const SLACK: i64 = 10 * MINUTE;
    // Round 2 after the first backoff: 10 min ± 20 %.
    let first_wait = started[1] - started[0];
    assert!((8 * MINUTE..=12 * MINUTE + SLACK).contains(&first_wait), "round 2 after {first_wait} ms");
    // Round 2 failed the second time in a row: the circuit opened for 30 minutes, so
    // round 3, due after 20 min ± 20 % (24 min at most), waited for the cool-down, then
    // probed.
    let second_wait = started[2] - started[1];
    assert!((30 * MINUTE..=30 * MINUTE + SLACK).contains(&second_wait), "round 3 after {second_wait} ms");
    let (a_status, _) = gw.provider("a").await;
    assert_eq!(a_status.circuit(), pb::CircuitState::Closed, "the accepted probe closed it");
    assert!(real.elapsed() < Duration::from_secs(10), "40 minutes of policy took {:?}", real.elapsed());
    gw.stop_delivery().await;
}
