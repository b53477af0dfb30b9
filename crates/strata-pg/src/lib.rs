//! PostgreSQL for Strata: point an application's database URL at the proxy instead
//! of the server and learn which queries cost what, which are slow, and where the
//! application does N+1, without touching its code.
//!
//! The pieces:
//! - [`protocol`]: startup packets and a zero-copy frame scanner for the v3 protocol;
//! - [`tracker`]: follows a session's simple and extended (pipelined) queries;
//! - [`fingerprint`], [`stats`], [`nplusone`]: what is learned from them;
//! - [`Insight`]: the background thread that owns that knowledge;
//! - [`PgProxy`]: the session-mode proxy that puts it together;
//! - [`catalog`] and [`advisor`]: `strata db stats | slow | advise` against a live
//!   database.

pub mod advisor;
pub mod catalog;
pub mod config;
pub mod fingerprint;
pub mod insight;
mod metrics;
pub mod nplusone;
pub mod protocol;
mod proxy;
pub mod stats;
pub mod tracker;

pub use config::PgConfig;
pub use insight::{Insight, InsightConfig, SortBy};
pub use metrics::{CommandLabel, PgMetrics};
pub use proxy::{load_tls, PgProxy, PgProxyConfig, Upstream, UpstreamTls};
