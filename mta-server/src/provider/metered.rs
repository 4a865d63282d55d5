//! A [`Provider`] that counts and times every call of the provider it wraps, the way
//! backend-server's `MeteredStore` wraps any store: the delivery round never mentions
//! metrics.
//!
//! Series: `bitmail_mta_attempts_total{provider, outcome}` and
//! `bitmail_mta_send_seconds{provider}`.

use std::sync::Arc;
use std::time::Instant;

use bitmail_runtime::metrics::Registry;

use super::{Outcome, OutcomeClass, Provider};
use crate::message::Message;

pub(crate) struct Metered {
    inner: Arc<dyn Provider>,
    metrics: Registry,
}

impl Metered {
    pub(crate) fn wrap(inner: Arc<dyn Provider>, metrics: Registry) -> Arc<dyn Provider> {
        Arc::new(Metered { inner, metrics })
    }
}

/// The `outcome` label of a call.
fn outcome_label(class: OutcomeClass) -> &'static str {
    match class {
        OutcomeClass::Accepted => "accepted",
        OutcomeClass::Transient => "transient",
        OutcomeClass::ProviderRefused => "provider_refused",
        OutcomeClass::MessageRejected => "message_rejected",
        OutcomeClass::Ambiguous => "ambiguous",
    }
}

#[async_trait::async_trait]
impl Provider for Metered {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn send(&self, message: &Message) -> Outcome {
        let clock = Instant::now();
        let outcome = self.inner.send(message).await;
        let name = self.inner.name();
        let labels = [("provider", name), ("outcome", outcome_label(outcome.class()))];
        self.metrics.count("bitmail_mta_attempts_total", "Provider calls, by how they ended.", &labels, 1);
        self.metrics.observe(
            "bitmail_mta_send_seconds",
            "Time of one provider call.",
            &[("provider", name)],
            clock.elapsed(),
        );
        outcome
    }

    fn max_message_bytes(&self) -> Option<usize> {
        self.inner.max_message_bytes()
    }
}
