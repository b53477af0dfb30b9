//! Counters that are cheap on the hot path: each thread adds to its own cache-line
//! padded shard; a snapshot sums the shards.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

const SHARDS: usize = 16;

/// Counter slots of one tier.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub(crate) enum TierStat {
    Hits,
    Misses,
    Sets,
    Deletes,
    Expirations,
    Invalidations,
    Errors,
    Corrupt,
}
const TIER_FIELDS: usize = 8;

/// Counter slots of a namespace, outside tiers.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub(crate) enum LoadStat {
    Loads,
    LoadErrors,
    LoadNanos,
    Coalesced,
}
const LOAD_FIELDS: usize = 4;

#[repr(align(128))]
struct Shard<const F: usize>([AtomicU64; F]);

/// `F` counters, sharded across threads.
pub(crate) struct Counters<const F: usize> {
    shards: Box<[Shard<F>]>,
}

impl<const F: usize> Default for Counters<F> {
    fn default() -> Self {
        Counters {
            shards: (0..SHARDS)
                .map(|_| Shard(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }
}

impl<const F: usize> std::fmt::Debug for Counters<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counters")
    }
}

fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static IDX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    IDX.with(|i| {
        let v = i.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT.fetch_add(1, Relaxed) % SHARDS;
        i.set(v);
        v
    })
}

impl<const F: usize> Counters<F> {
    #[inline]
    pub(crate) fn add(&self, field: usize, n: u64) {
        self.shards[shard_index()].0[field].fetch_add(n, Relaxed);
    }

    pub(crate) fn sum(&self, field: usize) -> u64 {
        self.shards.iter().map(|s| s.0[field].load(Relaxed)).sum()
    }
}

/// Live counters of one namespace.
#[derive(Debug, Default)]
pub(crate) struct NamespaceCounters {
    pub(crate) l1: Counters<TIER_FIELDS>,
    pub(crate) l2: Counters<TIER_FIELDS>,
    pub(crate) load: Counters<LOAD_FIELDS>,
}

impl NamespaceCounters {
    #[inline]
    pub(crate) fn l1(&self, s: TierStat) {
        self.l1.add(s as usize, 1);
    }
    #[inline]
    pub(crate) fn l2(&self, s: TierStat) {
        self.l2.add(s as usize, 1);
    }
    #[inline]
    pub(crate) fn l2_n(&self, s: TierStat, n: u64) {
        self.l2.add(s as usize, n);
    }
    #[inline]
    pub(crate) fn load(&self, s: LoadStat, n: u64) {
        self.load.add(s as usize, n);
    }
}

/// Counters of one tier of one namespace, as of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TierStats {
    /// Reads answered by this tier.
    pub hits: u64,
    /// Reads this tier could not answer.
    pub misses: u64,
    /// Entries written.
    pub sets: u64,
    /// Entries deleted by explicit calls.
    pub deletes: u64,
    /// Entries found expired on read (L1).
    pub expirations: u64,
    /// Entries dropped by invalidation (own or another instance's).
    pub invalidations: u64,
    /// Failed operations (L2: errors and timeouts).
    pub errors: u64,
    /// Entries that failed to decode and were deleted.
    pub corrupt: u64,
    /// Entries evicted for space (L1 only).
    pub evictions: u64,
}

impl TierStats {
    pub(crate) fn from_counters(c: &Counters<TIER_FIELDS>, evictions: u64) -> Self {
        TierStats {
            hits: c.sum(TierStat::Hits as usize),
            misses: c.sum(TierStat::Misses as usize),
            sets: c.sum(TierStat::Sets as usize),
            deletes: c.sum(TierStat::Deletes as usize),
            expirations: c.sum(TierStat::Expirations as usize),
            invalidations: c.sum(TierStat::Invalidations as usize),
            errors: c.sum(TierStat::Errors as usize),
            corrupt: c.sum(TierStat::Corrupt as usize),
            evictions,
        }
    }

    /// hits / (hits + misses), or 0 with no reads.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// Counters of one namespace, as of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct NamespaceStats {
    /// Namespace name.
    pub namespace: String,
    /// Memory tier.
    pub l1: TierStats,
    /// Redis tier.
    pub l2: TierStats,
    /// Loader runs (one per single-flight group).
    pub loads: u64,
    /// Loader runs that failed or timed out.
    pub load_errors: u64,
    /// Total time spent in loaders, seconds.
    pub load_seconds: f64,
    /// Callers that waited on another caller's loader instead of running their own.
    pub coalesced: u64,
    /// Bytes held in L1 by this namespace (keys, values and bookkeeping).
    pub l1_bytes: u64,
    /// Entries held in L1 by this namespace.
    pub l1_entries: u64,
}

impl NamespaceStats {
    pub(crate) fn from_counters(name: &str, c: &NamespaceCounters, evictions: u64) -> Self {
        NamespaceStats {
            namespace: name.to_owned(),
            l1: TierStats::from_counters(&c.l1, evictions),
            l2: TierStats::from_counters(&c.l2, 0),
            loads: c.load.sum(LoadStat::Loads as usize),
            load_errors: c.load.sum(LoadStat::LoadErrors as usize),
            load_seconds: c.load.sum(LoadStat::LoadNanos as usize) as f64 / 1e9,
            coalesced: c.load.sum(LoadStat::Coalesced as usize),
            l1_bytes: 0,
            l1_entries: 0,
        }
    }
}

/// Whole-cache snapshot.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CacheStats {
    /// One entry per namespace, in creation order.
    pub namespaces: Vec<NamespaceStats>,
    /// Whether Redis is configured and reachable (circuit closed).
    pub l2_up: Option<bool>,
    /// Bytes held in L1 across namespaces.
    pub l1_bytes: u64,
    /// Bytes L1 entries may weigh in all: the configured maximum less what the
    /// eviction policy's memory of recently evicted keys takes.
    pub l1_capacity_bytes: u64,
    /// Invalidation messages received from other instances.
    pub invalidation_messages_received: u64,
    /// Invalidation messages published.
    pub invalidation_messages_published: u64,
}

impl CacheStats {
    /// The stats of one namespace.
    pub fn namespace(&self, name: &str) -> Option<&NamespaceStats> {
        self.namespaces.iter().find(|n| n.namespace == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_across_threads() {
        let c = std::sync::Arc::new(NamespaceCounters::default());
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.l1(TierStat::Hits)))
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(c.l1.sum(TierStat::Hits as usize), 8000);
        assert_eq!(c.l1.sum(TierStat::Misses as usize), 0);
    }
}
