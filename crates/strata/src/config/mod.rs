//! Configuration of `strata serve`: the types of `strata.toml`, the profile defaults,
//! validation, and how a configuration becomes a [`strata_cache::Cache`].
//!
//! Layers, each overriding the one before: the profile's defaults, `strata.toml`,
//! environment variables `STRATA__SECTION__KEY`, command-line flags. See [`load`].
//!
//! ```
//! let cfg = strata::config::Config::from_toml_str(r#"
//!     profile = "staging"
//!     [namespaces.user]
//!     ttl = "1h"
//! "#).unwrap();
//! assert_eq!(cfg.listen().to_string(), "127.0.0.1:7070");
//! assert_eq!(cfg.log_format(), strata::config::LogFormat::Json);
//! ```

mod load;
mod reference;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_cache::{Compression, Format, Placement, Policy, RedisOptions, RedisTarget};

pub use load::{load, ConfigError, Sources};
pub use reference::reference;
pub use strata_cache::units::{Dur, Size};

/// A commented example with every setting, printed by `strata config example`.
pub const EXAMPLE: &str = include_str!("example.toml");

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Sets defaults for everything below; explicit settings win.
    #[serde(default)]
    pub profile: Profile,
    /// The cache API, admin API and `/metrics` listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// The in-process memory tier.
    #[serde(default)]
    pub memory: MemoryConfig,
    /// The Redis tier; absent means memory only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConfig>,
    /// Namespaces used without being declared.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Declared namespaces and their policies.
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespaceConfig>,
    /// Keys for namespaces with `encrypt = true`.
    #[serde(default)]
    pub encryption: EncryptionConfig,
    /// API tokens.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The caching reverse proxy; absent means no proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<strata_http::HttpConfig>,
    /// The PostgreSQL proxy; absent means no proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<strata_pg::PgConfig>,
}

/// A set of defaults for an environment.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Quick start: open API on loopback, readable logs.
    #[default]
    Development,
    /// Production-like defaults, JSON logs.
    Staging,
    /// JSON logs, tokens required on every cache and admin request, longer drains.
    Production,
}

/// `[server]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the cache API, admin API and `/metrics` (default `127.0.0.1:7070`).
    pub listen: Option<SocketAddr>,
    /// Connections served at once; more wait in the accept queue.
    pub max_connections: Option<usize>,
    /// Longest a request may take end to end.
    pub request_timeout: Option<Dur>,
    /// Longest a client may take to send its request headers.
    pub header_timeout: Option<Dur>,
    /// Largest request body.
    pub max_body: Option<Size>,
    /// Most request headers.
    pub max_headers: Option<usize>,
    /// How long shutdown waits for requests in flight.
    pub shutdown_timeout: Option<Dur>,
}

/// `[memory]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Memory the memory tier may take, entries and their bookkeeping together
    /// (default 256 MiB).
    pub max_bytes: Option<Size>,
}

/// `[redis]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://…`, `rediss://…`, `redis+cluster://h1,h2`, `redis+sentinel://h/master`.
    pub url: String,
    /// Bound on each command (default 50 ms).
    pub op_timeout: Option<Dur>,
    /// Bound on SCAN pages and other bulk commands (default 2 s).
    pub bulk_timeout: Option<Dur>,
    /// Consecutive failures that mark Redis down (default 5).
    pub failure_threshold: Option<u32>,
    /// How often a down Redis is probed (default 250 ms).
    pub probe_interval: Option<Dur>,
    /// Prefix of every key (default `strata`).
    pub key_prefix: Option<String>,
    /// Invalidation channel (default `strata:invalidate`).
    pub channel: Option<String>,
}

/// `[cache]`: what happens to namespaces nobody declared.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Refuse undeclared namespaces (404 `unknown_namespace`) instead of creating them.
    #[serde(default)]
    pub strict: bool,
    /// Policy of undeclared namespaces.
    #[serde(default)]
    pub default: NamespaceConfig,
}

/// One namespace's policy. Unset fields take [`Policy`]'s defaults.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Entry TTL (default 1 h).
    pub ttl: Option<Dur>,
    /// Shortens each TTL by up to this fraction (0-1), spreading expiries.
    pub jitter: Option<f64>,
    /// Cap on how long entries stay in memory.
    pub l1_ttl: Option<Dur>,
    /// `both`, `l1_only` or `l2_only`.
    pub placement: Option<PlacementSetting>,
    /// Values larger than this go to Redis only.
    pub l2_only_above: Option<Size>,
    /// Serialization of typed values: `json`, `msgpack` or `binary` (postcard).
    pub codec: Option<CodecSetting>,
    /// `none`, `zstd` or `lz4`, for values on their way to Redis.
    pub compression: Option<CompressionSetting>,
    /// zstd level (default 3).
    pub compression_level: Option<i32>,
    /// Values smaller than this are not compressed (default 1 KiB).
    pub compress_min: Option<Size>,
    /// Encrypt values stored in Redis (needs `[encryption]` keys).
    pub encrypt: Option<bool>,
    /// Longest key, bytes (default 250).
    pub max_key_len: Option<usize>,
    /// Largest value (default 1 MiB).
    pub max_value_size: Option<Size>,
    /// Whether memory copies depend on invalidation messages (default true).
    pub coherent: Option<bool>,
    /// Put the namespace in one Redis Cluster slot.
    pub colocate: Option<bool>,
}

/// `placement` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlacementSetting {
    /// Memory in front of Redis.
    Both,
    /// Memory only.
    L1Only,
    /// Redis only.
    L2Only,
}

/// `codec` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CodecSetting {
    /// serde_json.
    Json,
    /// MessagePack.
    Msgpack,
    /// postcard.
    Binary,
}

/// `compression` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CompressionSetting {
    /// Store as is.
    None,
    /// zstd.
    Zstd,
    /// lz4.
    Lz4,
}

/// `[encryption]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Environment variable holding the keys as `id:base64key,…`, newest first
    /// (default `STRATA_ENCRYPTION_KEYS`). Keys never live in the file.
    pub keys_env: Option<String>,
}

/// `[auth]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted tokens.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

/// One `[[auth.tokens]]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A label for logs (never the token itself).
    pub name: Option<String>,
    /// The token in the file (prefer `token_env`).
    #[serde(serialize_with = "redact", skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Environment variable holding the token.
    pub token_env: Option<String>,
    /// Namespaces it may touch: names, `prefix*`, or `*` (default `["*"]`).
    #[serde(default = "all_namespaces")]
    pub namespaces: Vec<String>,
    /// `read`, `write`, `admin`.
    pub rights: Vec<Right>,
}

fn all_namespaces() -> Vec<String> {
    vec!["*".into()]
}

fn redact<S: serde::Serializer>(_: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("<redacted>")
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    /// GET a key, `_mget`.
    Read,
    /// PUT and DELETE keys, `_mset`, `_preload`, `/v1/invalidate`.
    Write,
    /// Clear a namespace, `/v1/stats`.
    Admin,
}

impl Right {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Right::Read => "read",
            Right::Write => "write",
            Right::Admin => "admin",
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `strata=debug,info` (overridden by `RUST_LOG`).
    pub level: Option<String>,
    /// `pretty` or `json`.
    pub format: Option<LogFormat>,
}

/// Log line format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// Parses a configuration from TOML text alone (no environment, no flags) and
    /// validates it.
    pub fn from_toml_str(text: &str) -> Result<Config, Vec<ConfigError>> {
        load(&Sources {
            text: Some(("<string>".into(), text.into())),
            ..Sources::default()
        })
    }

    /// Listen address of the API.
    pub fn listen(&self) -> SocketAddr {
        self.server
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7070)))
    }

    /// Connection limit.
    pub fn max_connections(&self) -> usize {
        self.server.max_connections.unwrap_or(match self.profile {
            Profile::Production => 10_000,
            _ => 1_024,
        })
    }

    /// End-to-end request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.server
            .request_timeout
            .map_or(Duration::from_secs(30), |d| d.0)
    }

    /// Time allowed for request headers.
    pub fn header_timeout(&self) -> Duration {
        self.server.header_timeout.map_or(
            match self.profile {
                Profile::Development => Duration::from_secs(10),
                _ => Duration::from_secs(5),
            },
            |d| d.0,
        )
    }

    /// Largest request body (default 8 MiB: a batch of values up to 1 MiB each).
    pub fn max_body(&self) -> usize {
        self.server.max_body.map_or(8 << 20, |s| s.0 as usize)
    }

    /// Most request headers (default 64).
    pub fn max_headers(&self) -> usize {
        self.server.max_headers.unwrap_or(64)
    }

    /// Drain deadline at shutdown.
    pub fn shutdown_timeout(&self) -> Duration {
        self.server.shutdown_timeout.map_or(
            match self.profile {
                Profile::Production => Duration::from_secs(30),
                _ => Duration::from_secs(10),
            },
            |d| d.0,
        )
    }

    /// Memory tier budget.
    pub fn max_memory(&self) -> u64 {
        self.memory.max_bytes.map_or(256 << 20, |s| s.0)
    }

    /// Log filter.
    pub fn log_level(&self) -> String {
        self.log.level.clone().unwrap_or_else(|| "info".into())
    }

    /// Log format.
    pub fn log_format(&self) -> LogFormat {
        self.log.format.unwrap_or(match self.profile {
            Profile::Development => LogFormat::Pretty,
            _ => LogFormat::Json,
        })
    }

    /// Whether cache and admin requests need a token.
    pub fn auth_required(&self) -> bool {
        !self.auth.tokens.is_empty() || self.profile == Profile::Production
    }

    /// The effective configuration: this one with every default written out, secrets
    /// redacted. What `strata config check` prints.
    pub fn effective(&self) -> Config {
        let mut c = self.clone();
        let s = &mut c.server;
        s.listen = Some(self.listen());
        s.max_connections = Some(self.max_connections());
        s.request_timeout = Some(Dur(self.request_timeout()));
        s.header_timeout = Some(Dur(self.header_timeout()));
        s.max_body = Some(Size(self.max_body() as u64));
        s.max_headers = Some(self.max_headers());
        s.shutdown_timeout = Some(Dur(self.shutdown_timeout()));
        c.memory.max_bytes = Some(Size(self.max_memory()));
        if let Some(r) = &mut c.redis {
            let o = self.redis_options().ok().flatten();
            if let Some(o) = o {
                r.op_timeout = Some(Dur(o.op_timeout));
                r.bulk_timeout = Some(Dur(o.bulk_timeout));
                r.failure_threshold = Some(o.failure_threshold);
                r.probe_interval = Some(Dur(o.probe_interval));
                r.key_prefix = Some(o.key_prefix);
                r.channel = Some(o.channel);
            }
        }
        c.encryption.keys_env = Some(self.keys_env().to_owned());
        c.log.level = Some(self.log_level());
        c.log.format = Some(self.log_format());
        c
    }

    /// Environment variable with the encryption keys.
    pub fn keys_env(&self) -> &str {
        self.encryption
            .keys_env
            .as_deref()
            .unwrap_or("STRATA_ENCRYPTION_KEYS")
    }

    /// Whether any namespace (or the default policy) encrypts.
    pub fn encrypts(&self) -> bool {
        self.namespaces
            .values()
            .chain([&self.cache.default])
            .any(|n| n.encrypt == Some(true))
    }

    /// The encryption keys, read from the environment variable named by `keys_env`.
    pub fn keyring(&self) -> Result<strata_cache::Keyring, String> {
        let var = self.keys_env();
        if std::env::var_os(var).is_none() {
            return Err(format!(
                "a namespace sets encrypt = true but environment variable {var} is not set"
            ));
        }
        strata_cache::Keyring::from_env(var).map_err(|e| format!("{var}: {e}"))
    }

    /// Redis options, None without `[redis]`.
    pub fn redis_options(&self) -> Result<Option<RedisOptions>, String> {
        let Some(r) = &self.redis else {
            return Ok(None);
        };
        let target = RedisTarget::parse(&r.url).map_err(|e| e.to_string())?;
        let mut o = RedisOptions::new(target);
        if let Some(d) = r.op_timeout {
            o.op_timeout = d.0;
        }
        if let Some(d) = r.bulk_timeout {
            o.bulk_timeout = d.0;
        }
        if let Some(n) = r.failure_threshold {
            o.failure_threshold = n;
        }
        if let Some(d) = r.probe_interval {
            o.probe_interval = d.0;
        }
        if let Some(p) = &r.key_prefix {
            o.key_prefix = p.clone();
        }
        if let Some(c) = &r.channel {
            o.channel = c.clone();
        }
        Ok(Some(o))
    }

    /// Checks what types alone cannot. Each problem is (dotted field path, message).
    pub(crate) fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        if let Err(e) = self.redis_options() {
            errs.push(("redis.url".into(), e));
        }
        for (name, ns) in &self.namespaces {
            if let Err(e) = strata_cache::key::validate_namespace(name) {
                errs.push((format!("namespaces.{name}"), e.to_string()));
            }
            ns.check(&format!("namespaces.{name}"), &mut errs);
        }
        self.cache.default.check("cache.default", &mut errs);
        if let Some(http) = &self.http {
            for (field, msg) in http.check() {
                errs.push((format!("http.{field}"), msg));
            }
        }
        if let Some(pg) = &self.postgres {
            for (field, msg) in pg.check() {
                errs.push((format!("postgres.{field}"), msg));
            }
        }
        if self.encrypts() {
            if let Err(e) = self.keyring() {
                errs.push(("encryption.keys_env".into(), e));
            }
        }
        for (i, t) in self.auth.tokens.iter().enumerate() {
            let at = format!("auth.tokens.{i}");
            match (&t.token, &t.token_env) {
                (Some(_), Some(_)) => {
                    errs.push((at.clone(), "set `token` or `token_env`, not both".into()))
                }
                (None, None) => errs.push((at.clone(), "set `token` or `token_env`".into())),
                (Some(tok), None) if tok.len() < 16 => errs.push((
                    format!("{at}.token"),
                    "tokens must be at least 16 characters".into(),
                )),
                (None, Some(var)) => match std::env::var(var) {
                    Err(_) => errs.push((
                        format!("{at}.token_env"),
                        format!("environment variable {var} is not set"),
                    )),
                    Ok(v) if v.len() < 16 => errs.push((
                        format!("{at}.token_env"),
                        format!("the token in {var} must be at least 16 characters"),
                    )),
                    Ok(_) => {}
                },
                _ => {}
            }
            if t.rights.is_empty() {
                errs.push((
                    format!("{at}.rights"),
                    "give at least one of read, write, admin".into(),
                ));
            }
        }
        if !self.listen().ip().is_loopback() && self.auth.tokens.is_empty() {
            errs.push((
                "server.listen".into(),
                format!(
                    "{} is not a loopback address and no [[auth.tokens]] is configured: \
                     anyone who can reach it could read and change the cache. Add a token \
                     or listen on 127.0.0.1",
                    self.listen()
                ),
            ));
        }
        if self.profile == Profile::Production && self.auth.tokens.is_empty() {
            errs.push((
                "auth.tokens".into(),
                "profile production requires tokens on every cache and admin request; \
                 configure at least one [[auth.tokens]]"
                    .into(),
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(self.log_level()) {
            errs.push(("log.level".into(), e.to_string()));
        }
        errs
    }

    /// The policy of a declared namespace, or of undeclared ones.
    pub fn policy(&self, namespace: Option<&str>) -> Policy {
        match namespace.and_then(|n| self.namespaces.get(n)) {
            Some(ns) => ns.policy(),
            None => self.cache.default.policy(),
        }
    }
}

impl NamespaceConfig {
    fn check(&self, at: &str, errs: &mut Vec<(String, String)>) {
        if let Some(j) = self.jitter {
            if !(0.0..=1.0).contains(&j) {
                errs.push((format!("{at}.jitter"), "must be between 0 and 1".into()));
            }
        }
        if self.ttl.is_some_and(|d| d.0.is_zero()) {
            errs.push((format!("{at}.ttl"), "must be longer than 0".into()));
        }
        if self.max_key_len == Some(0) {
            errs.push((format!("{at}.max_key_len"), "must be at least 1".into()));
        }
        if let Some(l) = self.compression_level {
            if !(1..=22).contains(&l) {
                errs.push((
                    format!("{at}.compression_level"),
                    "zstd levels run from 1 to 22".into(),
                ));
            }
        }
    }

    /// The engine policy this describes.
    pub fn policy(&self) -> Policy {
        let mut p = Policy::default();
        if let Some(t) = self.ttl {
            p = p.ttl(t.0);
        }
        if let Some(j) = self.jitter {
            p = p.jitter(j);
        }
        if let Some(t) = self.l1_ttl {
            p = p.l1_ttl(t.0);
        }
        if let Some(pl) = self.placement {
            p = p.placement(match pl {
                PlacementSetting::Both => Placement::Both,
                PlacementSetting::L1Only => Placement::L1Only,
                PlacementSetting::L2Only => Placement::L2Only,
            });
        }
        if let Some(s) = self.l2_only_above {
            p = p.l2_only_above(s.0 as usize);
        }
        if let Some(c) = self.codec {
            p = p.format(match c {
                CodecSetting::Json => Format::Json,
                CodecSetting::Msgpack => Format::MessagePack,
                CodecSetting::Binary => Format::Binary,
            });
        }
        let min = self.compress_min.map_or(1024, |s| s.0 as usize);
        match self.compression {
            Some(CompressionSetting::Zstd) => {
                p = p.compression(Compression::Zstd(self.compression_level.unwrap_or(3)), min)
            }
            Some(CompressionSetting::Lz4) => p = p.compression(Compression::Lz4, min),
            Some(CompressionSetting::None) | None => {}
        }
        if let Some(e) = self.encrypt {
            p = p.encrypt(e);
        }
        if let Some(n) = self.max_key_len {
            p = p.max_key_len(n);
        }
        if let Some(s) = self.max_value_size {
            p = p.max_value_size(s.0 as usize);
        }
        if let Some(c) = self.coherent {
            p = p.coherent(c);
        }
        if let Some(c) = self.colocate {
            p = p.colocate(c);
        }
        p
    }
}
