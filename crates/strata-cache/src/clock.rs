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
//! See docs/decisions.md.

use std::sync::atomic::{AtomicU64, Ordering};
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
/// millisecond to store one integer.
pub(crate) fn start_ticker() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let tick = || {
            RECENT.store(mono_ms(), Ordering::Relaxed);
            RECENT_UNIX.store(unix_ms(), Ordering::Relaxed);
        };
        tick();
        let spawned = std::thread::Builder::new()
            .name("strata-clock".into())
            .spawn(move || loop {
                tick();
                std::thread::sleep(Duration::from_millis(1));
            });
        if let Err(e) = spawned {
            RECENT.store(0, Ordering::Relaxed);
            RECENT_UNIX.store(0, Ordering::Relaxed);
            tracing::warn!(error = %e, "clock ticker not started; L1 reads will use the OS clock");
        }
    });
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

/// [`mono_ms`] as of the last tick (at most a few ms behind, or the real clock when
/// the ticker is not running). Behind means deadlines computed from it come early:
/// use it only where early is harmless (entries no other tier bounds).
#[inline]
pub(crate) fn recent_mono_ms() -> u64 {
    match RECENT.load(Ordering::Relaxed) {
        0 => mono_ms(),
        v => v,
    }
}

/// [`unix_ms`] as of the last tick (creation stamps of memory-only entries).
#[inline]
pub(crate) fn recent_unix_ms() -> u64 {
    match RECENT_UNIX.load(Ordering::Relaxed) {
        0 => unix_ms(),
        v => v,
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
    fn bounded_deadlines_are_earlier() {
        let d = Some(Duration::from_secs(1));
        assert_eq!(deadline_after(100, d, false), 1100);
        assert_eq!(deadline_after(100, d, true), 1100 - slack_ms());
        assert_eq!(deadline_after(100, None, true), u64::MAX);
    }
}
