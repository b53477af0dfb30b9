//! `[http]`: the caching reverse proxy's configuration, shared by `strata serve`
//! and the tower layer.
//!
//! ```
//! let cfg: strata_http::HttpConfig = toml::from_str(r#"
//!     upstream = "http://127.0.0.1:8000"
//!     [[routes]]
//!     match = "/api/risks/{id}"
//!     ttl = "5m"
//!     tags = ["risk:{id}"]
//! "#).unwrap();
//! assert!(cfg.check().is_empty());
//! assert_eq!(cfg.listen().port(), 7080);
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_cache::units::{Dur, Size};

use crate::route::{Pattern, Trigger};

/// `[http]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where the proxy listens (default `127.0.0.1:7080`).
    pub listen: Option<SocketAddr>,
    /// The origin, `http://host:port` or `https://host:port` (a path prefix is
    /// allowed). Unused by the tower layer, whose origin is the service it wraps.
    #[serde(default)]
    pub upstream: String,
    /// PEM file of the CA certificates an `https://` origin's certificate is
    /// checked against (default: Mozilla's roots, built in).
    pub upstream_ca: Option<std::path::PathBuf>,
    /// Cache namespace the responses are stored in (default `http`).
    pub namespace: Option<String>,
    /// Largest response body stored; larger ones stream through (default 1 MiB).
    pub max_object_size: Option<Size>,
    /// Largest request body accepted (default 10 MiB).
    pub max_request_body: Option<Size>,
    /// Longest a client may take to send its request headers (default 10 s).
    pub header_timeout: Option<Dur>,
    /// Connections served at once (default 4096).
    pub max_connections: Option<usize>,
    /// Threads serving proxy connections, each with its own runtime and origin
    /// connection pool (default: one per core).
    pub workers: Option<usize>,
    /// Bound on connecting to the origin (default 2 s).
    pub connect_timeout: Option<Dur>,
    /// Bound on the origin's whole answer, headers and stored body (default 30 s).
    pub response_timeout: Option<Dur>,
    /// How long a request waits for a concurrent identical request's response
    /// before going to the origin itself (default 5 s).
    pub coalesce_timeout: Option<Dur>,
    /// How long a stale entry with validators is kept for revalidation (default 10 m).
    pub keep: Option<Dur>,
    /// Freshness when neither the origin nor a route says anything (default none:
    /// such responses are stored only with heuristic freshness).
    pub default_ttl: Option<Dur>,
    /// `stale-while-revalidate` for responses that send none (default none).
    pub stale_while_revalidate: Option<Dur>,
    /// `stale-if-error` for responses that send none (default none).
    pub stale_if_error: Option<Dur>,
    /// Send the client's `Host` to the origin instead of the upstream's.
    #[serde(default)]
    pub preserve_host: bool,
    /// Response compression.
    #[serde(default)]
    pub compression: CompressionConfig,
    /// Per-route rules, first match by specificity (exact, template, prefix).
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Tags to invalidate when an unsafe request succeeds.
    #[serde(default)]
    pub invalidate: Vec<InvalidateConfig>,
}

/// `[http.compression]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    /// Off switch (default on).
    pub enabled: Option<bool>,
    /// Smallest body compressed (default 1000 bytes).
    pub min_size: Option<Size>,
    /// Encodings offered, in order of preference (default `["br", "zstd", "gzip"]`).
    pub encodings: Option<Vec<String>>,
    /// Media types compressed besides `text/*` and `*+json` / `*+xml` (default:
    /// JSON, JavaScript, XML, SVG, wasm).
    pub types: Option<Vec<String>>,
}

/// `[[http.routes]]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `/exact`, `/prefix/*`, or a template `/api/risks/{id}`.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Metric label (default: the pattern).
    pub name: Option<String>,
    /// Freshness when the origin sends none.
    pub ttl: Option<Dur>,
    /// Use `ttl` even when the origin sends freshness information.
    #[serde(default, rename = "override")]
    pub override_ttl: bool,
    /// Set false to pass the route through uncached (`X-Cache: BYPASS`).
    pub cache: Option<bool>,
    /// What goes into the cache key besides scheme, host and path.
    #[serde(default)]
    pub key: KeyConfig,
    /// Tags stored with the route's responses; `{name}` takes a template parameter.
    #[serde(default)]
    pub tags: Vec<String>,
    /// `stale-while-revalidate` for this route's responses that send none.
    pub stale_while_revalidate: Option<Dur>,
    /// `stale-if-error` for this route's responses that send none.
    pub stale_if_error: Option<Dur>,
    /// Store responses carrying `Set-Cookie` (the cookie itself is never stored).
    #[serde(default)]
    pub cache_set_cookie: bool,
}

/// `key = { query = [...], headers = [...] }`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Query parameters in the key; absent means all of them (sorted).
    pub query: Option<Vec<String>>,
    /// Request headers in the key.
    #[serde(default)]
    pub headers: Vec<String>,
}

/// `[[http.invalidate]]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct InvalidateConfig {
    /// `METHOD /path` with the same pattern forms as routes; `*` for any unsafe
    /// method.
    pub on: String,
    /// Tags to invalidate; `{name}` takes a template parameter.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Further paths to invalidate (with their cached query variants' exact URL).
    #[serde(default)]
    pub urls: Vec<String>,
}

impl HttpConfig {
    /// The proxy's listen address.
    pub fn listen(&self) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7080)))
    }

    /// Cache namespace of stored responses.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("http")
    }

    /// Largest stored body.
    pub fn max_object_size(&self) -> usize {
        self.max_object_size.map_or(1 << 20, |s| s.0 as usize)
    }

    /// Largest request body.
    pub fn max_request_body(&self) -> usize {
        self.max_request_body.map_or(10 << 20, |s| s.0 as usize)
    }

    /// Client header timeout.
    pub fn header_timeout(&self) -> Duration {
        self.header_timeout.map_or(Duration::from_secs(10), |d| d.0)
    }

    /// Concurrent connections.
    pub fn max_connections(&self) -> usize {
        self.max_connections.unwrap_or(4096)
    }

    /// Proxy worker threads.
    pub fn workers(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Origin connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout.map_or(Duration::from_secs(2), |d| d.0)
    }

    /// Origin response timeout.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
            .map_or(Duration::from_secs(30), |d| d.0)
    }

    /// Coalesced wait bound.
    pub fn coalesce_timeout(&self) -> Duration {
        self.coalesce_timeout
            .map_or(Duration::from_secs(5), |d| d.0)
    }

    /// Keep time of stale entries with validators.
    pub fn keep(&self) -> Duration {
        self.keep.map_or(Duration::from_secs(600), |d| d.0)
    }

    /// Every problem with the configuration, as `(field, message)`, fields relative
    /// to `[http]`.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        if self.upstream.is_empty() {
            errs.push((
                "upstream".into(),
                "set the origin's URL, e.g. http://127.0.0.1:8000".into(),
            ));
        } else if let Err(e) = crate::upstream::Upstream::parse(&self.upstream) {
            errs.push(("upstream".into(), e));
        }
        if let Some(ca) = &self.upstream_ca {
            let https = self
                .upstream
                .get(..8)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
            if !https {
                errs.push((
                    "upstream_ca".into(),
                    "applies only to an https:// upstream".into(),
                ));
            } else if let Err(e) = crate::upstream::load_roots(ca) {
                errs.push(("upstream_ca".into(), e));
            }
        }
        errs.extend(self.check_rules());
        errs
    }

    /// Problems with everything but the origin (what the tower layer needs).
    pub fn check_rules(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        if let Err(e) = strata_cache::key::validate_namespace(self.namespace()) {
            errs.push(("namespace".into(), e.to_string()));
        }
        if self.workers == Some(0) || self.workers.is_some_and(|w| w > 1024) {
            errs.push(("workers".into(), "between 1 and 1024".into()));
        }
        if self.max_object_size() == 0 {
            errs.push(("max_object_size".into(), "must be above 0".into()));
        }
        if let Some(enc) = &self.compression.encodings {
            for (i, e) in enc.iter().enumerate() {
                if crate::compress::Encoding::from_name(e).is_none() {
                    errs.push((
                        format!("compression.encodings.{i}"),
                        format!("unknown encoding `{e}`; use br, zstd or gzip"),
                    ));
                }
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("routes.{i}");
            match Pattern::parse(&r.pattern) {
                Err(e) => errs.push((format!("{at}.match"), e)),
                Ok(p) => {
                    for (j, t) in r.tags.iter().enumerate() {
                        if let Err(e) = p.check_template(t) {
                            errs.push((format!("{at}.tags.{j}"), e));
                        }
                    }
                }
            }
            for (j, h) in r.key.headers.iter().enumerate() {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    errs.push((
                        format!("{at}.key.headers.{j}"),
                        format!("`{h}` is not a header name"),
                    ));
                }
            }
        }
        for (i, r) in self.invalidate.iter().enumerate() {
            let at = format!("invalidate.{i}");
            match Trigger::parse(&r.on) {
                Err(e) => errs.push((format!("{at}.on"), e)),
                Ok(t) => {
                    for (j, tag) in r.tags.iter().enumerate() {
                        if let Err(e) = t.pattern.check_template(tag) {
                            errs.push((format!("{at}.tags.{j}"), e));
                        }
                    }
                    for (j, u) in r.urls.iter().enumerate() {
                        if !u.starts_with('/') {
                            errs.push((format!("{at}.urls.{j}"), "paths start with /".into()));
                        } else if let Err(e) = t.pattern.check_template(u) {
                            errs.push((format!("{at}.urls.{j}"), e));
                        }
                    }
                }
            }
        }
        errs
    }
}
