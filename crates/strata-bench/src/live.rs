//! Live metrics of a running load test, for Prometheus to scrape (the way k6 streams
//! to an output): what the run has done so far as `strata_loadtest_*` counters, a
//! latency histogram, and the current load level.
//!
//! The gatherer hands every second's drained counts to [`Live::add`], so the
//! numbers are at most one second old and cost nothing on the workers' hot path.
//! Counters are cumulative from the start of the run, warm-up included (a scrape
//! cannot be taken back); `strata_loadtest_warmup` says when it was warm-up.
//!
//! ```
//! use prometheus_client::registry::Registry;
//! use strata_bench::live::Live;
//! use strata_bench::recorder::{Counts, Outcome};
//! use std::time::Duration;
//!
//! let live = Live::new("peak");
//! let mut registry = Registry::default();
//! live.register(&mut registry);
//! let mut second = Counts::default();
//! second.record(Duration::from_millis(2), Duration::from_millis(2), false, Outcome::OK);
//! live.add(&second, false);
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
//! assert!(text.contains("strata_loadtest_operations_total{run=\"peak\"} 1"));
//! ```

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::recorder::Counts;

/// Upper bounds of the exported latency buckets, seconds: 100 µs to 10 s.
const BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The error kinds drivers report: each is exported from the start, at 0 until it
/// happens, so rates and ratios over them exist before the first error.
pub const ERROR_KINDS: [&str; 8] = [
    "connect", "timeout", "io", "protocol", "http_4xx", "http_5xx", "redis", "engine",
];

/// The live state of one run; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Live(Arc<Mutex<State>>);

#[derive(Debug)]
struct State {
    run: String,
    counts: Counts,
    users: f64,
    rate: f64,
    running: bool,
    warmup: bool,
}

impl Live {
    /// Live metrics labelled `run="{run}"` (a scenario's run name, or `load-test`).
    pub fn new(run: &str) -> Self {
        Live(Arc::new(Mutex::new(State {
            run: run.to_owned(),
            counts: Counts::default(),
            users: 0.0,
            rate: 0.0,
            running: true,
            warmup: false,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the counts half-merged in a way that matters
        // to a scrape; keep serving them.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one gathered interval; `warmup` says whether it was warm-up.
    pub fn add(&self, interval: &Counts, warmup: bool) {
        let mut s = self.state();
        s.counts.merge(interval);
        s.warmup = warmup;
    }

    /// The current load level: concurrent users (closed loop) or arrivals per
    /// second (open loop); the other reads 0.
    pub fn set_level(&self, users: f64, rate: f64) {
        let mut s = self.state();
        s.users = users;
        s.rate = rate;
    }

    /// Marks the run finished: `strata_loadtest_running` reads 0 and the level 0.
    pub fn finish(&self) {
        let mut s = self.state();
        s.running = false;
        s.users = 0.0;
        s.rate = 0.0;
    }

    /// Registers the `strata_loadtest_*` families into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry
            .sub_registry_with_prefix("strata_loadtest")
            .register_collector(Box::new(self.clone()));
    }
}

/// An HDR histogram (µs) in Prometheus' fixed buckets (seconds).
#[derive(Debug)]
struct Buckets {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl Buckets {
    fn of(h: &Histogram<u64>) -> Self {
        let mut buckets: Vec<(f64, u64)> = BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .map(|b| (b, 0))
            .collect();
        let mut sum = 0.0;
        for v in h.iter_recorded() {
            // Values recorded into one HDR bucket are equivalent; the bucket's top
            // stands for all of them.
            let secs = v.value_iterated_to() as f64 / 1e6;
            let n = v.count_since_last_iteration();
            sum += secs * n as f64;
            let i = BOUNDS.partition_point(|b| *b < secs);
            buckets[i].1 += n;
        }
        Buckets {
            sum,
            count: h.len(),
            buckets,
        }
    }
}

impl EncodeMetric for Buckets {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl Collector for Live {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.state();
        let run = [("run", s.run.as_str())];
        let c = &s.counts;
        let counters: [(&str, &str, u64); 5] = [
            (
                "operations",
                "Operations completed (errors included).",
                c.ops,
            ),
            (
                "cache_hits",
                "Operations the target reported as cache hits.",
                c.hits,
            ),
            (
                "cache_misses",
                "Operations the target reported as cache misses.",
                c.misses,
            ),
            (
                "late_starts",
                "Open loop: operations sent over 1 ms after their intended start.",
                c.late,
            ),
            (
                "dropped_starts",
                "Open loop: operations never sent, too far behind schedule.",
                c.dropped,
            ),
        ];
        for (name, help, v) in counters {
            ConstCounter::new(v).encode(
                enc.encode_descriptor(name, help, None, MetricType::Counter)?
                    .encode_family(&run)?,
            )?;
        }
        {
            let mut m = enc.encode_descriptor(
                "errors",
                "Failed operations by kind (connect, timeout, io, protocol, http_4xx, http_5xx, redis, engine).",
                None,
                MetricType::Counter,
            )?;
            let mut kinds: std::collections::BTreeMap<&str, u64> =
                ERROR_KINDS.iter().map(|k| (*k, 0)).collect();
            kinds.extend(c.errors.iter().map(|(k, n)| (*k, *n)));
            for (kind, n) in kinds {
                ConstCounter::new(n).encode(m.encode_family(&[run[0], ("kind", kind)])?)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "latency",
                "Operation latency, from the send (`from=\"sent\"`) and from the intended start (`from=\"intended\"`, coordinated omission corrected; equal in a closed loop).",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (from, h) in [("sent", &c.actual), ("intended", &c.corrected)] {
                Buckets::of(h).encode(m.encode_family(&[run[0], ("from", from)])?)?;
            }
        }
        let gauges: [(&str, &str, f64); 4] = [
            ("users", "Closed loop: concurrent users now.", s.users),
            (
                "target_rate",
                "Open loop: intended arrivals per second now.",
                s.rate,
            ),
            (
                "running",
                "1 while the run goes, 0 once it has finished.",
                f64::from(u8::from(s.running)),
            ),
            (
                "warmup",
                "1 during the warm-up (excluded from the report's totals).",
                f64::from(u8::from(s.warmup && s.running)),
            ),
        ];
        for (name, help, v) in gauges {
            ConstGauge::new(v).encode(
                enc.encode_descriptor(name, help, None, MetricType::Gauge)?
                    .encode_family(&run)?,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::Outcome;
    use std::time::Duration;

    fn has(text: &str, line: &str) {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }

    fn scrape(live: &Live) -> String {
        let mut r = Registry::default();
        live.register(&mut r);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn buckets_are_cumulative_and_agree_with_the_count() {
        let live = Live::new("t");
        let mut c = Counts::default();
        for ms in [1, 2, 3, 40, 2000] {
            let d = Duration::from_millis(ms);
            c.record(d, d, false, Outcome::OK);
        }
        c.record(
            Duration::from_millis(1),
            Duration::from_millis(600),
            true,
            Outcome::error("timeout"),
        );
        live.add(&c, false);
        let text = scrape(&live);
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("{needle} missing from\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .parse::<f64>()
                .unwrap()
        };
        assert_eq!(line("strata_loadtest_operations_total{run=\"t\"}"), 6.0);
        assert_eq!(
            line("strata_loadtest_errors_total{run=\"t\",kind=\"timeout\"}"),
            1.0
        );
        assert_eq!(line("strata_loadtest_late_starts_total{run=\"t\"}"), 1.0);
        assert_eq!(
            line("strata_loadtest_errors_total{run=\"t\",kind=\"connect\"}"),
            0.0
        );
        let bucket = |le: &str, from: &str| {
            line(&format!(
                "strata_loadtest_latency_seconds_bucket{{le=\"{le}\",run=\"t\",from=\"{from}\"}}"
            ))
        };
        // 1 ms twice, 2 ms, 3 ms, 40 ms, 2 s.
        assert_eq!(bucket("0.001", "sent"), 2.0);
        assert_eq!(bucket("0.005", "sent"), 4.0);
        assert_eq!(bucket("0.05", "sent"), 5.0);
        assert_eq!(bucket("1.0", "sent"), 5.0);
        assert_eq!(bucket("+Inf", "sent"), 6.0);
        // The timeout's 600 ms from its intended start.
        assert_eq!(bucket("0.5", "intended"), 4.0);
        assert_eq!(bucket("1.0", "intended"), 5.0);
        let sum = line("strata_loadtest_latency_seconds_sum{run=\"t\",from=\"sent\"}");
        assert!((sum - 2.047).abs() < 0.01, "{sum}");
    }

    #[test]
    fn counters_accumulate_and_finish_zeroes_the_level() {
        let live = Live::new("r");
        live.set_level(50.0, 0.0);
        let mut c = Counts::default();
        c.record(
            Duration::from_millis(1),
            Duration::from_millis(1),
            false,
            Outcome::OK,
        );
        live.add(&c, true);
        live.add(&c, false);
        let text = scrape(&live);
        has(&text, "strata_loadtest_operations_total{run=\"r\"} 2");
        has(&text, "strata_loadtest_users{run=\"r\"} 50");
        has(&text, "strata_loadtest_warmup{run=\"r\"} 0");
        has(&text, "strata_loadtest_running{run=\"r\"} 1");
        live.finish();
        let text = scrape(&live);
        has(&text, "strata_loadtest_users{run=\"r\"} 0");
        has(&text, "strata_loadtest_running{run=\"r\"} 0");
        has(&text, "strata_loadtest_operations_total{run=\"r\"} 2");
    }
}
