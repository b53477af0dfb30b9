//! `[postgres]`: the PostgreSQL proxy's configuration.
//!
//! ```
//! let cfg: strata_pg::PgConfig = toml::from_str(r#"
//!     upstream = "postgres://127.0.0.1:5432"
//!     slow_query_threshold = "100ms"
//! "#).unwrap();
//! assert!(cfg.check().is_empty());
//! assert_eq!(cfg.listen().port(), 6433);
//! let proxy = cfg.proxy_config().unwrap();
//! assert_eq!(proxy.insight.slow_threshold.as_millis(), 100);
//! ```

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use strata_cache::units::Dur;

use crate::insight::InsightConfig;
use crate::proxy::{PgProxyConfig, Upstream};

/// `[postgres]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    /// Where the proxy listens (default `127.0.0.1:6433`).
    pub listen: Option<SocketAddr>,
    /// The server, `postgres://host:port` (user, password and database come from
    /// each client).
    #[serde(default)]
    pub upstream: String,
    /// Threads serving sessions, each with its own single-threaded runtime
    /// (default: one per core).
    pub workers: Option<usize>,
    /// Client sessions at once; more are refused with SQLSTATE 53300 (default 1000).
    pub max_client_connections: Option<usize>,
    /// Bound on connecting to the server (default 5 s).
    pub connect_timeout: Option<Dur>,
    /// PEM certificate chain offered to clients that ask for TLS (with `tls_key`);
    /// without it TLS requests are answered `N` and clients continue in plain text
    /// or give up, as their `sslmode` says.
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<std::path::PathBuf>,
    /// TLS to the server, as libpq's `sslmode`: `disable` (default), `prefer`,
    /// `require` (encrypted, certificate not checked) or `verify-full` (checked
    /// against `upstream_tls_ca`, name against the upstream host).
    pub upstream_tls: Option<String>,
    /// PEM roots for `upstream_tls = "verify-full"`.
    pub upstream_tls_ca: Option<std::path::PathBuf>,
    /// Disconnect clients idle (nothing in flight) this long (default: never).
    pub client_idle_timeout: Option<Dur>,
    /// Queries at least this slow go to the slow log (default 50 ms).
    pub slow_query_threshold: Option<Dur>,
    /// Show SQL as sent, constants included, in the slow log (default false: only
    /// normalised SQL, constants as `$n`).
    #[serde(default)]
    pub log_parameters: bool,
    /// Fingerprints kept; the rest are folded into one "other" row (default 5000).
    pub top_queries: Option<usize>,
    /// Slow queries kept for `/v1/db/slow` (default 1000).
    pub slow_log_size: Option<usize>,
    /// Single-row repeats of one query that make an N+1 finding (default 10).
    pub n_plus_one_threshold: Option<u64>,
    /// Outside transactions, the window those repeats must fall in (default 1 s).
    pub n_plus_one_window: Option<Dur>,
}

impl PgConfig {
    /// The listen address.
    pub fn listen(&self) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6433)))
    }

    /// Session threads: `workers`, else one per core.
    pub fn workers(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    fn upstream_tls(&self) -> Result<Option<crate::proxy::UpstreamTls>, String> {
        crate::proxy::UpstreamTls::new(
            self.upstream_tls.as_deref().unwrap_or("disable"),
            self.upstream_tls_ca.as_deref(),
        )
    }

    /// Problems types alone cannot catch: (field, message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        if self.upstream.is_empty() {
            errs.push((
                "upstream".into(),
                "set the PostgreSQL server, e.g. postgres://127.0.0.1:5432".into(),
            ));
        } else if let Err(e) = Upstream::parse(&self.upstream) {
            errs.push(("upstream".into(), e));
        }
        let positive = [
            ("max_client_connections", self.max_client_connections),
            ("workers", self.workers),
            ("top_queries", self.top_queries),
            ("slow_log_size", self.slow_log_size),
        ];
        for (field, v) in positive {
            if v == Some(0) {
                errs.push((field.into(), "must be at least 1".into()));
            }
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => {
                if let Err(e) = crate::proxy::load_tls(c, k) {
                    errs.push(("tls_cert".into(), e));
                }
            }
            (Some(_), None) => errs.push(("tls_key".into(), "set it with tls_cert".into())),
            (None, Some(_)) => errs.push(("tls_cert".into(), "set it with tls_key".into())),
            (None, None) => {}
        }
        if let Err(e) = self.upstream_tls() {
            errs.push(("upstream_tls".into(), e));
        }
        if self.n_plus_one_threshold.is_some_and(|t| t < 2) {
            errs.push((
                "n_plus_one_threshold".into(),
                "must be at least 2 (one query is not a repeat)".into(),
            ));
        }
        let nonzero = [
            ("connect_timeout", self.connect_timeout),
            ("client_idle_timeout", self.client_idle_timeout),
            ("n_plus_one_window", self.n_plus_one_window),
        ];
        for (field, v) in nonzero {
            if v.is_some_and(|d| d.0.is_zero()) {
                errs.push((field.into(), "must be longer than 0".into()));
            }
        }
        errs
    }

    /// The proxy's settings; errors as [`PgConfig::check`] would.
    pub fn proxy_config(&self) -> Result<PgProxyConfig, String> {
        let mut c = PgProxyConfig::new(Upstream::parse(&self.upstream)?);
        let d = InsightConfig::default();
        if let Some(n) = self.max_client_connections {
            c.max_client_connections = n;
        }
        if let Some(t) = self.connect_timeout {
            c.connect_timeout = t.0;
        }
        c.client_idle_timeout = self.client_idle_timeout.map(|t| t.0);
        c.upstream_tls = self.upstream_tls()?;
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            c.tls = Some(crate::proxy::load_tls(cert, key)?);
        }
        c.insight = InsightConfig {
            top_n: self.top_queries.unwrap_or(d.top_n),
            slow_threshold: self.slow_query_threshold.map_or(d.slow_threshold, |t| t.0),
            slow_log_size: self.slow_log_size.unwrap_or(d.slow_log_size),
            log_parameters: self.log_parameters,
            n_plus_one_threshold: self.n_plus_one_threshold.unwrap_or(d.n_plus_one_threshold),
            n_plus_one_window: self.n_plus_one_window.map_or(d.n_plus_one_window, |t| t.0),
            ..d
        };
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        let bad: PgConfig = toml::from_str(
            r#"upstream = "mysql://x"
               top_queries = 0
               n_plus_one_threshold = 1
               client_idle_timeout = "0s""#,
        )
        .unwrap();
        let fields: Vec<String> = bad.check().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "upstream",
                "top_queries",
                "n_plus_one_threshold",
                "client_idle_timeout"
            ]
        );
        assert!(!PgConfig::default().check().is_empty(), "upstream required");
        let half: PgConfig =
            toml::from_str("upstream = \"postgres://h\"\ntls_cert = \"/nonexistent.pem\"").unwrap();
        assert_eq!(half.check()[0].0, "tls_key");
        let missing: PgConfig = toml::from_str(
            "upstream = \"postgres://h\"\ntls_cert = \"/nonexistent.pem\"\ntls_key = \"/k.pem\"",
        )
        .unwrap();
        let errs = missing.check();
        assert!(
            errs[0].0 == "tls_cert" && errs[0].1.contains("/nonexistent.pem"),
            "{errs:?}"
        );
        assert!(toml::from_str::<PgConfig>("upstream = \"postgres://h\"\nbogus = 1").is_err());
    }
}
