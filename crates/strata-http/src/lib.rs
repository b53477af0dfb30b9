//! HTTP caching for Strata: put it in front of an HTTP API and its GET responses
//! are cached in both tiers of [`strata_cache`], shared across instances,
//! compressed, and invalidated when the API changes data.
//!
//! The pieces, each usable alone:
//! - [`cache_control`] and [`freshness`]: RFC 9111 decisions for a shared cache;
//! - [`key`]: cache keys; [`route`]: route patterns;
//! - [`entry`]: the stored response format; [`compress`]: negotiation and encoders;
//! - [`coalesce`]: one origin request per key at a time, and none for keys
//!   recently found uncacheable;
//! - [`range`]: byte ranges served from stored responses;
//! - [`upstream`]: the pooled origin client;
//! - [`HttpCache`]: the proxy that composes them, with [`HttpCache::purge`].

pub mod cache_control;
pub mod coalesce;
pub mod compress;
pub mod config;
pub mod entry;
mod fields;
pub mod freshness;
pub mod h1;
pub mod key;
mod layer;
mod metrics;
mod proxy;
pub mod range;
pub mod route;
pub mod server;
pub mod upstream;

pub use config::{CompressionConfig, HttpConfig, InvalidateConfig, KeyConfig, RouteConfig};
pub use layer::{HttpCacheLayer, HttpCacheService};
pub use metrics::HttpMetrics;
pub use proxy::{CacheStatus, ClientAddr, ClientIp, HttpCache, HttpError, Purge};
