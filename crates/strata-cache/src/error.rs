//! Error types of the engine.

use std::sync::Arc;
use std::time::Duration;

/// Everything that can go wrong in a cache call.
///
/// Redis failures never surface from read paths: a read that cannot reach Redis
/// falls back to L1 and the loader. They surface only from calls whose whole point
/// is to reach Redis (for example an explicit [`crate::Cache::ping_l2`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The key is longer than the namespace allows.
    #[error("key is {len} bytes, namespace `{namespace}` allows at most {max}")]
    KeyTooLong {
        /// Namespace name.
        namespace: String,
        /// Length of the rejected key in bytes.
        len: usize,
        /// The namespace's limit.
        max: usize,
    },
    /// The key is empty or contains a control character.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// The encoded value is larger than the namespace allows.
    #[error("value is {size} bytes, namespace `{namespace}` allows at most {max}")]
    ValueTooLarge {
        /// Namespace name.
        namespace: String,
        /// Encoded size of the rejected value.
        size: usize,
        /// The namespace's limit.
        max: usize,
    },
    /// A namespace name is empty, too long, or uses characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid namespace name `{0}`: use 1-64 characters of [A-Za-z0-9_.-]")]
    InvalidNamespace(String),
    /// Serializing or deserializing a value failed.
    #[error("codec error: {0}")]
    Codec(String),
    /// An entry read from Redis could not be decoded (corrupt, unknown version, bad key id, failed authentication).
    #[error("corrupt entry: {0}")]
    Corrupt(String),
    /// Encryption is configured wrongly (missing key, bad key length).
    #[error("encryption error: {0}")]
    Crypto(String),
    /// A Redis command failed.
    #[error("redis error: {0}")]
    Redis(String),
    /// A Redis command did not answer within the per-operation timeout.
    #[error("redis operation timed out after {0:?}")]
    Timeout(Duration),
    /// The Redis tier is configured but currently marked down (circuit open).
    #[error("redis tier is down")]
    TierDown,
    /// The loader returned an error (also returned, for a short while, from negative caching).
    #[error("loader failed: {0}")]
    Loader(Arc<dyn std::error::Error + Send + Sync>),
    /// The loader did not finish in time.
    #[error("loader timed out after {0:?}")]
    LoaderTimeout(Duration),
    /// The configuration given to a builder is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl From<redis::RedisError> for CacheError {
    fn from(e: redis::RedisError) -> Self {
        CacheError::Redis(e.to_string())
    }
}

/// Result alias used across the crate.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;
