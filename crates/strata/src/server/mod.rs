//! `strata serve`: the cache REST API, admin API, `/metrics`, `/health`, `/ready`.
//!
//! Phases of a request: connection limits and header timeout (hyper), request id,
//! timeout and metrics ([`observe`]), routing (axum), a handler that checks the
//! token, then the engine.

pub(crate) mod admin_api;
mod auth;
mod batch_api;
mod cache_api;
mod db_api;
mod error;
mod latency;
mod metrics;
mod stored;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::registry::Registry;
use strata_cache::Cache;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tracing::Instrument;

pub use error::{ApiError, ApiResult};

use crate::config::Config;
use auth::Auth;
use latency::Latencies;
use metrics::ApiMetrics;

/// Everything handlers share.
pub struct AppState {
    cache: Cache,
    config: Arc<Config>,
    auth: Auth,
    latency: Latencies,
    metrics: ApiMetrics,
    registry: Registry,
    /// False once shutdown begins: `/ready` answers 503.
    ready: AtomicBool,
    started: Instant,
    request_ids: RequestIds,
    /// The caching reverse proxy, when `[http]` is configured.
    http: Option<strata_http::HttpCache>,
    /// The PostgreSQL proxy, when `[postgres]` is configured.
    pg: Option<Arc<strata_pg::PgProxy>>,
}

/// Why `serve` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The cache could not be built from the configuration.
    #[error("cache: {0}")]
    Cache(#[from] strata_cache::CacheError),
    /// The HTTP proxy could not be built.
    #[error("http proxy: {0}")]
    Http(#[from] strata_http::HttpError),
    /// The PostgreSQL proxy's configuration is unusable.
    #[error("postgres proxy: {0}")]
    Postgres(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Builds the engine a configuration describes.
pub async fn build_cache(cfg: &Config) -> Result<Cache, ServeError> {
    let mut b = Cache::builder()
        .max_memory(cfg.max_memory())
        .default_policy(cfg.cache.default.policy());
    for (name, ns) in &cfg.namespaces {
        b = b.namespace(name, ns.policy());
    }
    if let Some(o) = cfg
        .redis_options()
        .map_err(strata_cache::CacheError::Config)?
    {
        b = b.redis(o);
    }
    if cfg.encrypts() {
        b = b.keyring(cfg.keyring().map_err(strata_cache::CacheError::Config)?);
    }
    Ok(b.build().await?)
}

/// A server bound to its address, not yet serving.
pub struct Server {
    listener: TcpListener,
    /// The proxy's own listener, when `[http]` is configured.
    proxy: Option<TcpListener>,
    /// The PostgreSQL proxy's listener, when `[postgres]` is configured.
    pg_listener: Option<TcpListener>,
    state: Arc<AppState>,
}

impl Server {
    /// Builds the cache and binds the listener. Nothing is served yet, so a failure
    /// here leaves nothing half-started.
    pub async fn bind(cfg: Config) -> Result<Server, ServeError> {
        let cache = build_cache(&cfg).await?;
        let addr = cfg.listen();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let mut registry = Registry::default();
        let metrics = ApiMetrics::register(&mut registry, &cache);
        let (http, proxy) = match &cfg.http {
            Some(h) => {
                let http = strata_http::HttpCache::new(h.clone(), &cache)?;
                let addr = h.listen();
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServeError::Bind { addr, source })?;
                http.register_metrics(&mut registry);
                (Some(http), Some(l))
            }
            None => (None, None),
        };
        let (pg, pg_listener) = match &cfg.postgres {
            Some(p) => {
                let mut pc = p.proxy_config().map_err(ServeError::Postgres)?;
                pc.shutdown_grace = cfg.shutdown_timeout();
                let addr = p.listen();
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServeError::Bind { addr, source })?;
                let proxy = strata_pg::PgProxy::new(pc);
                proxy.metrics().register(&mut registry);
                (Some(proxy), Some(l))
            }
            None => (None, None),
        };
        let state = Arc::new(AppState {
            auth: Auth::from_config(&cfg),
            cache,
            config: Arc::new(cfg),
            latency: Latencies::default(),
            metrics,
            registry,
            ready: AtomicBool::new(true),
            started: Instant::now(),
            request_ids: RequestIds::new(),
            http,
            pg,
        });
        Ok(Server {
            listener,
            proxy,
            pg_listener,
            state,
        })
    }

    /// The PostgreSQL proxy's bound address, when `[postgres]` is configured.
    pub fn pg_addr(&self) -> Option<SocketAddr> {
        self.pg_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The proxy's bound address, when `[http]` is configured.
    pub fn proxy_addr(&self) -> Option<SocketAddr> {
        self.proxy.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.config.listen())
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in
    /// flight finish within the configured deadline, and publishes pending
    /// invalidation messages.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listener,
            proxy,
            pg_listener,
            state,
        } = self;
        let cfg = state.config.clone();
        // The proxy stops when the API does; it drains on its own.
        let (stop_proxy, proxy_stopped) = tokio::sync::watch::channel(false);
        let proxy_task = match (proxy, &state.http) {
            (Some(l), Some(http)) => {
                tracing::info!(
                    listen = %l.local_addr().map_or_else(|_| "?".into(), |a| a.to_string()),
                    upstream = %http.config().upstream,
                    "http proxy serving"
                );
                let mut rx = proxy_stopped.clone();
                Some(tokio::spawn(strata_http::server::serve_on_workers(
                    l,
                    http.clone(),
                    http.config().workers(),
                    async move {
                        let _ = rx.wait_for(|stop| *stop).await;
                    },
                    cfg.shutdown_timeout(),
                )))
            }
            _ => None,
        };
        let pg_task = match (pg_listener, &state.pg) {
            (Some(l), Some(pg)) => {
                let up = &pg.config().upstream;
                tracing::info!(
                    listen = %l.local_addr().map_or_else(|_| "?".into(), |a| a.to_string()),
                    upstream = %format!("{}:{}", up.host, up.port),
                    "postgres proxy serving"
                );
                let mut rx = proxy_stopped.clone();
                let workers = cfg.postgres.as_ref().map_or(1, |p| p.workers());
                let serving = pg.clone().serve_on_workers(l, workers, async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                });
                Some(tokio::spawn(async move {
                    if let Err(e) = serving.await {
                        tracing::error!(error = %e, "postgres proxy could not start its workers");
                    }
                }))
            }
            _ => None,
        };
        let app = router(state.clone());
        let graceful = GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(cfg.header_timeout())
            .max_headers(cfg.max_headers())
            // Request line plus headers; past it the client gets 431.
            .max_buf_size(64 * 1024);
        tracing::info!(
            listen = %listener.local_addr().map_or_else(|_| cfg.listen().to_string(), |a| a.to_string()),
            profile = ?cfg.profile,
            redis = %cfg.redis.as_ref().map_or_else(|| "none".to_owned(), |r| redact_url(&r.url)),
            auth = if cfg.auth_required() { "tokens" } else { "open" },
            tokens = ?state.auth.token_names(),
            "strata serving"
        );
        strata_http::server::accept_loop(
            listener,
            cfg.max_connections(),
            shutdown,
            |stream, peer, permit| {
                let _ = stream.set_nodelay(true);
                state.metrics.connections.inc();
                state.metrics.connections_total.inc();
                let app = app.clone();
                let svc =
                    hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(Peer(peer));
                        app.clone().oneshot(req.map(axum::body::Body::new))
                    });
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), svc));
                let st = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    st.metrics.connections.dec();
                    drop(permit);
                });
            },
        )
        .await;
        let _ = stop_proxy.send(true);
        state.ready.store(false, Ordering::Release);
        let deadline = cfg.shutdown_timeout();
        tracing::info!(
            ?deadline,
            "shutting down: no new connections, draining requests in flight"
        );
        let started = Instant::now();
        if tokio::time::timeout(deadline, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain deadline passed; closing remaining connections");
        }
        let left = deadline
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        if let Some(t) = proxy_task {
            let _ = tokio::time::timeout(left, t).await;
        }
        if let Some(t) = pg_task {
            let _ = tokio::time::timeout(left, t).await;
        }
        if !state.cache.flush_invalidations(left).await {
            tracing::warn!("some invalidation messages could not be published before exit");
        }
        tracing::info!("stopped");
    }
}

/// The client's address, for logs.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

/// The routes, with the request-id/timeout/metrics layer around them.
fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/cache/{ns}", delete(cache_api::clear_namespace))
        .route("/v1/cache/{ns}/_mget", post(batch_api::mget))
        .route("/v1/cache/{ns}/_mset", post(batch_api::mset))
        .route("/v1/cache/{ns}/_preload", post(batch_api::preload))
        .route(
            "/v1/cache/{ns}/{*key}",
            get(cache_api::get_key)
                .put(cache_api::put_key)
                .delete(cache_api::delete_key),
        )
        .route("/v1/invalidate", post(batch_api::invalidate))
        .route("/v1/http/purge", post(admin_api::http_purge))
        .route("/v1/db/queries", get(db_api::queries))
        .route("/v1/db/slow", get(db_api::slow))
        .route("/v1/db/n-plus-one", get(db_api::n_plus_one))
        .route("/v1/db/tables", get(db_api::tables))
        .route("/v1/db/baseline", post(db_api::baseline))
        .route("/v1/stats", get(admin_api::stats))
        .route("/health", get(admin_api::health))
        .route("/ready", get(admin_api::ready))
        .route("/metrics", get(admin_api::metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(state.config.max_body()))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Request ids: the client's `X-Request-Id` when it is sane, else process-unique.
struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        RequestIds {
            // Distinct across restarts and across instances started together.
            prefix: std::process::id().rotate_left(16)
                ^ std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos()),
            next: AtomicU64::new(1),
        }
    }

    fn for_request(&self, req: &Request) -> HeaderValue {
        if let Some(v) = req.headers().get("x-request-id") {
            let ok = v.len() <= 64
                && v.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b));
            if ok && !v.is_empty() {
                return v.clone();
            }
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:08x}-{n:x}", self.prefix)).expect("hex is a valid header")
    }
}

/// The route template a path belongs to: a bounded metric label, never the path.
fn route_label(path: &str) -> &'static str {
    match path {
        "/health" => return "/health",
        "/ready" => return "/ready",
        "/metrics" => return "/metrics",
        "/v1/stats" => return "/v1/stats",
        "/v1/invalidate" => return "/v1/invalidate",
        "/v1/http/purge" => return "/v1/http/purge",
        "/v1/db/queries" => return "/v1/db/queries",
        "/v1/db/slow" => return "/v1/db/slow",
        "/v1/db/n-plus-one" => return "/v1/db/n-plus-one",
        "/v1/db/tables" => return "/v1/db/tables",
        "/v1/db/baseline" => return "/v1/db/baseline",
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/v1/cache/") else {
        return "other";
    };
    match rest.split_once('/') {
        None => "/v1/cache/{ns}",
        Some((_, "_mget")) => "/v1/cache/{ns}/_mget",
        Some((_, "_mset")) => "/v1/cache/{ns}/_mset",
        Some((_, "_preload")) => "/v1/cache/{ns}/_preload",
        Some(_) => "/v1/cache/{ns}/{*key}",
    }
}

/// Request id, span, timeout, access log and metrics of every request.
async fn observe(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(req.uri().path());
    let method = req.method().clone();
    let id = st.request_ids.for_request(&req);
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    let span = tracing::info_span!(
        "request",
        id = %id.to_str().unwrap_or_default(),
        method = %method,
        route,
        token = tracing::field::Empty,
    );
    st.metrics.in_flight.inc();
    let timeout = st.config.request_timeout();
    // Callers without a valid token are turned away before their body is read; the
    // handler still checks the token's rights on the namespace it touches.
    let open = matches!(route, "/health" | "/ready" | "/metrics" | "other");
    let authenticated = if open {
        Ok(())
    } else {
        span.in_scope(|| st.auth.caller(req.headers()).map(|_| ()))
    };
    let handled = async {
        match authenticated {
            Ok(()) => next.run(req).await,
            Err(e) => e.into_response(),
        }
    };
    let mut res = match tokio::time::timeout(timeout, handled.instrument(span.clone())).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            format!(
                "the request took longer than {}",
                humantime::format_duration(timeout)
            ),
        )
        .into_response(),
    };
    st.metrics.in_flight.dec();
    res.headers_mut().insert("x-request-id", id);
    if res.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the body may be unread: tell the client this connection ends
        // here rather than let it reuse a connection the server is about to close.
        res.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
    let took = started.elapsed();
    let status = res.status();
    st.metrics
        .observe(route, method.as_str(), status.as_u16(), took);
    let _enter = span.enter();
    let micros = took.as_micros() as u64;
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), micros, peer = ?peer, "request failed");
    } else {
        tracing::debug!(status = status.as_u16(), micros, peer = ?peer, "request");
    }
    res
}

/// A Redis URL with any password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_are_templates() {
        assert_eq!(route_label("/v1/cache/user/42"), "/v1/cache/{ns}/{*key}");
        assert_eq!(route_label("/v1/cache/user/a/b/c"), "/v1/cache/{ns}/{*key}");
        assert_eq!(route_label("/v1/cache/user/_mget"), "/v1/cache/{ns}/_mget");
        assert_eq!(route_label("/v1/cache/user"), "/v1/cache/{ns}");
        assert_eq!(route_label("/etc/passwd"), "other");
    }

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact_url("redis://app:s3cret@10.0.0.1:6379/0"),
            "redis://app:***@10.0.0.1:6379/0"
        );
        assert_eq!(redact_url("redis://127.0.0.1"), "redis://127.0.0.1");
    }
}
