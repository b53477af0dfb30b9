//! The two-tier cache: composition of L1 and L2 under namespace policies.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;

use crate::clock::{deadline, deadline_after, mono_ms, recent_clocks, unix_ms};
use crate::crypto::Keyring;
use crate::envelope::{Envelope, EnvelopeCodec, CODEC_RAW};
use crate::error::{CacheError, Result};
use crate::invalidation::{
    debounce_key, Condition, Invalidation, InvalidationEvent, InvalidationMessage, MessageItem,
    Target,
};
use crate::key::{escape_glob, glob_match, validate_key, validate_namespace, RedisKeys};
use crate::memory::{L1Entry, Lookup, MemoryTier, MAX_NAMESPACES};
use crate::metrics::{Durations, Op};
use crate::policy::Policy;
use crate::redis_tier::{RedisOptions, RedisTarget, RedisTier, Write};
use crate::singleflight::{join_error, Flights};
use crate::stats::{CacheStats, LoadStat, NamespaceCounters, NamespaceStats, TierStat};
use crate::tag_index::{TagIndex, TagMembers};

/// Which tier answered a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Memory.
    L1,
    /// Redis.
    L2,
}

impl Tier {
    /// `l1` or `l2`, as in the `X-Cache-Tier` header and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::L1 => "l1",
            Tier::L2 => "l2",
        }
    }
}

/// A value found in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The payload as stored (serialized, uncompressed, decrypted).
    pub value: Bytes,
    /// Codec id of the payload (0 for raw bytes).
    pub codec: u8,
    /// Which tier answered.
    pub tier: Tier,
}

/// Options of one write.
#[derive(Debug, Clone, Default)]
pub struct SetOptions {
    /// TTL of this entry instead of the namespace's.
    pub ttl: Option<Duration>,
    /// Tags for later invalidation by tag.
    pub tags: Vec<String>,
    /// Version of the value (for [`Invalidation::version_below`]); none counts as 0.
    pub version: Option<u64>,
}

impl SetOptions {
    /// A write with a TTL of its own.
    pub fn ttl(ttl: Duration) -> Self {
        SetOptions {
            ttl: Some(ttl),
            ..SetOptions::default()
        }
    }

    /// Sets the value's version.
    pub fn version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    /// Adds tags.
    pub fn tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }
}

/// Everything the cache knows about one namespace.
pub(crate) struct NsState {
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) policy: Policy,
    pub(crate) keys: RedisKeys,
    pub(crate) codec: EnvelopeCodec,
    /// Bumped by a namespace flush; L1 entries of older epochs are dead.
    epoch: AtomicU32,
    /// Bumped by every change or invalidation; a read that started before a bump does
    /// not fill L1 with what it read (it may be the value being invalidated).
    seq: AtomicU64,
    pub(crate) counters: NamespaceCounters,
    /// Local tag index of L1 entries written here with tags.
    tags: TagIndex,
    /// Remembered loader errors (negative caching): key → (monotonic deadline ms, error).
    negative: Mutex<HashMap<String, (u64, CacheError)>>,
}

const MAX_NEGATIVE: usize = 10_000;

impl NsState {
    pub(crate) fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.seq.fetch_add(1, Ordering::AcqRel);
    }
}

pub(crate) struct Inner {
    pub(crate) l1: MemoryTier,
    pub(crate) l2: Option<RedisTier>,
    namespaces: RwLock<Namespaces>,
    default_policy: Policy,
    keyring: Option<Arc<Keyring>>,
    pub(crate) instance_id: String,
    flights: Flights,
    pub(crate) durations: Durations,
    /// Sender to the invalidation publisher task.
    publish_tx: Option<tokio::sync::mpsc::UnboundedSender<MessageItem>>,
    pub(crate) messages_received: AtomicU64,
    pub(crate) messages_published: AtomicU64,
    /// Invalidation items handed to the publisher and not yet published (or dropped
    /// by a collapse); [`Cache::flush_invalidations`] waits for it to reach zero.
    pub(crate) publish_outstanding: AtomicU64,
    /// Dropped with the last handle: tells background tasks to stop.
    pub(crate) shutdown: tokio::sync::watch::Sender<()>,
    /// Delayed invalidations: debounce key → generation of the latest request.
    debounce: Mutex<HashMap<String, u64>>,
    debounce_gen: AtomicU64,
    /// Changes made while Redis was down, replayed against Redis when it is back.
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Namespaces {
    // foldhash (quick_cache's hasher): SipHash showed up at ~10% of a hit in profiles.
    by_name: HashMap<String, Arc<NsState>, quick_cache::DefaultHashBuilder>,
    list: Vec<Arc<NsState>>,
}

/// Changes L2 missed while it was down.
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) items: Vec<Invalidation>,
    /// More changes happened than we keep; the replay flushes those namespaces instead.
    pub(crate) overflow: HashSet<String>,
}

const MAX_PENDING: usize = 10_000;

/// A two-tier cache. Cheap to clone; clones share everything.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata_cache::Result<()> {
/// use std::time::Duration;
/// use strata_cache::{Cache, Policy};
///
/// let cache = Cache::builder()
///     .max_memory(64 << 20)
///     .namespace("user", Policy::new(Duration::from_secs(3600)))
///     .build()
///     .await?;
/// let users = cache.namespace::<u64, String>("user")?;
/// let name = users.get_or_load(&7, || async { Ok::<_, std::io::Error>("Ada".to_string()) }).await?;
/// assert_eq!(name, "Ada");
/// assert_eq!(users.get(&7).await?, Some("Ada".to_string()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

/// Builds a [`Cache`].
#[derive(Debug)]
pub struct CacheBuilder {
    max_memory: u64,
    redis: Option<RedisOptions>,
    namespaces: Vec<(String, Policy)>,
    default_policy: Policy,
    keyring: Option<Keyring>,
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            max_memory: 256 << 20,
            redis: None,
            namespaces: Vec::new(),
            default_policy: Policy::default(),
            keyring: None,
        }
    }
}

impl CacheBuilder {
    /// Memory the memory tier may take, entries and their bookkeeping together
    /// (default 256 MiB).
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.max_memory = bytes;
        self
    }

    /// Adds a Redis tier at `url` (see [`RedisTarget::parse`]) with default options.
    pub fn redis_url(mut self, url: &str) -> Result<Self> {
        self.redis = Some(RedisOptions::new(RedisTarget::parse(url)?));
        Ok(self)
    }

    /// Adds a Redis tier with explicit options.
    pub fn redis(mut self, options: RedisOptions) -> Self {
        self.redis = Some(options);
        self
    }

    /// Declares a namespace with its policy.
    pub fn namespace(mut self, name: &str, policy: Policy) -> Self {
        self.namespaces.push((name.to_owned(), policy));
        self
    }

    /// Policy of namespaces used without being declared (default: 1 h TTL, both tiers).
    pub fn default_policy(mut self, policy: Policy) -> Self {
        self.default_policy = policy;
        self
    }

    /// Keys for namespaces whose policy encrypts.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Builds the cache and starts its background tasks (Redis probe, invalidation
    /// subscriber and publisher) on the current Tokio runtime. Redis being unreachable
    /// is not an error: the cache serves from memory until Redis answers.
    pub async fn build(self) -> Result<Cache> {
        let l2 = match self.redis {
            Some(o) => Some(RedisTier::connect(o).await?),
            None => None,
        };
        let (tx, rx) = if l2.is_some() {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let inner = Arc::new(Inner {
            l1: MemoryTier::new(self.max_memory),
            l2,
            namespaces: RwLock::new(Namespaces::default()),
            default_policy: self.default_policy,
            keyring: self.keyring.map(Arc::new),
            instance_id: format!("{:016x}", rand::random::<u64>()),
            flights: Flights::default(),
            durations: Durations::default(),
            publish_tx: tx,
            messages_received: AtomicU64::new(0),
            messages_published: AtomicU64::new(0),
            publish_outstanding: AtomicU64::new(0),
            shutdown: tokio::sync::watch::channel(()).0,
            debounce: Mutex::new(HashMap::new()),
            debounce_gen: AtomicU64::new(0),
            pending: Mutex::new(Pending::default()),
        });
        for (name, policy) in self.namespaces {
            inner.register(&name, policy)?;
        }
        if let Some(rx) = rx {
            crate::background::spawn(&inner, rx).await;
        }
        Ok(Cache { inner })
    }
}

impl Cache {
    /// Starts a builder.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// Declares a namespace at run time. Fails if the name is invalid or the cache
    /// already has 1024 namespaces. Declaring an existing namespace again keeps its
    /// first policy (policies are fixed for a namespace's life).
    pub fn define_namespace(&self, name: &str, policy: Policy) -> Result<()> {
        self.inner.register(name, policy).map(|_| ())
    }

    /// The policy a namespace runs with.
    pub fn policy(&self, namespace: &str) -> Result<Policy> {
        Ok(self.inner.ns(namespace)?.policy.clone())
    }

    /// Names of the namespaces in use.
    pub fn namespaces(&self) -> Vec<String> {
        self.inner
            .namespaces
            .read()
            .expect("ns lock")
            .list
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    /// Reads raw bytes.
    pub async fn get_bytes(&self, namespace: &str, key: &str) -> Result<Option<Hit>> {
        let ns = self.inner.ns(namespace)?;
        self.inner.get(&ns, key).await
    }

    /// Writes raw bytes.
    pub async fn set_bytes(
        &self,
        namespace: &str,
        key: &str,
        value: Bytes,
        opts: SetOptions,
    ) -> Result<()> {
        let ns = self.inner.ns(namespace)?;
        self.inner
            .set_many(&ns, &[(key, value, CODEC_RAW)], &opts)
            .await
    }

    /// Reads many keys; the result is in the order of `keys`.
    pub async fn mget_bytes(&self, namespace: &str, keys: &[String]) -> Result<Vec<Option<Hit>>> {
        let ns = self.inner.ns(namespace)?;
        self.inner.mget(&ns, keys).await
    }

    /// Writes many keys with the same options, in one Redis round trip where possible.
    pub async fn mset_bytes(
        &self,
        namespace: &str,
        entries: Vec<(String, Bytes)>,
        opts: SetOptions,
    ) -> Result<()> {
        let ns = self.inner.ns(namespace)?;
        let entries: Vec<(&str, Bytes, u8)> = entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone(), CODEC_RAW))
            .collect();
        self.inner.set_many(&ns, &entries, &opts).await
    }

    /// Reads raw bytes, loading and storing them on a miss (single-flight).
    pub async fn get_or_load_bytes<F, Fut, E>(
        &self,
        namespace: &str,
        key: &str,
        loader: F,
    ) -> Result<Bytes>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let ns = self.inner.ns(namespace)?;
        if let Some(hit) = self.inner.get(&ns, key).await? {
            return Ok(hit.value);
        }
        let fut = loader();
        Inner::load(&self.inner, &ns, key, CODEC_RAW, async move {
            fut.await.map_err(Into::into)
        })
        .await
    }

    /// Deletes one key everywhere; true if it existed in a tier.
    pub async fn delete(&self, namespace: &str, key: &str) -> Result<bool> {
        let ns = self.inner.ns(namespace)?;
        validate_key(&ns.name, key, ns.policy.max_key_len)?;
        let n = self
            .inner
            .invalidate_ns(&ns, &Invalidation::key(&ns.name, key), true)
            .await?;
        ns.counters.l1(TierStat::Deletes);
        if self.inner.l2_for(&ns).is_some() {
            ns.counters.l2(TierStat::Deletes);
        }
        Ok(n > 0)
    }

    /// Whether a key is present in either tier.
    pub async fn exists(&self, namespace: &str, key: &str) -> Result<bool> {
        let ns = self.inner.ns(namespace)?;
        validate_key(&ns.name, key, ns.policy.max_key_len)?;
        if ns.policy.uses_l1() {
            if let Lookup::Hit(_) = self.inner.l1.get(ns.id, key, ns.epoch()) {
                return Ok(true);
            }
        }
        match self.inner.l2_for(&ns) {
            Some(l2) => Ok(l2.exists(&ns.keys.entry(key)).await.unwrap_or(false)),
            None => Ok(false),
        }
    }

    /// Remaining TTL of a key: L2's when Redis has it, else L1's. None if absent.
    pub async fn ttl(&self, namespace: &str, key: &str) -> Result<Option<Duration>> {
        let ns = self.inner.ns(namespace)?;
        validate_key(&ns.name, key, ns.policy.max_key_len)?;
        if let Some(l2) = self.inner.l2_for(&ns) {
            if let Ok(Some(raw)) = l2.get(&ns.keys.entry(key)).await {
                return Ok(raw.pttl_ms.map(Duration::from_millis));
            }
        }
        if let Lookup::Hit(e) = self.inner.l1.get(ns.id, key, ns.epoch()) {
            let now = mono_ms();
            return Ok(Some(Duration::from_millis(
                e.expires_at.saturating_sub(now),
            )));
        }
        Ok(None)
    }

    /// Invalidates now, in both tiers and on every instance. Returns the number of
    /// entries dropped here (L1 and L2; other instances are not counted).
    pub async fn invalidate(&self, inv: Invalidation) -> Result<u64> {
        let ns = self.inner.ns(&inv.namespace)?;
        self.inner.invalidate_ns(&ns, &inv, true).await
    }

    /// Invalidates after `delay`, coalescing repeats: asking again for the same
    /// invalidation within the window restarts it, and it runs once.
    pub fn invalidate_later(&self, inv: Invalidation, delay: Duration) {
        let key = debounce_key(&inv);
        let generation = self.inner.debounce_gen.fetch_add(1, Ordering::Relaxed);
        self.inner
            .debounce
            .lock()
            .expect("debounce lock")
            .insert(key.clone(), generation);
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Some(inner) = weak.upgrade() else { return };
            let mine = {
                let mut map = inner.debounce.lock().expect("debounce lock");
                if map.get(&key) == Some(&generation) {
                    map.remove(&key);
                    true
                } else {
                    false
                }
            };
            if mine {
                if let Ok(ns) = inner.ns(&inv.namespace) {
                    if let Err(e) = inner.invalidate_ns(&ns, &inv, true).await {
                        tracing::warn!(error = %e, "delayed invalidation failed");
                    }
                }
            }
        });
    }

    /// Fires an application event: runs every invalidation it declares.
    pub async fn fire(&self, event: &impl InvalidationEvent) -> Result<u64> {
        let mut n = 0;
        for inv in event.invalidations() {
            n += self.invalidate(inv).await?;
        }
        Ok(n)
    }

    /// Applies an invalidation message in the channel's wire format
    /// ([`InvalidationMessage`]) to this instance's memory tier, as if it had arrived
    /// on the channel: for bridging invalidations from another transport. Messages
    /// from this instance are ignored. Returns the number of L1 entries dropped.
    pub fn receive_invalidation(&self, payload: &[u8]) -> Result<u64> {
        self.inner.apply_message(payload)
    }

    /// Drops this instance's L1 entries of a namespace (no Redis, no message).
    pub fn flush_local(&self, namespace: &str) -> Result<()> {
        let ns = self.inner.ns(namespace)?;
        self.inner.flush_l1(&ns);
        Ok(())
    }

    /// Waits until every invalidation message queued so far has been published to
    /// Redis, or `timeout` passes. True if nothing is left to publish. Call it before a
    /// process exits so that peers hear about its last changes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// let cache = strata_cache::Cache::builder().build().await.unwrap();
    /// assert!(cache.flush_invalidations(Duration::from_secs(1)).await);
    /// # }
    /// ```
    pub async fn flush_invalidations(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.inner.publish_outstanding.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Whether Redis is configured and answering. None without a Redis tier.
    pub fn l2_up(&self) -> Option<bool> {
        self.inner.l2.as_ref().map(RedisTier::is_up)
    }

    /// Pings Redis.
    pub async fn ping_l2(&self) -> Result<()> {
        match &self.inner.l2 {
            Some(l2) => l2.ping().await,
            None => Err(CacheError::Config("no redis tier configured".into())),
        }
    }

    /// This instance's id in invalidation messages.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// A snapshot of all counters. Walks L1 to size each namespace: call it for
    /// reporting, not per request.
    pub fn stats(&self) -> CacheStats {
        let inner = &self.inner;
        let list = inner.namespaces.read().expect("ns lock").list.clone();
        let namespaces = list
            .iter()
            .map(|ns| {
                let mut s = NamespaceStats::from_counters(
                    &ns.name,
                    &ns.counters,
                    inner.l1.evictions(ns.id),
                );
                (s.l1_bytes, s.l1_entries) = inner.l1.usage(ns.id);
                s
            })
            .collect();
        CacheStats {
            namespaces,
            l2_up: self.l2_up(),
            l1_bytes: inner.l1.weight(),
            l1_capacity_bytes: inner.l1.capacity(),
            invalidation_messages_received: inner.messages_received.load(Ordering::Relaxed),
            invalidation_messages_published: inner.messages_published.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    /// Applies a message from another instance to L1. Never creates namespaces from
    /// the wire: only drops what this instance holds.
    pub(crate) fn apply_message(&self, payload: &[u8]) -> Result<u64> {
        let msg = InvalidationMessage::parse(payload)?;
        if msg.origin == self.instance_id {
            return Ok(0);
        }
        self.messages_received.fetch_add(1, Ordering::Relaxed);
        let mut dropped = 0;
        for item in &msg.items {
            if let Some(ns) = self.ns_if_known(&item.invalidation.namespace) {
                dropped += self.invalidate_l1(&ns, &item.invalidation, &item.resolved);
            }
        }
        Ok(dropped)
    }

    fn register(&self, name: &str, policy: Policy) -> Result<Arc<NsState>> {
        validate_namespace(name)?;
        let mut all = self.namespaces.write().expect("ns lock");
        if let Some(ns) = all.by_name.get(name) {
            return Ok(ns.clone());
        }
        if all.list.len() >= MAX_NAMESPACES {
            return Err(CacheError::Config(format!(
                "more than {MAX_NAMESPACES} namespaces"
            )));
        }
        let keyring = if policy.encrypt {
            Some(self.keyring.clone().ok_or_else(|| {
                CacheError::Config(format!(
                    "namespace `{name}` encrypts but the cache has no keyring"
                ))
            })?)
        } else {
            None
        };
        let prefix = self
            .l2
            .as_ref()
            .map_or("strata", |l2| l2.options().key_prefix.as_str());
        let ns = Arc::new(NsState {
            id: all.list.len() as u32,
            name: name.to_owned(),
            keys: RedisKeys::new(prefix, name, policy.colocate),
            codec: EnvelopeCodec {
                compression: policy.compression,
                compress_min: policy.compress_min,
                keyring,
                max_payload: policy.max_value_size,
            },
            policy,
            epoch: AtomicU32::new(0),
            seq: AtomicU64::new(0),
            counters: NamespaceCounters::default(),
            tags: TagIndex::default(),
            negative: Mutex::new(HashMap::new()),
        });
        all.by_name.insert(name.to_owned(), ns.clone());
        all.list.push(ns.clone());
        Ok(ns)
    }

    /// The namespace's state, declaring it with the default policy on first use.
    pub(crate) fn ns(&self, name: &str) -> Result<Arc<NsState>> {
        if let Some(ns) = self.namespaces.read().expect("ns lock").by_name.get(name) {
            return Ok(ns.clone());
        }
        self.register(name, self.default_policy.clone())
    }

    pub(crate) fn ns_if_known(&self, name: &str) -> Option<Arc<NsState>> {
        self.namespaces
            .read()
            .expect("ns lock")
            .by_name
            .get(name)
            .cloned()
    }

    pub(crate) fn all_ns(&self) -> Vec<Arc<NsState>> {
        self.namespaces.read().expect("ns lock").list.clone()
    }

    fn l2_for(&self, ns: &NsState) -> Option<&RedisTier> {
        if ns.policy.uses_l2() {
            self.l2.as_ref()
        } else {
            None
        }
    }

    /// The read path: L1, then L2 (filling L1), never the loader.
    pub(crate) async fn get(&self, ns: &NsState, key: &str) -> Result<Option<Hit>> {
        if let Some(hit) = self.get_l1(ns, key)? {
            return Ok(Some(hit));
        }
        match self.l2_for(ns) {
            // Boxed: an L1 hit must not build (and move) the Redis future; unboxed, it
            // made this future ~950 bytes and cost ~60 ns per hit.
            Some(l2) => Box::pin(self.get_l2(ns, l2, key)).await,
            None => Ok(None),
        }
    }

    /// The synchronous half of a read: validation and L1.
    #[inline]
    fn get_l1(&self, ns: &NsState, key: &str) -> Result<Option<Hit>> {
        // An L1 hit proves the key passed validation when it was written, under this
        // same (immutable) policy: only the O(1) length bound runs before the lookup
        // (so an oversized key is never hashed), the byte scan only on a miss.
        if key.is_empty() || key.len() > ns.policy.max_key_len {
            validate_key(&ns.name, key, ns.policy.max_key_len)?;
        }
        if ns.policy.uses_l1() {
            match self.l1.get(ns.id, key, ns.epoch()) {
                Lookup::Hit(e) => {
                    ns.counters.l1(TierStat::Hits);
                    return Ok(Some(Hit {
                        value: e.value,
                        codec: e.codec,
                        tier: Tier::L1,
                    }));
                }
                Lookup::Expired => {
                    ns.counters.l1(TierStat::Expirations);
                    ns.counters.l1(TierStat::Misses);
                }
                Lookup::Miss => {
                    validate_key(&ns.name, key, ns.policy.max_key_len)?;
                    ns.counters.l1(TierStat::Misses);
                }
            }
        } else {
            validate_key(&ns.name, key, ns.policy.max_key_len)?;
        }
        Ok(None)
    }

    async fn get_l2(&self, ns: &NsState, l2: &RedisTier, key: &str) -> Result<Option<Hit>> {
        let seq = ns.seq.load(Ordering::Acquire);
        let rkey = ns.keys.entry(key);
        let started = Instant::now();
        let sent_ms = mono_ms();
        let res = l2.get(&rkey).await;
        self.durations.observe(Op::Get, started);
        match res {
            Ok(Some(raw)) => match ns.codec.decode(&raw.bytes, rkey.as_bytes()) {
                Ok(env) => {
                    ns.counters.l2(TierStat::Hits);
                    self.fill_l1(ns, key, &env, raw.pttl_ms, seq, sent_ms);
                    Ok(Some(Hit {
                        value: env.payload,
                        codec: env.codec,
                        tier: Tier::L2,
                    }))
                }
                Err(e) => {
                    self.drop_corrupt(ns, l2, rkey, &e).await;
                    Ok(None)
                }
            },
            Ok(None) => {
                ns.counters.l2(TierStat::Misses);
                Ok(None)
            }
            Err(_) => {
                ns.counters.l2(TierStat::Errors);
                Ok(None)
            }
        }
    }

    async fn drop_corrupt(&self, ns: &NsState, l2: &RedisTier, rkey: String, e: &CacheError) {
        tracing::warn!(namespace = %ns.name, error = %e, "corrupt entry in redis; deleting it");
        ns.counters.l2(TierStat::Corrupt);
        ns.counters.l2(TierStat::Misses);
        let _ = l2.unlink(&[rkey]).await;
    }

    /// Puts what L2 returned into L1, for no longer than L2 will keep it. `sent_ms` is
    /// when the request left: PTTL was measured after that, so `sent_ms + pttl` is never
    /// later than Redis's own expiry, whatever the round trip took.
    fn fill_l1(
        &self,
        ns: &NsState,
        key: &str,
        env: &Envelope,
        pttl_ms: Option<u64>,
        seq: u64,
        sent_ms: u64,
    ) {
        if !ns.policy.l1_accepts(env.payload.len()) || ns.seq.load(Ordering::Acquire) != seq {
            return;
        }
        let mut ttl = pttl_ms.map(Duration::from_millis);
        if let Some(cap) = ns.policy.l1_ttl {
            ttl = Some(ttl.map_or(cap, |t| t.min(cap)));
        }
        if ttl == Some(Duration::ZERO) {
            return;
        }
        let expires_at = deadline_after(sent_ms, ttl, true);
        self.l1.insert(
            ns.id,
            key,
            L1Entry {
                value: env.payload.clone(),
                codec: env.codec,
                epoch: ns.epoch(),
                expires_at,
                created_ms: env.created_ms,
                version: env.version,
            },
        );
    }

    pub(crate) async fn mget(&self, ns: &NsState, keys: &[String]) -> Result<Vec<Option<Hit>>> {
        // get_l1 validates each key (an L1 hit proves it valid): a bad key fails the call.
        let mut out: Vec<Option<Hit>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let hit = self.get_l1(ns, k)?;
            if hit.is_none() {
                missing.push(i);
            }
            out.push(hit);
        }
        let Some(l2) = self.l2_for(ns) else {
            return Ok(out);
        };
        if missing.is_empty() {
            return Ok(out);
        }
        let seq = ns.seq.load(Ordering::Acquire);
        let rkeys: Vec<String> = missing.iter().map(|&i| ns.keys.entry(&keys[i])).collect();
        let started = Instant::now();
        let sent_ms = mono_ms();
        let res = l2.mget(&rkeys).await;
        self.durations.observe(Op::Mget, started);
        let Ok(raws) = res else {
            ns.counters.l2(TierStat::Errors);
            return Ok(out);
        };
        for ((&i, rkey), raw) in missing.iter().zip(rkeys).zip(raws) {
            match raw {
                None => ns.counters.l2(TierStat::Misses),
                Some(raw) => match ns.codec.decode(&raw.bytes, rkey.as_bytes()) {
                    Ok(env) => {
                        ns.counters.l2(TierStat::Hits);
                        self.fill_l1(ns, &keys[i], &env, raw.pttl_ms, seq, sent_ms);
                        out[i] = Some(Hit {
                            value: env.payload,
                            codec: env.codec,
                            tier: Tier::L2,
                        });
                    }
                    Err(e) => self.drop_corrupt(ns, l2, rkey, &e).await,
                },
            }
        }
        Ok(out)
    }

    /// The write path: L2 first (so L1 never holds what L2 refused), then L1, then one
    /// invalidation message for the other instances.
    pub(crate) async fn set_many(
        &self,
        ns: &NsState,
        entries: &[(&str, Bytes, u8)],
        opts: &SetOptions,
    ) -> Result<()> {
        for (k, v, _) in entries {
            validate_key(&ns.name, k, ns.policy.max_key_len)?;
            if v.len() > ns.policy.max_value_size {
                return Err(CacheError::ValueTooLarge {
                    namespace: ns.name.clone(),
                    size: v.len(),
                    max: ns.policy.max_value_size,
                });
            }
        }
        for t in &opts.tags {
            validate_key(&ns.name, t, ns.policy.max_key_len)?;
        }
        let ttl = ns.policy.effective_ttl(opts.ttl);
        let l2 = self.l2_for(ns);
        // With L2: exact clocks, read before the write so that L1's deadline cannot fall
        // after Redis's expiry. Memory only: the ticker's copies (an early deadline is
        // harmless there, and the OS clock is slow to read under cache pressure).
        let (created_ms, base_ms) = match l2 {
            Some(_) => (unix_ms(), mono_ms()),
            None => recent_clocks(),
        };
        let mut publish = false;
        if let Some(l2) = l2 {
            // Readers that fetched the old value from L2 must not put it into L1 after us.
            ns.bump();
            // Boxed: keeps the Redis future out of the (L1-only) fast path's future.
            publish = Box::pin(self.write_l2(ns, l2, entries, ttl, created_ms, opts)).await?;
        }
        let l1_ttl = ns.policy.l1_ttl.map_or(ttl, |cap| ttl.min(cap));
        for (k, v, codec) in entries {
            if ns.policy.l1_accepts(v.len()) {
                let entry = L1Entry {
                    value: v.clone(),
                    codec: *codec,
                    epoch: ns.epoch(),
                    expires_at: deadline_after(base_ms, Some(l1_ttl), l2.is_some()),
                    created_ms,
                    version: opts.version.unwrap_or(0),
                };
                self.l1.insert(ns.id, k, entry);
                ns.counters.l1(TierStat::Sets);
            } else {
                self.l1.remove(ns.id, k);
            }
        }
        if !opts.tags.is_empty() && ns.policy.uses_l1() {
            ns.tags.add(&opts.tags, entries.iter().map(|(k, _, _)| *k));
        }
        if publish {
            let inv = match entries {
                [(k, _, _)] => Invalidation::key(&ns.name, *k),
                _ => Invalidation::keys(&ns.name, entries.iter().map(|(k, _, _)| *k)),
            };
            self.publish(MessageItem {
                invalidation: inv,
                resolved: Vec::new(),
            });
        }
        Ok(())
    }

    /// Writes entries to Redis. Returns whether the change should be published; a
    /// failed write is remembered for replay instead (Redis keeps the old value).
    async fn write_l2(
        &self,
        ns: &NsState,
        l2: &RedisTier,
        entries: &[(&str, Bytes, u8)],
        ttl: Duration,
        created_ms: u64,
        opts: &SetOptions,
    ) -> Result<bool> {
        let tag_keys: Vec<String> = opts.tags.iter().map(|t| ns.keys.tag(t)).collect();
        let mut writes = Vec::with_capacity(entries.len());
        for (k, v, codec) in entries {
            let env = Envelope {
                codec: *codec,
                created_ms,
                ttl_ms: ttl.as_millis() as u64,
                version: opts.version.unwrap_or(0),
                payload: v.clone(),
            };
            let key = ns.keys.entry(k);
            let value = ns.codec.encode(&env, key.as_bytes())?;
            writes.push(Write {
                key,
                value,
                ttl,
                tag_keys: tag_keys.clone(),
            });
        }
        let started = Instant::now();
        let res = l2.set_many(&writes).await;
        self.durations.observe(Op::Set, started);
        match res {
            Ok(()) => {
                ns.counters.l2_n(TierStat::Sets, writes.len() as u64);
                Ok(self.publish_tx.is_some())
            }
            Err(e) => {
                ns.counters.l2(TierStat::Errors);
                tracing::debug!(namespace = %ns.name, error = %e, "redis write failed; memory only");
                self.remember_pending(Invalidation::keys(
                    &ns.name,
                    entries.iter().map(|(k, _, _)| *k),
                ));
                Ok(false)
            }
        }
    }

    /// Runs a loader under single flight and stores its result.
    pub(crate) async fn load(
        this: &Arc<Inner>,
        ns: &Arc<NsState>,
        key: &str,
        codec: u8,
        fut: impl std::future::Future<
                Output = std::result::Result<Bytes, Box<dyn std::error::Error + Send + Sync>>,
            > + Send
            + 'static,
    ) -> Result<Bytes> {
        if let Some(err) = ns.negative_hit(key) {
            return Err(err);
        }
        let (flight, joined) = this.flights.join_or_start(ns.id, key, |id| {
            let inner = this.clone();
            let ns = ns.clone();
            let key = key.to_owned();
            let task = tokio::spawn(async move {
                let started = Instant::now();
                let res = match ns.policy.loader_timeout {
                    Some(t) => tokio::time::timeout(t, fut).await.map_err(|_| CacheError::LoaderTimeout(t)),
                    None => Ok(fut.await),
                };
                let res = match res {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(CacheError::Loader(Arc::from(e))),
                    Err(e) => Err(e),
                };
                ns.counters.load(LoadStat::Loads, 1);
                ns.counters.load(LoadStat::LoadNanos, started.elapsed().as_nanos() as u64);
                inner.durations.observe(Op::Load, started);
                let out = match res {
                    Ok(v) => {
                        let stored = inner
                            .set_many(&ns, &[(&key, v.clone(), codec)], &SetOptions::default())
                            .await;
                        if let Err(e) = stored {
                            tracing::warn!(namespace = %ns.name, error = %e, "loaded value not cached");
                        }
                        Ok(v)
                    }
                    Err(e) => {
                        ns.counters.load(LoadStat::LoadErrors, 1);
                        ns.remember_error(&key, &e);
                        Err(e)
                    }
                };
                inner.flights.finish(ns.id, &key, id);
                out
            });
            async move { task.await.map_err(join_error)? }.boxed()
        });
        if joined {
            ns.counters.load(LoadStat::Coalesced, 1);
        }
        flight.await
    }

    /// Applies an invalidation to this instance's tiers. With `origin`, also to L2 and
    /// to other instances (through one message). Returns entries dropped here.
    pub(crate) async fn invalidate_ns(
        &self,
        ns: &NsState,
        inv: &Invalidation,
        origin: bool,
    ) -> Result<u64> {
        let mut resolved = Vec::new();
        let mut dropped = 0;
        if origin {
            if let Some(l2) = self.l2_for(ns) {
                if l2.is_up() {
                    match self.invalidate_l2(ns, l2, inv).await {
                        Ok((n, keys)) => {
                            dropped += n;
                            resolved = keys;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "redis invalidation failed; replayed when it is back");
                            self.remember_pending(inv.clone());
                        }
                    }
                } else {
                    self.remember_pending(inv.clone());
                }
            }
        }
        dropped += self.invalidate_l1(ns, inv, &resolved);
        if origin {
            self.publish(MessageItem {
                invalidation: inv.clone(),
                resolved,
            });
        }
        Ok(dropped)
    }

    /// Drops matching L1 entries. `extra_keys` are keys the sender resolved (tags).
    pub(crate) fn invalidate_l1(
        &self,
        ns: &NsState,
        inv: &Invalidation,
        extra_keys: &[String],
    ) -> u64 {
        ns.bump();
        let cond = inv.condition;
        let matches = |e: &L1Entry| cond.is_none_or(|c| c.matches(e.created_ms, e.version));
        let drop_key = |k: &str| match cond {
            Some(_) => self.l1.remove_if(ns.id, k, matches),
            None => self.l1.remove(ns.id, k),
        };
        let mut n = 0u64;
        match &inv.target {
            Target::Key { key } => n += drop_key(key) as u64,
            Target::Keys { keys } => n += keys.iter().filter(|k| drop_key(k)).count() as u64,
            Target::Prefix { prefix } => {
                n += self
                    .l1
                    .remove_where(ns.id, |k, e| k.starts_with(prefix.as_str()) && matches(e))
            }
            Target::Pattern { pattern } => {
                n += self
                    .l1
                    .remove_where(ns.id, |k, e| glob_match(pattern, k) && matches(e))
            }
            Target::Tag { tag } => match ns.tags.take(tag) {
                TagMembers::Known(members) => {
                    n += members.iter().filter(|k| drop_key(k)).count() as u64;
                    n += extra_keys
                        .iter()
                        .filter(|k| !members.contains(*k) && drop_key(k))
                        .count() as u64;
                }
                // The index overflowed: any entry may carry the tag.
                TagMembers::Unknown => {
                    n += self.l1.remove_where(ns.id, |_, e| matches(e));
                    // Only if nothing survived can the index start afresh.
                    if cond.is_none() {
                        ns.tags.clear();
                    }
                }
            },
            Target::Namespace => {
                if cond.is_some() {
                    n += self.l1.remove_where(ns.id, |_, e| matches(e));
                } else {
                    n += self.l1.usage(ns.id).1;
                    self.flush_l1(ns);
                }
            }
        }
        ns.counters.l1.add(TierStat::Invalidations as usize, n);
        n
    }

    /// Drops all of a namespace's L1 entries at once (epoch bump), then reclaims
    /// their memory off the async runtime.
    pub(crate) fn flush_l1(&self, ns: &NsState) {
        ns.epoch.fetch_add(1, Ordering::AcqRel);
        ns.bump();
        ns.tags.clear();
        self.l1.purge_stale(ns.id, ns.epoch());
    }

    /// Drops matching L2 entries; returns (count, cache keys dropped for tag targets).
    async fn invalidate_l2(
        &self,
        ns: &NsState,
        l2: &RedisTier,
        inv: &Invalidation,
    ) -> Result<(u64, Vec<String>)> {
        let started = Instant::now();
        let keys: Vec<String> = match &inv.target {
            Target::Key { key } => vec![ns.keys.entry(key)],
            Target::Keys { keys } => keys.iter().map(|k| ns.keys.entry(k)).collect(),
            Target::Prefix { prefix } => {
                l2.scan(&ns.keys.scan_pattern(&format!("{}*", escape_glob(prefix))))
                    .await?
            }
            Target::Pattern { pattern } => l2.scan(&ns.keys.scan_pattern(pattern)).await?,
            Target::Tag { tag } => {
                let tkey = ns.keys.tag(tag);
                let mut members = l2.smembers(&tkey).await?;
                l2.unlink(std::slice::from_ref(&tkey)).await?;
                members.retain(|m| ns.keys.strip_entry(m).is_some());
                members
            }
            Target::Namespace => {
                let mut keys = l2.scan(&ns.keys.scan_pattern("*")).await?;
                let tag_pattern = format!("{}*", escape_glob(&ns.keys.tag("")));
                keys.extend(l2.scan(&tag_pattern).await?);
                keys
            }
        };
        let keys = match inv.condition {
            Some(cond) => self.matching(ns, l2, keys, cond).await?,
            None => keys,
        };
        let mut n = 0;
        for chunk in keys.chunks(500) {
            n += l2.unlink(chunk).await?;
        }
        self.durations.observe(Op::Invalidate, started);
        ns.counters.l2_n(TierStat::Invalidations, n);
        let resolved = if matches!(inv.target, Target::Tag { .. }) {
            keys.iter()
                .filter_map(|k| ns.keys.strip_entry(k).map(str::to_owned))
                .collect()
        } else {
            Vec::new()
        };
        Ok((n, resolved))
    }

    /// Keeps the Redis keys whose entries meet `cond` (undecodable ones too: they go).
    async fn matching(
        &self,
        ns: &NsState,
        l2: &RedisTier,
        keys: Vec<String>,
        cond: Condition,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for chunk in keys.chunks(500) {
            let raws = l2.mget(chunk).await?;
            for (k, raw) in chunk.iter().zip(raws) {
                if let Some(raw) = raw {
                    match ns.codec.decode(&raw.bytes, k.as_bytes()) {
                        Ok(env) if !cond.matches(env.created_ms, env.version) => {}
                        _ => out.push(k.clone()),
                    }
                }
            }
        }
        Ok(out)
    }

    fn publish(&self, item: MessageItem) {
        if let Some(tx) = &self.publish_tx {
            self.publish_outstanding.fetch_add(1, Ordering::AcqRel);
            if tx.send(item).is_err() {
                self.publish_outstanding.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    fn remember_pending(&self, inv: Invalidation) {
        let mut p = self.pending.lock().expect("pending lock");
        if p.items.len() >= MAX_PENDING {
            p.overflow.insert(inv.namespace);
        } else {
            p.items.push(inv);
        }
    }

    pub(crate) fn take_pending(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().expect("pending lock"))
    }

    /// Flushes L1 of every namespace that relies on invalidation messages.
    pub(crate) fn flush_coherent(&self) {
        for ns in self.all_ns() {
            if ns.policy.coherent && ns.policy.uses_l1() {
                self.flush_l1(&ns);
            }
        }
    }

    /// Replays changes Redis missed while down.
    pub(crate) async fn replay_pending(&self) {
        let pending = self.take_pending();
        let overflow = pending
            .overflow
            .iter()
            .map(|name| Invalidation::namespace(name));
        for inv in pending.items.into_iter().chain(overflow) {
            if let Ok(ns) = self.ns(&inv.namespace) {
                // Failures re-enter the pending list inside invalidate_ns.
                let _ = self.invalidate_ns(&ns, &inv, true).await;
            }
        }
    }
}

impl NsState {
    fn negative_hit(&self, key: &str) -> Option<CacheError> {
        self.policy.negative_ttl?;
        let mut map = self.negative.lock().expect("negative lock");
        match map.get(key) {
            Some((until, e)) if *until > crate::clock::mono_ms() => Some(e.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember_error(&self, key: &str, e: &CacheError) {
        let Some(ttl) = self.policy.negative_ttl else {
            return;
        };
        let mut map = self.negative.lock().expect("negative lock");
        if map.len() >= MAX_NEGATIVE {
            map.clear();
        }
        map.insert(key.to_owned(), (deadline(Some(ttl)), e.clone()));
    }
}

/// Weak handle for background tasks: they stop when the last [`Cache`] is dropped.
pub(crate) type WeakInner = Weak<Inner>;
