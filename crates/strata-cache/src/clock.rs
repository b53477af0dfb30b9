//! Time sources: a monotonic millisecond clock for L1 expiry, a cheap "recent" copy
//! of it for the hit path, and wall-clock time for envelope timestamps.
//!
//! Why a recent copy: the OS clock (`Instant::now`, even `CLOCK_MONOTONIC_COARSE`)
//! reads the kernel's vvar page, and in a cache-hostile workload (a large cache, random
//! keys) that page's TLB entry and cache line are gone on nearly every read: measured
//! here at ~400 ns per read against ~6 ns in a tight loop, which made an L1 hit 1.5x
//! slower than the lookup itself. A ticker thread copies the clock into an atomic
//! every millisecond; the hit path reads that (one load of a hot line) and reads the
//! real clock only for entries close to their deadline, so an entry is never served
//! past its deadline unless the ticker has been starved for over [`GUARD_MS`].
//!
//! The ticker ticks every millisecond only while writes use its copies. After a second
//! without such a write it ticks every [`IDLE_TICK_MS`] (still well inside the guard,
//! so reads stay exact) and writes read the real clock until it is back to full speed:
//! a process whose cache sits idle, such as a `strata serve` that only proxies
//! PostgreSQL, is not woken a thousand times a second for nothing.
//! See docs/decisions.md.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Entries further than this from their deadline (by the recent clock) are fresh
/// without reading the real clock.
pub(crate) const GUARD_MS: u64 = 1000;

/// Last value of [`mono_ms`] stored by the ticker; 0 until it runs (which makes every
/// check take the precise path: safe if the ticker cannot be started).
static RECENT: AtomicU64 = AtomicU64::new(0);
/// Last value of [`unix_ms`] stored by the ticker; 0 until it runs.
static RECENT_UNIX: AtomicU64 = AtomicU64::new(0);
/// Set while the ticker ticks every millisecond: only then are the recent copies
/// fresh enough for writes.
static FAST: AtomicBool = AtomicBool::new(false);
/// Set by a write that wanted the recent copies since the ticker last looked.
static WANTED: AtomicBool = AtomicBool::new(false);

/// The ticker's period while no write uses it. Below [`GUARD_MS`], so reads stay exact.
pub(crate) const IDLE_TICK_MS: u64 = 100;
// Reads stay exact while the ticker is slow only if its copy lags by less than the guard.
const _: () = assert!(IDLE_TICK_MS < GUARD_MS);
/// Ticks without a write after which the ticker slows down.
const IDLE_AFTER_TICKS: u32 = 1000;

fn anchor() -> Instant {
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    *ANCHOR.get_or_init(|| Instant::now() - Duration::from_secs(1))
}

/// Milliseconds on a monotonic clock private to this process (starts at 1000, so
/// that 0 can mean "unknown"). Never goes backwards, ignores wall-clock changes.
#[inline]
pub(crate) fn mono_ms() -> u64 {
    anchor().elapsed().as_millis() as u64
}

/// Starts the ticker thread once per process. A sleeping thread that wakes every
/// millisecond (every [`IDLE_TICK_MS`] while no write needs it) to store the clocks.
pub(crate) fn start_ticker() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        tick();
        FAST.store(true, Ordering::Release);
        let spawned = std::thread::Builder::new()
            .name("strata-clock".into())
            .spawn(run_ticker);
        if let Err(e) = spawned {
            FAST.store(false, Ordering::Release);
            RECENT.store(0, Ordering::Relaxed);
            RECENT_UNIX.store(0, Ordering::Relaxed);
            tracing::warn!(error = %e, "clock ticker not started; L1 reads will use the OS clock");
        }
    });
}

fn tick() {
    RECENT.store(mono_ms(), Ordering::Relaxed);
    RECENT_UNIX.store(unix_ms(), Ordering::Relaxed);
}

fn run_ticker() {
    let mut pace = Pace::default();
    loop {
        std::thread::sleep(Duration::from_millis(pace.period_ms()));
        tick();
        let was_fast = pace.fast;
        pace.after_tick(WANTED.swap(false, Ordering::Relaxed));
        if pace.fast != was_fast {
            // After the tick: a write that sees FAST sees a fresh copy.
            FAST.store(pace.fast, Ordering::Release);
        }
    }
}

/// The ticker's speed: every millisecond while writes want the copies, every
/// [`IDLE_TICK_MS`] after [`IDLE_AFTER_TICKS`] ticks without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pace {
    fast: bool,
    idle_ticks: u32,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            fast: true,
            idle_ticks: 0,
        }
    }
}

impl Pace {
    fn period_ms(&self) -> u64 {
        if self.fast {
            1
        } else {
            IDLE_TICK_MS
        }
    }

    fn after_tick(&mut self, wanted: bool) {
        if wanted {
            *self = Pace::default();
        } else if self.fast {
            self.idle_ticks += 1;
            self.fast = self.idle_ticks < IDLE_AFTER_TICKS;
        }
    }
}

/// Tells the ticker a write wants its copies; true if they are fresh now.
#[inline]
fn want_recent() -> bool {
    // Load first: a store on every write would bounce the line between cores.
    if !WANTED.load(Ordering::Relaxed) {
        WANTED.store(true, Ordering::Relaxed);
    }
    FAST.load(Ordering::Acquire)
}

/// Whether a monotonic deadline has passed, reading the real clock only near it.
#[inline]
pub(crate) fn is_past(deadline_ms: u64) -> bool {
    if deadline_ms == u64::MAX {
        return false;
    }
    let recent = RECENT.load(Ordering::Relaxed);
    if recent != 0 && deadline_ms > recent.saturating_add(GUARD_MS) {
        return false;
    }
    deadline_ms <= mono_ms()
}

/// `(unix_ms, mono_ms)` as of the last tick (at most a few ms behind), or read from
/// the OS when the ticker is idle or not running. Behind means deadlines computed from
/// them come early and creation stamps look older: use them only where that is
/// harmless (entries no other tier bounds).
#[inline]
pub(crate) fn recent_clocks() -> (u64, u64) {
    // FAST before the copies: the ticker refreshes them before it sets FAST.
    if want_recent() {
        (
            RECENT_UNIX.load(Ordering::Relaxed),
            RECENT.load(Ordering::Relaxed),
        )
    } else {
        (unix_ms(), mono_ms())
    }
}

/// How far a deadline computed from [`mono_ms`] may fall after the true instant:
/// 1 ms of truncation each time a value is read.
pub(crate) fn slack_ms() -> u64 {
    2
}

/// The monotonic deadline `ttl` after `base` (`u64::MAX` for "never"). With
/// `bounded`, the deadline stands for an L2 expiry and is pulled in by the clock's
/// slack, so that it cannot fall after the real one.
#[inline]
pub(crate) fn deadline_after(base: u64, ttl: Option<Duration>, bounded: bool) -> u64 {
    match ttl {
        Some(t) => {
            let d = base.saturating_add(t.as_millis().min(u64::MAX as u128) as u64);
            if bounded {
                d.saturating_sub(slack_ms())
            } else {
                d
            }
        }
        None => u64::MAX,
    }
}

/// The monotonic deadline `ttl` from now, for entries no other tier bounds.
#[inline]
pub(crate) fn deadline(ttl: Option<Duration>) -> u64 {
    deadline_after(mono_ms(), ttl, false)
}

/// Unix time in milliseconds (envelope `created`).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_pass_exactly_with_or_without_the_ticker() {
        // Before the ticker runs (RECENT may be 0 in this test binary) and after.
        for _ in 0..2 {
            let now = mono_ms();
            assert!(is_past(now));
            assert!(!is_past(now + 50));
            assert!(!is_past(u64::MAX));
            // Near the deadline the real clock decides, whatever the recent copy says.
            let d = mono_ms() + 30;
            assert!(!is_past(d));
            std::thread::sleep(Duration::from_millis(40));
            assert!(is_past(d));
            start_ticker();
        }
        assert!(RECENT.load(Ordering::Relaxed) >= 1000);
    }

    #[test]
    fn the_ticker_slows_down_without_writes_and_speeds_up_on_the_next() {
        let mut p = Pace::default();
        assert_eq!(p.period_ms(), 1);
        for _ in 0..IDLE_AFTER_TICKS - 1 {
            p.after_tick(false);
        }
        assert!(p.fast, "still fast one tick before the limit");
        p.after_tick(true);
        assert_eq!(p, Pace::default(), "a write resets the count");
        for _ in 0..IDLE_AFTER_TICKS {
            p.after_tick(false);
        }
        assert!(!p.fast);
        assert_eq!(p.period_ms(), IDLE_TICK_MS);
        p.after_tick(false);
        assert!(!p.fast, "stays slow while idle");
        p.after_tick(true);
        assert_eq!(p.period_ms(), 1, "the next write brings it back");
    }

    #[test]
    fn bounded_deadlines_are_earlier() {
        let d = Some(Duration::from_secs(1));
        assert_eq!(deadline_after(100, d, false), 1100);
        assert_eq!(deadline_after(100, d, true), 1100 - slack_ms());
        assert_eq!(deadline_after(100, None, true), u64::MAX);
    }
}
