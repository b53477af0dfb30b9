//! Per-fingerprint query statistics, per-table reads and writes, and the slow-query
//! log. Memory is bounded: past `top_n` fingerprints the ones with the least total
//! time are folded into one "other" row.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::fingerprint::{Command, Fingerprint};

/// The id of the row that holds folded fingerprints.
pub const OTHER_ID: u64 = 0;

/// Statistics of one fingerprint.
#[derive(Debug, Clone)]
pub struct QueryStats {
    /// Identity and normalised text.
    pub fingerprint: Arc<Fingerprint>,
    /// Executions.
    pub calls: u64,
    /// Executions that failed.
    pub errors: u64,
    /// Rows returned or affected.
    pub rows: u64,
    /// Sum of durations.
    pub total: Duration,
    /// Fastest.
    pub min: Duration,
    /// Slowest.
    pub max: Duration,
    /// Durations in microseconds (2 significant digits, grows with the range seen;
    /// `u32` counts keep one at ~6 KiB up to 100 ms, so 5,000 fingerprints stay
    /// around 30 MiB).
    pub histogram: Histogram<u32>,
    /// First execution (Unix ms).
    pub first_seen_ms: u64,
    /// Last execution (Unix ms).
    pub last_seen_ms: u64,
}

impl QueryStats {
    fn new(fingerprint: Arc<Fingerprint>, now_ms: u64) -> Self {
        QueryStats {
            fingerprint,
            calls: 0,
            errors: 0,
            rows: 0,
            total: Duration::ZERO,
            min: Duration::MAX,
            max: Duration::ZERO,
            histogram: Histogram::new(2).expect("2 significant digits is valid"),
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
        }
    }

    fn record(&mut self, d: Duration, rows: u64, failed: bool, now_ms: u64) {
        self.calls += 1;
        self.errors += u64::from(failed);
        self.rows += rows;
        self.total += d;
        self.min = self.min.min(d);
        self.max = self.max.max(d);
        // `record` grows the range as needed (`saturating_record` would clamp); it
        // fails only past 4 billion samples in one bucket.
        let _ = self.histogram.record((d.as_micros() as u64).max(1));
        self.last_seen_ms = now_ms;
    }

    fn absorb(&mut self, o: &QueryStats) {
        self.calls += o.calls;
        self.errors += o.errors;
        self.rows += o.rows;
        self.total += o.total;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        let _ = self.histogram.add(&o.histogram);
        self.first_seen_ms = self.first_seen_ms.min(o.first_seen_ms);
        self.last_seen_ms = self.last_seen_ms.max(o.last_seen_ms);
    }

    /// A serialisable summary.
    pub fn summary(&self) -> QuerySummary {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let q = |p: f64| self.histogram.value_at_quantile(p) as f64 / 1e3;
        let calls = self.calls.max(1);
        QuerySummary {
            fingerprint: format!("{:016x}", self.fingerprint.id),
            query: self.fingerprint.normalized.to_string(),
            command: self.fingerprint.command,
            calls: self.calls,
            errors: self.errors,
            rows: self.rows,
            total_ms: ms(self.total),
            mean_ms: ms(self.total) / calls as f64,
            min_ms: if self.calls == 0 { 0.0 } else { ms(self.min) },
            max_ms: ms(self.max),
            p50_ms: q(0.50),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
        }
    }
}

/// One fingerprint as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QuerySummary {
    /// 16 hex digits (`0000000000000000` is the folded "other" row).
    pub fingerprint: String,
    /// Normalised SQL.
    pub query: String,
    /// Statement kind.
    pub command: Command,
    /// Executions.
    pub calls: u64,
    /// Failed executions.
    pub errors: u64,
    /// Rows.
    pub rows: u64,
    /// Total time, ms.
    pub total_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Min, ms.
    pub min_ms: f64,
    /// Max, ms.
    pub max_ms: f64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// First seen, Unix ms.
    pub first_seen_ms: u64,
    /// Last seen, Unix ms.
    pub last_seen_ms: u64,
}

/// Reads and writes of one table.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TableStats {
    /// Statements that read it.
    pub reads: u64,
    /// Statements that wrote it.
    pub writes: u64,
}

/// One slow query.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SlowQuery {
    /// When it finished, Unix ms.
    pub at_ms: u64,
    /// Duration, ms.
    pub duration_ms: f64,
    /// Rows.
    pub rows: u64,
    /// Fingerprint, 16 hex digits.
    pub fingerprint: String,
    /// Normalised SQL (constants as `$n`).
    pub query: String,
    /// The SQL as sent, constants included: only when `log_parameters` is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_query: Option<String>,
    /// Bind parameters of an extended-protocol query: only when `log_parameters` is
    /// on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Vec<String>>,
    /// SQLSTATE if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Database.
    pub database: String,
    /// User.
    pub user: String,
    /// Client address.
    pub client: String,
}

/// All query statistics of a proxy.
pub struct Stats {
    queries: HashMap<u64, QueryStats>,
    other: Option<QueryStats>,
    top_n: usize,
    tables: HashMap<String, TableStats>,
    max_tables: usize,
    slow: VecDeque<SlowQuery>,
    max_slow: usize,
    /// Fingerprints folded into "other" so far.
    pub folded: u64,
}

impl Stats {
    /// Keeps `top_n` fingerprints and the last `max_slow` slow queries.
    pub fn new(top_n: usize, max_slow: usize) -> Self {
        Stats {
            queries: HashMap::new(),
            other: None,
            top_n: top_n.max(1),
            tables: HashMap::new(),
            max_tables: 10_000,
            slow: VecDeque::new(),
            max_slow: max_slow.max(1),
            folded: 0,
        }
    }

    /// Records one execution that ended at `now` (Unix ms).
    pub fn record(
        &mut self,
        fp: &Arc<Fingerprint>,
        d: Duration,
        rows: u64,
        failed: bool,
        now: u64,
    ) {
        self.queries
            .entry(fp.id)
            .or_insert_with(|| QueryStats::new(fp.clone(), now))
            .record(d, rows, failed, now);
        // Fold in batches (10% over the bound) so the scan is amortised.
        if self.queries.len() > self.top_n + self.top_n / 10 + 1 {
            self.fold();
        }
        for t in fp.reads.iter() {
            if let Some(s) = self.table(t) {
                s.reads += 1;
            }
        }
        for t in fp.writes.iter() {
            if let Some(s) = self.table(t) {
                s.writes += 1;
            }
        }
    }

    fn table(&mut self, name: &str) -> Option<&mut TableStats> {
        // Look up before inserting: no key allocated for a table already known.
        if !self.tables.contains_key(name) {
            if self.tables.len() >= self.max_tables {
                return None;
            }
            self.tables.insert(name.to_string(), TableStats::default());
        }
        self.tables.get_mut(name)
    }

    fn fold(&mut self) {
        let mut by_total: Vec<(Duration, u64)> =
            self.queries.iter().map(|(id, q)| (q.total, *id)).collect();
        by_total.sort_unstable();
        let excess = self.queries.len() - self.top_n;
        for (_, id) in by_total.into_iter().take(excess) {
            if let Some(q) = self.queries.remove(&id) {
                self.folded += 1;
                match &mut self.other {
                    Some(o) => o.absorb(&q),
                    None => {
                        let mut o = q.clone();
                        o.fingerprint = Arc::new(Fingerprint {
                            id: OTHER_ID,
                            normalized: Arc::from("<other>"),
                            command: Command::Other,
                            reads: Arc::from([]),
                            writes: Arc::from([]),
                            parsed: false,
                        });
                        self.other = Some(o);
                    }
                }
            }
        }
    }

    /// Adds a slow query to the log (oldest dropped past the bound).
    pub fn push_slow(&mut self, q: SlowQuery) {
        if self.slow.len() == self.max_slow {
            self.slow.pop_front();
        }
        self.slow.push_back(q);
    }

    /// Summaries of every fingerprint and the "other" row.
    pub fn summaries(&self) -> Vec<QuerySummary> {
        self.queries
            .values()
            .chain(self.other.as_ref())
            .map(QueryStats::summary)
            .collect()
    }

    /// Number of distinct fingerprints kept.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty() && self.other.is_none()
    }

    /// The slow log, newest last.
    pub fn slow(&self) -> Vec<SlowQuery> {
        self.slow.iter().cloned().collect()
    }

    /// Per-table counts.
    pub fn tables(&self) -> &HashMap<String, TableStats> {
        &self.tables
    }
}

/// Unix milliseconds.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::Fingerprinter;

    #[test]
    fn records_and_folds_the_cheapest_into_other() {
        let mut f = Fingerprinter::new(100);
        let mut s = Stats::new(10, 5);
        for i in 0..30u64 {
            // Letters: pg_query folds digit suffixes of table names (partitions).
            let letter = |n: u64| (b'a' + n as u8) as char;
            let name = format!("t_{}{}", letter(i / 26), letter(i % 26));
            let fp = f.fingerprint(&format!("SELECT * FROM {name} WHERE id = 1"));
            // t29 is the most expensive.
            s.record(&fp, Duration::from_millis(i + 1), 1, false, 0);
        }
        assert!(s.len() <= 10 + 1 + 1, "bounded: {}", s.len());
        let all = s.summaries();
        let calls: u64 = all.iter().map(|q| q.calls).sum();
        assert_eq!(calls, 30, "nothing lost in folding");
        // t_bd (i = 29) is the most expensive, t_aa (i = 0) the cheapest.
        assert!(all.iter().any(|q| q.query.contains("t_bd ")), "{all:#?}");
        assert!(!all.iter().any(|q| q.query.contains("t_aa ")));
        let other = all
            .iter()
            .find(|q| q.fingerprint == "0000000000000000")
            .unwrap();
        assert_eq!(other.query, "<other>");
        assert_eq!(s.tables()["t_ad"].reads, 1);
    }

    #[test]
    fn summary_quantiles() {
        let mut f = Fingerprinter::new(10);
        let fp = f.fingerprint("SELECT 1");
        let mut s = Stats::new(10, 5);
        for ms in 1..=100u64 {
            s.record(&fp, Duration::from_millis(ms), 1, ms == 100, 0);
        }
        let q = &s.summaries()[0];
        assert_eq!((q.calls, q.errors, q.rows), (100, 1, 100));
        assert!((q.mean_ms - 50.5).abs() < 0.01);
        assert!((q.p50_ms - 50.0).abs() < 1.0, "{}", q.p50_ms);
        assert!((q.p99_ms - 99.0).abs() < 1.5, "{}", q.p99_ms);
        assert_eq!((q.min_ms, q.max_ms), (1.0, 100.0));
    }
}
