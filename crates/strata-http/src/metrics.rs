//! `strata_http_*` metric families. Labels are bounded: the route's configured name
//! (or `default`), the cache status, an error kind, an encoding; never a URL.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Route and cache status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route name.
    pub route: String,
    /// `hit`, `miss`, `stale`, `bypass`, `revalidated`.
    pub cache: &'static str,
}

/// Route only.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// Route name.
    pub route: String,
}

/// Route and origin error kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Route name.
    pub route: String,
    /// `connect`, `timeout`, `protocol`, `status_5xx`.
    pub kind: &'static str,
}

/// Route and why a response was not stored.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotStoredLabels {
    /// Route name.
    pub route: String,
    /// [`crate::freshness::NotStored::label`], or `too_large`.
    pub reason: &'static str,
}

/// Content coding.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EncodingLabel {
    /// `gzip`, `br`, `zstd`.
    pub encoding: &'static str,
}

/// Where an invalidation came from.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `unsafe_method` or `purge`.
    pub source: &'static str,
}

fn histogram() -> Histogram {
    // 25 µs .. ~13 s.
    Histogram::new(exponential_buckets(0.000025, 2.0, 20))
}

/// The proxy's metrics.
#[derive(Clone)]
pub struct HttpMetrics {
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub(crate) origin_duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    pub(crate) origin_errors: Family<ErrorLabels, Counter>,
    pub(crate) coalesced: Family<RouteLabel, Counter>,
    pub(crate) compressed_saved: Family<EncodingLabel, Counter>,
    pub(crate) invalidations: Family<SourceLabel, Counter>,
    pub(crate) stored: Family<RouteLabel, Counter>,
    pub(crate) not_stored: Family<NotStoredLabels, Counter>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(histogram),
            origin_duration: Family::new_with_constructor(histogram),
            origin_errors: Family::default(),
            coalesced: Family::default(),
            compressed_saved: Family::default(),
            invalidations: Family::default(),
            stored: Family::default(),
            not_stored: Family::default(),
        }
    }
}

impl HttpMetrics {
    /// Registers every family under `strata_http_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("strata_http");
        r.register(
            "requests",
            "Proxy requests by route and cache status (hit, miss, stale, bypass, revalidated).",
            self.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Proxy request latency until the response head, by route and cache status.",
            self.duration.clone(),
        );
        r.register(
            "origin_duration_seconds",
            "Time to the origin's response head, by route.",
            self.origin_duration.clone(),
        );
        r.register(
            "origin_errors",
            "Origin requests that failed, by route and kind.",
            self.origin_errors.clone(),
        );
        r.register(
            "coalesced",
            "Requests answered by another request's origin fetch instead of their own.",
            self.coalesced.clone(),
        );
        r.register(
            "compression_saved_bytes",
            "Bytes not sent thanks to compression, by encoding.",
            self.compressed_saved.clone(),
        );
        r.register(
            "invalidations",
            "Invalidations issued by unsafe requests and purges.",
            self.invalidations.clone(),
        );
        r.register(
            "stored",
            "Responses written to the cache, by route.",
            self.stored.clone(),
        );
        r.register(
            "not_stored",
            "Origin responses to cacheable requests that were not stored, by route and reason (no_store, private, set_cookie, too_large…).",
            self.not_stored.clone(),
        );
    }

    /// Handles on one route's series, made once so that a request touches
    /// atomics only (no label hashing or allocation). Every cache status's series
    /// exists from the start, at zero.
    pub(crate) fn for_route(&self, route: &str) -> RouteMetrics {
        let per_status = |i: usize| RequestLabels {
            route: route.to_owned(),
            cache: CACHE_LABELS[i],
        };
        let r = RouteLabel {
            route: route.to_owned(),
        };
        RouteMetrics {
            requests: std::array::from_fn(|i| self.requests.get_or_create(&per_status(i)).clone()),
            duration: std::array::from_fn(|i| self.duration.get_or_create(&per_status(i)).clone()),
            origin: self.origin_duration.get_or_create(&r).clone(),
            coalesced: self.coalesced.get_or_create(&r).clone(),
            stored: self.stored.get_or_create(&r).clone(),
            route: route.to_owned(),
            families: self.clone(),
        }
    }
}

/// `cache` label values, indexed like [`crate::CacheStatus`].
pub(crate) const CACHE_LABELS: [&str; 5] = ["hit", "miss", "stale", "bypass", "revalidated"];

/// One route's series.
#[derive(Clone)]
pub(crate) struct RouteMetrics {
    requests: [Counter; 5],
    duration: [Histogram; 5],
    pub(crate) origin: Histogram,
    pub(crate) coalesced: Counter,
    pub(crate) stored: Counter,
    route: String,
    families: HttpMetrics,
}

impl RouteMetrics {
    /// A request answered with the cache status at `index` (of [`CACHE_LABELS`]).
    pub(crate) fn request(&self, index: usize, took: Duration) {
        self.requests[index].inc();
        self.duration[index].observe(took.as_secs_f64());
    }

    /// A fetched response not stored, and why (labels built on demand: only
    /// misses that could not be stored pay for them).
    pub(crate) fn not_stored(&self, reason: &'static str) {
        self.families
            .not_stored
            .get_or_create(&NotStoredLabels {
                route: self.route.clone(),
                reason,
            })
            .inc();
    }

    /// An origin failure of `kind` (rare: labels built on demand).
    pub(crate) fn origin_error(&self, kind: &'static str) {
        self.families
            .origin_errors
            .get_or_create(&ErrorLabels {
                route: self.route.clone(),
                kind,
            })
            .inc();
    }
}
