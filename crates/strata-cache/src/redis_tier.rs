//! The Redis tier (L2): standalone, Sentinel or Cluster, behind a per-operation
//! timeout and a circuit breaker.
//!
//! Every call is bounded by `op_timeout` (default 50 ms). Failures and timeouts count
//! towards the circuit; once it opens, calls fail fast with [`CacheError::TierDown`]
//! until the probe in [`crate::Cache`] sees Redis answer again. Callers on read paths
//! turn any error here into a miss.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{Client, Cmd, FromRedisValue, Pipeline, Value};

use crate::error::{CacheError, Result};

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisTarget {
    /// One server: `redis://host:port/db`.
    Standalone(String),
    /// A Redis Cluster, given one or more seed nodes.
    Cluster(Vec<String>),
    /// A master found through Sentinel.
    Sentinel {
        /// Sentinel addresses (`redis://host:26379`).
        sentinels: Vec<String>,
        /// The monitored master's name.
        service: String,
    },
}

impl RedisTarget {
    /// Parses `redis://…`, `rediss://…`, `redis+cluster://h1:p1,h2:p2` or
    /// `redis+sentinel://h1:p1,h2:p2/service`.
    ///
    /// ```
    /// use strata_cache::RedisTarget;
    /// assert_eq!(
    ///     RedisTarget::parse("redis+cluster://10.0.0.1:7000,10.0.0.2:7000").unwrap(),
    ///     RedisTarget::Cluster(vec!["redis://10.0.0.1:7000".into(), "redis://10.0.0.2:7000".into()])
    /// );
    /// ```
    pub fn parse(url: &str) -> Result<Self> {
        let hosts = |rest: &str| -> Result<Vec<String>> {
            let v: Vec<String> = rest
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(|h| format!("redis://{h}"))
                .collect();
            if v.is_empty() {
                Err(CacheError::Config(format!("no hosts in `{url}`")))
            } else {
                Ok(v)
            }
        };
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            return Ok(RedisTarget::Cluster(hosts(rest.trim_end_matches('/'))?));
        }
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let (h, service) = rest.split_once('/').ok_or_else(|| {
                CacheError::Config(format!(
                    "`{url}`: expected redis+sentinel://host:port,…/service"
                ))
            })?;
            if service.is_empty() {
                return Err(CacheError::Config(format!("`{url}`: missing service name")));
            }
            return Ok(RedisTarget::Sentinel {
                sentinels: hosts(h)?,
                service: service.to_owned(),
            });
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://")
        {
            Client::open(url).map_err(|e| CacheError::Config(format!("`{url}`: {e}")))?;
            return Ok(RedisTarget::Standalone(url.to_owned()));
        }
        Err(CacheError::Config(format!(
            "`{url}`: expected redis://, rediss://, redis+cluster:// or redis+sentinel://"
        )))
    }
}

/// Tuning of the Redis tier.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Where Redis is.
    pub target: RedisTarget,
    /// Bound on each command (default 50 ms).
    pub op_timeout: Duration,
    /// Bound on SCAN pages and other bulk commands (default 2 s).
    pub bulk_timeout: Duration,
    /// Consecutive failures that open the circuit (default 5).
    pub failure_threshold: u32,
    /// How often the probe pings while the circuit is open (default 250 ms).
    pub probe_interval: Duration,
    /// Prefix of every key Strata writes (default `strata`).
    pub key_prefix: String,
    /// Pub/sub channel of invalidation messages (default `strata:invalidate`).
    pub channel: String,
}

impl RedisOptions {
    /// Defaults for a target.
    pub fn new(target: RedisTarget) -> Self {
        RedisOptions {
            target,
            op_timeout: Duration::from_millis(50),
            bulk_timeout: Duration::from_secs(2),
            failure_threshold: 5,
            probe_interval: Duration::from_millis(250),
            key_prefix: "strata".into(),
            channel: "strata:invalidate".into(),
        }
    }
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Consecutive-failure circuit breaker.
#[derive(Debug, Default)]
pub(crate) struct Circuit {
    failures: AtomicU32,
    open: AtomicBool,
}

impl Circuit {
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Relaxed)
    }

    fn success(&self) {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
    }

    /// Records a failure; true if this one opened the circuit.
    fn failure(&self, threshold: u32) -> bool {
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        n >= threshold && !self.open.swap(true, Relaxed)
    }

    /// Closes the circuit; true if it was open.
    pub(crate) fn close(&self) -> bool {
        self.failures.store(0, Relaxed);
        self.open.swap(false, Relaxed)
    }
}

/// A raw entry read from Redis with its remaining TTL.
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    pub(crate) bytes: Bytes,
    /// Remaining TTL in ms; None when the key has no expiry.
    pub(crate) pttl_ms: Option<u64>,
}

/// One write of a batch.
pub(crate) struct Write {
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
    pub(crate) ttl: Duration,
    pub(crate) tag_keys: Vec<String>,
}

/// The Redis tier.
pub(crate) struct RedisTier {
    opts: RedisOptions,
    conn: RwLock<Option<Conn>>,
    /// Clients for pub/sub subscriptions (a cluster broadcasts PUBLISH to every node).
    pubsub_clients: RwLock<Vec<Client>>,
    pub(crate) circuit: Circuit,
}

impl RedisTier {
    /// Creates the tier and tries to connect once; an unreachable Redis leaves the
    /// circuit open for the probe to close later, it is not an error.
    pub(crate) async fn connect(opts: RedisOptions) -> Result<Self> {
        // Fail early on malformed URLs: those never fix themselves.
        match &opts.target {
            RedisTarget::Standalone(u) => {
                Client::open(u.as_str()).map_err(|e| CacheError::Config(e.to_string()))?;
            }
            RedisTarget::Cluster(nodes)
            | RedisTarget::Sentinel {
                sentinels: nodes, ..
            } => {
                for n in nodes {
                    Client::open(n.as_str()).map_err(|e| CacheError::Config(e.to_string()))?;
                }
            }
        }
        let tier = RedisTier {
            opts,
            conn: RwLock::new(None),
            pubsub_clients: RwLock::new(Vec::new()),
            circuit: Circuit::default(),
        };
        if let Err(e) = tier.establish().await {
            tracing::warn!(error = %e, "redis unreachable at start; serving from memory until it answers");
            tier.circuit.open.store(true, Relaxed);
        }
        Ok(tier)
    }

    pub(crate) fn options(&self) -> &RedisOptions {
        &self.opts
    }

    /// (Re)creates connections. For Sentinel this re-resolves the master, which is how
    /// a failover is followed.
    async fn establish(&self) -> Result<()> {
        let timeout = self.opts.bulk_timeout;
        let (conn, clients) = match &self.opts.target {
            RedisTarget::Standalone(url) => {
                let client = Client::open(url.as_str())?;
                (self.manager(client.clone()).await?, vec![client])
            }
            RedisTarget::Sentinel { sentinels, service } => {
                let mut sc = SentinelClient::build(
                    sentinels.clone(),
                    service.clone(),
                    None,
                    SentinelServerType::Master,
                )?;
                let client = tokio::time::timeout(timeout, sc.async_get_client())
                    .await
                    .map_err(|_| CacheError::Timeout(timeout))??;
                (self.manager(client.clone()).await?, vec![client])
            }
            RedisTarget::Cluster(nodes) => {
                let cc = ClusterClient::builder(nodes.clone())
                    .connection_timeout(timeout)
                    .response_timeout(self.opts.bulk_timeout)
                    .retries(1)
                    .build()?;
                let conn = tokio::time::timeout(timeout, cc.get_async_connection())
                    .await
                    .map_err(|_| CacheError::Timeout(timeout))??;
                let clients = nodes
                    .iter()
                    .filter_map(|n| Client::open(n.as_str()).ok())
                    .collect();
                (Conn::Cluster(conn), clients)
            }
        };
        // Verify it answers before declaring it usable.
        let mut c = conn.clone();
        let ping = redis::cmd("PING");
        tokio::time::timeout(timeout, query::<String>(&mut c, &ping))
            .await
            .map_err(|_| CacheError::Timeout(timeout))??;
        *self.conn.write().expect("conn lock") = Some(conn);
        *self.pubsub_clients.write().expect("clients lock") = clients;
        Ok(())
    }

    async fn manager(&self, client: Client) -> Result<Conn> {
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.opts.bulk_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        Ok(Conn::Single(ConnectionManager::new_lazy_with_config(
            client, cfg,
        )?))
    }

    pub(crate) fn pubsub_clients(&self) -> Vec<Client> {
        self.pubsub_clients.read().expect("clients lock").clone()
    }

    pub(crate) fn is_up(&self) -> bool {
        !self.circuit.is_open()
    }

    /// Pings through the normal path, re-establishing connections if needed.
    /// Used by the probe while the circuit is open.
    pub(crate) async fn probe(&self) -> bool {
        let have_conn = self.conn.read().expect("conn lock").is_some();
        let reresolve = matches!(self.opts.target, RedisTarget::Sentinel { .. });
        if !have_conn || reresolve {
            return self.establish().await.is_ok();
        }
        let Some(mut c) = self.conn() else {
            return false;
        };
        let t = self.opts.op_timeout.max(Duration::from_millis(200));
        matches!(
            tokio::time::timeout(t, query::<String>(&mut c, &redis::cmd("PING"))).await,
            Ok(Ok(_))
        )
    }

    fn conn(&self) -> Option<Conn> {
        self.conn.read().expect("conn lock").clone()
    }

    fn is_cluster(&self) -> bool {
        matches!(self.opts.target, RedisTarget::Cluster(_))
    }

    /// Runs `f` on a connection under the circuit and a timeout.
    async fn run<T, F, Fut>(&self, timeout: Duration, f: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if self.circuit.is_open() {
            return Err(CacheError::TierDown);
        }
        let Some(conn) = self.conn() else {
            return Err(CacheError::TierDown);
        };
        let r = match tokio::time::timeout(timeout, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CacheError::from(e)),
            Err(_) => Err(CacheError::Timeout(timeout)),
        };
        match &r {
            Ok(_) => self.circuit.success(),
            Err(e) => {
                if self.circuit.failure(self.opts.failure_threshold) {
                    tracing::warn!(error = %e, "redis circuit opened; reads fall back to memory and loaders");
                }
            }
        }
        r
    }

    /// GET and PTTL of one key, in one round trip.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Raw>> {
        let mut p = redis::pipe();
        p.cmd("GET").arg(key).cmd("PTTL").arg(key);
        let (v, pttl): (Option<Vec<u8>>, i64) = self
            .run(self.opts.op_timeout, |mut c| async move {
                pipe_query(&mut c, &p).await
            })
            .await?;
        Ok(v.map(|b| raw(b, pttl)))
    }

    /// Batch read. Standalone: one pipeline (MGET + PTTLs). Cluster: one pipeline per
    /// key, concurrently, since keys live on different slots.
    pub(crate) async fn mget(&self, keys: &[String]) -> Result<Vec<Option<Raw>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if self.is_cluster() {
            let rs = join_all(keys.iter().map(|k| self.get(k))).await;
            return rs.into_iter().collect();
        }
        let mut p = redis::pipe();
        p.cmd("MGET").arg(keys);
        for k in keys {
            p.cmd("PTTL").arg(k);
        }
        let timeout = self.opts.op_timeout * 2;
        let vals: Vec<Value> = self
            .run(timeout, |mut c| async move { pipe_query(&mut c, &p).await })
            .await?;
        let mut it = vals.into_iter();
        let values: Vec<Option<Vec<u8>>> = it
            .next()
            .map(FromRedisValue::from_redis_value)
            .transpose()
            .map_err(|e| CacheError::Redis(e.to_string()))?
            .unwrap_or_default();
        let pttls: Vec<i64> = it.map(|v| i64::from_redis_value(v).unwrap_or(-2)).collect();
        Ok(values
            .into_iter()
            .zip(pttls.into_iter().chain(std::iter::repeat(-2)))
            .map(|(v, t)| v.map(|b| raw(b, t)))
            .collect())
    }

    /// Writes entries (SET … PX) and adds them to their tag sets.
    pub(crate) async fn set_many(&self, writes: &[Write]) -> Result<()> {
        let mut cmds = Vec::with_capacity(writes.len());
        for w in writes {
            let ttl_ms = w.ttl.as_millis().max(1) as u64;
            let mut c = redis::cmd("SET");
            c.arg(&w.key).arg(&w.value).arg("PX").arg(ttl_ms);
            cmds.push(c);
            for t in &w.tag_keys {
                let mut c = redis::cmd("SADD");
                c.arg(t).arg(&w.key);
                cmds.push(c);
                // A tag set lives as long as its longest-lived member: NX sets a
                // first TTL, GT only ever extends it (Redis ≥ 7.0).
                for opt in ["NX", "GT"] {
                    let mut c = redis::cmd("PEXPIRE");
                    c.arg(t).arg(ttl_ms).arg(opt);
                    cmds.push(c);
                }
            }
        }
        let timeout = self.opts.op_timeout * (1 + writes.len() as u32 / 64);
        self.exec(cmds, timeout).await
    }

    /// Runs independent commands: one pipeline on a single server, concurrent
    /// commands on a cluster (a pipeline there may not span slots).
    async fn exec(&self, cmds: Vec<Cmd>, timeout: Duration) -> Result<()> {
        if self.is_cluster() {
            self.run(timeout, |c| async move {
                let rs = join_all(cmds.iter().map(|cmd| {
                    let mut c = c.clone();
                    async move { query::<Value>(&mut c, cmd).await }
                }))
                .await;
                rs.into_iter().try_for_each(|r| r.map(|_| ()))
            })
            .await
        } else {
            let mut p = redis::pipe();
            for c in cmds {
                p.add_command(c).ignore();
            }
            self.run(timeout, |mut c| async move {
                pipe_query::<()>(&mut c, &p).await
            })
            .await
        }
    }

    /// Deletes keys (UNLINK: freed in the background); returns how many existed.
    pub(crate) async fn unlink(&self, keys: &[String]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(keys);
        let timeout = self.opts.op_timeout * (1 + keys.len() as u32 / 256);
        self.run(
            timeout,
            |mut c| async move { query::<u64>(&mut c, &cmd).await },
        )
        .await
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool> {
        let cmd = redis::Cmd::exists(key);
        self.run(self.opts.op_timeout, |mut c| async move {
            query::<bool>(&mut c, &cmd).await
        })
        .await
    }

    /// Members of a tag set.
    pub(crate) async fn smembers(&self, key: &str) -> Result<Vec<String>> {
        let cmd = redis::Cmd::smembers(key);
        self.run(self.opts.bulk_timeout, |mut c| async move {
            query(&mut c, &cmd).await
        })
        .await
    }

    /// All keys matching a glob, by SCAN (never KEYS), on every master of a cluster.
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<String>> {
        let nodes: Vec<Option<(String, u16)>> = if self.is_cluster() {
            self.masters().await?.into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        let mut found = Vec::new();
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let node = node.clone();
                let (next, keys): (u64, Vec<String>) = self
                    .run(self.opts.bulk_timeout, |c| async move {
                        match (c, node) {
                            (Conn::Cluster(mut cc), Some((host, port))) => {
                                let v = cc
                                    .route_command(
                                        cmd,
                                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                            host,
                                            port,
                                        }),
                                    )
                                    .await?;
                                FromRedisValue::from_redis_value(v).map_err(Into::into)
                            }
                            (mut c, _) => query(&mut c, &cmd).await,
                        }
                    })
                    .await?;
                found.extend(keys);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    /// Addresses of the cluster's masters (CLUSTER SLOTS).
    async fn masters(&self) -> Result<Vec<(String, u16)>> {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let v: Value = self
            .run(self.opts.bulk_timeout, |mut c| async move {
                query(&mut c, &cmd).await
            })
            .await?;
        let mut out = Vec::new();
        if let Value::Array(ranges) = v {
            for r in ranges {
                if let Value::Array(parts) = r {
                    if let Some(Value::Array(master)) = parts.get(2) {
                        let host = master
                            .first()
                            .and_then(|h| String::from_redis_value(h.clone()).ok());
                        let port = master
                            .get(1)
                            .and_then(|p| i64::from_redis_value(p.clone()).ok());
                        if let (Some(h), Some(p)) = (host, port) {
                            out.push((h, p as u16));
                        }
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub(crate) async fn publish(&self, channel: &str, payload: &[u8]) -> Result<()> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(payload);
        self.run(
            self.opts.op_timeout.max(Duration::from_millis(200)),
            |mut c| async move { query::<i64>(&mut c, &cmd).await.map(|_| ()) },
        )
        .await
    }

    /// Sends PING through the normal path (counts towards the circuit).
    pub(crate) async fn ping(&self) -> Result<()> {
        let cmd = redis::cmd("PING");
        self.run(self.opts.op_timeout, |mut c| async move {
            query::<String>(&mut c, &cmd).await.map(|_| ())
        })
        .await
    }
}

/// PTTL's answer for a key without an expiry. Any other negative answer (-2: the key
/// is gone) or an unreadable one means the value expired between GET and PTTL, which
/// are separate commands even in one pipeline: it may be returned once but must not
/// fill L1, so it gets a remaining TTL of zero rather than "no expiry".
const PTTL_NO_EXPIRY: i64 = -1;

fn raw(bytes: Vec<u8>, pttl: i64) -> Raw {
    Raw {
        bytes: Bytes::from(bytes),
        pttl_ms: match pttl {
            PTTL_NO_EXPIRY => None,
            t => Some(t.max(0) as u64),
        },
    }
}

async fn query<T: FromRedisValue>(c: &mut Conn, cmd: &Cmd) -> redis::RedisResult<T> {
    match c {
        Conn::Single(m) => cmd.query_async(m).await,
        Conn::Cluster(cc) => cmd.query_async(cc).await,
    }
}

async fn pipe_query<T: FromRedisValue>(c: &mut Conn, p: &Pipeline) -> redis::RedisResult<T> {
    match c {
        Conn::Single(m) => p.query_async(m).await,
        Conn::Cluster(cc) => p.query_async(cc).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:6379/0").unwrap(),
            RedisTarget::Standalone("redis://127.0.0.1:6379/0".into())
        );
        assert_eq!(
            RedisTarget::parse("redis+sentinel://a:26379,b:26379/mymaster").unwrap(),
            RedisTarget::Sentinel {
                sentinels: vec!["redis://a:26379".into(), "redis://b:26379".into()],
                service: "mymaster".into()
            }
        );
        assert!(RedisTarget::parse("http://x").is_err());
        assert!(RedisTarget::parse("redis+sentinel://a:1").is_err());
        assert!(RedisTarget::parse("redis+cluster://").is_err());
    }

    #[test]
    fn circuit_opens_after_threshold_and_closes() {
        let c = Circuit::default();
        assert!(!c.failure(3));
        assert!(!c.failure(3));
        assert!(c.failure(3));
        assert!(!c.failure(3), "opens once");
        assert!(c.is_open());
        assert!(c.close());
        assert!(!c.is_open());
    }

    #[test]
    fn a_key_gone_between_get_and_pttl_is_not_kept() {
        assert_eq!(raw(b"v".to_vec(), 250).pttl_ms, Some(250));
        assert_eq!(raw(b"v".to_vec(), -1).pttl_ms, None, "no expiry");
        // -2: the key expired after GET read it. Zero, so L1 skips it, never "forever".
        assert_eq!(raw(b"v".to_vec(), -2).pttl_ms, Some(0));
        assert_eq!(raw(b"v".to_vec(), i64::MIN).pttl_ms, Some(0));
    }
}
