//! # strata-cache
//!
//! An embeddable two-tier cache: an in-process memory tier (L1, S3-FIFO via
//! quick_cache, bounded by bytes) in front of Redis, Redis Sentinel or Redis Cluster
//! (L2), with typed namespaces and per-namespace policies, single-flight loading,
//! compression, encryption, and invalidation that reaches every instance through
//! Redis pub/sub.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> strata_cache::Result<()> {
//! use std::time::Duration;
//! use strata_cache::{Cache, Invalidation, Policy, SetOptions};
//!
//! let cache = Cache::builder()
//!     // .redis_url("redis://127.0.0.1:6379")?   // add L2; omit for memory only
//!     .namespace("price", Policy::new(Duration::from_secs(30)).jitter(0.1))
//!     .build()
//!     .await?;
//! let prices = cache.namespace::<str, f64>("price")?;
//! prices.set_with("BTC", &97_000.5, SetOptions::default().tags(["crypto"])).await?;
//! assert_eq!(prices.get("BTC").await?, Some(97_000.5));
//! cache.invalidate(Invalidation::tag("price", "crypto")).await?;
//! assert_eq!(prices.get("BTC").await?, None);
//! # Ok(()) }
//! ```
//!
//! Read path: L1 → L2 (fills L1 for at most L2's remaining TTL) → loader. Writes go
//! to L2 then L1 and publish one invalidation message so other instances drop their
//! L1 copies. When Redis fails, a circuit opens and everything keeps working from
//! memory and loaders; when it answers again, L1 namespaces that depend on
//! invalidation are flushed, because messages may have been missed.

#![warn(missing_docs)]

mod background;
mod cache;
mod clock;
mod codec;
mod crypto;
mod envelope;
mod error;
mod invalidation;
pub mod key;
mod memory;
mod metrics;
mod namespace;
mod policy;
mod redis_tier;
mod singleflight;
mod stats;
mod tag_index;
pub mod units;

pub use cache::{Cache, CacheBuilder, Hit, SetOptions, Tier};
pub use codec::Format;
pub use crypto::Keyring;
pub use envelope::{Compression, Envelope, EnvelopeCodec, CODEC_RAW};
pub use error::{CacheError, Result};
pub use invalidation::{
    Condition, Invalidation, InvalidationEvent, InvalidationMessage, MessageItem, Target,
};
pub use key::CacheKey;
pub use namespace::{Namespace, RawNamespace};
pub use policy::{Placement, Policy};
pub use redis_tier::{RedisOptions, RedisTarget};
pub use stats::{CacheStats, NamespaceStats, TierStats};

/// docs/embedding.md: its examples run as doc tests, so the guide stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/embedding.md")]
pub struct EmbeddingGuide;
