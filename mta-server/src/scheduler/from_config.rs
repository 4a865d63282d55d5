//! The scheduler the config names, sized for its providers.

use std::sync::Arc;

use super::{Adaptive, Priority, RoundRobin, Scheduler, Weighted};
use crate::config::{ProviderConfig, SchedulerKind};

/// The scheduler of `kind` for `providers` (in configuration order: weights and
/// statistics are kept by index).
pub fn from_config(kind: SchedulerKind, providers: &[ProviderConfig]) -> Arc<dyn Scheduler> {
    match kind {
        SchedulerKind::RoundRobin => Arc::new(RoundRobin::new()),
        SchedulerKind::Priority => Arc::new(Priority),
        SchedulerKind::Weighted => Arc::new(Weighted::new(providers.iter().map(ProviderConfig::weight).collect())),
        SchedulerKind::Adaptive => Arc::new(Adaptive::new(providers.len())),
    }
}
