//! Prometheus metrics, in the text exposition format, without a metrics framework: a
//! registry of labelled counters, gauges and histograms that every service fills, and
//! [`with_metrics_route`] to serve it at `GET /metrics` on the service's own port (gRPC
//! servers accept HTTP/1.1 for it).
//!
//! Series are created on first use; values are atomics, so recording costs a map lookup
//! under a short lock and an atomic add. Gauges computed at scrape time (a queue depth
//! read from disk) are given as collectors.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latency buckets, in seconds: 1 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in microseconds, to stay an integer.
    sum_micros: AtomicU64,
}

enum Kind {
    Counter(BTreeMap<Labels, Arc<AtomicU64>>),
    Gauge(BTreeMap<Labels, Arc<AtomicU64>>),
    Histogram(BTreeMap<Labels, Arc<Histogram>>),
}

struct Family {
    help: &'static str,
    kind: Kind,
}

/// A gauge read when scraped: `(labels, value)` pairs.
pub type Collector = Box<dyn Fn() -> Vec<(Labels, f64)> + Send + Sync>;

/// A collector with its metric's name and help text.
type Collected = (&'static str, &'static str, Collector);

/// The metrics of one service. Cheap to clone.
#[derive(Clone, Default)]
pub struct Registry {
    families: Arc<Mutex<BTreeMap<&'static str, Family>>>,
    collectors: Arc<Mutex<Vec<Collected>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    fn families(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Family>> {
        // Only map inserts happen under this lock.
        crate::sync::lock(&self.families)
    }

    fn series(
        &self,
        name: &'static str,
        help: &'static str,
        pairs: &[(&'static str, &str)],
        gauge: bool,
    ) -> Arc<AtomicU64> {
        let mut families = self.families();
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind: if gauge { Kind::Gauge(BTreeMap::new()) } else { Kind::Counter(BTreeMap::new()) },
        });
        match &mut family.kind {
            Kind::Counter(series) | Kind::Gauge(series) => series.entry(labels(pairs)).or_default().clone(),
            Kind::Histogram(_) => panic!("metric {name} is a histogram"),
        }
    }

    /// Adds `n` to a counter.
    pub fn count(&self, name: &'static str, help: &'static str, pairs: &[(&'static str, &str)], n: u64) {
        self.series(name, help, pairs, false).fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge (whole numbers).
    pub fn set(&self, name: &'static str, help: &'static str, pairs: &[(&'static str, &str)], value: u64) {
        self.series(name, help, pairs, true).store(value, Ordering::Relaxed);
    }

    /// Records one observation of a duration in a histogram with [`LATENCY_BUCKETS`].
    pub fn observe(&self, name: &'static str, help: &'static str, pairs: &[(&'static str, &str)], d: Duration) {
        let histogram = {
            let mut families = self.families();
            let family =
                families.entry(name).or_insert_with(|| Family { help, kind: Kind::Histogram(BTreeMap::new()) });
            match &mut family.kind {
                Kind::Histogram(series) => series
                    .entry(labels(pairs))
                    .or_insert_with(|| {
                        Arc::new(Histogram {
                            buckets: LATENCY_BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
                            ..Default::default()
                        })
                    })
                    .clone(),
                _ => panic!("metric {name} is not a histogram"),
            }
        };
        let secs = d.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&histogram.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        histogram.count.fetch_add(1, Ordering::Relaxed);
        histogram.sum_micros.fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// A gauge computed at each scrape.
    pub fn collect(&self, name: &'static str, help: &'static str, collector: Collector) {
        crate::sync::lock(&self.collectors).push((name, help, collector));
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let label_text = |labels: &Labels, extra: Option<(&str, String)>| -> String {
            let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            if let Some((k, v)) = extra {
                parts.push(format!("{k}=\"{v}\""));
            }
            if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
        };
        for (name, family) in self.families().iter() {
            let kind = match family.kind {
                Kind::Counter(_) => "counter",
                Kind::Gauge(_) => "gauge",
                Kind::Histogram(_) => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {kind}", family.help);
            match &family.kind {
                Kind::Counter(series) | Kind::Gauge(series) => {
                    for (labels, value) in series {
                        let _ = writeln!(out, "{name}{} {}", label_text(labels, None), value.load(Ordering::Relaxed));
                    }
                }
                Kind::Histogram(series) => {
                    for (labels, h) in series {
                        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&h.buckets) {
                            let le = Some(("le", bound.to_string()));
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {}",
                                label_text(labels, le),
                                bucket.load(Ordering::Relaxed)
                            );
                        }
                        let count = h.count.load(Ordering::Relaxed);
                        let _ =
                            writeln!(out, "{name}_bucket{} {count}", label_text(labels, Some(("le", "+Inf".into()))));
                        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                        let _ = writeln!(out, "{name}_sum{} {sum}", label_text(labels, None));
                        let _ = writeln!(out, "{name}_count{} {count}", label_text(labels, None));
                    }
                }
            }
        }
        for (name, help, collector) in crate::sync::lock(&self.collectors).iter() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (labels, value) in collector() {
                let _ = writeln!(out, "{name}{} {value}", label_text(&labels, None));
            }
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// `routes` with `GET /metrics` answering `registry`'s text, for a tonic server that
/// accepts HTTP/1.1 (see [`crate::grpc::serve`]).
pub fn with_metrics_route(routes: tonic::service::Routes, registry: Registry) -> tonic::service::Routes {
    let router = routes.into_axum_router().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], registry.render())
            }
        }),
    );
    tonic::service::Routes::from(router)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_histograms_and_collectors() {
        let r = Registry::new();
        r.count("bitmail_things_total", "Things.", &[("kind", "a\"b")], 2);
        r.count("bitmail_things_total", "Things.", &[("kind", "a\"b")], 1);
        r.set("bitmail_depth", "Depth.", &[], 7);
        r.observe("bitmail_wait_seconds", "Waits.", &[("op", "get")], Duration::from_millis(3));
        r.collect("bitmail_live", "Live.", Box::new(|| vec![(vec![("x", "1".to_owned())], 1.5)]));
        let text = r.render();
        for line in [
            "# TYPE bitmail_things_total counter",
            "bitmail_things_total{kind=\"a\\\"b\"} 3",
            "# TYPE bitmail_depth gauge",
            "bitmail_depth 7",
            "# TYPE bitmail_wait_seconds histogram",
            "bitmail_wait_seconds_bucket{op=\"get\",le=\"0.0025\"} 0",
            "bitmail_wait_seconds_bucket{op=\"get\",le=\"0.005\"} 1",
            "bitmail_wait_seconds_bucket{op=\"get\",le=\"+Inf\"} 1",
            "bitmail_wait_seconds_sum{op=\"get\"} 0.003",
            "bitmail_wait_seconds_count{op=\"get\"} 1",
            "bitmail_live{x=\"1\"} 1.5",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
