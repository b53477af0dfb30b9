//! The memory tier (L1): a byte-bounded S3-FIFO cache (quick_cache) with per-entry
//! expiry and per-namespace epochs.
//!
//! Why quick_cache and not moka: on this machine's reference workload (2 threads,
//! zipf 0.99 over 1M keys, 100k capacity) raw quick_cache did ~9× moka's throughput
//! at the same hit ratio; see docs/decisions.md. quick_cache has no TTL of its own,
//! so each entry carries its deadline and a read of an expired entry removes it.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use compact_str::CompactString;
use quick_cache::sync::Cache as QCache;
use quick_cache::{DefaultHashBuilder, Equivalent, Lifecycle, OptionsBuilder, Weighter};

use crate::clock::{is_past, mono_ms};

/// Most namespaces one cache can hold (ids index fixed arrays of counters).
pub(crate) const MAX_NAMESPACES: usize = 1024;

// What `max_bytes` has to cover, so that it bounds the process's memory and not just
// a sum of key and value lengths (docs/decisions.md, "L1 memory that max_bytes
// really bounds"). tests/memory_bound.rs fills a 32 MiB L1 three times over and
// checks the resident set's growth: 1.10-1.13x `max_bytes` with these charges in a
// debug build, 1.96x with the old flat 96 bytes per entry.

/// One slot of quick_cache's slab: our key and entry, its per-entry state and list links.
const SLOT_BYTES: u64 = (std::mem::size_of::<L1Key>() + std::mem::size_of::<L1Entry>() + 16) as u64;

/// The slot's share of quick_cache's hash index (a 4-byte token and a control byte
/// per bucket, buckets at most 7/8 full).
const INDEX_BYTES: u64 = 8;

/// Bytes the allocator hands out for a request of `n` bytes: an 8-byte header,
/// rounded up to 16, at least 32 (glibc's malloc on 64-bit targets).
const fn heap_block(n: u64) -> u64 {
    let b = (n + 8 + 15) & !15;
    if b < 32 {
        32
    } else {
        b
    }
}

/// The reference count `Bytes` allocates when a value built from a `Vec` is first
/// cloned, as a write into L1 does.
const SHARED_BYTES: u64 = heap_block(24);

/// Keys up to this length live inside the slot (`CompactString`) and cost no more.
const INLINE_KEY: usize = 24;

/// Bytes charged per entry besides the heap blocks of its key and value.
const ENTRY_OVERHEAD: u64 = SLOT_BYTES + INDEX_BYTES;

/// What one ghost costs: quick_cache remembers a recently evicted key (so that a key
/// that comes back soon is admitted to the main queue) in a whole slot of its own.
const GHOST_BYTES: u64 = SLOT_BYTES + INDEX_BYTES;

/// Ghosts kept per estimated item (quick_cache's default, set explicitly because the
/// reserve for them below is computed from it).
const GHOST_ALLOCATION: f64 = 0.5;

/// The entry the index and ghost list are sized for: a 100-byte value, an inline
/// key, and its share of ghosts.
const TYPICAL_ENTRY: u64 = heap_block(100)
    + SHARED_BYTES
    + ENTRY_OVERHEAD
    + (GHOST_BYTES as f64 * GHOST_ALLOCATION) as u64;

/// Owned L1 key: namespace id and the cache key.
///
/// The key is a `CompactString`: keys of up to 24 bytes (most cache keys, such as
/// `user:123456`) live inside quick_cache's slot, so a hit compares the key without
/// a second cache miss on a heap allocation, and an insert allocates nothing for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct L1Key {
    pub(crate) ns: u32,
    pub(crate) key: CompactString,
}

// Only the key is hashed, as a `str` (one `write_str` for foldhash): keys of different
// namespaces that collide still differ in `equivalent`. Hashing the id too cost three
// hasher rounds per lookup instead of one.
impl Hash for L1Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.as_str().hash(state);
    }
}

/// Borrowed lookup key: hashes exactly like [`L1Key`], so lookups do not allocate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct L1KeyRef<'a> {
    pub(crate) ns: u32,
    pub(crate) key: &'a str,
}

impl Hash for L1KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl Equivalent<L1Key> for L1KeyRef<'_> {
    fn equivalent(&self, k: &L1Key) -> bool {
        self.ns == k.ns && self.key == k.key.as_str()
    }
}

/// An L1 entry: the plain payload and what is needed to judge its freshness.
#[derive(Debug, Clone)]
pub(crate) struct L1Entry {
    pub(crate) value: Bytes,
    pub(crate) codec: u8,
    /// Namespace epoch at insert; a flushed namespace has a newer epoch.
    pub(crate) epoch: u32,
    /// Monotonic ms after which the entry is dead.
    pub(crate) expires_at: u64,
    /// Wall-clock ms the value was created (conditional invalidation).
    pub(crate) created_ms: u64,
    /// Writer-supplied version (conditional invalidation).
    pub(crate) version: u64,
}

#[derive(Clone, Default)]
struct EntryWeigher;

impl Weighter<L1Key, L1Entry> for EntryWeigher {
    fn weight(&self, key: &L1Key, val: &L1Entry) -> u64 {
        // A key of up to INLINE_KEY bytes is inside the slot; a longer one is on the heap.
        let key = match key.key.len() {
            n if n > INLINE_KEY => heap_block(n as u64),
            _ => 0,
        };
        let value = match val.value.len() as u64 {
            0 => 0,
            n => heap_block(n) + SHARED_BYTES,
        };
        key + value + ENTRY_OVERHEAD
    }
}

/// Entries quick_cache let go of during one insert, as (namespace id, key hash).
///
/// quick_cache reports the old value of a key being overwritten through the same
/// hook as an eviction; `MemoryTier::insert` tells them apart by the key's hash, so
/// that `strata_cache_evictions_total` counts only entries dropped for space.
#[derive(Default)]
struct Dropped {
    first: [(u32, u64); 4],
    len: usize,
    more: Vec<(u32, u64)>,
}

impl Dropped {
    fn push(&mut self, item: (u32, u64)) {
        if self.len < self.first.len() {
            self.first[self.len] = item;
            self.len += 1;
        } else {
            self.more.push(item);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &(u32, u64)> {
        self.first[..self.len].iter().chain(&self.more)
    }
}

/// Hashes keys for [`Dropped`] (one hasher shared by the tier and its lifecycle).
#[derive(Clone)]
struct EvictionCounter {
    hasher: DefaultHashBuilder,
}

impl Lifecycle<L1Key, L1Entry> for EvictionCounter {
    type RequestState = Dropped;

    fn on_evict(&self, state: &mut Dropped, key: L1Key, _val: L1Entry) {
        state.push((key.ns, self.hasher.hash_one(key.key.as_str())));
    }
}

/// Outcome of an L1 read.
pub(crate) enum Lookup {
    Hit(L1Entry),
    Miss,
    /// The entry was there but past its deadline; it has been removed.
    Expired,
}

/// The memory tier shared by all namespaces of a cache.
pub(crate) struct MemoryTier {
    cache: Arc<QCache<L1Key, L1Entry, EntryWeigher, DefaultHashBuilder, EvictionCounter>>,
    evictions: Arc<[AtomicU64]>,
    lifecycle: EvictionCounter,
    capacity: u64,
}

impl MemoryTier {
    pub(crate) fn new(max_bytes: u64) -> Self {
        crate::clock::start_ticker();
        let evictions: Arc<[AtomicU64]> = (0..MAX_NAMESPACES).map(|_| AtomicU64::new(0)).collect();
        let lifecycle = EvictionCounter {
            hasher: DefaultHashBuilder::default(),
        };
        // Size the index and the ghost list for typical entries;
        // quick_cache grows the index past it if needed, but never the ghost list.
        // The ghosts' slots come out of `max_bytes` (at most half of it, for tiny caches).
        let est_items = (max_bytes / TYPICAL_ENTRY).clamp(64, 1 << 26) as usize;
        let ghosts = (est_items as f64 * GHOST_ALLOCATION) as u64;
        let capacity = max_bytes - (ghosts * GHOST_BYTES).min(max_bytes / 2);
        let options = OptionsBuilder::new()
            .estimated_items_capacity(est_items)
            .ghost_allocation(GHOST_ALLOCATION)
            .weight_capacity(capacity.max(1))
            .build()
            .expect("valid quick_cache options");
        let cache = QCache::with_options(
            options,
            EntryWeigher,
            DefaultHashBuilder::default(),
            lifecycle.clone(),
        );
        MemoryTier {
            cache: Arc::new(cache),
            evictions,
            lifecycle,
            capacity,
        }
    }

    /// Reads an entry if present, current for `epoch`, and not expired.
    #[inline]
    pub(crate) fn get(&self, ns: u32, key: &str, epoch: u32) -> Lookup {
        let k = L1KeyRef { ns, key };
        match self.cache.get(&k) {
            None => Lookup::Miss,
            Some(e) if e.epoch != epoch => {
                self.cache.remove_if(&k, |v| v.epoch != epoch);
                Lookup::Miss
            }
            Some(e) if is_past(e.expires_at) => {
                let now = mono_ms();
                self.cache.remove_if(&k, |v| v.expires_at <= now);
                Lookup::Expired
            }
            Some(e) => Lookup::Hit(e),
        }
    }

    pub(crate) fn insert(&self, ns: u32, key: &str, entry: L1Entry) {
        let mut dropped = Dropped::default();
        self.cache.insert_with_lifecycle(
            L1Key {
                ns,
                key: CompactString::new(key),
            },
            entry,
            &mut dropped,
        );
        if dropped.len == 0 {
            return;
        }
        let mine = (ns, self.lifecycle.hasher.hash_one(key));
        for &(dns, h) in dropped.iter() {
            // The previous value of this very key was replaced, not evicted.
            if (dns, h) == mine {
                continue;
            }
            if let Some(c) = self.evictions.get(dns as usize) {
                c.fetch_add(1, Relaxed);
            }
        }
    }

    /// Removes an entry; true if one was there.
    pub(crate) fn remove(&self, ns: u32, key: &str) -> bool {
        self.cache.remove(&L1KeyRef { ns, key }).is_some()
    }

    /// Removes one entry if `pred` says so.
    pub(crate) fn remove_if(
        &self,
        ns: u32,
        key: &str,
        pred: impl FnOnce(&L1Entry) -> bool,
    ) -> bool {
        self.cache.remove_if(&L1KeyRef { ns, key }, pred).is_some()
    }

    /// Removes the namespace's entries that satisfy `pred`; returns how many.
    /// Walks the whole cache, taking each shard's lock in turn.
    pub(crate) fn remove_where(&self, ns: u32, pred: impl Fn(&str, &L1Entry) -> bool) -> u64 {
        let removed = AtomicU64::new(0);
        self.cache.retain(|k, v| {
            let drop = k.ns == ns && pred(&k.key, v);
            if drop {
                removed.fetch_add(1, Relaxed);
            }
            !drop
        });
        removed.into_inner()
    }

    /// Reclaims memory of a flushed namespace (entries of epochs before `epoch`).
    /// They are already invisible, so this runs on a blocking thread when called
    /// from async code: the walk must not stall a runtime worker.
    pub(crate) fn purge_stale(&self, ns: u32, epoch: u32) {
        let cache = self.cache.clone();
        let purge = move || cache.retain(|k, v| k.ns != ns || v.epoch == epoch);
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(purge)),
            Err(_) => purge(),
        }
    }

    /// Bytes and entries held by one namespace. Walks the cache: for snapshots, not hot paths.
    pub(crate) fn usage(&self, ns: u32) -> (u64, u64) {
        let (mut bytes, mut entries) = (0, 0);
        for (k, v) in self.cache.iter() {
            if k.ns == ns {
                bytes += EntryWeigher.weight(&k, &v);
                entries += 1;
            }
        }
        (bytes, entries)
    }

    pub(crate) fn evictions(&self, ns: u32) -> u64 {
        self.evictions
            .get(ns as usize)
            .map_or(0, |c| c.load(Relaxed))
    }

    pub(crate) fn weight(&self) -> u64 {
        self.cache.weight()
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(v: &'static [u8], ttl_ms: u64, epoch: u32) -> L1Entry {
        L1Entry {
            value: Bytes::from_static(v),
            codec: 0,
            epoch,
            expires_at: mono_ms() + ttl_ms,
            created_ms: 10,
            version: 0,
        }
    }

    #[test]
    fn expiry_and_epochs() {
        let m = MemoryTier::new(1 << 20);
        m.insert(1, "a", entry(b"x", 60_000, 0));
        m.insert(1, "b", entry(b"y", 0, 0));
        assert!(matches!(m.get(1, "a", 0), Lookup::Hit(_)));
        assert!(matches!(m.get(2, "a", 0), Lookup::Miss));
        assert!(matches!(m.get(1, "b", 0), Lookup::Expired));
        assert!(matches!(m.get(1, "b", 0), Lookup::Miss));
        assert!(
            matches!(m.get(1, "a", 1), Lookup::Miss),
            "newer epoch hides old entries"
        );
    }

    #[test]
    fn bounded_by_bytes_and_counts_evictions() {
        let m = MemoryTier::new(64 * 1024);
        for i in 0..10_000 {
            m.insert(3, &format!("k{i}"), entry(&[0u8; 100], 60_000, 0));
        }
        assert!(m.weight() <= 64 * 1024, "weight {}", m.weight());
        assert!(m.evictions(3) > 9000);
        let (bytes, entries) = m.usage(3);
        assert_eq!(bytes, m.weight());
        assert!(entries > 0 && entries < 10_000);
    }

    #[test]
    fn overwrites_are_not_evictions() {
        let m = MemoryTier::new(1 << 20);
        for i in 0..1000u64 {
            let mut e = entry(&[0u8; 100], 60_000, 0);
            e.version = i;
            m.insert(1, "same", e);
        }
        assert_eq!(m.evictions(1), 0);
        assert!(matches!(m.get(1, "same", 0), Lookup::Hit(e) if e.version == 999));
    }

    #[test]
    fn remove_where_is_scoped_to_namespace() {
        let m = MemoryTier::new(1 << 20);
        m.insert(1, "user:1", entry(b"x", 60_000, 0));
        m.insert(1, "post:1", entry(b"x", 60_000, 0));
        m.insert(2, "user:1", entry(b"x", 60_000, 0));
        assert_eq!(m.remove_where(1, |k, _| k.starts_with("user:")), 1);
        assert!(matches!(m.get(1, "post:1", 0), Lookup::Hit(_)));
        assert!(matches!(m.get(2, "user:1", 0), Lookup::Hit(_)));
    }
}
