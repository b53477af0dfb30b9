//! Per-namespace policies: TTLs, placement, codecs, limits.

use std::time::Duration;

use crate::codec::Format;
use crate::envelope::Compression;

/// Which tiers a namespace's entries go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Placement {
    /// L1 in front of L2 (the default).
    #[default]
    Both,
    /// Memory only: process-local data, or a deployment without Redis.
    L1Only,
    /// Redis only: large values, or data that must never be stale on any instance.
    L2Only,
}

impl std::str::FromStr for Placement {
    type Err = crate::CacheError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "both" => Ok(Placement::Both),
            "l1_only" => Ok(Placement::L1Only),
            "l2_only" => Ok(Placement::L2Only),
            o => Err(crate::CacheError::Config(format!(
                "unknown placement `{o}` (expected both, l1_only or l2_only)"
            ))),
        }
    }
}

/// How a namespace stores its entries.
///
/// ```
/// use std::time::Duration;
/// use strata_cache::{Compression, Format, Placement, Policy};
///
/// let prices = Policy::new(Duration::from_secs(30))
///     .jitter(0.1)
///     .l1_ttl(Duration::from_secs(5))
///     .format(Format::MessagePack)
///     .compression(Compression::Zstd(3), 1024);
/// assert_eq!(prices.placement_kind(), Placement::Both);
/// ```
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) ttl: Duration,
    pub(crate) jitter: f64,
    pub(crate) l1_ttl: Option<Duration>,
    pub(crate) placement: Placement,
    pub(crate) l2_only_above: Option<usize>,
    pub(crate) format: Format,
    pub(crate) compression: Compression,
    pub(crate) compress_min: usize,
    pub(crate) encrypt: bool,
    pub(crate) max_key_len: usize,
    pub(crate) max_value_size: usize,
    pub(crate) negative_ttl: Option<Duration>,
    pub(crate) loader_timeout: Option<Duration>,
    pub(crate) colocate: bool,
    pub(crate) coherent: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(Duration::from_secs(3600))
    }
}

impl Policy {
    /// A policy with the given TTL and defaults for everything else: placement `both`,
    /// JSON, no compression, no encryption, keys up to 250 bytes, values up to 1 MiB.
    pub fn new(ttl: Duration) -> Self {
        Policy {
            ttl,
            jitter: 0.0,
            l1_ttl: None,
            placement: Placement::Both,
            l2_only_above: None,
            format: Format::Json,
            compression: Compression::None,
            compress_min: 1024,
            encrypt: false,
            max_key_len: 250,
            max_value_size: 1 << 20,
            negative_ttl: None,
            loader_timeout: None,
            colocate: false,
            coherent: true,
        }
    }

    /// Entry TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Shortens each TTL by a random fraction up to `fraction` (0.0-1.0) so entries
    /// written together do not all expire together. Never lengthens a TTL.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// Cap on how long an entry stays in L1. L1 never keeps an entry longer than
    /// L2's remaining TTL whatever this says.
    pub fn l1_ttl(mut self, ttl: Duration) -> Self {
        self.l1_ttl = Some(ttl);
        self
    }

    /// Which tiers the namespace uses.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// Values whose encoded size exceeds `bytes` go to L2 only (they would crowd L1).
    pub fn l2_only_above(mut self, bytes: usize) -> Self {
        self.l2_only_above = Some(bytes);
        self
    }

    /// Serialization of typed values.
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Compression of values of at least `min_bytes` on their way to Redis.
    pub fn compression(mut self, compression: Compression, min_bytes: usize) -> Self {
        self.compression = compression;
        self.compress_min = min_bytes;
        self
    }

    /// Encrypts values on their way to Redis with the cache's keyring
    /// ([`crate::CacheBuilder::keyring`]). L1 holds plaintext: it is process memory.
    pub fn encrypt(mut self, on: bool) -> Self {
        self.encrypt = on;
        self
    }

    /// Longest key accepted, bytes (default 250).
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.max_key_len = bytes;
        self
    }

    /// Largest encoded value accepted, bytes (default 1 MiB).
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Remembers a loader error for `ttl` and answers it to callers of that key
    /// without calling the loader again (protects a failing origin from retries).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Maximum time a loader may run; past it callers get [`crate::CacheError::LoaderTimeout`].
    pub fn loader_timeout(mut self, timeout: Duration) -> Self {
        self.loader_timeout = Some(timeout);
        self
    }

    /// Puts the whole namespace in one Redis Cluster hash slot (see [`crate::key::RedisKeys`]).
    pub fn colocate(mut self, on: bool) -> Self {
        self.colocate = on;
        self
    }

    /// Whether this namespace's L1 relies on invalidation messages to stay correct
    /// (default true). Such namespaces are flushed from L1 when the instance may have
    /// missed messages: after Redis comes back, or when the subscription drops.
    pub fn coherent(mut self, on: bool) -> Self {
        self.coherent = on;
        self
    }

    /// The configured placement.
    pub fn placement_kind(&self) -> Placement {
        self.placement
    }

    /// The configured TTL.
    pub fn ttl_value(&self) -> Duration {
        self.ttl
    }

    /// The TTL for one write: `ttl` (or the policy's), shortened by jitter.
    pub(crate) fn effective_ttl(&self, ttl: Option<Duration>) -> Duration {
        let base = ttl.unwrap_or(self.ttl);
        if self.jitter <= 0.0 || base.is_zero() {
            return base;
        }
        let cut = rand::random::<f64>() * self.jitter;
        base.mul_f64(1.0 - cut).max(Duration::from_millis(1))
    }

    pub(crate) fn uses_l1(&self) -> bool {
        self.placement != Placement::L2Only
    }

    pub(crate) fn uses_l2(&self) -> bool {
        self.placement != Placement::L1Only
    }

    /// Whether a value of `size` encoded bytes belongs in L1.
    pub(crate) fn l1_accepts(&self, size: usize) -> bool {
        self.uses_l1() && self.l2_only_above.is_none_or(|max| size <= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_only_shortens() {
        let p = Policy::new(Duration::from_secs(100)).jitter(0.2);
        for _ in 0..1000 {
            let t = p.effective_ttl(None);
            assert!(
                t <= Duration::from_secs(100) && t >= Duration::from_secs(80),
                "{t:?}"
            );
        }
        assert_eq!(
            Policy::new(Duration::from_secs(5)).effective_ttl(None),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn size_placement() {
        let p = Policy::default().l2_only_above(100);
        assert!(p.l1_accepts(100));
        assert!(!p.l1_accepts(101));
        assert!(!Policy::default().placement(Placement::L2Only).l1_accepts(1));
    }
}
