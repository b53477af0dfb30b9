//! Per-namespace API latency, by operation and answering tier, in HDR histograms,
//! for the percentiles of `/v1/stats`.
//!
//! Histograms are created on first use and record microseconds with two significant
//! digits (~10 KB each). Namespaces beyond [`MAX_TRACKED`] are not tracked, which
//! keeps memory bounded when clients invent namespaces.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Most namespaces whose latency is tracked.
pub const MAX_TRACKED: usize = 256;

/// Timed operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiOp {
    /// GET answered from memory.
    GetL1,
    /// GET answered from Redis.
    GetL2,
    /// GET that found nothing.
    GetMiss,
    /// PUT.
    Set,
    /// DELETE of a key.
    Delete,
    /// `_mget`.
    Mget,
    /// `_mset` and `_preload`.
    Mset,
}

const OPS: [(ApiOp, &str); 7] = [
    (ApiOp::GetL1, "get_l1"),
    (ApiOp::GetL2, "get_l2"),
    (ApiOp::GetMiss, "get_miss"),
    (ApiOp::Set, "set"),
    (ApiOp::Delete, "delete"),
    (ApiOp::Mget, "mget"),
    (ApiOp::Mset, "mset"),
];

#[derive(Default)]
struct NsLatency {
    ops: [OnceLock<Mutex<Histogram<u32>>>; 7],
}

/// Latency recorder of all namespaces.
#[derive(Default)]
pub struct Latencies {
    by_ns: RwLock<HashMap<String, Arc<NsLatency>>>,
}

/// Percentiles of one operation, milliseconds.
#[derive(Debug, Serialize)]
pub struct Percentiles {
    /// Operations recorded.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latencies {
    /// Records one operation.
    pub fn record(&self, namespace: &str, op: ApiOp, took: Duration) {
        // Bound first: a guard in the match scrutinee would live through the arms.
        let found = self
            .by_ns
            .read()
            .expect("latency lock")
            .get(namespace)
            .cloned();
        let ns = match found {
            Some(ns) => ns,
            None => {
                let mut all = self.by_ns.write().expect("latency lock");
                if all.len() >= MAX_TRACKED && !all.contains_key(namespace) {
                    return;
                }
                all.entry(namespace.to_owned()).or_default().clone()
            }
        };
        let h = ns.ops[op as usize].get_or_init(|| {
            // 1 µs .. 60 s, 2 significant digits.
            Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 2).expect("static bounds"))
        });
        let us = (took.as_micros() as u64).clamp(1, 60_000_000);
        h.lock().expect("histogram lock").saturating_record(us);
    }

    /// Percentiles per operation of one namespace (operations never seen are absent).
    pub fn snapshot(&self, namespace: &str) -> HashMap<&'static str, Percentiles> {
        let Some(ns) = self
            .by_ns
            .read()
            .expect("latency lock")
            .get(namespace)
            .cloned()
        else {
            return HashMap::new();
        };
        let mut out = HashMap::new();
        for (op, name) in OPS {
            let Some(h) = ns.ops[op as usize].get() else {
                continue;
            };
            let h = h.lock().expect("histogram lock").clone();
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            out.insert(
                name,
                Percentiles {
                    count: h.len(),
                    p50_ms: ms(0.5),
                    p90_ms: ms(0.9),
                    p99_ms: ms(0.99),
                    p999_ms: ms(0.999),
                    max_ms: h.max() as f64 / 1000.0,
                },
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_what_was_recorded() {
        let l = Latencies::default();
        for i in 1..=100 {
            l.record("user", ApiOp::GetL1, Duration::from_micros(i * 10));
        }
        let s = l.snapshot("user");
        let p = &s["get_l1"];
        assert_eq!(p.count, 100);
        assert!((0.49..=0.51).contains(&p.p50_ms), "{p:?}");
        assert!((0.99..=1.01).contains(&p.max_ms), "{p:?}");
        assert!(!s.contains_key("set"));
    }

    #[test]
    fn tracking_is_bounded() {
        let l = Latencies::default();
        for i in 0..MAX_TRACKED + 10 {
            l.record(&format!("ns{i}"), ApiOp::Set, Duration::from_micros(5));
        }
        assert_eq!(l.by_ns.read().unwrap().len(), MAX_TRACKED);
        assert!(l.snapshot(&format!("ns{}", MAX_TRACKED + 5)).is_empty());
    }
}
