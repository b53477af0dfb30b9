//! Where finished queries go: sessions hand [`QueryEvent`]s to one background thread
//! through a bounded queue (never blocking a session; a full queue drops and counts),
//! and that thread fingerprints them, keeps statistics, the slow log and N+1
//! findings. Readers take a snapshot under a short lock.

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::fingerprint::Fingerprinter;
use crate::metrics::{CommandHandles, PgMetrics};
use crate::nplusone::{Detector, Finding};
use crate::stats::{unix_ms, QuerySummary, SlowQuery, Stats, TableStats};
use crate::tracker::QueryEvent;

/// Insight settings (the `[postgres]` keys of the same names).
#[derive(Debug, Clone)]
pub struct InsightConfig {
    /// Fingerprints kept; the rest are folded into "other" (default 5,000).
    pub top_n: usize,
    /// Queries at least this slow go to the slow log (default 50 ms).
    pub slow_threshold: Duration,
    /// Slow queries kept for the API (default 1,000).
    pub slow_log_size: usize,
    /// Whether the slow log shows SQL as sent, constants included (default off).
    pub log_parameters: bool,
    /// Repeats that make an N+1 finding (default 10).
    pub n_plus_one_threshold: u64,
    /// Outside a transaction, repeats count within this window (default 1 s).
    pub n_plus_one_window: Duration,
    /// Distinct texts whose parse is cached (default 10,000).
    pub fingerprint_cache: usize,
    /// Events queued for the insight thread before new ones are dropped.
    pub queue: usize,
}

impl Default for InsightConfig {
    fn default() -> Self {
        InsightConfig {
            top_n: 5000,
            slow_threshold: Duration::from_millis(50),
            slow_log_size: 1000,
            log_parameters: false,
            n_plus_one_threshold: 10,
            n_plus_one_window: Duration::from_secs(1),
            fingerprint_cache: 10_000,
            queue: 65_536,
        }
    }
}

/// Who ran a session's queries.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    /// Database name.
    pub database: String,
    /// User name.
    pub user: String,
    /// Client address.
    pub client: String,
}

enum Event {
    Query(QueryEvent, Arc<SessionInfo>),
    Closed(u64),
    Flush(tokio::sync::oneshot::Sender<()>),
}

struct State {
    fingerprints: Fingerprinter,
    stats: Stats,
    detector: Detector,
    baseline: Option<HashMap<String, QuerySummary>>,
    metrics: PgMetrics,
    /// Per statement kind, indexed by `Command as usize`.
    handles: Vec<Option<CommandHandles>>,
}

/// The insight engine; cheap to clone (sessions hold a clone).
#[derive(Clone)]
pub struct Insight {
    tx: SyncSender<Event>,
    state: Arc<Mutex<State>>,
    metrics: PgMetrics,
    /// The insight thread, unparked by a flush so that it need not wait out a nap.
    thread: std::thread::Thread,
}

impl Insight {
    /// Starts the insight thread; it counts into `metrics`.
    pub fn start(cfg: InsightConfig, metrics: PgMetrics) -> Self {
        let (tx, rx) = sync_channel(cfg.queue.max(16));
        let state = Arc::new(Mutex::new(State {
            fingerprints: Fingerprinter::new(cfg.fingerprint_cache),
            stats: Stats::new(cfg.top_n, cfg.slow_log_size),
            detector: Detector::new(cfg.n_plus_one_threshold, cfg.n_plus_one_window),
            baseline: None,
            metrics: metrics.clone(),
            handles: Vec::new(),
        }));
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("strata-pg-insight".into())
            .spawn(move || run(rx, st, cfg))
            .expect("spawn the insight thread")
            .thread()
            .clone();
        Insight {
            tx,
            state,
            metrics,
            thread,
        }
    }

    /// Hands over a finished query; never blocks.
    pub fn record(&self, ev: QueryEvent, session: &Arc<SessionInfo>) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Event::Query(ev, session.clone())) {
            self.metrics.dropped.inc();
        }
    }

    /// A session ended.
    pub fn closed(&self, conn: u64) {
        let _ = self.tx.try_send(Event::Closed(conn));
    }

    /// Resolves once every event handed over before the call has been processed.
    pub async fn flushed(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sender = self.tx.clone();
        // The queue may be full: wait for room off the runtime.
        let sent = tokio::task::spawn_blocking(move || sender.send(Event::Flush(tx)).is_ok())
            .await
            .unwrap_or(false);
        if sent {
            self.thread.unpark();
            let _ = rx.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Per-fingerprint summaries, sorted by `sort`, at most `limit`; each with its
    /// change against the baseline when one was taken.
    pub fn queries(&self, sort: SortBy, limit: usize) -> Vec<QueryReport> {
        let st = self.lock();
        let mut v: Vec<QueryReport> = st
            .stats
            .summaries()
            .into_iter()
            .map(|q| {
                let baseline = st
                    .baseline
                    .as_ref()
                    .map(|b| Change::between(b.get(&q.fingerprint), &q));
                QueryReport { query: q, baseline }
            })
            .collect();
        drop(st);
        let key = |r: &QueryReport| match sort {
            SortBy::TotalTime => r.query.total_ms,
            SortBy::Mean => r.query.mean_ms,
            SortBy::Calls => r.query.calls as f64,
            SortBy::P99 => r.query.p99_ms,
        };
        v.sort_by(|a, b| key(b).total_cmp(&key(a)));
        v.truncate(limit);
        v
    }

    /// Takes the current statistics as the baseline later reports compare with.
    pub fn take_baseline(&self) -> usize {
        let mut st = self.lock();
        let b: HashMap<String, QuerySummary> = st
            .stats
            .summaries()
            .into_iter()
            .map(|q| (q.fingerprint.clone(), q))
            .collect();
        let n = b.len();
        st.baseline = Some(b);
        n
    }

    /// The slow log, newest first.
    pub fn slow(&self) -> Vec<SlowQuery> {
        let mut v = self.lock().stats.slow();
        v.reverse();
        v
    }

    /// N+1 findings, most repeated first.
    pub fn n_plus_one(&self) -> Vec<Finding> {
        self.lock().detector.findings()
    }

    /// Reads and writes per table, most used first.
    pub fn tables(&self) -> Vec<(String, TableStats)> {
        let mut v: Vec<(String, TableStats)> = self
            .lock()
            .stats
            .tables()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| {
            (b.1.reads + b.1.writes)
                .cmp(&(a.1.reads + a.1.writes))
                .then(a.0.cmp(&b.0))
        });
        v
    }
}

/// Sort order of [`Insight::queries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// Total time (the default: what costs the database most).
    TotalTime,
    /// Mean time.
    Mean,
    /// Executions.
    Calls,
    /// 99th percentile.
    P99,
}

impl std::str::FromStr for SortBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "total_time" => Ok(SortBy::TotalTime),
            "mean" => Ok(SortBy::Mean),
            "calls" => Ok(SortBy::Calls),
            "p99" => Ok(SortBy::P99),
            _ => Err(format!(
                "unknown sort `{s}`: use total_time, mean, calls or p99"
            )),
        }
    }
}

/// A fingerprint's statistics and, when a baseline exists, the change since.
#[derive(Debug, Clone, Serialize)]
pub struct QueryReport {
    /// Current statistics.
    #[serde(flatten)]
    pub query: QuerySummary,
    /// Change against the baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Change>,
}

/// What changed since the baseline.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    /// Whether the fingerprint is new since the baseline.
    pub new: bool,
    /// Executions since the baseline.
    pub calls: u64,
    /// Mean time of the executions since the baseline, ms.
    pub mean_ms: f64,
    /// Mean at the baseline, ms.
    pub baseline_mean_ms: f64,
    /// `mean_ms / baseline_mean_ms` (absent when new or no calls since).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_ratio: Option<f64>,
}

impl Change {
    fn between(before: Option<&QuerySummary>, now: &QuerySummary) -> Change {
        let (bc, bt, bm) = before.map_or((0, 0.0, 0.0), |b| (b.calls, b.total_ms, b.mean_ms));
        let calls = now.calls.saturating_sub(bc);
        let mean = if calls == 0 {
            0.0
        } else {
            (now.total_ms - bt).max(0.0) / calls as f64
        };
        Change {
            new: before.is_none(),
            calls,
            mean_ms: mean,
            baseline_mean_ms: bm,
            mean_ratio: (before.is_some() && calls > 0 && bm > 0.0).then(|| mean / bm),
        }
    }
}

/// How long the insight thread sleeps between looks at its queue while queries flow.
/// Events wait at most this long (the queue holds `InsightConfig::queue` of them
/// meanwhile) and carry their own time, so the wait changes no statistic.
const BUSY_NAP: Duration = Duration::from_millis(10);

/// How long it sleeps once a second has passed without events.
const IDLE_NAP: Duration = Duration::from_millis(100);

/// Empty looks at the queue after which the thread counts as idle (one second).
const IDLE_AFTER: u32 = (1000 / BUSY_NAP.as_millis()) as u32;

/// Drains the queue every [`BUSY_NAP`] instead of blocking on it: a blocked receiver
/// makes every send a futex wake-up (a syscall and a context switch per query, which
/// perf showed as the proxy's largest cost under pgbench), while a polling one costs
/// the senders nothing. After a second without events it naps [`IDLE_NAP`], so that
/// an idle proxy stays asleep; a flush unparks it at once.
fn run(rx: Receiver<Event>, state: Arc<Mutex<State>>, cfg: InsightConfig) {
    let mut idle_rounds = 0u32;
    loop {
        let mut got = 0usize;
        loop {
            let ev = match rx.try_recv() {
                Ok(ev) => ev,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            };
            // Under one lock per batch, bounded so readers get a turn; the batch
            // shares one reading of the clocks, from which each event's own time
            // is derived.
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            let now = (Instant::now(), unix_ms(SystemTime::now()));
            st.apply(ev, &cfg, now);
            got += 1;
            for _ in 0..1023 {
                match rx.try_recv() {
                    Ok(ev) => {
                        st.apply(ev, &cfg, now);
                        got += 1;
                    }
                    Err(_) => break,
                }
            }
        }
        idle_rounds = if got == 0 {
            idle_rounds.saturating_add(1)
        } else {
            0
        };
        let nap = if idle_rounds > IDLE_AFTER {
            IDLE_NAP
        } else {
            BUSY_NAP
        };
        std::thread::park_timeout(nap);
    }
}

impl State {
    fn apply(&mut self, ev: Event, cfg: &InsightConfig, (now, now_ms): (Instant, u64)) {
        match ev {
            Event::Flush(done) => {
                let _ = done.send(());
            }
            Event::Closed(conn) => self.detector.connection_closed(conn),
            Event::Query(q, session) => {
                // The query's own time: the thread gets to events up to a nap late.
                let late = now.saturating_duration_since(q.finished);
                let (now, now_ms) = (q.finished, now_ms.saturating_sub(late.as_millis() as u64));
                let fp = self.fingerprints.fingerprint(&q.sql);
                let failed = q.error.is_some();
                self.stats.record(&fp, q.duration, q.rows, failed, now_ms);
                let i = fp.command as usize;
                if self.handles.len() <= i {
                    self.handles.resize(i + 1, None);
                }
                let h = self.handles[i]
                    .get_or_insert_with(|| self.metrics.for_command(fp.command.as_str()));
                h.queries.inc();
                h.duration.observe(q.duration.as_secs_f64());
                if failed {
                    h.errors.inc();
                }
                if !failed
                    && self
                        .detector
                        .observe(q.conn, q.transaction, &fp, q.rows, now, now_ms)
                {
                    self.metrics.n_plus_one.set(self.detector.len() as i64);
                    tracing::warn!(
                        target: "strata::pg::n_plus_one",
                        fingerprint = %format!("{:016x}", fp.id),
                        query = %fp.normalized,
                        database = %session.database,
                        "N+1: the same single-row query repeated {} times",
                        cfg.n_plus_one_threshold
                    );
                }
                if q.duration >= cfg.slow_threshold {
                    self.metrics.slow.inc();
                    let slow = SlowQuery {
                        at_ms: now_ms,
                        duration_ms: q.duration.as_secs_f64() * 1e3,
                        rows: q.rows,
                        fingerprint: format!("{:016x}", fp.id),
                        query: fp.normalized.to_string(),
                        raw_query: cfg.log_parameters.then(|| q.sql.to_string()),
                        parameters: q.params.as_ref().map(|p| p.to_vec()),
                        error: q.error.clone(),
                        database: session.database.clone(),
                        user: session.user.clone(),
                        client: session.client.clone(),
                    };
                    // The normalised text only, unless parameters were asked for.
                    tracing::warn!(
                        target: "strata::pg::slow",
                        duration_ms = slow.duration_ms,
                        rows = slow.rows,
                        fingerprint = %slow.fingerprint,
                        database = %slow.database,
                        user = %slow.user,
                        client = %slow.client,
                        query = %slow.raw_query.as_deref().unwrap_or(&slow.query),
                        "slow query"
                    );
                    self.stats.push_slow(slow);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query is dated by when it finished, not by when the (napping) insight
    /// thread got to it.
    #[tokio::test]
    async fn events_keep_their_own_time() {
        let insight = Insight::start(InsightConfig::default(), PgMetrics::new());
        let finished = Instant::now() - Duration::from_secs(5);
        let session = Arc::new(SessionInfo {
            database: "db".into(),
            user: "u".into(),
            client: "127.0.0.1".into(),
        });
        let ev = QueryEvent {
            conn: 1,
            sql: "SELECT pg_sleep(1)".into(),
            truncated: false,
            duration: Duration::from_secs(1),
            finished,
            rows: 1,
            error: None,
            transaction: None,
            params: None,
        };
        insight.record(ev, &session);
        insight.flushed().await;
        let now_ms = unix_ms(SystemTime::now());
        let slow = insight.slow();
        assert_eq!(slow.len(), 1, "{slow:?}");
        let age = now_ms - slow[0].at_ms;
        assert!((4_900..6_000).contains(&age), "dated {age} ms ago");
        let q = &insight.queries(SortBy::Calls, 1)[0].query;
        assert_eq!(q.last_seen_ms, slow[0].at_ms);
    }
}
