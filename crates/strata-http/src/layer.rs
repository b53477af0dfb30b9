//! The proxy's caching as a tower [`Layer`] for Rust services: an axum app gets
//! the same RFC 9111 caching, coalescing, compression, tags and invalidation as
//! `strata serve`'s proxy, configured with the same [`HttpConfig`], with the app
//! itself as the origin.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{routing::get, Router};
//! use strata_http::{HttpCacheLayer, HttpConfig};
//!
//! let cache = strata_cache::Cache::builder().build().await?;
//! let cfg: HttpConfig = toml::from_str(r#"
//!     [[routes]]
//!     match = "/prices/{symbol}"
//!     ttl = "30s"
//!     tags = ["price:{symbol}"]
//! "#)?;
//! let app: Router = Router::new()
//!     .route("/prices/{symbol}", get(|| async { "42.0" }))
//!     .layer(HttpCacheLayer::new(cfg, &cache)?);
//! # let _ = app; Ok(()) }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response};
use strata_cache::Cache;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

use crate::config::HttpConfig;
use crate::proxy::{HttpCache, HttpError, Origin, Purge};

/// The wrapped service as the proxy calls it.
pub(crate) type OriginService = BoxCloneSyncService<Request<Body>, Response<Body>, tower::BoxError>;

/// Adds HTTP caching in front of a service.
#[derive(Clone)]
pub struct HttpCacheLayer {
    cfg: HttpConfig,
    cache: Cache,
    metrics: crate::HttpMetrics,
}

impl HttpCacheLayer {
    /// Checks the configuration (everything but `upstream`, which a layer does not
    /// use) and declares the namespace responses are stored in.
    pub fn new(cfg: HttpConfig, cache: &Cache) -> Result<Self, HttpError> {
        // Building once validates everything the per-service build will need.
        let probe = noop_origin();
        HttpCache::build(cfg.clone(), cache, probe, crate::HttpMetrics::default())?;
        Ok(HttpCacheLayer {
            cfg,
            cache: cache.clone(),
            metrics: crate::HttpMetrics::default(),
        })
    }

    /// Registers the `strata_http_*` families of every service this layer makes.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// Drops stored responses, as `POST /v1/http/purge` does.
    pub async fn purge(&self, p: &Purge) -> Result<u64, strata_cache::CacheError> {
        let h = HttpCache::build(
            self.cfg.clone(),
            &self.cache,
            noop_origin(),
            self.metrics.clone(),
        )
        .map_err(|e| strata_cache::CacheError::Config(e.to_string()))?;
        h.purge(p).await
    }
}

fn noop_origin() -> Origin {
    let svc = tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, tower::BoxError>(Response::new(Body::empty()))
    });
    Origin::Service(
        BoxCloneSyncService::new(svc),
        std::time::Duration::from_secs(1),
    )
}

impl<S, B> Layer<S> for HttpCacheLayer
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    type Service = HttpCacheService;

    fn layer(&self, inner: S) -> HttpCacheService {
        let svc = inner
            .map_response(|r: Response<B>| r.map(Body::new))
            .map_err(|e: Infallible| -> tower::BoxError { match e {} });
        let origin = Origin::Service(BoxCloneSyncService::new(svc), self.cfg.response_timeout());
        // The configuration was checked and the namespace declared in `new`, so the
        // only errors `build` has are already ruled out.
        let proxy = HttpCache::build(self.cfg.clone(), &self.cache, origin, self.metrics.clone())
            .expect("configuration validated by HttpCacheLayer::new");
        HttpCacheService { proxy }
    }
}

/// A service with caching in front of it.
#[derive(Clone)]
pub struct HttpCacheService {
    proxy: HttpCache,
}

impl HttpCacheService {
    /// The proxy logic it runs (for purging).
    pub fn cache(&self) -> &HttpCache {
        &self.proxy
    }
}

impl Service<Request<Body>> for HttpCacheService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let proxy = self.proxy.clone();
        Box::pin(async move { Ok(proxy.handle(req).await) })
    }
}
