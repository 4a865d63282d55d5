//! One delivery round for one message: order the providers, try each, act on the
//! class of the outcome.
//!
//! - Before each provider call the attempt is recorded as in progress, durably: a
//!   process that dies during the call leaves it there, and the next round counts it as
//!   ambiguous (a possible duplicate).
//! - accepted: sent; message-rejected: failed, no other provider is tried;
//! - transient, provider-refused, ambiguous (policy `fail-over`): the next provider, at
//!   once;
//! - every provider failed: deferred with exponential backoff and jitter, until the
//!   maximum age, then failed ([`defer`]);
//! - only providers at their in-flight or rate limit stood in the way: wait for a slot
//!   and go over the plan again, rather than defer by minutes.
//!
//! When every provider failed, the message is deferred: retried after
//! `initial · 2^(round-1)`, capped at `max_delay`, times a jitter factor in [0.8, 1.2),
//! until `max_age` (default 3 days), then failed with the last error. Ambiguous outcomes
//! follow `delivery.ambiguous`: `fail-over` (the default: the next provider now), `defer`,
//! or `fail`; any later attempt flags the message `possible_duplicate`.

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use super::attempt::{Attempt, NotNow};
use super::{AmbiguousPolicy, Shared};
use crate::limits::AtLimit;
use crate::message::Message;
use crate::provider::{Outcome, RefusalScope};
use crate::spool::SpoolError;
use crate::spool::record::{Status, to_ms};

/// How long a round waits at most before looking again at providers that were at their
/// in-flight or rate limit.
const LIMIT_POLL: Duration = Duration::from_millis(100);

/// Runs one round for message `id`, and records how it ended.
pub(super) async fn deliver(shared: &Shared, id: &str) -> Result<(), SpoolError> {
    let Some((status, message)) = load(shared, id).await? else { return Ok(()) };
    let order = shared.scheduler.plan(&message, shared.providers.len());
    let mut round = Round { shared, status, message, last_error: "no provider is configured".into(), attempted: false };
    if let Some(error) = round.too_large_for_all(&order) {
        warn!(%error, "no provider takes a message this large");
        return round.end(End::Failed(error)).await;
    }
    loop {
        let mut wait: Option<Duration> = None;
        for &index in &order {
            match round.try_provider(index).await? {
                Step::Next => {}
                Step::AtLimit(until) => wait = Some(wait.map_or(until, |w| w.min(until))),
                Step::End(end) => return round.end(end).await,
            }
        }
        match wait {
            Some(until) if !round.attempted => shared.limiter.wait(until).await,
            _ => return round.end(End::Defer).await,
        }
    }
}

/// The message's status and body, unless there is nothing to deliver. A status whose
/// body is missing is marked failed.
async fn load(shared: &Shared, id: &str) -> Result<Option<(Status, Arc<Message>)>, SpoolError> {
    let (Some(mut status), message) = (shared.spool.status(id).await?, shared.spool.message(id).await?) else {
        return Ok(None);
    };
    if status.is_final() {
        return Ok(None);
    }
    let Some(message) = message else {
        error!("message body missing from the spool; marking failed");
        status.fail("the message body is missing from the spool");
        shared.spool.update(status, true).await?;
        return Ok(None);
    };
    status.interrupted_attempts_are_ambiguous();
    let message = Arc::new(with_sent_to(message, &status.sent_to));
    Ok(Some((status, message)))
}

/// `message` without the recipients earlier attempts already delivered to.
fn with_sent_to(mut message: Message, sent_to: &[String]) -> Message {
    message.already_sent_to.extend(sent_to.iter().cloned());
    message
}

/// What a round does after trying one provider.
enum Step {
    /// Try the next provider of the plan.
    Next,
    /// The provider was at its limit; it may have a slot after this long.
    AtLimit(Duration),
    /// The round is over.
    End(End),
}

/// How a round ends.
enum End {
    Sent {
        provider: String,
        provider_message_id: String,
    },
    Failed(String),
    /// Schedule another round later (or fail past the maximum age).
    Defer,
}

struct Round<'a> {
    shared: &'a Shared,
    status: Status,
    /// Without the recipients already delivered to.
    message: Arc<Message>,
    last_error: String,
    /// A provider was called this round (the round counts).
    attempted: bool,
}

impl Round<'_> {
    /// Every provider's size limit, when the message is over all of them.
    fn too_large_for_all(&self, order: &[usize]) -> Option<String> {
        let size = self.message.wire_bytes();
        let limits = &self.shared.limiter;
        let too_large: Vec<String> = order
            .iter()
            .filter(|&&i| size > limits.max_bytes(i))
            .map(|&i| format!("{} takes at most {} bytes", self.shared.providers[i].name(), limits.max_bytes(i)))
            .collect();
        (!order.is_empty() && too_large.len() == order.len()).then(|| {
            format!("the message is {size} bytes as sent, over every provider's limit ({})", too_large.join("; "))
        })
    }

    /// Tries provider `index` once, if it can be tried now.
    async fn try_provider(&mut self, index: usize) -> Result<Step, SpoolError> {
        let shared = self.shared;
        let name = shared.providers[index].name();
        if self.message.wire_bytes() > shared.limiter.max_bytes(index) {
            return Ok(Step::Next);
        }
        let attempt = match Attempt::claim(shared, index, shared.now_ms()) {
            Ok(attempt) => attempt,
            Err(NotNow::AtLimit(at)) => {
                self.last_error = format!("provider {name} is at its limit ({at:?})");
                let until = match at {
                    AtLimit::Busy => LIMIT_POLL,
                    AtLimit::Rate(d) => d.min(LIMIT_POLL),
                };
                return Ok(Step::AtLimit(until));
            }
            Err(NotNow::Unavailable(why)) => {
                self.last_error = format!("provider {name} is unavailable ({why:?})");
                return Ok(Step::Next);
            }
        };
        if !std::mem::replace(&mut self.attempted, true) {
            self.status.rounds += 1;
        }
        self.status.start_attempt(name, shared.now_ms());
        // On disk before the provider hears of it. Should this fail, dropping the
        // attempt gives its slot and claim back.
        shared.spool.update(self.status.clone(), false).await?;

        let (outcome, took) = attempt.send(&self.message).await;
        self.status.end_attempt(&outcome, took);
        let outcome = self.keep_delivered(name, outcome);
        Ok(self.act(name, outcome))
    }

    /// What was delivered stays delivered: the round goes on with how the failed call
    /// ended, for the recipients still to reach.
    fn keep_delivered(&mut self, name: &str, outcome: Outcome) -> Outcome {
        let Outcome::PartlyAccepted { sent_to, then, .. } = outcome else { return outcome };
        info!(provider = name, delivered = sent_to.len(), "delivered to some recipients");
        self.status.sent_to.extend(sent_to);
        self.message = Arc::new(with_sent_to((*self.message).clone(), &self.status.sent_to));
        *then
    }

    /// Acts on the class of `outcome` from provider `name`.
    fn act(&mut self, name: &str, outcome: Outcome) -> Step {
        match outcome {
            Outcome::Accepted { provider_message_id } => {
                info!(provider = name, %provider_message_id, "sent");
                return Step::End(End::Sent { provider: name.to_owned(), provider_message_id });
            }
            Outcome::MessageRejected { detail } => {
                warn!(provider = name, %detail, "message rejected; not retrying");
                return Step::End(End::Failed(detail));
            }
            Outcome::Ambiguous { detail } => {
                warn!(provider = name, %detail, policy = ?self.shared.ambiguous, "no answer after sending; a retry may duplicate");
                match self.shared.ambiguous {
                    AmbiguousPolicy::FailOver => self.last_error = detail,
                    AmbiguousPolicy::Defer => {
                        self.last_error = detail;
                        return Step::End(End::Defer);
                    }
                    AmbiguousPolicy::Fail => {
                        let error = format!("no answer from {name} after sending (it may have been sent): {detail}");
                        return Step::End(End::Failed(error));
                    }
                }
            }
            // Health logs the alert once, when it sets the provider aside.
            Outcome::ProviderRefused { detail, scope: RefusalScope::Provider } => self.last_error = detail,
            Outcome::ProviderRefused { detail, scope: RefusalScope::Message } => {
                warn!(provider = name, %detail, "provider refused this message; trying the next");
                self.last_error = detail;
            }
            Outcome::Transient { detail, .. } => {
                warn!(provider = name, %detail, "transient failure; trying the next provider");
                self.last_error = detail;
            }
            // `keep_delivered` unwrapped it; a nested one ends like its last call.
            partial @ Outcome::PartlyAccepted { .. } => self.last_error = partial.detail().to_owned(),
        }
        Step::Next
    }

    /// Records how the round ended.
    async fn end(mut self, end: End) -> Result<(), SpoolError> {
        let spool = &self.shared.spool;
        match end {
            End::Sent { provider, provider_message_id } => {
                self.status.sent(&provider, provider_message_id);
                spool.update(self.status, true).await
            }
            End::Failed(error) => {
                self.status.fail(error);
                spool.update(self.status, false).await
            }
            End::Defer => {
                defer(self.shared, &mut self.status, &self.message, self.last_error, self.attempted);
                spool.update(self.status, false).await
            }
        }
    }
}

/// Every provider failed this round, or none could be tried: schedule the next round,
/// or fail past the maximum age. When no provider could be tried (all paused or with
/// open circuits), no round is counted and the next try is when a circuit half-opens,
/// spread over a second so that a returning provider is not hit by the whole backlog
/// at once.
fn defer(shared: &Shared, status: &mut Status, message: &Message, last_error: String, attempted: bool) {
    let now = shared.now_ms();
    let delay = if attempted {
        shared.retry.delay(status.rounds.max(1), fastrand::f64())
    } else {
        let fallback = shared.retry.max_delay.min(Duration::from_secs(60));
        let until = shared.health.next_reopening().map_or(fallback, |at| Duration::from_millis(at.saturating_sub(now)));
        until + Duration::from_millis(fastrand::u64(0..1000))
    };
    let next = now + delay.as_millis() as u64;
    let age = Duration::from_millis(next.saturating_sub(to_ms(message.submitted_at).max(status.not_before_ms)));
    if age > shared.retry.max_age {
        warn!(rounds = status.rounds, error = %last_error, "giving up: past the maximum age");
        status.fail(format!("not delivered after {} round(s); last error: {last_error}", status.rounds));
        return;
    }
    info!(rounds = status.rounds, delay_ms = delay.as_millis() as u64, error = %last_error, "deferred");
    status.defer(last_error, next);
}
