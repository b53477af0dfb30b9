//! Prometheus export with the names in DESIGN.md.
//!
//! Counters live in the engine's sharded counters and are read at scrape time by a
//! [`Collector`]; only operations that leave the process (Redis, loaders) are timed,
//! because timing an L1 hit would cost a noticeable share of the hit itself.

use std::sync::Weak;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::cache::{Cache, Inner};

/// One exported per-namespace number: (name, help, how to read it from a snapshot).
type NsMetric = (
    &'static str,
    &'static str,
    fn(&crate::stats::NamespaceStats) -> u64,
);

/// Operations that leave the process, each with a latency histogram.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Get,
    Mget,
    Set,
    Invalidate,
    Load,
}

impl Op {
    const ALL: [Op; 5] = [Op::Get, Op::Mget, Op::Set, Op::Invalidate, Op::Load];

    /// (`op`, `tier`) label values.
    fn labels(self) -> [(&'static str, &'static str); 2] {
        let (op, tier) = match self {
            Op::Get => ("get", "l2"),
            Op::Mget => ("mget", "l2"),
            Op::Set => ("set", "l2"),
            Op::Invalidate => ("invalidate", "l2"),
            Op::Load => ("load", "loader"),
        };
        [("op", op), ("tier", tier)]
    }
}

/// Latency histograms of operations that leave the process, indexed by [`Op`].
pub(crate) struct Durations {
    hist: [Histogram; 5],
}

impl Default for Durations {
    fn default() -> Self {
        // 50 µs … ~13 s.
        Durations {
            hist: std::array::from_fn(|_| Histogram::new(exponential_buckets(0.00005, 2.0, 19))),
        }
    }
}

impl Durations {
    pub(crate) fn observe(&self, op: Op, started: Instant) {
        self.hist[op as usize].observe(started.elapsed().as_secs_f64());
    }
}

#[derive(Debug)]
struct CacheCollector(Weak<Inner>);

impl Collector for CacheCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(inner) = self.0.upgrade() else {
            return Ok(());
        };
        let stats = Cache {
            inner: inner.clone(),
        }
        .stats();
        type Get = fn(&crate::stats::TierStats) -> u64;
        let tier_counters: [(&str, &str, Get); 5] = [
            ("cache_hits", "Reads answered by a tier.", |t| t.hits),
            ("cache_misses", "Reads a tier could not answer.", |t| {
                t.misses
            }),
            ("cache_evictions", "Entries evicted for space.", |t| {
                t.evictions
            }),
            (
                "cache_invalidations",
                "Entries dropped by invalidation.",
                |t| t.invalidations,
            ),
            ("cache_errors", "Failed tier operations.", |t| t.errors),
        ];
        for (name, help, get) in tier_counters {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for ns in &stats.namespaces {
                for (tier, t) in [("l1", &ns.l1), ("l2", &ns.l2)] {
                    let labels = [("namespace", ns.namespace.as_str()), ("tier", tier)];
                    ConstCounter::new(get(t)).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        let extra: [NsMetric; 6] = [
            (
                "cache_sets",
                "Entries written to L2 (L1 for memory-only namespaces).",
                |n| n.l2.sets.max(n.l1.sets),
            ),
            ("cache_expirations", "L1 entries found expired.", |n| {
                n.l1.expirations
            }),
            (
                "cache_corrupt_entries",
                "Undecodable Redis entries deleted.",
                |n| n.l2.corrupt,
            ),
            ("cache_loads", "Loader runs.", |n| n.loads),
            (
                "cache_load_errors",
                "Loader runs that failed or timed out.",
                |n| n.load_errors,
            ),
            (
                "cache_coalesced_loads",
                "Callers that waited on another caller's loader.",
                |n| n.coalesced,
            ),
        ];
        for (name, help, get) in extra {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for ns in &stats.namespaces {
                ConstCounter::new(get(ns))
                    .encode(m.encode_family(&[("namespace", ns.namespace.as_str())])?)?;
            }
        }
        let gauges: [NsMetric; 2] = [
            ("cache_size_bytes", "Bytes held in L1.", |n| n.l1_bytes),
            ("cache_entries", "Entries held in L1.", |n| n.l1_entries),
        ];
        for (name, help, get) in gauges {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for ns in &stats.namespaces {
                let labels = [("namespace", ns.namespace.as_str()), ("tier", "l1")];
                ConstGauge::new(get(ns) as i64).encode(m.encode_family(&labels)?)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "cache_capacity_bytes",
            "L1 capacity.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(stats.l1_capacity_bytes as i64)
            .encode(m.encode_family(&[("tier", "l1")])?)?;
        let mut m =
            enc.encode_descriptor("tier_up", "1 if the tier answers.", None, MetricType::Gauge)?;
        ConstGauge::new(1i64).encode(m.encode_family(&[("tier", "l1")])?)?;
        if let Some(up) = stats.l2_up {
            ConstGauge::new(up as i64).encode(m.encode_family(&[("tier", "l2")])?)?;
        }
        let mut m = enc.encode_descriptor(
            "cache_invalidation_messages",
            "Invalidation messages on the pub/sub channel.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(stats.invalidation_messages_published)
            .encode(m.encode_family(&[("direction", "published")])?)?;
        ConstCounter::new(stats.invalidation_messages_received)
            .encode(m.encode_family(&[("direction", "received")])?)?;
        let mut m = enc.encode_descriptor(
            "cache_operation_duration_seconds",
            "Latency of operations that leave the process.",
            None,
            MetricType::Histogram,
        )?;
        for op in Op::ALL {
            inner.durations.hist[op as usize].encode(m.encode_family(&op.labels())?)?;
        }
        Ok(())
    }
}

impl Cache {
    /// Registers this cache's metrics (prefix `strata_`) in a registry.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache = strata_cache::Cache::builder().build().await.unwrap();
    /// let mut registry = prometheus_client::registry::Registry::default();
    /// cache.register_metrics(&mut registry);
    /// let mut text = String::new();
    /// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    /// assert!(text.contains("strata_tier_up"));
    /// # }
    /// ```
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry
            .sub_registry_with_prefix("strata")
            .register_collector(Box::new(CacheCollector(std::sync::Arc::downgrade(
                &self.inner,
            ))));
    }
}
