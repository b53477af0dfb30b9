//! N+1 detection: the same fingerprint run at least `threshold` times within one
//! transaction, or within a short window on one connection, each time returning at
//! most one row. That is the signature of a loop issuing one query per parent row.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::fingerprint::Fingerprint;

/// A detected N+1 pattern, aggregated per fingerprint.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    /// Fingerprint, 16 hex digits.
    pub fingerprint: String,
    /// Normalised SQL.
    pub query: String,
    /// How many separate runs (transactions or windows) showed the pattern.
    pub occurrences: u64,
    /// The most executions seen in one run.
    pub max_count: u64,
    /// Executions in the latest run.
    pub last_count: u64,
    /// When it was last seen, Unix ms.
    pub last_seen_ms: u64,
    /// How to fetch the rows in one query instead.
    pub suggestion: String,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Scope {
    Transaction(u64),
    Window,
}

#[derive(Debug)]
struct Run {
    scope: Scope,
    started: Instant,
    count: u64,
    /// A run where any execution returned more than one row is not N+1.
    disqualified: bool,
    reported: bool,
}

/// Per-connection runs and the findings so far.
pub struct Detector {
    threshold: u64,
    window: Duration,
    runs: HashMap<(u64, u64), Run>,
    findings: HashMap<u64, Finding>,
}

impl Detector {
    /// Flags `threshold` or more single-row executions per transaction or `window`.
    pub fn new(threshold: u64, window: Duration) -> Self {
        Detector {
            threshold: threshold.max(2),
            window,
            runs: HashMap::new(),
            findings: HashMap::new(),
        }
    }

    /// Observes one execution; returns true when it completed a new finding.
    pub fn observe(
        &mut self,
        conn: u64,
        transaction: Option<u64>,
        fp: &Arc<Fingerprint>,
        rows: u64,
        now: Instant,
        now_ms: u64,
    ) -> bool {
        // Only statements that read by key repeat this way; transaction control
        // (BEGIN/COMMIT per row) is not the pattern.
        if fp.command != crate::fingerprint::Command::Select || fp.id == 0 {
            return false;
        }
        let scope = transaction.map_or(Scope::Window, Scope::Transaction);
        let run = self.runs.entry((conn, fp.id)).or_insert(Run {
            scope,
            started: now,
            count: 0,
            disqualified: false,
            reported: false,
        });
        let expired = match scope {
            Scope::Window => now.duration_since(run.started) > self.window,
            Scope::Transaction(_) => false,
        };
        if run.scope != scope || expired {
            *run = Run {
                scope,
                started: now,
                count: 0,
                disqualified: false,
                reported: false,
            };
        }
        run.count += 1;
        run.disqualified |= rows > 1;
        if run.disqualified || run.count < self.threshold {
            return false;
        }
        let new_run = !run.reported;
        run.reported = true;
        let count = run.count;
        let f = self.findings.entry(fp.id).or_insert_with(|| Finding {
            fingerprint: format!("{:016x}", fp.id),
            query: fp.normalized.to_string(),
            occurrences: 0,
            max_count: 0,
            last_count: 0,
            last_seen_ms: now_ms,
            suggestion: suggest(&fp.normalized),
        });
        f.occurrences += u64::from(new_run);
        f.max_count = f.max_count.max(count);
        f.last_count = count;
        f.last_seen_ms = now_ms;
        new_run
    }

    /// Forgets a closed connection's runs.
    pub fn connection_closed(&mut self, conn: u64) {
        self.runs.retain(|(c, _), _| *c != conn);
    }

    /// Findings, most repeated first.
    pub fn findings(&self) -> Vec<Finding> {
        let mut v: Vec<Finding> = self.findings.values().cloned().collect();
        v.sort_by(|a, b| b.max_count.cmp(&a.max_count).then(a.query.cmp(&b.query)));
        v
    }

    /// Number of distinct N+1 fingerprints found.
    pub fn len(&self) -> usize {
        self.findings.len()
    }

    /// Whether none were found.
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty()
    }
}

/// A rewrite for `… WHERE col = $n`: fetch every key at once with `= ANY`, or join.
fn suggest(normalized: &str) -> String {
    let lower = normalized.to_ascii_lowercase();
    let col = lower.find(" = $").and_then(|i| {
        let before = &normalized[..i];
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '"'))
            .map_or(0, |s| s + 1);
        let c = &before[start..];
        (!c.is_empty()).then(|| c.to_string())
    });
    match col {
        Some(c) => format!(
            "Load all rows at once: WHERE {c} = ANY($1) with an array of the keys, \
             or JOIN this table in the query that produced the keys."
        ),
        None => "Load all rows in one query (= ANY($1) with an array of keys) or JOIN \
                 this table in the query that produced them."
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::Fingerprinter;

    #[test]
    fn repeated_single_row_reads_in_a_transaction_are_found_once_per_run() {
        let mut f = Fingerprinter::new(10);
        let fp = f.fingerprint("SELECT * FROM items WHERE order_id = 5");
        let mut d = Detector::new(10, Duration::from_secs(1));
        let t = Instant::now();
        let mut new = 0;
        for _ in 0..25 {
            new += u32::from(d.observe(1, Some(1), &fp, 1, t, 0));
        }
        assert_eq!(new, 1);
        let found = d.findings();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].occurrences, found[0].max_count), (1, 25));
        assert!(
            found[0].suggestion.contains("order_id = ANY($1)"),
            "{}",
            found[0].suggestion
        );
        // The next transaction is a new run.
        for _ in 0..10 {
            d.observe(1, Some(2), &fp, 0, t, 0);
        }
        assert_eq!(d.findings()[0].occurrences, 2);
    }

    #[test]
    fn multi_row_results_slow_repeats_and_other_connections_are_not_n_plus_one() {
        let mut f = Fingerprinter::new(10);
        let fp = f.fingerprint("SELECT * FROM items WHERE order_id = 5");
        let mut d = Detector::new(10, Duration::from_millis(100));
        let t = Instant::now();
        for i in 0..20 {
            d.observe(1, None, &fp, if i == 3 { 2 } else { 1 }, t, 0);
        }
        // Spread over time: each window holds fewer than 10.
        for i in 0..20u64 {
            d.observe(2, None, &fp, 1, t + Duration::from_millis(60 * i), 0);
        }
        // Split across connections.
        for c in 10..30 {
            d.observe(c, None, &fp, 1, t, 0);
        }
        assert!(d.is_empty(), "{:?}", d.findings());
        // BEGIN/COMMIT repeated are not the pattern.
        let begin = f.fingerprint("BEGIN");
        for _ in 0..20 {
            d.observe(3, None, &begin, 0, t, 0);
        }
        assert!(d.is_empty());
    }
}
