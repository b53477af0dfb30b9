//! Scenarios run against standalone Redis and Redis Cluster alike.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_cache::{Cache, Invalidation, Policy, RedisOptions, RedisTarget, SetOptions, Tier};

/// Redis options with short timeouts so fault tests finish quickly. The op timeout
/// stays generous: debug builds on a loaded 2-core machine are slow.
pub fn opts(url: &str) -> RedisOptions {
    let mut o = RedisOptions::new(RedisTarget::parse(url).unwrap());
    o.op_timeout = Duration::from_millis(300);
    o.probe_interval = Duration::from_millis(100);
    o.failure_threshold = 3;
    o
}

pub async fn cache(url: &str) -> Cache {
    Cache::builder()
        .redis(opts(url))
        .namespace("user", Policy::new(Duration::from_secs(60)))
        .namespace(
            "short",
            Policy::new(Duration::from_millis(600)).l1_ttl(Duration::from_secs(60)),
        )
        .build()
        .await
        .unwrap()
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
/// A bounded wait on an observable condition, never a fixed sleep.
pub async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn tier_of(c: &Cache, ns: &str, key: &str) -> Option<(Bytes, Tier)> {
    c.get_bytes(ns, key)
        .await
        .unwrap()
        .map(|h| (h.value, h.tier))
}

/// Waits until `key` is answered from L1 (reading through L2 fills it).
async fn in_l1(c: &Cache, ns: &str, key: &str) -> bool {
    eventually(Duration::from_secs(5), || async {
        matches!(tier_of(c, ns, key).await, Some((_, Tier::L1)))
    })
    .await
}

pub async fn basic_tiers(url: &str) {
    let a = cache(url).await;
    a.set_bytes("user", "1", b("ada"), SetOptions::default())
        .await
        .unwrap();
    assert_eq!(tier_of(&a, "user", "1").await, Some((b("ada"), Tier::L1)));
    // Let a's invalidation message go out before b subscribes, so it cannot drop b's fill.
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.stats().invalidation_messages_published >= 1
        })
        .await
    );
    let b2 = cache(url).await;
    assert_eq!(
        tier_of(&b2, "user", "1").await,
        Some((b("ada"), Tier::L2)),
        "fresh instance reads L2"
    );
    assert_eq!(
        tier_of(&b2, "user", "1").await,
        Some((b("ada"), Tier::L1)),
        "and fills its L1"
    );
    assert!(b2.exists("user", "1").await.unwrap());
    let ttl = b2.ttl("user", "1").await.unwrap().unwrap();
    assert!(
        ttl <= Duration::from_secs(60) && ttl > Duration::from_secs(50),
        "{ttl:?}"
    );
    let keys: Vec<String> = ["1", "2", "3"].iter().map(|s| s.to_string()).collect();
    a.mset_bytes(
        "user",
        vec![("2".into(), b("bob")), ("3".into(), b("cy"))],
        SetOptions::default(),
    )
    .await
    .unwrap();
    let c = cache(url).await;
    let got: Vec<Option<Bytes>> = c
        .mget_bytes("user", &keys)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.map(|h| h.value))
        .collect();
    assert_eq!(got, vec![Some(b("ada")), Some(b("bob")), Some(b("cy"))]);
    assert!(a.delete("user", "1").await.unwrap());
    assert!(!a.exists("user", "1").await.unwrap());
    assert!(
        !a.delete("user", "1").await.unwrap(),
        "second delete finds nothing"
    );
}

pub async fn cross_instance_invalidation(url: &str) {
    let a = cache(url).await;
    let b2 = cache(url).await;
    a.set_bytes("user", "42", b("v1"), SetOptions::default())
        .await
        .unwrap();
    // b caches v1 in L1 (a's own message for this write may drop b's first copy).
    assert!(in_l1(&b2, "user", "42").await);
    assert_eq!(tier_of(&b2, "user", "42").await.unwrap().0, b("v1"));
    // a writes v2: b's L1 copy must go, so b reads v2.
    a.set_bytes("user", "42", b("v2"), SetOptions::default())
        .await
        .unwrap();
    let seen = eventually(Duration::from_secs(5), || async {
        tier_of(&b2, "user", "42").await.map(|t| t.0) == Some(b("v2"))
    })
    .await;
    assert!(seen, "b never saw a's write");
    // Tag, prefix, pattern and namespace invalidation reach b's L1 too.
    a.set_bytes("user", "t1", b("x"), SetOptions::default().tags(["team"]))
        .await
        .unwrap();
    a.set_bytes("user", "p:1", b("x"), SetOptions::default())
        .await
        .unwrap();
    a.set_bytes("user", "q-9", b("x"), SetOptions::default())
        .await
        .unwrap();
    for k in ["t1", "p:1", "q-9"] {
        assert!(in_l1(&b2, "user", k).await, "{k} never reached b's L1");
    }
    assert!(
        a.invalidate(Invalidation::tag("user", "team"))
            .await
            .unwrap()
            >= 1
    );
    assert!(
        a.invalidate(Invalidation::prefix("user", "p:"))
            .await
            .unwrap()
            >= 1
    );
    assert!(
        a.invalidate(Invalidation::pattern("user", "q-[0-9]"))
            .await
            .unwrap()
            >= 1
    );
    for k in ["t1", "p:1", "q-9"] {
        let gone = eventually(Duration::from_secs(5), || async {
            tier_of(&b2, "user", k).await.is_none()
        })
        .await;
        assert!(gone, "{k} still visible on b");
    }
    a.set_bytes("user", "n1", b("x"), SetOptions::default())
        .await
        .unwrap();
    assert!(in_l1(&b2, "user", "n1").await);
    a.invalidate(Invalidation::namespace("user")).await.unwrap();
    let gone = eventually(Duration::from_secs(5), || async {
        tier_of(&b2, "user", "n1").await.is_none()
    })
    .await;
    assert!(gone, "namespace flush did not reach b");
    assert_eq!(a.get_bytes("user", "42").await.unwrap(), None);
    // Own messages are ignored; b received a's.
    assert!(b2.stats().invalidation_messages_received >= 1);
    assert_eq!(
        a.stats().invalidation_messages_received,
        0,
        "a received b's or its own messages"
    );
}

pub async fn reads_publish_nothing(url: &str) {
    let a = cache(url).await;
    let b2 = cache(url).await;
    a.set_bytes("user", "r", b("x"), SetOptions::default())
        .await
        .unwrap();
    let published = eventually(Duration::from_secs(5), || async {
        a.stats().invalidation_messages_published >= 1
    })
    .await;
    assert!(published);
    let before = a.stats().invalidation_messages_published;
    for _ in 0..50 {
        a.get_bytes("user", "r").await.unwrap();
        a.get_bytes("user", "missing").await.unwrap();
    }
    // Make b publish something and wait until a sees it: a's earlier reads, had they
    // published, would have been sent before this.
    b2.set_bytes("user", "other", b("y"), SetOptions::default())
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.stats().invalidation_messages_received >= 1
        })
        .await
    );
    assert_eq!(
        a.stats().invalidation_messages_published,
        before,
        "reads published messages"
    );
}

pub async fn single_flight(url: &str) {
    let c = cache(url).await;
    let calls = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let c = c.clone();
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            c.get_or_load_bytes("user", "hot", move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, std::io::Error>(Bytes::from_static(b"loaded"))
            })
            .await
            .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Bytes::from_static(b"loaded"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "loader ran more than once");
    let s = c.stats();
    let ns = s.namespace("user").unwrap();
    assert_eq!(ns.loads, 1);
    // The value is now in both tiers.
    let other = cache(url).await;
    assert_eq!(tier_of(&other, "user", "hot").await.unwrap().1, Tier::L2);
}

pub async fn ttl_expiry_and_l1_never_outlives_l2(url: &str, redis_exists: impl Fn(&str) -> bool) {
    let a = cache(url).await;
    let b2 = cache(url).await;
    // Namespace "short": 600 ms TTL, L1 cap 60 s, so only L2's remaining TTL bounds L1.
    a.set_bytes("short", "k", b("v"), SetOptions::default())
        .await
        .unwrap();
    assert_eq!(tier_of(&b2, "short", "k").await.unwrap().1, Tier::L2);
    // a's write also publishes an invalidation, which may reach b after b's read and
    // drop b's (current) copy: a later L2 read refills it. That is allowed; what is
    // not allowed is L1 answering after Redis has expired the key.
    let rkey = "strata:short:k:k";
    let mut l1_hits = 0;
    loop {
        let exists_before = redis_exists(rkey);
        let hit = tier_of(&b2, "short", "k").await;
        match hit {
            Some((_, Tier::L1)) => {
                l1_hits += 1;
                assert!(
                    exists_before,
                    "L1 served an entry Redis had already expired"
                );
            }
            Some((_, Tier::L2)) => {}
            None => break,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(l1_hits > 0);
    assert!(!redis_exists(rkey));
    // a's own L1 copy expired too.
    assert_eq!(tier_of(&a, "short", "k").await, None);
    // Per-write TTL overrides the namespace's.
    a.set_bytes(
        "user",
        "brief",
        b("v"),
        SetOptions::ttl(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            tier_of(&a, "user", "brief").await.is_none()
        })
        .await
    );
    let stats = a.stats();
    assert!(stats.namespace("user").unwrap().l1.expirations >= 1);
}

pub async fn corrupt_entries_are_misses(url: &str, redis_set_raw: impl Fn(&str, &str)) {
    let c = cache(url).await;
    redis_set_raw("strata:user:k:bad", "garbage-not-an-envelope");
    assert_eq!(c.get_bytes("user", "bad").await.unwrap(), None);
    let stats = c.stats();
    assert_eq!(stats.namespace("user").unwrap().l2.corrupt, 1);
    assert!(
        !c.exists("user", "bad").await.unwrap(),
        "corrupt entry was not deleted"
    );
    // A typed read of bytes that are a valid envelope but the wrong type is a miss too.
    c.set_bytes(
        "user",
        "typed",
        Bytes::from_static(b"not json"),
        SetOptions::default(),
    )
    .await
    .unwrap();
    let typed = c.namespace::<str, u64>("user").unwrap();
    assert_eq!(typed.get("typed").await.unwrap(), None);
    // And loading through it replaces the bad entry.
    let v = typed
        .get_or_load("typed", || async { Ok::<_, std::io::Error>(7u64) })
        .await
        .unwrap();
    assert_eq!(v, 7);
    assert_eq!(typed.get("typed").await.unwrap(), Some(7));
}
