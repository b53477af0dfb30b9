//! Time sources: a monotonic millisecond clock for expiry, and wall-clock time for
//! envelope timestamps.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn anchor() -> Instant {
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    *ANCHOR.get_or_init(Instant::now)
}

/// Milliseconds on a monotonic clock private to this process. Never goes backwards,
/// unaffected by wall-clock changes; used for L1 expiry.
#[inline]
pub(crate) fn mono_ms() -> u64 {
    anchor().elapsed().as_millis() as u64
}

/// The monotonic deadline `ttl` from now (`u64::MAX` for "never").
#[inline]
pub(crate) fn deadline(ttl: Option<Duration>) -> u64 {
    match ttl {
        Some(t) => mono_ms().saturating_add(t.as_millis().min(u64::MAX as u128) as u64),
        None => u64::MAX,
    }
}

/// Unix time in milliseconds (envelope `created`).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
