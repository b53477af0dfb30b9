//! Recording: HDR histograms per shard of workers, gathered once a second into a
//! timeline and, after the warm-up, into the run's totals.
//!
//! Two latencies are kept for every operation: from the moment it was sent
//! (`actual`) and from the moment the schedule meant it to start (`corrected`). In a
//! closed loop they are equal. In an open loop, when the target stalls, operations
//! queue behind it: their `actual` latency looks fine while their `corrected` latency
//! shows what a user arriving on schedule waited (coordinated omission).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Microseconds from 1 µs to one hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

/// What one operation did.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// An error kind (`timeout`, `connect`, `http_5xx`, …), or None on success.
    pub error: Option<&'static str>,
    /// Whether the target reported a cache hit, when it says.
    pub hit: Option<bool>,
}

impl Outcome {
    /// Success without hit information.
    pub const OK: Outcome = Outcome {
        error: None,
        hit: None,
    };

    /// A failure of a kind.
    pub fn error(kind: &'static str) -> Self {
        Outcome {
            error: Some(kind),
            hit: None,
        }
    }
}

/// Counts of one shard (or of a merge of them).
#[derive(Debug, Clone)]
pub struct Counts {
    /// Latency from send.
    pub actual: Histogram<u64>,
    /// Latency from the intended start.
    pub corrected: Histogram<u64>,
    /// Operations completed (errors included).
    pub ops: u64,
    /// Errors by kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// Hits reported by the target.
    pub hits: u64,
    /// Misses reported by the target.
    pub misses: u64,
    /// Operations sent more than 1 ms after their intended start (open loop).
    pub late: u64,
    /// Operations never sent: too far behind schedule (open loop).
    pub dropped: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            actual: new_histogram(),
            corrected: new_histogram(),
            ops: 0,
            errors: BTreeMap::new(),
            hits: 0,
            misses: 0,
            late: 0,
            dropped: 0,
        }
    }
}

impl Counts {
    /// Records one completed operation.
    pub fn record(&mut self, actual: Duration, corrected: Duration, late: bool, o: Outcome) {
        let us = |d: Duration| (d.as_micros() as u64).clamp(1, 3_600_000_000);
        self.actual.saturating_record(us(actual));
        self.corrected.saturating_record(us(corrected.max(actual)));
        self.ops += 1;
        if late {
            self.late += 1;
        }
        if let Some(e) = o.error {
            *self.errors.entry(e).or_default() += 1;
        }
        match o.hit {
            Some(true) => self.hits += 1,
            Some(false) => self.misses += 1,
            None => {}
        }
    }

    /// Adds another's counts to these.
    pub fn merge(&mut self, other: &Counts) {
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.actual.add(&other.actual);
        let _ = self.corrected.add(&other.corrected);
        self.ops += other.ops;
        for (k, v) in &other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.hits += other.hits;
        self.misses += other.misses;
        self.late += other.late;
        self.dropped += other.dropped;
    }

    /// Errors of all kinds.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn reset(&mut self) {
        self.actual.reset();
        self.corrected.reset();
        self.ops = 0;
        self.errors.clear();
        self.hits = 0;
        self.misses = 0;
        self.late = 0;
        self.dropped = 0;
    }
}

/// One second of the run.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Point {
    /// Seconds since the start (end of this second).
    pub t: f64,
    /// Operations completed per second.
    pub rps: f64,
    /// Latency percentiles from send, ms.
    pub p50_ms: f64,
    /// 90th.
    pub p90_ms: f64,
    /// 99th.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// 99th from the intended start, ms.
    pub corrected_p99_ms: f64,
    /// Errors in this second.
    pub errors: u64,
    /// Hit rate in this second, when the target reports hits.
    pub hit_rate: Option<f64>,
    /// Whether this second was warm-up (excluded from totals).
    pub warmup: bool,
}

/// Shards workers record into; gathered by [`Gatherer`].
#[derive(Debug, Clone)]
pub struct Shards(Arc<Vec<Mutex<Counts>>>);

/// Shards in use: enough to keep two runtime threads from contending, few enough to
/// bound memory (each holds two ~190 KB histograms).
pub const SHARDS: usize = 16;

impl Default for Shards {
    fn default() -> Self {
        Shards(Arc::new((0..SHARDS).map(|_| Mutex::default()).collect()))
    }
}

impl Shards {
    /// Records into the shard of `worker`.
    pub fn record(
        &self,
        worker: usize,
        actual: Duration,
        corrected: Duration,
        late: bool,
        o: Outcome,
    ) {
        self.0[worker % SHARDS]
            .lock()
            .expect("shard lock")
            .record(actual, corrected, late, o);
    }

    /// Counts a start that was dropped.
    pub fn dropped(&self, worker: usize, n: u64) {
        self.0[worker % SHARDS].lock().expect("shard lock").dropped += n;
    }

    /// Takes everything recorded since the last call, leaving the shards empty.
    pub fn drain(&self) -> Counts {
        let mut out = Counts::default();
        for s in self.0.iter() {
            let mut c = s.lock().expect("shard lock");
            out.merge(&c);
            c.reset();
        }
        out
    }
}

/// Gathers the shards once a second into the timeline and the totals.
#[derive(Debug)]
pub struct Gatherer {
    /// Per-second points, warm-up included (flagged).
    pub timeline: Vec<Point>,
    /// Everything after the warm-up.
    pub totals: Counts,
    /// Seconds of warm-up.
    pub warmup: Duration,
    /// Where every interval is also added, for a live `/metrics`.
    pub live: Option<crate::live::Live>,
}

impl Gatherer {
    /// A gatherer that excludes the first `warmup` from the totals.
    pub fn new(warmup: Duration) -> Self {
        Gatherer {
            timeline: Vec::new(),
            totals: Counts::default(),
            warmup,
            live: None,
        }
    }

    /// Adds what was recorded during the interval ending at `t` (seconds since start,
    /// the interval being `span` long).
    pub fn gather(&mut self, shards: &Shards, t: Duration, span: Duration) -> &Point {
        let c = shards.drain();
        let warm = t <= self.warmup;
        let ms = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let seen = c.hits + c.misses;
        self.timeline.push(Point {
            t: t.as_secs_f64(),
            rps: c.ops as f64 / span.as_secs_f64().max(1e-9),
            p50_ms: ms(&c.actual, 0.5),
            p90_ms: ms(&c.actual, 0.9),
            p99_ms: ms(&c.actual, 0.99),
            max_ms: if c.actual.is_empty() {
                0.0
            } else {
                c.actual.max() as f64 / 1000.0
            },
            corrected_p99_ms: ms(&c.corrected, 0.99),
            errors: c.error_count(),
            hit_rate: (seen > 0).then(|| c.hits as f64 / seen as f64),
            warmup: warm,
        });
        if let Some(live) = &self.live {
            live.add(&c, warm);
        }
        if !warm {
            self.totals.merge(&c);
        }
        self.timeline.last().expect("just pushed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrected_latency_never_below_actual() {
        let mut c = Counts::default();
        c.record(
            Duration::from_millis(5),
            Duration::from_millis(1),
            false,
            Outcome::OK,
        );
        assert!(c.corrected.max() >= 5_000 - 5);
    }

    #[test]
    fn warmup_is_excluded_from_totals() {
        let s = Shards::default();
        let mut g = Gatherer::new(Duration::from_secs(1));
        s.record(
            0,
            Duration::from_millis(1),
            Duration::from_millis(1),
            false,
            Outcome::OK,
        );
        g.gather(&s, Duration::from_secs(1), Duration::from_secs(1));
        s.record(
            1,
            Duration::from_millis(2),
            Duration::from_millis(2),
            false,
            Outcome::error("timeout"),
        );
        g.gather(&s, Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(g.totals.ops, 1);
        assert_eq!(g.totals.errors.get("timeout"), Some(&1));
        assert!(g.timeline[0].warmup && !g.timeline[1].warmup);
        assert_eq!(g.timeline[1].errors, 1);
    }
}
