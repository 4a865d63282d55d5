//! Provider health: a circuit breaker per provider, operator pauses, and the live
//! figures shown by `ListProviders`.
//!
//! - closed: the provider is tried. `failure_threshold` transient or ambiguous failures
//!   in a row open the circuit for `cool_down` (or longer when the provider said when to
//!   come back, as a 429 reset does).
//! - provider-refused (bad credentials, account paused): open at once for
//!   `refused_cool_down`; an operator's resume closes it sooner.
//! - open: the provider is skipped until the cool-down ends; then half-open.
//! - half-open: one message is let through as a probe; accepted closes the circuit, a
//!   failure opens it again.
//! - message-rejected and refusals of one message say nothing about the provider's
//!   health: they neither open the circuit nor count as failures.
//!
//! Pauses and open circuits are saved in the spool, so a restart does not forget a
//! provider that was set aside.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use bitmail_runtime::sync::lock;
use prost::Message as _;

use crate::config::HealthConfig;
use crate::provider::{Outcome, RefusalScope};

#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    pub failure_threshold: u32,
    pub cool_down: Duration,
    pub refused_cool_down: Duration,
}

impl From<&HealthConfig> for HealthSettings {
    fn from(c: &HealthConfig) -> Self {
        HealthSettings {
            failure_threshold: c.failure_threshold,
            cool_down: Duration::from_secs(c.cool_down_secs),
            refused_cool_down: Duration::from_secs(c.refused_cool_down_secs),
        }
    }
}

/// The circuit of one provider, as shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    Open,
    HalfOpen,
    Paused,
}

/// What `ListProviders` shows of one provider.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub name: String,
    pub circuit: Circuit,
    /// When an open circuit lets a probe through (ms since the epoch), else 0.
    pub open_until_ms: u64,
    /// Accepted answers among the last attempts, 0..=1; `None` before any attempt.
    pub success_rate: Option<f64>,
    pub latency_p50: Option<Duration>,
    pub latency_p99: Option<Duration>,
    pub attempts: usize,
    pub in_flight: u32,
    pub last_error: String,
}

/// How many recent attempts the figures cover.
const WINDOW: usize = 256;

#[derive(Default)]
struct State {
    paused: bool,
    open_until_ms: u64,
    consecutive_failures: u32,
    /// A half-open probe is under way.
    probing: bool,
    in_flight: u32,
    recent: VecDeque<(bool, u32)>,
    last_error: String,
}

/// What is saved in the spool per provider.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthRecord {
    #[prost(bool, tag = "1")]
    pub paused: bool,
    #[prost(uint64, tag = "2")]
    pub open_until_ms: u64,
    #[prost(string, tag = "3")]
    pub last_error: String,
}

/// Why a provider may not be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    Paused,
    /// Open until this time (ms since the epoch).
    Open(u64),
    /// Half-open with its probe already under way.
    Probing,
}

pub struct Health {
    names: Vec<String>,
    states: Vec<Mutex<State>>,
    settings: HealthSettings,
}

/// A change worth saving: (provider name, encoded [`HealthRecord`]).
pub type Persist = Option<(String, Vec<u8>)>;

impl Health {
    pub fn new(names: Vec<String>, settings: HealthSettings) -> Self {
        let states = names.iter().map(|_| Mutex::new(State::default())).collect();
        Health { names, states, settings }
    }

    fn state(&self, i: usize) -> std::sync::MutexGuard<'_, State> {
        // Every change under this lock is a few plain assignments.
        lock(&self.states[i])
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Restores what the spool remembers of `name`.
    pub fn restore(&self, name: &str, encoded: &[u8]) {
        let (Some(i), Ok(record)) = (self.index(name), HealthRecord::decode(encoded)) else { return };
        let mut s = self.state(i);
        s.paused = record.paused;
        s.open_until_ms = record.open_until_ms;
        s.last_error = record.last_error;
    }

    fn persist(&self, i: usize, s: &State) -> Persist {
        let record =
            HealthRecord { paused: s.paused, open_until_ms: s.open_until_ms, last_error: s.last_error.clone() };
        Some((self.names[i].clone(), record.encode_to_vec()))
    }

    /// Claims provider `i` for one attempt, or says why it cannot be tried now. A
    /// successful claim must be followed by [`Health::record`].
    pub fn claim(&self, i: usize, now: u64) -> Result<(), Unavailable> {
        let mut s = self.state(i);
        if s.paused {
            return Err(Unavailable::Paused);
        }
        if s.open_until_ms != 0 {
            if now < s.open_until_ms {
                return Err(Unavailable::Open(s.open_until_ms));
            }
            if s.probing {
                return Err(Unavailable::Probing);
            }
            s.probing = true;
        }
        s.in_flight += 1;
        Ok(())
    }

    /// Gives back a claim whose attempt never happened; learns nothing.
    pub fn release(&self, i: usize) {
        let mut s = self.state(i);
        s.in_flight = s.in_flight.saturating_sub(1);
        s.probing = false;
    }

    /// Learns from the outcome of a claimed attempt. Answers the change to save, if
    /// the circuit opened, closed or was refused.
    pub fn record(&self, i: usize, outcome: &Outcome, latency: Duration, now: u64) -> Persist {
        // Calls accepted before one failed say nothing more about health than that call.
        let outcome = match outcome {
            Outcome::PartlyAccepted { then, .. } => then.as_ref(),
            other => other,
        };
        let mut s = self.state(i);
        s.in_flight = s.in_flight.saturating_sub(1);
        let was_open = s.open_until_ms != 0;
        let probe = std::mem::take(&mut s.probing);
        let ms = u32::try_from(latency.as_millis()).unwrap_or(u32::MAX);
        let remember = |s: &mut State, ok: bool| {
            if s.recent.len() == WINDOW {
                s.recent.pop_front();
            }
            s.recent.push_back((ok, ms));
        };
        match outcome {
            Outcome::Accepted { .. } | Outcome::MessageRejected { .. } => {
                remember(&mut s, true);
                s.consecutive_failures = 0;
                if was_open {
                    s.open_until_ms = 0;
                    tracing::info!(provider = %self.names[i], "provider answered again; circuit closed");
                    return self.persist(i, &s);
                }
                None
            }
            Outcome::ProviderRefused { scope: RefusalScope::Message, .. } | Outcome::PartlyAccepted { .. } => None,
            Outcome::ProviderRefused { detail, scope: RefusalScope::Provider } => {
                remember(&mut s, false);
                s.last_error = detail.clone();
                s.open_until_ms = now + self.settings.refused_cool_down.as_millis() as u64;
                tracing::error!(
                    provider = %self.names[i],
                    set_aside_secs = self.settings.refused_cool_down.as_secs(),
                    "provider refuses to send; set aside until an operator resumes it or the cool-down ends"
                );
                self.persist(i, &s)
            }
            Outcome::Transient { detail, retry_after } => {
                remember(&mut s, false);
                s.last_error = detail.clone();
                s.consecutive_failures += 1;
                let hint = retry_after.unwrap_or_default().max(self.settings.cool_down);
                self.maybe_open(i, &mut s, probe, hint, now)
            }
            Outcome::Ambiguous { detail } => {
                remember(&mut s, false);
                s.last_error = detail.clone();
                s.consecutive_failures += 1;
                self.maybe_open(i, &mut s, probe, self.settings.cool_down, now)
            }
        }
    }

    fn maybe_open(&self, i: usize, s: &mut State, probe: bool, cool_down: Duration, now: u64) -> Persist {
        if probe || s.consecutive_failures >= self.settings.failure_threshold {
            let first = s.open_until_ms == 0 || probe;
            s.open_until_ms = now + cool_down.as_millis() as u64;
            if first {
                tracing::warn!(
                    provider = %self.names[i],
                    failures = s.consecutive_failures,
                    cool_down_secs = cool_down.as_secs(),
                    "circuit opened: provider skipped until the cool-down ends"
                );
            }
            return self.persist(i, s);
        }
        None
    }

    /// An operator sets provider `i` aside (`paused`) or brings it back; bringing it
    /// back also closes its circuit.
    pub fn set_paused(&self, i: usize, paused: bool) -> Persist {
        let mut s = self.state(i);
        s.paused = paused;
        if !paused {
            s.open_until_ms = 0;
            s.consecutive_failures = 0;
        }
        self.persist(i, &s)
    }

    /// No provider can be tried now (none configured, all paused or open).
    pub fn degraded(&self, now: u64) -> bool {
        (0..self.names.len()).all(|i| {
            let s = self.state(i);
            s.paused || (s.open_until_ms != 0 && now < s.open_until_ms)
        })
    }

    /// Whether any provider could be claimed now (not paused, circuit closed, or
    /// half-open with no probe under way). While none can, delivery dispatches nothing
    /// and the backlog waits on disk instead of churning through rounds.
    pub fn any_claimable(&self, now: u64) -> bool {
        (0..self.names.len()).any(|i| {
            let s = self.state(i);
            !s.paused && (s.open_until_ms == 0 || (now >= s.open_until_ms && !s.probing))
        })
    }

    /// The earliest time an open circuit lets a probe through, if any is open.
    pub fn next_reopening(&self) -> Option<u64> {
        (0..self.names.len())
            .filter_map(|i| {
                let s = self.state(i);
                (!s.paused && s.open_until_ms != 0).then_some(s.open_until_ms)
            })
            .min()
    }

    pub fn snapshot(&self, now: u64) -> Vec<Snapshot> {
        (0..self.names.len())
            .map(|i| {
                let s = self.state(i);
                let circuit = if s.paused {
                    Circuit::Paused
                } else if s.open_until_ms == 0 {
                    Circuit::Closed
                } else if now < s.open_until_ms {
                    Circuit::Open
                } else {
                    Circuit::HalfOpen
                };
                let mut latencies: Vec<u32> = s.recent.iter().map(|(_, ms)| *ms).collect();
                latencies.sort_unstable();
                let pick = |p: f64| {
                    (!latencies.is_empty()).then(|| {
                        let at = ((latencies.len() - 1) as f64 * p).round() as usize;
                        Duration::from_millis(u64::from(latencies[at]))
                    })
                };
                let ok = s.recent.iter().filter(|(ok, _)| *ok).count();
                Snapshot {
                    name: self.names[i].clone(),
                    circuit,
                    open_until_ms: s.open_until_ms,
                    success_rate: (!s.recent.is_empty()).then(|| ok as f64 / s.recent.len() as f64),
                    latency_p50: pick(0.50),
                    latency_p99: pick(0.99),
                    attempts: s.recent.len(),
                    in_flight: s.in_flight,
                    last_error: s.last_error.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: HealthSettings = HealthSettings {
        failure_threshold: 3,
        cool_down: Duration::from_secs(10),
        refused_cool_down: Duration::from_secs(600),
    };

    fn transient() -> Outcome {
        Outcome::Transient { detail: "503".into(), retry_after: None }
    }

    fn accepted() -> Outcome {
        Outcome::Accepted { provider_message_id: "x".into() }
    }

    fn attempt(h: &Health, outcome: Outcome, now: u64) -> Persist {
        h.claim(0, now).unwrap();
        h.record(0, &outcome, Duration::from_millis(5), now)
    }

    #[test]
    fn threshold_failures_open_then_a_probe_closes() {
        let h = Health::new(vec!["a".into()], SETTINGS);
        assert!(attempt(&h, transient(), 1_000).is_none());
        assert!(attempt(&h, transient(), 1_001).is_none());
        assert!(attempt(&h, transient(), 1_002).is_some(), "the third opens the circuit and is saved");
        assert_eq!(h.claim(0, 5_000), Err(Unavailable::Open(11_002)));
        assert!(h.degraded(5_000));

        // After the cool-down, one probe at a time.
        h.claim(0, 11_002).unwrap();
        assert_eq!(h.claim(0, 11_003), Err(Unavailable::Probing));
        assert!(h.record(0, &accepted(), Duration::from_millis(5), 11_010).is_some());
        assert_eq!(h.snapshot(11_010)[0].circuit, Circuit::Closed);
        assert!(h.claim(0, 11_011).is_ok());
    }

    #[test]
    fn a_failed_probe_reopens_at_once() {
        let h = Health::new(vec!["a".into()], SETTINGS);
        for t in 0..3 {
            attempt(&h, transient(), t);
        }
        h.claim(0, 20_000).unwrap();
        assert!(h.record(0, &transient(), Duration::ZERO, 20_000).is_some());
        assert_eq!(h.claim(0, 20_001), Err(Unavailable::Open(30_000)));
    }

    #[test]
    fn rejected_messages_never_harm_health_and_refusals_set_aside() {
        let h = Health::new(vec!["a".into()], SETTINGS);
        for t in 0..10 {
            attempt(&h, Outcome::MessageRejected { detail: "invalid recipient".into() }, t);
        }
        assert_eq!(h.snapshot(20)[0].circuit, Circuit::Closed);
        assert_eq!(h.snapshot(20)[0].success_rate, Some(1.0));

        let saved = attempt(&h, Outcome::ProviderRefused { detail: "401".into(), scope: RefusalScope::Provider }, 100);
        assert!(saved.is_some());
        assert_eq!(h.claim(0, 500_000), Err(Unavailable::Open(600_100)));
        h.set_paused(0, false);
        assert!(h.claim(0, 500_001).is_ok(), "resume closes the circuit");
    }

    #[test]
    fn a_rate_limit_hint_lengthens_the_cool_down_and_pauses_survive_restore() {
        let h = Health::new(vec!["a".into(), "b".into()], SETTINGS);
        for t in 0..3 {
            attempt(&h, Outcome::Transient { detail: "429".into(), retry_after: Some(Duration::from_secs(60)) }, t);
        }
        assert_eq!(h.claim(0, 1_000), Err(Unavailable::Open(60_002)));
        assert!(!h.degraded(1_000), "b is still there");

        let (name, record) = h.set_paused(1, true).unwrap();
        let restored = Health::new(vec!["a".into(), "b".into()], SETTINGS);
        restored.restore(&name, &record);
        assert_eq!(restored.claim(1, 0), Err(Unavailable::Paused));
    }

    #[test]
    fn the_circuit_half_opens_when_the_cool_down_ends_and_holds_further_calls_while_probing() {
        let h = Health::new(vec!["a".into()], SETTINGS);
        for t in 0..3 {
            attempt(&h, transient(), t);
        }
        // Open until 2 + 10 s: nothing claimable, and delivery knows when to look again.
        assert_eq!(h.snapshot(10_001)[0].circuit, Circuit::Open);
        assert!(!h.any_claimable(10_001));
        assert_eq!(h.next_reopening(), Some(10_002));
        // At the end of the cool-down: half-open, one probe claimable.
        assert_eq!(h.snapshot(10_002)[0].circuit, Circuit::HalfOpen);
        assert!(h.any_claimable(10_002));
        assert!(!h.degraded(10_002));
        h.claim(0, 10_002).unwrap();
        assert!(!h.any_claimable(10_003), "the probe is under way");
        // A probe given back unused lets the next one through.
        h.release(0);
        assert!(h.claim(0, 10_004).is_ok());
    }

    #[test]
    fn only_failures_in_a_row_open_and_ambiguous_and_partial_failures_count() {
        let h = Health::new(vec!["a".into()], SETTINGS);
        attempt(&h, transient(), 0);
        attempt(&h, transient(), 1);
        attempt(&h, accepted(), 2);
        attempt(&h, transient(), 3);
        attempt(&h, transient(), 4);
        assert_eq!(h.snapshot(5)[0].circuit, Circuit::Closed, "an accepted call in between resets the count");

        let partial = Outcome::PartlyAccepted {
            sent_to: vec!["bob@example.net".into()],
            provider_message_id: "x".into(),
            then: Box::new(Outcome::Ambiguous { detail: "no answer".into() }),
        };
        assert!(attempt(&h, partial, 6).is_some(), "the third failure in a row opens the circuit");
        assert_eq!(h.claim(0, 7), Err(Unavailable::Open(10_006)));
        assert_eq!(h.snapshot(7)[0].last_error, "no answer");
    }

    #[test]
    fn a_refusal_of_one_message_leaves_the_circuit_alone() {
        let h = Health::new(vec!["a".into()], SETTINGS);
        for t in 0..5 {
            let refused = Outcome::ProviderRefused { detail: "too large".into(), scope: RefusalScope::Message };
            assert!(attempt(&h, refused, t).is_none());
        }
        let s = &h.snapshot(10)[0];
        assert_eq!((s.circuit, s.attempts, s.success_rate), (Circuit::Closed, 0, None));
    }

    #[test]
    fn an_open_circuit_and_its_error_survive_a_restart_and_a_pause_is_degraded() {
        let h = Health::new(vec!["a".into()], SETTINGS);
        attempt(&h, transient(), 0);
        attempt(&h, transient(), 1);
        let (name, record) = attempt(&h, transient(), 2).unwrap();

        let restored = Health::new(vec!["a".into()], SETTINGS);
        restored.restore(&name, &record);
        assert_eq!(restored.claim(0, 5_000), Err(Unavailable::Open(10_002)));
        assert_eq!(restored.snapshot(5_000)[0].last_error, "503");
        assert!(restored.claim(0, 10_002).is_ok(), "half-open after the saved cool-down");

        let paused = Health::new(vec!["a".into()], SETTINGS);
        paused.set_paused(0, true);
        assert_eq!(paused.snapshot(0)[0].circuit, Circuit::Paused);
        assert!(paused.degraded(0) && !paused.any_claimable(0));
        assert_eq!(paused.next_reopening(), None, "a pause has no end to wait for");
    }
}
