//! Schedulers: a closed loop of users, or an open loop of arrivals.
//!
//! Closed loop: each user sends its next operation when the previous one returns
//! (what most tools do, and what hides stalls: a stalled target slows the senders).
//! Open loop: operations are due at a rate, whatever the target does; each has an
//! intended start, and its latency is measured both from then (corrected) and from
//! when it was actually sent. A fixed set of connections (`max_in_flight`) carries
//! them, as in wrk2; a start more than `max_lateness` behind schedule is dropped and
//! counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::dist::KeyGen;
use crate::driver::{Op, Target};
use crate::recorder::{Gatherer, Point, Shards};
use crate::stages::Stages;
use crate::workload::{Mix, OpKind, ValueSize};

/// How load is applied.
#[derive(Debug, Clone)]
pub enum Load {
    /// Users, each with one operation in flight; the level is the number of users.
    Closed(Stages),
    /// Arrivals per second; the level is the rate.
    Open {
        /// Rate over time.
        rate: Stages,
        /// Connections (workers) carrying the arrivals.
        max_in_flight: usize,
    },
}

/// Everything a run needs besides the target.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Load model and shape; its stages give the duration.
    pub load: Load,
    /// Stop after this many operations (warm-up included), if set.
    pub count: Option<u64>,
    /// Excluded from the totals.
    pub warmup: Duration,
    /// Operation mix.
    pub mix: Mix,
    /// Keys.
    pub keys: KeyGen,
    /// Key names are `{key_prefix}{index}`.
    pub key_prefix: String,
    /// Value sizes of sets.
    pub value_size: ValueSize,
    /// Keys per `mget`.
    pub batch: usize,
    /// Per-operation timeout.
    pub timeout: Duration,
    /// Open loop: starts later than this are dropped.
    pub max_lateness: Duration,
    /// Whether the target needs keys (set by [`run`] from the target).
    pub uses_keys: bool,
    /// Live metrics to keep current while the run goes.
    pub live: Option<crate::live::Live>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// Timeline and totals.
    pub gathered: Gatherer,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Plan {
    fn duration(&self) -> Duration {
        match &self.load {
            Load::Closed(s) => s.total(),
            Load::Open { rate, .. } => rate.total(),
        }
    }

    fn op(&self, rng: &mut SmallRng, values: &Bytes) -> Op {
        let kind = self.mix.pick(rng);
        if !self.uses_keys {
            return Op {
                kind,
                keys: Vec::new(),
                index: 0,
                value: Bytes::new(),
            };
        }
        let index = self.keys.next(rng);
        let keys = match kind {
            OpKind::Mget => (0..self.batch.max(1) as u64)
                .map(|i| format!("{}{}", self.key_prefix, (index + i) % self.keys.len()))
                .collect(),
            _ => vec![format!("{}{index}", self.key_prefix)],
        };
        let value = if kind == OpKind::Set {
            self.keys.wrote(index);
            values.slice(..self.value_size.pick(rng).min(values.len()))
        } else {
            Bytes::new()
        };
        Op {
            kind,
            keys,
            index,
            value,
        }
    }
}

/// Runs a plan against a target. `progress` is called once a second with the
/// second just gathered and the time elapsed.
pub async fn run(
    plan: Plan,
    target: Target,
    mut progress: impl FnMut(&Point, Duration) + Send,
) -> RunOutput {
    let plan = Arc::new(Plan {
        uses_keys: target.uses_keys(),
        ..plan
    });
    let shards = Shards::default();
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    // One buffer of random bytes; values are slices of it.
    let values = {
        let mut rng = SmallRng::seed_from_u64(0x5eed);
        let v: Vec<u8> = (0..plan.value_size.max().max(1))
            .map(|_| rng.random_range(b'a'..=b'z'))
            .collect();
        Bytes::from(v)
    };
    let start = Instant::now();
    let base = Ctx {
        plan: plan.clone(),
        shards: shards.clone(),
        stop: stop.clone(),
        issued: issued.clone(),
        values,
        start,
    };
    let mut tasks = Vec::new();
    match &plan.load {
        Load::Closed(users) => {
            let peak = users.peak().ceil().max(1.0) as usize;
            for w in 0..peak {
                let ctx = base.clone();
                let mut session = target.session(plan.timeout);
                let users = users.clone();
                tasks.push(tokio::spawn(async move {
                    let mut rng = SmallRng::seed_from_u64(w as u64 + 1);
                    while !ctx.stop.load(Ordering::Relaxed) {
                        if (w as f64) >= users.level_at(start.elapsed()).ceil() {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                        if !ctx.take_one() {
                            break;
                        }
                        let op = ctx.plan.op(&mut rng, &ctx.values);
                        let sent = Instant::now();
                        let outcome = session.call(&op).await;
                        let took = sent.elapsed();
                        ctx.shards.record(w, took, took, false, outcome);
                        // An in-process target answers without waiting: give the
                        // runtime its turn (timers, the gatherer) now and then.
                        tokio::task::coop::consume_budget().await;
                    }
                }));
            }
        }
        Load::Open {
            rate,
            max_in_flight,
        } => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Instant>(65_536);
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            for w in 0..(*max_in_flight).max(1) {
                let ctx = base.clone();
                let mut session = target.session(plan.timeout);
                let rx = rx.clone();
                tasks.push(tokio::spawn(async move {
                    let mut rng = SmallRng::seed_from_u64(w as u64 + 1);
                    loop {
                        let Some(intended) = rx.lock().await.recv().await else {
                            break;
                        };
                        let now = Instant::now();
                        // Past the end, or hopelessly behind: never sent, counted.
                        if ctx.stop.load(Ordering::Relaxed)
                            || now.duration_since(intended) > ctx.plan.max_lateness
                        {
                            ctx.shards.dropped(w, 1);
                            continue;
                        }
                        let op = ctx.plan.op(&mut rng, &ctx.values);
                        let late = now.duration_since(intended) > Duration::from_millis(1);
                        let outcome = session.call(&op).await;
                        let end = Instant::now();
                        ctx.shards.record(
                            w,
                            end.duration_since(now),
                            end.duration_since(intended),
                            late,
                            outcome,
                        );
                        tokio::task::coop::consume_budget().await;
                    }
                }));
            }
            let dispatcher = base.clone();
            let rate = rate.clone();
            tasks.push(tokio::spawn(async move {
                dispatch(dispatcher, rate, tx).await;
            }));
        }
    }

    // Gather once a second until the plan's duration (or count) is done; look for
    // the end of a counted run more often than that.
    let mut gathered = Gatherer::new(plan.warmup);
    gathered.live = plan.live.clone();
    let set_level = |at: Duration| {
        if let Some(live) = &plan.live {
            match &plan.load {
                Load::Closed(users) => live.set_level(users.level_at(at).ceil(), 0.0),
                Load::Open { rate, .. } => live.set_level(0.0, rate.level_at(at)),
            }
        }
    };
    set_level(Duration::ZERO);
    let total = plan.duration();
    let mut last = Duration::ZERO;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        let now = start.elapsed();
        let counted_out = plan
            .count
            .is_some_and(|c| issued.load(Ordering::Relaxed) >= c);
        if now >= total || (counted_out && tasks.iter().all(|t| t.is_finished())) {
            break;
        }
        if now - last >= Duration::from_secs(1) {
            let p = gathered.gather(&shards, now, now - last);
            last = now;
            set_level(now);
            progress(p, now);
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Let operations in flight finish (each is bounded by the timeout).
    for t in tasks {
        let _ = tokio::time::timeout(plan.timeout + Duration::from_secs(1), t).await;
    }
    let now = start.elapsed();
    if now > last {
        let p = gathered.gather(&shards, now, now - last);
        progress(p, now);
    }
    if let Some(live) = &plan.live {
        live.finish();
    }
    RunOutput {
        gathered,
        elapsed: start.elapsed(),
    }
}

/// What every worker (and the dispatcher) shares.
#[derive(Clone)]
struct Ctx {
    plan: Arc<Plan>,
    shards: Shards,
    stop: Arc<AtomicBool>,
    issued: Arc<AtomicU64>,
    values: Bytes,
    start: Instant,
}

impl Ctx {
    /// Claims one operation of the count budget; false when it is spent.
    fn take_one(&self) -> bool {
        match self.plan.count {
            None => true,
            Some(c) => self.issued.fetch_add(1, Ordering::Relaxed) < c,
        }
    }
}

/// Emits intended start times at the stages' rate. Due starts are sent even when
/// the dispatcher woke late, so the schedule never drifts with the target.
async fn dispatch(ctx: Ctx, rate: Stages, tx: tokio::sync::mpsc::Sender<Instant>) {
    let start = ctx.start;
    let total = rate.total();
    let mut next = start;
    loop {
        if ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        let at = next.duration_since(start);
        if at >= total {
            break;
        }
        let r = rate.level_at(at);
        if r <= 0.0 {
            // Nothing due: look again shortly.
            next += Duration::from_millis(10);
            tokio::time::sleep_until(next).await;
            continue;
        }
        if next > Instant::now() {
            tokio::time::sleep_until(next).await;
        }
        if !ctx.take_one() {
            break;
        }
        if tx.try_send(next).is_err() {
            // Every connection is busy and the queue is full: that start is lost.
            ctx.shards.dropped(0, 1);
        }
        next += Duration::from_secs_f64(1.0 / r);
    }
}
