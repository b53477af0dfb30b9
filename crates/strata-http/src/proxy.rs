//! The caching reverse proxy, as phases in the manner of pingora: request filter
//! (route, method, key) → cache lookup → origin (coalesced, conditional when a stale
//! copy exists) → response filter (store, compress, headers).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use strata_http::{HttpCache, HttpConfig};
//! let cache = strata_cache::Cache::builder().build().await?;
//! let cfg: HttpConfig = toml::from_str(r#"upstream = "http://127.0.0.1:8000""#)?;
//! let proxy = HttpCache::new(cfg, &cache)?;
//! let res = proxy.handle(http::Request::get("/api/risks").header("host", "api.local")
//!     .body(axum::body::Body::empty())?).await;
//! println!("{:?}", res.headers().get("x-cache"));
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use strata_cache::{Cache, Invalidation, Policy, RawNamespace, SetOptions};

use crate::cache_control::{RequestDirectives, ResponseDirectives};
use crate::coalesce::{Flights, Outcome, Role};
use crate::compress::{Compressor, Encoding};
use crate::config::HttpConfig;
use crate::entry::{Entry, VaryRecord, CODEC_HTTP, CODEC_VARY};
use crate::fields::{
    add_vary, decimal, is_hop_by_hop, micros, not_modified, selecting, strip, strip_cache_only,
    strip_hop_by_hop, strip_relayed, vary_value, weaken_etag, ConnectionListed, StackText,
    CONDITIONALS, NOT_MODIFIED_FIELDS, NOT_UPDATED_BY_304, SERVER_TIMING, SURROGATE_CAPABILITY,
    TAG_FIELDS, UNKEYED_OVERRIDES, X_CACHE, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
    X_PROCESS_TIME,
};
use crate::freshness::{self, unix_ms, NotStored, RouteRules, Timing, Usable};
use crate::key::{self, KeyParts, KeyRules};
use crate::metrics::{EncodingLabel, HttpMetrics, RouteMetrics, SourceLabel};
use crate::range::{self, Ranged};
use crate::route::{Params, Pattern, PatternTable, Trigger};
use crate::upstream::{self, Collected, OriginRequest, Upstream, UpstreamError};

/// The client's address, inserted into request extensions by whoever accepts the
/// connection; it becomes `X-Forwarded-For`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The client's IP as a header value, made once per connection by the server
/// (optional: without it the proxy formats [`ClientAddr`] per request).
#[derive(Debug, Clone)]
pub struct ClientIp(pub HeaderValue);

/// How a request was answered, as in the `X-Cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheStatus {
    /// From the cache, fresh.
    Hit,
    /// From the origin.
    #[default]
    Miss,
    /// From the cache, stale (stale-while-revalidate, stale-if-error, max-stale).
    Stale,
    /// The cache was not consulted (unsafe method, uncached route, unkeyable request).
    Bypass,
    /// From the cache after the origin confirmed it with a 304.
    Revalidated,
}

impl CacheStatus {
    /// The `X-Cache` value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Bypass => "BYPASS",
            CacheStatus::Revalidated => "REVALIDATED",
        }
    }

    /// Index into the metric label values (`hit`, `miss`, `stale`, `bypass`,
    /// `revalidated`).
    fn index(self) -> usize {
        match self {
            CacheStatus::Hit => 0,
            CacheStatus::Miss => 1,
            CacheStatus::Stale => 2,
            CacheStatus::Bypass => 3,
            CacheStatus::Revalidated => 4,
        }
    }
}

/// Why a proxy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The configuration is invalid.
    #[error("invalid [http] configuration: {0}")]
    Config(String),
    /// The cache refused the namespace.
    #[error("cache: {0}")]
    Cache(#[from] strata_cache::CacheError),
}

#[derive(Clone)]
struct Route {
    metrics: RouteMetrics,
    pattern: Option<Pattern>,
    cache: bool,
    rules: RouteRules,
    key: KeyRules,
    tags: Vec<String>,
}

#[derive(Clone)]
struct InvalidateRule {
    trigger: Trigger,
    tags: Vec<String>,
    urls: Vec<String>,
}

/// The request fields the proxy keeps after splitting off the body.
#[derive(Clone)]
struct Head {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    peer: Option<SocketAddr>,
    peer_ip: Option<HeaderValue>,
    /// The normalised host (see [`Head::host`]): usually the client's `Host`
    /// field as it came, shared rather than copied.
    host: HeaderValue,
    route: usize,
    params: Params,
}

impl Head {
    /// The normalised host (lowercase, no default port).
    fn host(&self) -> &str {
        // Made from a valid host name, so always text.
        self.host.to_str().unwrap_or("")
    }
}

#[derive(Default)]
struct Ctx {
    status: CacheStatus,
    origin: Option<Duration>,
}

/// What answers misses: an HTTP origin, or (as a tower layer) the wrapped service.
#[derive(Clone)]
pub(crate) enum Origin {
    /// A remote server over pooled HTTP/1.1.
    Http(Upstream),
    /// An in-process service, bounded by the response timeout.
    Service(crate::layer::OriginService, Duration),
}

impl Origin {
    async fn send(&self, req: OriginRequest) -> Result<Response<Body>, UpstreamError> {
        match self {
            Origin::Http(u) => u.send(req).await,
            Origin::Service(svc, timeout) => {
                use tower::ServiceExt;
                let relayed = req.relayed;
                let req = req.into_request();
                match tokio::time::timeout(*timeout, svc.clone().oneshot(req)).await {
                    Err(_) => Err(UpstreamError::Timeout(*timeout)),
                    Ok(Ok(res)) if relayed => Ok(relay(res)),
                    Ok(Ok(res)) => Ok(res),
                    Ok(Err(e)) => Err(UpstreamError::Service(upstream::error_chain(&*e))),
                }
            }
        }
    }

    /// The origin's own `host[:port]`, if it has one.
    fn authority(&self) -> Option<&http::uri::Authority> {
        match self {
            Origin::Http(u) => Some(u.authority()),
            Origin::Service(..) => None,
        }
    }

    /// [`Origin::authority`] as a `Host` value.
    fn host(&self) -> Option<&HeaderValue> {
        match self {
            Origin::Http(u) => Some(u.host()),
            Origin::Service(..) => None,
        }
    }

    /// The request target in origin form (`/path?query`, after a remote
    /// origin's base path).
    fn target_for(&self, pq: Option<&http::uri::PathAndQuery>) -> Uri {
        match self {
            Origin::Http(u) => u.target_for(pq),
            Origin::Service(..) => pq.map_or(Uri::from_static("/"), |p| Uri::from(p.clone())),
        }
    }

    /// Sends a request again after [`UpstreamError::Reused`], on a new connection,
    /// within what is `left` of the response timeout (only a remote origin's
    /// pooled connections fail that way).
    async fn send_again(
        &self,
        req: OriginRequest,
        left: Duration,
    ) -> Result<Response<Body>, UpstreamError> {
        match self {
            Origin::Http(u) => u.send_fresh(req, left).await,
            Origin::Service(..) => self.send(req).await,
        }
    }

    fn response_timeout(&self) -> Duration {
        match self {
            Origin::Http(u) => u.response_timeout(),
            Origin::Service(_, t) => *t,
        }
    }
}

struct Inner {
    cfg: HttpConfig,
    routes: Vec<Route>,
    table: PatternTable,
    invalidate: Vec<InvalidateRule>,
    invalidate_table: PatternTable,
    ns: RawNamespace,
    cache: Cache,
    upstream: Origin,
    compressor: Compressor,
    flights: Arc<Flights>,
    refreshing: Arc<Mutex<HashSet<String>>>,
    metrics: HttpMetrics,
}

/// The caching proxy. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct HttpCache {
    inner: Arc<Inner>,
}

/// `POST /v1/http/purge`: what to drop. Every list may be empty.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Purge {
    /// URLs (`/path?query` or `http://host/path?query`): every stored variant.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Path prefixes (`/api/risks`), or absolute URL prefixes for one host.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Tags (route tags and the origin's `Cache-Tag` / `Surrogate-Key` values).
    #[serde(default)]
    pub tags: Vec<String>,
}

impl HttpCache {
    /// Builds the proxy on `cache`, declaring its namespace if the configuration
    /// did not.
    pub fn new(cfg: HttpConfig, cache: &Cache) -> Result<HttpCache, HttpError> {
        let errs = cfg.check();
        if !errs.is_empty() {
            return Err(HttpError::Config(join_errors(&errs)));
        }
        let mut upstream =
            Upstream::new(&cfg.upstream, cfg.connect_timeout(), cfg.response_timeout())
                .map_err(HttpError::Config)?;
        if let Some(ca) = &cfg.upstream_ca {
            upstream = upstream::load_roots(ca)
                .and_then(|roots| upstream.with_roots(roots))
                .map_err(|e| HttpError::Config(format!("upstream_ca: {e}")))?;
        }
        Self::build(cfg, cache, Origin::Http(upstream), HttpMetrics::default())
    }

    /// The same proxy logic with `origin` answering misses.
    pub(crate) fn build(
        cfg: HttpConfig,
        cache: &Cache,
        upstream: Origin,
        metrics: HttpMetrics,
    ) -> Result<HttpCache, HttpError> {
        let errs = cfg.check_rules();
        if !errs.is_empty() {
            return Err(HttpError::Config(join_errors(&errs)));
        }
        let ns_name = cfg.namespace().to_owned();
        if !cache.namespaces().contains(&ns_name) {
            // Entries carry their own TTL; the policy's is only a fallback. Keys are
            // URLs, values a response in up to four encodings.
            let policy = Policy::new(Duration::from_secs(3600))
                .max_key_len(key::MAX_KEY_LEN)
                .max_value_size(cfg.max_object_size() * 4 + (1 << 20));
            cache.define_namespace(&ns_name, policy)?;
        }
        let ns = cache.raw(&ns_name)?;
        let global = RouteRules {
            ttl: cfg.default_ttl.map(|d| d.0),
            override_ttl: false,
            stale_while_revalidate: cfg.stale_while_revalidate.map(|d| d.0),
            stale_if_error: cfg.stale_if_error.map(|d| d.0),
            store_set_cookie: false,
        };
        let mut routes = Vec::new();
        for r in &cfg.routes {
            let pattern = Pattern::parse(&r.pattern).map_err(HttpError::Config)?;
            routes.push(Route {
                metrics: metrics.for_route(r.name.as_deref().unwrap_or(&r.pattern)),
                pattern: Some(pattern),
                cache: r.cache.unwrap_or(true),
                rules: RouteRules {
                    ttl: r.ttl.map(|d| d.0).or(global.ttl),
                    override_ttl: r.override_ttl,
                    stale_while_revalidate: r
                        .stale_while_revalidate
                        .map(|d| d.0)
                        .or(global.stale_while_revalidate),
                    stale_if_error: r.stale_if_error.map(|d| d.0).or(global.stale_if_error),
                    store_set_cookie: r.cache_set_cookie,
                },
                key: KeyRules {
                    query: r.key.query.clone(),
                    headers: r
                        .key
                        .headers
                        .iter()
                        .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                        .collect(),
                },
                tags: r.tags.clone(),
            });
        }
        let table = PatternTable::new(routes.iter().filter_map(|r| r.pattern.clone()));
        // The route of paths no pattern matches.
        routes.push(Route {
            metrics: metrics.for_route("default"),
            pattern: None,
            cache: true,
            rules: global,
            key: KeyRules::default(),
            tags: Vec::new(),
        });
        let invalidate: Vec<InvalidateRule> = cfg
            .invalidate
            .iter()
            .map(|r| {
                Ok(InvalidateRule {
                    trigger: Trigger::parse(&r.on)?,
                    tags: r.tags.clone(),
                    urls: r.urls.clone(),
                })
            })
            .collect::<Result<_, String>>()
            .map_err(HttpError::Config)?;
        let invalidate_table =
            PatternTable::new(invalidate.iter().map(|r| r.trigger.pattern.clone()));
        Ok(HttpCache {
            inner: Arc::new(Inner {
                compressor: Compressor::new(&cfg.compression),
                cfg,
                routes,
                table,
                invalidate,
                invalidate_table,
                ns,
                cache: cache.clone(),
                upstream,
                flights: Arc::new(Flights::default()),
                refreshing: Arc::new(Mutex::new(HashSet::new())),
                metrics,
            }),
        })
    }

    /// A handle for another thread's runtime: the same rules, cache, coalescing and
    /// metrics, with its own pool of origin connections (a pooled connection is
    /// driven by the runtime that opened it, so sharing one pool across
    /// runtimes would hop threads on every request).
    pub fn fork(&self) -> HttpCache {
        let i = &self.inner;
        let upstream = match &i.upstream {
            Origin::Http(u) => Origin::Http(u.fork()),
            other => other.clone(),
        };
        HttpCache {
            inner: Arc::new(Inner {
                cfg: i.cfg.clone(),
                routes: i.routes.clone(),
                table: i.table.clone(),
                invalidate: i.invalidate.clone(),
                invalidate_table: i.invalidate_table.clone(),
                ns: i.ns.clone(),
                cache: i.cache.clone(),
                upstream,
                compressor: i.compressor.clone(),
                flights: i.flights.clone(),
                refreshing: i.refreshing.clone(),
                metrics: i.metrics.clone(),
            }),
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.cfg
    }

    /// Registers the `strata_http_*` families.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry);
    }

    /// Answers one request: from the cache, from the origin, or both. The client's
    /// address, for `X-Forwarded-For`, is read from the request's extensions
    /// ([`ClientAddr`], [`ClientIp`]), where a tower stack puts what it knows.
    pub async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let peer = req.extensions().get::<ClientAddr>().map(|c| c.0);
        let ip = req.extensions().get::<ClientIp>().map(|c| c.0.clone());
        self.handle_from(req, peer, ip).await
    }

    /// [`HttpCache::handle`] for a server that knows the client's address beside
    /// the request: `peer`, and `ip`, its IP as a field value made once per
    /// connection (without it the IP is formatted per request). Request
    /// extensions would cost four allocations per request (bench/ir-pass.sh).
    ///
    /// ```no_run
    /// # async fn run(cache: strata_http::HttpCache, req: http::Request<axum::body::Body>) {
    /// let peer: std::net::SocketAddr = "192.0.2.7:50123".parse().unwrap();
    /// let ip = http::HeaderValue::from_static("192.0.2.7");
    /// let res = cache.handle_from(req, Some(peer), Some(ip)).await;
    /// # }
    /// ```
    pub async fn handle_from(
        &self,
        req: Request<Body>,
        peer: Option<SocketAddr>,
        ip: Option<HeaderValue>,
    ) -> Response<Body> {
        let started = Instant::now();
        let mut ctx = Ctx::default();
        let (route, mut res) = self.inner.clone().dispatch(req, peer, ip, &mut ctx).await;
        let took = started.elapsed();
        let h = res.headers_mut();
        h.insert(
            X_CACHE.clone(),
            HeaderValue::from_static(ctx.status.as_str()),
        );
        // Integer formatting: float formatting with fixed decimals cost ~5% of a
        // proxied request's CPU, and `write!` with integers still ~2% (perf,
        // docs/decisions.md). Built on the stack, each value is copied once, into
        // its HeaderValue.
        let mut text = StackText::default();
        let us = micros(took);
        let _ = text.push_decimal(us, 6);
        if let Some(v) = text.value() {
            h.insert(X_PROCESS_TIME.clone(), v);
        }
        let mut text = StackText::default();
        let _ = text.write_str("cache;desc=");
        let _ = text.write_str(ctx.status.as_str());
        if let Some(o) = ctx.origin {
            let _ = text.write_str(", origin;dur=");
            let _ = text.push_decimal(micros(o), 3);
        }
        let _ = text.write_str(", total;dur=");
        let _ = text.push_decimal(us, 3);
        if let Some(v) = text.value() {
            h.append(SERVER_TIMING.clone(), v);
        }
        self.inner.routes[route]
            .metrics
            .request(ctx.status.index(), took);
        res
    }

    /// Drops stored responses by URL, prefix and tag; returns how many entries went.
    pub async fn purge(&self, p: &Purge) -> Result<u64, strata_cache::CacheError> {
        let me = &self.inner;
        let ns = me.ns.name();
        let mut n = 0;
        for url in &p.urls {
            let (host, pq) = split_url(url);
            let tag = me.url_tag_for(&pq);
            n += match host {
                // A URL with a host drops that host's copies only.
                Some(host) => {
                    let keys = me.keys_for(&host, &pq);
                    let mut dropped = 0;
                    for k in &keys {
                        // Its Vary variants, by their tag (no scan).
                        let tag = key::variants_tag(k);
                        dropped += me.cache.invalidate(Invalidation::tag(ns, tag)).await?;
                    }
                    dropped + me.cache.invalidate(Invalidation::keys(ns, keys)).await?
                }
                None => me.cache.invalidate(Invalidation::tag(ns, tag)).await?,
            };
        }
        for prefix in &p.prefixes {
            let inv = match split_url(prefix) {
                (Some(host), pq) => Invalidation::prefix(ns, format!("http://{host}{pq}")),
                (None, pq) => Invalidation::pattern(
                    ns,
                    format!("http://*{}*", strata_cache::key::escape_glob(&pq)),
                ),
            };
            n += me.cache.invalidate(inv).await?;
        }
        for tag in &p.tags {
            n += me
                .cache
                .invalidate(Invalidation::tag(ns, tag.clone()))
                .await?;
        }
        me.metrics
            .invalidations
            .get_or_create(&SourceLabel { source: "purge" })
            .inc_by(n);
        Ok(n)
    }
}

/// A relative reference resolved against a request path (RFC 3986 §5.2, without
/// dot-segment removal); `None` for scheme-relative and other-scheme references.
fn resolve(base_path: &str, reference: &str) -> Option<String> {
    if reference.is_empty() || reference.starts_with("//") || reference.contains("://") {
        return None;
    }
    if reference.starts_with('/') {
        return Some(reference.to_owned());
    }
    if let Some(q) = reference.strip_prefix('?') {
        return Some(format!("{base_path}?{q}"));
    }
    let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
    Some(format!(
        "{}{reference}",
        if dir.is_empty() { "/" } else { dir }
    ))
}

fn join_errors(errs: &[(String, String)]) -> String {
    errs.iter()
        .map(|(f, m)| format!("http.{f}: {m}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `(Some(host), path?query)` for an absolute URL, `(None, path?query)` for a path.
fn split_url(s: &str) -> (Option<String>, String) {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = s.strip_prefix(scheme) {
            let (host, pq) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            return (key::normalize_host(host), pq.to_owned());
        }
    }
    (None, s.to_owned())
}

impl Inner {
    fn route_of(&self, path: &str) -> (usize, Params) {
        self.table
            .find(path)
            .unwrap_or((self.routes.len() - 1, Vec::new()))
    }

    /// `path?query` with the query normalised the way the path's route keys it.
    fn normalized(&self, pq: &str) -> (usize, String, String) {
        let (path, query) = pq.split_once('?').unwrap_or((pq, ""));
        let (route, _) = self.route_of(path);
        let q = key::normalize_query(query, self.routes[route].key.query.as_ref());
        (route, path.to_owned(), q)
    }

    fn url_tag_for(&self, pq: &str) -> String {
        let (_, path, q) = self.normalized(pq);
        key::url_tag(
            &KeyParts {
                host: "",
                path: &path,
                query: &q,
            }
            .path_and_query(),
        )
    }

    /// Keys of a URL on one host (keyed-header variants are reached by URL tag).
    fn keys_for(&self, host: &str, pq: &str) -> Vec<String> {
        let (route, path, q) = self.normalized(pq);
        let parts = KeyParts {
            host,
            path: &path,
            query: &q,
        };
        key::cache_key(
            &parts,
            &HeaderMap::new(),
            &KeyRules {
                query: self.routes[route].key.query.clone(),
                headers: Vec::new(),
            },
        )
        .into_iter()
        .collect()
    }

    /// Request filter: pick the route and the phase that answers.
    async fn dispatch(
        self: Arc<Self>,
        req: Request<Body>,
        peer: Option<SocketAddr>,
        peer_ip: Option<HeaderValue>,
        ctx: &mut Ctx,
    ) -> (usize, Response<Body>) {
        let (parts, body) = req.into_parts();
        let default_route = self.routes.len() - 1;
        let field = parts.headers.get(header::HOST);
        let host = match field.and_then(|v| v.to_str().ok()) {
            Some(text) => match key::normalized_host(text) {
                Some(Cow::Borrowed(h)) if h.len() == text.len() => field.cloned(),
                Some(h) => HeaderValue::from_str(&h).ok(),
                None => None,
            },
            None => parts
                .uri
                .authority()
                .and_then(|a| key::normalized_host(a.as_str()))
                .and_then(|h| HeaderValue::from_str(&h).ok()),
        };
        let Some(host) = host else {
            ctx.status = CacheStatus::Bypass;
            return (
                default_route,
                plain(StatusCode::BAD_REQUEST, "missing or invalid Host header"),
            );
        };
        let (route, params) = self.route_of(parts.uri.path());
        let head = Head {
            peer,
            peer_ip,
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            host,
            route,
            params,
        };
        let cacheable_method = head.method == Method::GET || head.method == Method::HEAD;
        // Safe methods (RFC 9110 §9.2.1); every other one, known or not, may change
        // the resource and invalidates it on success (RFC 9111 §4.4).
        let safe =
            cacheable_method || head.method == Method::OPTIONS || head.method == Method::TRACE;
        let res = if cacheable_method && self.routes[route].cache {
            self.cached(head, ctx).await
        } else if !safe {
            ctx.status = CacheStatus::Bypass;
            self.unsafe_request(head, body, ctx).await
        } else {
            ctx.status = CacheStatus::Bypass;
            self.pass(&head, body, ctx).await
        };
        (route, res)
    }

    /// Cache lookup and what follows from it.
    async fn cached(self: Arc<Self>, head: Head, ctx: &mut Ctx) -> Response<Body> {
        let route = &self.routes[head.route];
        let query = key::normalize_query(head.uri.query().unwrap_or(""), route.key.query.as_ref());
        let parts = KeyParts {
            host: head.host(),
            path: head.uri.path(),
            query: &query,
        };
        let Some(key) = key::cache_key(&parts, &head.headers, &route.key) else {
            ctx.status = CacheStatus::Bypass;
            return self.pass(&head, Body::empty(), ctx).await;
        };
        // Only a fetch needs it: two strings a hit does not build.
        let url_tag = || key::url_tag(&parts.path_and_query());
        let req_cc = RequestDirectives::parse(&head.headers);
        let stored = self.lookup(&key, &head.headers).await;
        let now = unix_ms(SystemTime::now());
        if let Some(entry) = &stored {
            match entry.timing.usable(&req_cc, now) {
                Usable::Fresh => {
                    ctx.status = CacheStatus::Hit;
                    return self.serve(&head, entry.clone(), now).await;
                }
                Usable::StaleAccepted => {
                    ctx.status = CacheStatus::Stale;
                    return self.serve(&head, entry.clone(), now).await;
                }
                Usable::StaleWhileRevalidate => {
                    ctx.status = CacheStatus::Stale;
                    self.clone()
                        .refresh_in_background(head.clone(), key, url_tag(), entry.clone());
                    return self.serve(&head, entry.clone(), now).await;
                }
                Usable::Revalidate => {}
            }
        }
        // only-if-cached: the stored response as it is, or nothing (§5.2.1.7).
        if req_cc.only_if_cached {
            ctx.status = CacheStatus::Miss;
            return plain(
                StatusCode::GATEWAY_TIMEOUT,
                "only-if-cached: not in the cache",
            );
        }
        if head.method == Method::HEAD && stored.is_none() {
            // HEAD is answered from GET entries but never fills one.
            ctx.status = CacheStatus::Miss;
            return self.pass(&head, Body::empty(), ctx).await;
        }
        if self.flights.recently_uncacheable(&key, now) {
            // Its last fetch could not be stored: no waiting behind another
            // request's fetch (coalesce.rs, hit-for-miss). A range goes to the
            // origin as asked, with no whole representation fetched to be dropped.
            if head.headers.contains_key(header::RANGE) && head.method == Method::GET {
                ctx.status = CacheStatus::Miss;
                return self.pass(&head, Body::empty(), ctx).await;
            }
            return self
                .fetch(&head, &key, url_tag(), &req_cc, stored, ctx)
                .await
                .0;
        }
        match self.flights.join(&key) {
            Role::Leader(leader) => {
                let (res, outcome) = self
                    .fetch(&head, &key, url_tag(), &req_cc, stored, ctx)
                    .await;
                leader.finish(outcome);
                res
            }
            Role::Waiter(waiter) => {
                let (entry, status) = match waiter.wait(self.cfg.coalesce_timeout()).await {
                    Outcome::Stored(e) => (Some(e), CacheStatus::Hit),
                    // The leader fell back on a stale copy (stale-if-error).
                    Outcome::Stale(e) => (Some(e), CacheStatus::Stale),
                    Outcome::Pass => (None, CacheStatus::Miss),
                };
                match entry {
                    Some(entry) if self.vary_matches(&entry, &head.headers) => {
                        self.routes[head.route].metrics.coalesced.inc();
                        ctx.status = status;
                        self.serve(&head, entry, unix_ms(SystemTime::now())).await
                    }
                    _ => {
                        self.fetch(&head, &key, url_tag(), &req_cc, stored, ctx)
                            .await
                            .0
                    }
                }
            }
        }
    }

    /// Reads and decodes a stored response that matches the request's `Vary` fields.
    /// A key whose response varies holds the names of the selecting fields; the
    /// request's values of them then name the variant to read.
    async fn lookup(&self, key: &str, req: &HeaderMap) -> Option<Arc<Entry>> {
        let mut hit = self.ns.get(key).await.ok()??;
        let mut variant = None;
        if hit.codec == CODEC_VARY {
            let names = VaryRecord::decode(&hit.value)?.names;
            let values: Vec<Option<HeaderValue>> =
                names.iter().map(|n| vary_value(req, n)).collect();
            let vk = key::variant_key(key, names.iter().zip(values.iter().map(Option::as_ref)))?;
            hit = self.ns.get(&vk).await.ok()??;
            variant = Some(vk);
        }
        if hit.codec != CODEC_HTTP {
            return None;
        }
        match Entry::decode(hit.value) {
            Ok(e) if self.vary_matches(&e, req) => Some(Arc::new(e)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "dropping a malformed stored response");
                let _ = self.ns.delete(variant.as_deref().unwrap_or(key)).await;
                None
            }
        }
    }

    /// Where `e`, stored for `key`, lives: `key` itself, or its variant's key when
    /// the response varies on fields other than `Accept-Encoding` (which selects
    /// no variant: one identity body serves every encoding). `None` when the
    /// variant's key would be too long to store.
    fn storage_key(key: &str, e: &Entry) -> Option<String> {
        let mut fields = selecting(e).peekable();
        if fields.peek().is_none() {
            return Some(key.to_owned());
        }
        key::variant_key(key, fields.map(|(n, v)| (n, v.as_ref())))
    }

    /// Whether the request selects this stored response (RFC 9111 §4.1), with
    /// `Accept-Encoding` normalised: an identity body serves every client (the
    /// proxy compresses per client), an encoded one only clients that accept it.
    fn vary_matches(&self, e: &Entry, req: &HeaderMap) -> bool {
        for (name, stored) in &e.vary {
            if name == header::ACCEPT_ENCODING {
                match e.headers.get(header::CONTENT_ENCODING) {
                    Some(ce) => {
                        let enc = ce.to_str().ok().and_then(Encoding::from_name);
                        match enc {
                            Some(enc)
                                if Compressor::accepts(req.get(header::ACCEPT_ENCODING), enc) =>
                            {
                                continue
                            }
                            _ => return false,
                        }
                    }
                    None if self.compressor.enabled() => continue,
                    None => {}
                }
            }
            if vary_value(req, name).as_ref() != stored.as_ref() {
                return false;
            }
        }
        true
    }

    /// Stale-while-revalidate: one background revalidation per key at a time.
    fn refresh_in_background(
        self: Arc<Self>,
        head: Head,
        key: String,
        url_tag: String,
        stale: Arc<Entry>,
    ) {
        {
            let mut r = self.refreshing.lock().unwrap_or_else(|p| p.into_inner());
            if !r.insert(key.clone()) {
                return;
            }
        }
        // A refresh answers nobody: no range to cut, so none to fall back on.
        let mut head = head;
        head.headers.remove(header::RANGE);
        tokio::spawn(async move {
            if let Role::Leader(leader) = self.flights.join(&key) {
                let mut ctx = Ctx::default();
                let req_cc = RequestDirectives::default();
                let (_res, outcome) = self
                    .fetch(&head, &key, url_tag, &req_cc, Some(stale), &mut ctx)
                    .await;
                leader.finish(outcome);
            }
            self.refreshing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
    }

    /// Goes to the origin for a cacheable request: conditionally when a stale copy
    /// exists, storing what may be stored. Returns the response and what waiting
    /// requests may use.
    async fn fetch(
        &self,
        head: &Head,
        key: &str,
        url_tag: String,
        req_cc: &RequestDirectives,
        stale: Option<Arc<Entry>>,
        ctx: &mut Ctx,
    ) -> (Response<Body>, Outcome) {
        let route = &self.routes[head.route];
        // A range miss fetches the whole representation (`origin_request` drops
        // `Range` for the cache), to store it and cut the range from it.
        let ranged = head.method == Method::GET && head.headers.contains_key(header::RANGE);
        let build = || {
            let mut oreq = self.origin_request(head, Body::empty(), true);
            oreq.method = Method::GET;
            // A fetch for the cache carries no conditionals of the client's.
            if let Some(old) = &stale {
                if let Some(etag) = old.headers.get(header::ETAG) {
                    oreq.fields.push((header::IF_NONE_MATCH, etag.clone()));
                }
                if let Some(lm) = old.headers.get(header::LAST_MODIFIED) {
                    oreq.fields.push((header::IF_MODIFIED_SINCE, lm.clone()));
                }
            }
            oreq
        };
        let request_time = unix_ms(SystemTime::now());
        let sent = Instant::now();
        let result = self.send_repeatable(build(), sent, || Some(build())).await;
        let took = sent.elapsed();
        ctx.origin = Some(took);
        route.metrics.origin.observe(took.as_secs_f64());
        let now = unix_ms(SystemTime::now());
        let res = match result {
            Ok(r) if !r.status().is_server_error() => r,
            failed => {
                route.metrics.origin_error(match &failed {
                    Ok(_) => "status_5xx",
                    Err(e) => e.kind(),
                });
                if let Some(old) = stale.filter(|e| e.timing.serves_on_error(now)) {
                    ctx.status = CacheStatus::Stale;
                    return (
                        self.serve(head, old.clone(), now).await,
                        Outcome::Stale(old),
                    );
                }
                ctx.status = CacheStatus::Miss;
                let res = match failed {
                    Ok(r) => relay(r),
                    Err(e) => upstream_error(&e),
                };
                return (res, Outcome::Pass);
            }
        };
        let response_time = unix_ms(SystemTime::now());
        if res.status() == StatusCode::NOT_MODIFIED {
            if let Some(old) = stale {
                let fresh = self.refreshed(
                    &old,
                    res.headers(),
                    request_time,
                    response_time,
                    &route.rules,
                );
                let fresh = Arc::new(fresh);
                self.store(key, &fresh, response_time, route).await;
                ctx.status = CacheStatus::Revalidated;
                return (
                    self.serve(head, fresh.clone(), response_time).await,
                    Outcome::Stored(fresh),
                );
            }
        }
        ctx.status = CacheStatus::Miss;
        let res_cc = ResponseDirectives::parse(res.headers());
        let verdict = freshness::storable(
            &Method::GET,
            &head.headers,
            req_cc,
            res.status(),
            res.headers(),
            &res_cc,
            &route.rules,
        );
        if let Err(why) = verdict {
            tracing::debug!(?why, "not storing");
            // What the response decides holds for the next requests too; this
            // request's own `no-store` or `Authorization` does not.
            let for_everyone = match why {
                NotStored::Authorization => false,
                NotStored::NoStore => res_cc.no_store,
                _ => true,
            };
            self.not_stored(route, key, now, why.label(), for_everyone);
            if let Some(old) = &stale {
                // The origin no longer lets this be shared: the old copy goes too.
                if let Some(at) = Self::storage_key(key, old) {
                    let _ = self.ns.delete(&at).await;
                }
            }
            if ranged && res.status() == StatusCode::OK {
                drop(res);
                return (self.range_from_origin(head, ctx).await, Outcome::Pass);
            }
            return (relay(res), Outcome::Pass);
        }
        let limit = self.cfg.max_object_size();
        let announced = res
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<usize>().ok());
        if announced.is_some_and(|n| n > limit) {
            self.not_stored(route, key, now, "too_large", true);
            if ranged {
                drop(res);
                return (self.range_from_origin(head, ctx).await, Outcome::Pass);
            }
            return (relay(res), Outcome::Pass);
        }
        let (mut parts, body) = res.into_parts();
        let remaining = self.upstream.response_timeout().saturating_sub(took);
        let body = match upstream::collect(body, limit, remaining).await {
            Ok(Collected::Complete(b)) => b,
            Ok(Collected::TooLarge(head_bytes, tail)) => {
                self.not_stored(route, key, now, "too_large", true);
                if ranged {
                    drop((head_bytes, tail));
                    return (self.range_from_origin(head, ctx).await, Outcome::Pass);
                }
                strip_relayed(&mut parts.headers);
                return (
                    Response::from_parts(parts, upstream::chain(head_bytes, tail)),
                    Outcome::Pass,
                );
            }
            Err(e) => {
                route.metrics.origin_error(e.kind());
                return (upstream_error(&e), Outcome::Pass);
            }
        };
        // Fields the stored copy leaves out (cookies, qualified no-cache/private
        // fields): the client whose request fetched the response still gets them.
        let mut withheld: Vec<(HeaderName, HeaderValue)> = Vec::new();
        let names = std::iter::once("set-cookie")
            .chain(res_cc.no_cache_fields.iter().map(String::as_str))
            .chain(res_cc.private_fields.iter().map(String::as_str));
        for name in names {
            if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                if withheld.iter().any(|(w, _)| *w == n) {
                    continue;
                }
                for v in parts.headers.get_all(&n) {
                    withheld.push((n.clone(), v.clone()));
                }
            }
        }
        let timing = Timing::of(
            parts.status,
            &parts.headers,
            &res_cc,
            request_time,
            response_time,
            &route.rules,
        );
        let entry =
            Arc::new(self.build_entry(head, parts.status, parts.headers, timing, body, url_tag));
        self.store(key, &entry, response_time, route).await;
        let mut res = self.serve(head, entry.clone(), response_time).await;
        if res.status() != StatusCode::NOT_MODIFIED {
            for (name, value) in withheld {
                res.headers_mut().append(name, value);
            }
        }
        (res, Outcome::Stored(entry))
    }

    /// A stored response updated by a 304 (RFC 9111 §4.3.4): new header values
    /// except those describing the body, new timing.
    fn refreshed(
        &self,
        old: &Entry,
        new: &HeaderMap,
        request_time: u64,
        response_time: u64,
        rules: &RouteRules,
    ) -> Entry {
        let mut headers = old.headers.clone();
        let mut updated = HeaderMap::new();
        for (name, value) in new {
            if NOT_UPDATED_BY_304.contains(&name.as_str())
                || is_hop_by_hop(name)
                || TAG_FIELDS.contains(&name.as_str())
                || name == header::SET_COOKIE
            {
                continue;
            }
            updated.append(name.clone(), value.clone());
        }
        for name in updated.keys() {
            headers.remove(name);
        }
        for (name, value) in &updated {
            headers.append(name.clone(), value.clone());
        }
        let cc = ResponseDirectives::parse(&headers);
        let mut e = old.clone();
        e.timing = Timing::of(
            old.status,
            &headers,
            &cc,
            request_time,
            response_time,
            rules,
        );
        // As in a new entry: the age lives in the timing, not in a stored field
        // that a later refresh would count again.
        headers.remove(header::AGE);
        e.headers = headers;
        e
    }

    fn build_entry(
        &self,
        head: &Head,
        status: StatusCode,
        mut headers: HeaderMap,
        timing: Timing,
        body: Bytes,
        url_tag: String,
    ) -> Entry {
        let route = &self.routes[head.route];
        let mut tags: Vec<String> = route
            .tags
            .iter()
            .map(|t| match &route.pattern {
                Some(p) => p.fill(t, &head.params),
                None => t.clone(),
            })
            .collect();
        for v in headers.get_all("cache-tag") {
            tags.extend(
                String::from_utf8_lossy(v.as_bytes())
                    .split(',')
                    .map(|s| s.trim().to_owned()),
            );
        }
        for v in headers.get_all("surrogate-key") {
            tags.extend(
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .map(str::to_owned),
            );
        }
        tags.retain(|t| !t.is_empty() && t.len() <= 512 && !t.chars().any(char::is_control));
        tags.push(url_tag);
        tags.sort();
        tags.dedup();
        strip_hop_by_hop(&mut headers);
        strip(&mut headers, |n| TAG_FIELDS.contains(&n.as_str()));
        headers.remove(header::SET_COOKIE);
        // Age is recomputed on every use from the stored timing.
        headers.remove(header::AGE);
        // Qualified no-cache and private name fields a shared cache must not reuse.
        let cc = ResponseDirectives::parse(&headers);
        for f in cc.no_cache_fields.iter().chain(&cc.private_fields) {
            headers.remove(f.as_str());
        }
        let vary = freshness::vary_names(&headers)
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .map(|n| {
                let v = vary_value(&head.headers, &n);
                (n, v)
            })
            .collect();
        let mut e = Entry::new(status, headers, timing);
        e.vary = vary;
        e.tags = tags;
        e.bodies.push((Encoding::Identity, body));
        e
    }

    async fn store(&self, key: &str, e: &Entry, now: u64, route: &Route) {
        // Storable again (whether or not its TTL lets it be kept): requests for it
        // coalesce again.
        self.flights.clear_uncacheable(key);
        let ttl = e
            .timing
            .storage_ttl(now, e.has_validators(), self.cfg.keep());
        if ttl.is_zero() {
            return;
        }
        let Some(at) = Self::storage_key(key, e) else {
            return;
        };
        let mut opts = SetOptions {
            ttl: Some(ttl),
            tags: e.tags.clone(),
            version: None,
        };
        let stored = if at == key {
            self.ns
                .set_encoded(&[(key, e.encode(), CODEC_HTTP)], &opts)
                .await
        } else {
            // Each variant under its own key, and the key itself says which
            // fields pick one (RFC 9111 §4.1: a cache may hold several responses
            // for one URL and selects by the request's values of the Vary fields).
            opts.tags.push(key::variants_tag(key));
            let until = now.saturating_add(ttl.as_millis() as u64);
            let record = self.vary_record(key, e, until).await;
            let stored = self
                .ns
                .set_encoded(&[(&at, e.encode(), CODEC_HTTP)], &opts)
                .await;
            // After the variant, so a request that finds the record finds it too.
            match (stored, record) {
                (Ok(()), Some(record)) => {
                    opts.ttl = Some(Duration::from_millis(record.until.saturating_sub(now)));
                    self.ns
                        .set_encoded(&[(key, record.encode(), CODEC_VARY)], &opts)
                        .await
                }
                (stored, _) => stored,
            }
        };
        match stored {
            Ok(()) => {
                route.metrics.stored.inc();
            }
            Err(err) => tracing::warn!(error = %err, "could not store a response"),
        }
    }

    /// The record that names the fields `e` varies on, to be stored beside it
    /// when `e` is kept until `until`; `None` when the record there already
    /// does. A record lives as long as the longest-lived variant: one already
    /// there for the same fields that expires later keeps its expiry, so an
    /// earlier variant stays reachable after a shorter-lived one is stored.
    /// Costs one read, on stores of varying responses only.
    async fn vary_record(&self, key: &str, e: &Entry, until: u64) -> Option<VaryRecord> {
        let names: Vec<HeaderName> = selecting(e).map(|(n, _)| n.clone()).collect();
        let kept = match self.ns.get(key).await {
            Ok(Some(hit)) if hit.codec == CODEC_VARY => VaryRecord::decode(&hit.value)
                .filter(|r| r.names == names)
                .map_or(0, |r| r.until),
            _ => 0,
        };
        (kept < until).then_some(VaryRecord { names, until })
    }

    /// Response filter for stored responses: conditionals, `Age`, compression,
    /// HEAD.
    async fn serve(&self, head: &Head, entry: Arc<Entry>, now: u64) -> Response<Body> {
        let mut headers = entry.headers.clone();
        strip_cache_only(&mut headers);
        let age = entry.timing.age(now) / 1000;
        headers.insert(header::AGE, decimal(age));
        if not_modified(&head.headers, &entry) {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::NOT_MODIFIED;
            for name in NOT_MODIFIED_FIELDS {
                for v in headers.get_all(name) {
                    res.headers_mut().append(name.clone(), v.clone());
                }
            }
            return res;
        }
        let mut body = entry.origin_body().clone();
        // Cache-Control is parsed (and allocates) only for a body we would compress.
        let compressible = self.compressor.worth_it(&headers, body.len())
            && !ResponseDirectives::parse(&headers).no_transform;
        if let Some(res) = self.partial(head, &entry, &mut headers, &body, compressible) {
            return res;
        }
        if compressible {
            add_vary(&mut headers, "accept-encoding");
            if let Some(enc) = self
                .compressor
                .negotiate(head.headers.get(header::ACCEPT_ENCODING))
            {
                if let Some(encoded) = self.encoded(&entry, enc, head).await {
                    self.metrics
                        .compressed_saved
                        .get_or_create(&EncodingLabel {
                            encoding: enc.name(),
                        })
                        .inc_by(body.len().saturating_sub(encoded.len()) as u64);
                    headers.insert(
                        header::CONTENT_ENCODING,
                        HeaderValue::from_static(enc.name()),
                    );
                    weaken_etag(&mut headers);
                    body = encoded;
                }
            }
        }
        // 204 carries neither a body nor its length (RFC 9110 §8.6).
        if entry.status != StatusCode::NO_CONTENT {
            headers.insert(header::CONTENT_LENGTH, decimal(body.len() as u64));
        }
        let mut res = Response::new(if head.method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(body)
        });
        *res.status_mut() = entry.status;
        *res.headers_mut() = headers;
        res
    }

    /// The answer to a `Range` request that a stored 200 can give: a 206 with one
    /// part of the identity body, or a 416; `None` when the whole response is the
    /// answer (no range, a range this cache ignores, an `If-Range` that does not
    /// hold). Only GET has ranges (RFC 9110 §14.2).
    fn partial(
        &self,
        head: &Head,
        entry: &Entry,
        headers: &mut HeaderMap,
        body: &Bytes,
        compressible: bool,
    ) -> Option<Response<Body>> {
        if head.method != Method::GET || entry.status != StatusCode::OK {
            return None;
        }
        let range = head.headers.get(header::RANGE)?.to_str().ok()?;
        if let Some(v) = head.headers.get(header::IF_RANGE) {
            if !v.to_str().is_ok_and(|v| range::if_range_holds(v, headers)) {
                return None;
            }
        }
        let len = body.len() as u64;
        let (content_range, part) = match range::parse(range, len) {
            Ranged::Whole => return None,
            Ranged::Unsatisfiable => {
                let mut res = plain(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
                res.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{len}")).ok()?,
                );
                return Some(res);
            }
            Ranged::Part { start, end } => (
                format!("bytes {start}-{end}/{len}"),
                body.slice(start as usize..=end as usize),
            ),
        };
        // The part is of the identity body; other clients of the same URL may get
        // an encoded whole, so the response still varies by Accept-Encoding.
        if compressible {
            add_vary(headers, "accept-encoding");
        }
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&content_range).ok()?,
        );
        headers.insert(header::CONTENT_LENGTH, decimal(part.len() as u64));
        let mut res = Response::new(Body::from(part));
        *res.status_mut() = StatusCode::PARTIAL_CONTENT;
        *res.headers_mut() = std::mem::take(headers);
        Some(res)
    }

    /// The body in `enc`: stored, or computed now and stored for next time.
    async fn encoded(&self, entry: &Arc<Entry>, enc: Encoding, head: &Head) -> Option<Bytes> {
        if let Some(b) = entry.body(enc) {
            return Some(b.clone());
        }
        let src = entry.origin_body().clone();
        // Small bodies compress in microseconds; big ones leave the runtime's
        // threads to other requests.
        let out = if src.len() < 64 * 1024 {
            enc.encode(&src)
        } else {
            tokio::task::spawn_blocking(move || enc.encode(&src))
                .await
                .ok()?
        };
        let encoded = Bytes::from(out.ok()?);
        let mut updated = (**entry).clone();
        if updated.add_body(enc, encoded.clone()) {
            let route = &self.routes[head.route];
            let query =
                key::normalize_query(head.uri.query().unwrap_or(""), route.key.query.as_ref());
            let parts = KeyParts {
                host: head.host(),
                path: head.uri.path(),
                query: &query,
            };
            if let Some(key) = key::cache_key(&parts, &head.headers, &route.key) {
                self.store(&key, &updated, unix_ms(SystemTime::now()), route)
                    .await;
            }
        }
        Some(encoded)
    }

    /// Unsafe methods: forward, and when the origin reports success invalidate the
    /// target URI, `Location`, `Content-Location` and the configured tags
    /// (RFC 9111 §4.4).
    async fn unsafe_request(&self, head: Head, body: Body, ctx: &mut Ctx) -> Response<Body> {
        let res = self.pass(&head, body, ctx).await;
        let status = res.status();
        if !(status.is_success() || status.is_redirection()) {
            return res;
        }
        let mut tags =
            vec![self.url_tag_for(head.uri.path_and_query().map_or("/", |p| p.as_str()))];
        let upstream_host = self
            .upstream
            .authority()
            .and_then(|a| key::normalize_host(a.as_str()));
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            let Some(v) = res.headers().get(&name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            // Same origin only (§4.4): our host, or the origin's own name for itself.
            match split_url(v) {
                (Some(h), pq) if h == head.host() || Some(&h) == upstream_host.as_ref() => {
                    tags.push(self.url_tag_for(&pq))
                }
                (Some(_), _) => {}
                (None, reference) => {
                    if let Some(pq) = resolve(head.uri.path(), &reference) {
                        tags.push(self.url_tag_for(&pq));
                    }
                }
            }
        }
        for (i, params) in self.invalidate_table.find_all(head.uri.path()) {
            let rule = &self.invalidate[i];
            if !rule.trigger.fires_on(&head.method) {
                continue;
            }
            tags.extend(
                rule.tags
                    .iter()
                    .map(|t| rule.trigger.pattern.fill(t, &params)),
            );
            tags.extend(
                rule.urls
                    .iter()
                    .map(|u| self.url_tag_for(&rule.trigger.pattern.fill(u, &params))),
            );
        }
        tags.sort();
        tags.dedup();
        let ns = self.ns.name();
        let mut n = 0;
        for tag in tags {
            match self.cache.invalidate(Invalidation::tag(ns, tag)).await {
                Ok(k) => n += k,
                Err(e) => tracing::warn!(error = %e, "invalidation after an unsafe request failed"),
            }
        }
        self.metrics
            .invalidations
            .get_or_create(&SourceLabel {
                source: "unsafe_method",
            })
            .inc_by(n);
        res
    }

    /// Forwards a request uncached and relays the answer as it streams.
    async fn pass(&self, head: &Head, body: Body, ctx: &mut Ctx) -> Response<Body> {
        let limit = self.cfg.max_request_body();
        let announced = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<usize>().ok());
        if announced.is_some_and(|n| n > limit) {
            let mut res = plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return res;
        }
        // A bodiless request (most of them) needs no limit, nor its allocation.
        let bodiless = http_body::Body::is_end_stream(&body);
        let body = if bodiless {
            Body::empty()
        } else {
            Body::new(http_body_util::Limited::new(body, limit))
        };
        // Safe to send twice (RFC 9110 §9.2.2) when there is no body to lose.
        let repeatable = bodiless
            && matches!(
                head.method,
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::TRACE
                    | Method::PUT
                    | Method::DELETE
            );
        let req = self.origin_request(head, body, false);
        let sent = Instant::now();
        let result = self
            .send_repeatable(req, sent, || {
                repeatable.then(|| self.origin_request(head, Body::empty(), false))
            })
            .await;
        let took = sent.elapsed();
        ctx.origin = Some(took);
        let route = &self.routes[head.route];
        route.metrics.origin.observe(took.as_secs_f64());
        match result {
            Ok(res) => {
                if res.status().is_server_error() {
                    route.metrics.origin_error("status_5xx");
                }
                // Stripped for the client already (`OriginRequest::relayed`).
                res
            }
            Err(e) => {
                route.metrics.origin_error(e.kind());
                upstream_error(&e)
            }
        }
    }

    /// Sends `req` to the origin. When it went out on a reused keep-alive
    /// connection that the origin closed before answering (its idle timeout racing
    /// the request), `again` builds the same request anew if it is safe to repeat,
    /// and it goes out once more, on a new connection, as nginx retries a request
    /// that failed on a cached upstream connection. Building anew costs nothing
    /// until it is needed; keeping a copy of every request would cost the hot
    /// path. At most two sends: an origin that drops the request itself is not
    /// sent it again and again.
    ///
    /// `sent`: when the caller sent it (a clock read per request fewer than
    /// reading it here again).
    async fn send_repeatable(
        &self,
        req: OriginRequest,
        sent: Instant,
        again: impl Fn() -> Option<OriginRequest>,
    ) -> Result<Response<Body>, UpstreamError> {
        let result = self.upstream.send(req).await;
        if matches!(result, Err(UpstreamError::Reused(_))) {
            if let Some(req) = again() {
                // One response timeout for both sends, as the client sees one request.
                let left = self
                    .upstream
                    .response_timeout()
                    .saturating_sub(sent.elapsed());
                return self.upstream.send_again(req, left).await;
            }
        }
        result
    }

    /// A fetched response could not be stored: count it by `reason`, and when the
    /// reason holds for every request (`for_everyone`), let the key's next
    /// requests skip coalescing (coalesce.rs, hit-for-miss).
    fn not_stored(
        &self,
        route: &Route,
        key: &str,
        now: u64,
        reason: &'static str,
        for_everyone: bool,
    ) {
        route.metrics.not_stored(reason);
        if for_everyone {
            self.flights.mark_uncacheable(key, now);
        }
    }

    /// A range request whose whole representation came back but cannot be stored
    /// (not storable, or over `max_object_size`): the client's request goes to the
    /// origin again, `Range` and all, rather than streaming the whole body to a
    /// client that asked for a part of it. Origin time adds up in `Server-Timing`.
    async fn range_from_origin(&self, head: &Head, ctx: &mut Ctx) -> Response<Body> {
        let first = ctx.origin.unwrap_or_default();
        let res = self.pass(head, Body::empty(), ctx).await;
        ctx.origin = Some(first + ctx.origin.unwrap_or_default());
        res
    }

    /// The request the origin sees: hop-by-hop and override fields removed,
    /// forwarding fields set by us. A fetch for the cache (`for_cache`) also drops
    /// conditionals (the cache answers those) and, when the proxy compresses,
    /// `Accept-Encoding` (it stores one identity body and encodes per client).
    fn origin_request(&self, head: &Head, body: Body, for_cache: bool) -> OriginRequest {
        let mut fields = Vec::with_capacity(head.headers.len() + 6);
        let host = match self.upstream.host() {
            Some(origin) if !self.cfg.preserve_host => Some(origin),
            // An in-process service sees the client's Host.
            _ => head.headers.get(header::HOST),
        };
        if let Some(host) = host {
            fields.push((header::HOST, host.clone()));
        }
        // The fields `Connection` lists go too, but most requests have no
        // `Connection` (HTTP/1.1 keeps alive without it): they are taken out
        // afterwards when it was there, rather than looked up for every request.
        let mut connection = false;
        let mut forwarded_for = Vec::new();
        for (name, value) in &head.headers {
            let n = name.as_str();
            connection |= n == "connection";
            if is_hop_by_hop(name) || name == header::HOST {
                continue;
            }
            if n == "x-forwarded-for" {
                // Kept for pass-through requests (their answer is never shared).
                if !for_cache {
                    forwarded_for.push(value);
                }
                continue;
            }
            if UNKEYED_OVERRIDES.contains(&n) {
                continue;
            }
            if for_cache
                && (CONDITIONALS.contains(&n)
                    || (n == "accept-encoding" && self.compressor.enabled()))
            {
                continue;
            }
            fields.push((name.clone(), value.clone()));
        }
        if connection {
            let listed = ConnectionListed::of(&head.headers);
            // The only `Host` among them is the one set above.
            fields.retain(|(name, _)| name == header::HOST || !listed.contains(name.as_str()));
            if listed.contains("x-forwarded-for") {
                forwarded_for.clear();
            }
        }
        fields.push((X_FORWARDED_HOST.clone(), head.host.clone()));
        fields.push((X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http")));
        match (&head.peer_ip, head.peer, forwarded_for.is_empty()) {
            (Some(ip), _, true) => fields.push((X_FORWARDED_FOR.clone(), ip.clone())),
            (ip, Some(peer), _) => {
                let mut xff = forwarded_for
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>()
                    .join(", ");
                if !xff.is_empty() {
                    xff.push_str(", ");
                }
                match ip.as_ref().and_then(|v| v.to_str().ok()) {
                    Some(s) => xff.push_str(s),
                    None => xff.push_str(&peer.ip().to_string()),
                }
                if let Ok(v) = HeaderValue::from_str(&xff) {
                    fields.push((X_FORWARDED_FOR.clone(), v));
                }
            }
            _ => {}
        }
        fields.push((header::VIA, HeaderValue::from_static("1.1 strata")));
        // Origins may target `Surrogate-Control` directives at us by this token.
        fields.push((
            SURROGATE_CAPABILITY.clone(),
            HeaderValue::from_static("strata=\"Surrogate/1.0\""),
        ));
        OriginRequest {
            method: head.method.clone(),
            uri: self.upstream.target_for(head.uri.path_and_query()),
            fields,
            body,
            // A fetch for the cache reads the cache-only fields; a pass-through's
            // answer goes to the client as it comes.
            relayed: !for_cache,
        }
    }
}

/// The origin's response for the client, streamed.
fn relay(res: Response<Body>) -> Response<Body> {
    let (mut parts, body) = res.into_parts();
    strip_relayed(&mut parts.headers);
    Response::from_parts(parts, body)
}

fn plain(status: StatusCode, msg: &str) -> Response<Body> {
    let mut res = Response::new(Body::from(format!("{msg}\n")));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn upstream_error(e: &UpstreamError) -> Response<Body> {
    tracing::warn!(error = %e, "origin request failed");
    match e {
        UpstreamError::Timeout(_) => plain(
            StatusCode::GATEWAY_TIMEOUT,
            "the origin did not answer in time",
        ),
        UpstreamError::Connect(_) => plain(StatusCode::BAD_GATEWAY, "the origin is unreachable"),
        UpstreamError::Protocol(_) | UpstreamError::Reused(_) => {
            plain(StatusCode::BAD_GATEWAY, "the origin's response was broken")
        }
        UpstreamError::Service(_) => plain(StatusCode::BAD_GATEWAY, "the service failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_references_resolve_against_the_request_path() {
        assert_eq!(resolve("/a/b", "c").as_deref(), Some("/a/c"));
        assert_eq!(resolve("/a/b", "/x?y").as_deref(), Some("/x?y"));
        assert_eq!(resolve("/a/b", "?q=1").as_deref(), Some("/a/b?q=1"));
        assert_eq!(resolve("/", "c").as_deref(), Some("/c"));
        assert_eq!(resolve("/a", "//evil/x"), None);
        assert_eq!(resolve("/a", "https://evil/x"), None);
    }

    #[test]
    fn urls_split() {
        assert_eq!(
            split_url("http://API.x:80/a?b=1"),
            (Some("api.x".into()), "/a?b=1".into())
        );
        assert_eq!(split_url("http://h"), (Some("h".into()), "/".into()));
        assert_eq!(split_url("/a"), (None, "/a".into()));
    }
}
