//! Namespace policies against a real Redis: codecs, compression, encryption,
//! placement, limits, loader behaviour, invalidation variants, metrics.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{eventually, opts};
use serde::{Deserialize, Serialize};
use strata_cache::{
    Cache, CacheError, Compression, Format, Invalidation, InvalidationEvent, Keyring, Placement,
    Policy, SetOptions, Tier,
};
use strata_testkit::RedisServer;

const KEY: [u8; 32] = [42u8; 32];

async fn build(url: &str, with_keyring: bool) -> Cache {
    let ttl = Duration::from_secs(60);
    let mut b = Cache::builder()
        .redis(opts(url))
        .namespace("json", Policy::new(ttl))
        .namespace("mp", Policy::new(ttl).format(Format::MessagePack))
        .namespace("bin", Policy::new(ttl).format(Format::Binary))
        .namespace(
            "zstd",
            Policy::new(ttl).compression(Compression::Zstd(3), 256),
        )
        .namespace("lz4", Policy::new(ttl).compression(Compression::Lz4, 256))
        .namespace("local", Policy::new(ttl).placement(Placement::L1Only))
        .namespace("remote", Policy::new(ttl).placement(Placement::L2Only))
        .namespace("sized", Policy::new(ttl).l2_only_above(100))
        .namespace("small", Policy::new(ttl).max_key_len(8).max_value_size(16))
        .namespace(
            "neg",
            Policy::new(ttl).negative_ttl(Duration::from_secs(30)),
        )
        .namespace(
            "slow",
            Policy::new(ttl).loader_timeout(Duration::from_millis(100)),
        );
    if with_keyring {
        b = b
            .namespace("secret", Policy::new(ttl).encrypt(true))
            .keyring(Keyring::new(1, &KEY).unwrap());
    }
    b.build().await.unwrap()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Wallet {
    owner: String,
    cents: i64,
    assets: Vec<(String, f64)>,
}

fn wallet() -> Wallet {
    Wallet {
        owner: "ada".into(),
        cents: -5,
        assets: vec![("BTC".into(), 0.5), ("ETH".into(), 2.0)],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_round_trips_through_redis() {
    let r = RedisServer::start().unwrap();
    let a = build(&r.url(), false).await;
    let b2 = build(&r.url(), false).await;
    for ns in ["json", "mp", "bin"] {
        a.namespace::<str, Wallet>(ns)
            .unwrap()
            .set("w1", &wallet())
            .await
            .unwrap();
        let got = b2
            .namespace::<str, Wallet>(ns)
            .unwrap()
            .get_with_tier("w1")
            .await
            .unwrap();
        assert_eq!(got, Some((wallet(), Tier::L2)), "{ns}");
    }
    // Typed batches.
    let json = a.namespace::<str, Wallet>("json").unwrap();
    let mut w2 = wallet();
    w2.cents = 99;
    json.mset(&[("m1", &wallet()), ("m2", &w2)], SetOptions::default())
        .await
        .unwrap();
    let got = b2
        .namespace::<str, Wallet>("json")
        .unwrap()
        .mget(&["m1", "m2", "m3"])
        .await
        .unwrap();
    assert_eq!(got, vec![Some(wallet()), Some(w2), None]);
    // JSON is readable by other languages straight from Redis (after the 29-byte header).
    let raw = r.command("GETRANGE strata:json:k:w1 29 -1").unwrap();
    assert!(raw.contains(r#""owner":"ada""#), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_shrinks_what_redis_holds() {
    let r = RedisServer::start().unwrap();
    let c = build(&r.url(), false).await;
    let big = Bytes::from("abcdefgh".repeat(1000));
    for ns in ["zstd", "lz4", "json"] {
        c.set_bytes(ns, "big", big.clone(), SetOptions::default())
            .await
            .unwrap();
        let len: usize = r.command(&format!("STRLEN strata:{ns}:k:big")).unwrap()[1..]
            .trim()
            .parse()
            .unwrap();
        if ns == "json" {
            assert_eq!(len, 8000 + 29);
        } else {
            assert!(len < 1000, "{ns}: {len} bytes");
        }
        let other = build(&r.url(), false).await;
        assert_eq!(
            other.get_bytes(ns, "big").await.unwrap().unwrap().value,
            big
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_keeps_plaintext_out_of_redis() {
    let r = RedisServer::start().unwrap();
    let c = build(&r.url(), true).await;
    c.set_bytes(
        "secret",
        "card",
        Bytes::from_static(b"4111-1111-1111-1111"),
        SetOptions::default(),
    )
    .await
    .unwrap();
    let raw = r.command("GET strata:secret:k:card").unwrap();
    assert!(!raw.contains("4111"), "plaintext in redis: {raw}");
    let reader = build(&r.url(), true).await;
    assert_eq!(
        reader
            .get_bytes("secret", "card")
            .await
            .unwrap()
            .unwrap()
            .value,
        Bytes::from_static(b"4111-1111-1111-1111")
    );
    // A namespace that encrypts needs a keyring.
    let err = Cache::builder()
        .namespace("secret", Policy::default().encrypt(true))
        .build()
        .await
        .err()
        .expect("build must fail");
    assert!(matches!(err, CacheError::Config(_)), "{err}");
    // An instance with another key cannot read it: a miss, counted as corrupt.
    let wrong = Cache::builder()
        .redis(opts(&r.url()))
        .namespace("secret", Policy::default().encrypt(true))
        .keyring(Keyring::new(1, &[7u8; 32]).unwrap())
        .build()
        .await
        .unwrap();
    assert_eq!(wrong.get_bytes("secret", "card").await.unwrap(), None);
    assert_eq!(wrong.stats().namespace("secret").unwrap().l2.corrupt, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_rules() {
    let r = RedisServer::start().unwrap();
    let c = build(&r.url(), false).await;
    c.set_bytes(
        "local",
        "k",
        Bytes::from_static(b"v"),
        SetOptions::default(),
    )
    .await
    .unwrap();
    assert!(
        r.command("EXISTS strata:local:k:k")
            .unwrap()
            .starts_with(":0"),
        "l1_only reached redis"
    );
    assert_eq!(
        c.get_bytes("local", "k").await.unwrap().unwrap().tier,
        Tier::L1
    );

    c.set_bytes(
        "remote",
        "k",
        Bytes::from_static(b"v"),
        SetOptions::default(),
    )
    .await
    .unwrap();
    for _ in 0..3 {
        assert_eq!(
            c.get_bytes("remote", "k").await.unwrap().unwrap().tier,
            Tier::L2
        );
    }
    c.set_bytes(
        "sized",
        "small",
        Bytes::from(vec![1u8; 100]),
        SetOptions::default(),
    )
    .await
    .unwrap();
    c.set_bytes(
        "sized",
        "large",
        Bytes::from(vec![1u8; 101]),
        SetOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        c.get_bytes("sized", "small").await.unwrap().unwrap().tier,
        Tier::L1
    );
    assert_eq!(
        c.get_bytes("sized", "large").await.unwrap().unwrap().tier,
        Tier::L2
    );
    assert_eq!(
        c.get_bytes("sized", "large").await.unwrap().unwrap().tier,
        Tier::L2,
        "large value filled L1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_typed_errors_and_lose_nothing() {
    let r = RedisServer::start().unwrap();
    let c = build(&r.url(), false).await;
    c.set_bytes(
        "small",
        "ok",
        Bytes::from_static(b"v"),
        SetOptions::default(),
    )
    .await
    .unwrap();
    let e = c
        .set_bytes(
            "small",
            "too-long-key",
            Bytes::from_static(b"v"),
            SetOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            CacheError::KeyTooLong {
                len: 12,
                max: 8,
                ..
            }
        ),
        "{e}"
    );
    let e = c
        .set_bytes(
            "small",
            "ok",
            Bytes::from(vec![0u8; 17]),
            SetOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            CacheError::ValueTooLarge {
                size: 17,
                max: 16,
                ..
            }
        ),
        "{e}"
    );
    // The rejected write changed nothing.
    assert_eq!(
        c.get_bytes("small", "ok").await.unwrap().unwrap().value,
        Bytes::from_static(b"v")
    );
    assert!(matches!(
        c.get_bytes("bad ns", "k").await,
        Err(CacheError::InvalidNamespace(_))
    ));
    // Default limit: 250-byte keys.
    let e = c.get_bytes("json", &"k".repeat(251)).await.unwrap_err();
    assert!(matches!(e, CacheError::KeyTooLong { max: 250, .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_errors_are_not_cached_unless_negative_ttl() {
    let r = RedisServer::start().unwrap();
    let c = build(&r.url(), false).await;
    let calls = Arc::new(AtomicU32::new(0));
    let failing = |calls: Arc<AtomicU32>| {
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<Bytes, _>(std::io::Error::other("db down"))
        }
    };
    for _ in 0..3 {
        let e = c
            .get_or_load_bytes("json", "k", failing(calls.clone()))
            .await
            .unwrap_err();
        assert!(matches!(e, CacheError::Loader(_)), "{e}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3, "errors must not be cached");
    assert_eq!(c.get_bytes("json", "k").await.unwrap(), None);

    calls.store(0, Ordering::SeqCst);
    for _ in 0..3 {
        assert!(c
            .get_or_load_bytes("neg", "k", failing(calls.clone()))
            .await
            .is_err());
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "negative TTL should remember the error"
    );
    assert_eq!(c.stats().namespace("neg").unwrap().load_errors, 1);

    let e = c
        .get_or_load_bytes("slow", "k", || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, std::io::Error>(Bytes::new())
        })
        .await
        .unwrap_err();
    assert!(matches!(e, CacheError::LoaderTimeout(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_invalidation_coalesces_repeats() {
    let r = RedisServer::start().unwrap();
    let c = build(&r.url(), false).await;
    c.set_bytes("json", "k", Bytes::from_static(b"v"), SetOptions::default())
        .await
        .unwrap();
    let published = eventually(Duration::from_secs(5), || async {
        c.stats().invalidation_messages_published == 1
    })
    .await;
    assert!(published);
    for _ in 0..20 {
        c.invalidate_later(Invalidation::key("json", "k"), Duration::from_millis(200));
    }
    // Still there during the window…
    assert!(c.get_bytes("json", "k").await.unwrap().is_some());
    // …then gone, with one invalidation run.
    assert!(
        eventually(Duration::from_secs(5), || async {
            c.get_bytes("json", "k").await.unwrap().is_none()
        })
        .await
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            c.stats().invalidation_messages_published == 2
        })
        .await
    );
    // Give stray duplicates a chance to show up: there must be none.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        c.stats().invalidation_messages_published,
        2,
        "repeats were not coalesced"
    );
    assert_eq!(c.stats().namespace("json").unwrap().l2.invalidations, 1);
}

struct UserUpdated(u64);

impl InvalidationEvent for UserUpdated {
    fn invalidations(&self) -> Vec<Invalidation> {
        vec![
            Invalidation::key("json", format!("user:{}", self.0)),
            Invalidation::tag("mp", format!("user:{}", self.0)),
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_events_and_conditional_invalidation() {
    let r = RedisServer::start().unwrap();
    let c = build(&r.url(), false).await;
    c.set_bytes(
        "json",
        "user:7",
        Bytes::from_static(b"a"),
        SetOptions::default(),
    )
    .await
    .unwrap();
    c.set_bytes(
        "mp",
        "feed:1",
        Bytes::from_static(b"b"),
        SetOptions::default().tags(["user:7"]),
    )
    .await
    .unwrap();
    c.set_bytes(
        "mp",
        "feed:2",
        Bytes::from_static(b"c"),
        SetOptions::default().tags(["user:8"]),
    )
    .await
    .unwrap();
    assert_eq!(
        c.fire(&UserUpdated(7)).await.unwrap(),
        4,
        "2 entries × 2 tiers"
    );
    assert_eq!(c.get_bytes("json", "user:7").await.unwrap(), None);
    assert_eq!(c.get_bytes("mp", "feed:1").await.unwrap(), None);
    assert!(c.get_bytes("mp", "feed:2").await.unwrap().is_some());

    // older_than: only entries created before the cut-off go.
    c.set_bytes(
        "json",
        "old",
        Bytes::from_static(b"1"),
        SetOptions::default(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cut = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.set_bytes(
        "json",
        "new",
        Bytes::from_static(b"2"),
        SetOptions::default(),
    )
    .await
    .unwrap();
    c.invalidate(Invalidation::namespace("json").older_than(cut))
        .await
        .unwrap();
    assert_eq!(c.get_bytes("json", "old").await.unwrap(), None);
    assert!(c.get_bytes("json", "new").await.unwrap().is_some());
    let other = build(&r.url(), false).await;
    assert_eq!(
        other.get_bytes("json", "old").await.unwrap(),
        None,
        "old entry survived in redis"
    );
    assert!(
        other.get_bytes("json", "new").await.unwrap().is_some(),
        "new entry dropped from redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_check_spares_newer_values() {
    let r = RedisServer::start().unwrap();
    let c = build(&r.url(), false).await;
    let other = build(&r.url(), false).await;
    c.set_bytes(
        "json",
        "row:1",
        Bytes::from_static(b"v5"),
        SetOptions::default().version(5),
    )
    .await
    .unwrap();
    c.set_bytes(
        "json",
        "row:2",
        Bytes::from_static(b"v7"),
        SetOptions::default().version(7),
    )
    .await
    .unwrap();
    c.set_bytes(
        "json",
        "row:3",
        Bytes::from_static(b"none"),
        SetOptions::default(),
    )
    .await
    .unwrap();
    // A writer that just committed version 6 of each row drops only older copies.
    let dropped = c
        .invalidate(Invalidation::prefix("json", "row:").version_below(6))
        .await
        .unwrap();
    assert_eq!(dropped, 4, "row:1 and row:3, in both tiers");
    assert_eq!(c.get_bytes("json", "row:1").await.unwrap(), None);
    assert_eq!(c.get_bytes("json", "row:3").await.unwrap(), None);
    assert_eq!(
        c.get_bytes("json", "row:2").await.unwrap().unwrap().value,
        Bytes::from_static(b"v7")
    );
    // The version travels through Redis: another instance applies the same rule to its L1.
    assert_eq!(
        other
            .get_bytes("json", "row:2")
            .await
            .unwrap()
            .unwrap()
            .tier,
        Tier::L2
    );
    let received = other.stats().invalidation_messages_received;
    c.invalidate(Invalidation::key("json", "row:2").version_below(7))
        .await
        .unwrap();
    let arrived = eventually(Duration::from_secs(5), || async {
        other.stats().invalidation_messages_received > received
    })
    .await;
    assert!(
        arrived,
        "the conditional invalidation never reached the other instance"
    );
    assert!(
        other.get_bytes("json", "row:2").await.unwrap().is_some(),
        "version 7 is not below 7"
    );
    c.invalidate(Invalidation::key("json", "row:2").version_below(8))
        .await
        .unwrap();
    let gone = eventually(Duration::from_secs(5), || async {
        other.get_bytes("json", "row:2").await.unwrap().is_none()
    })
    .await;
    assert!(gone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_the_documented_names() {
    let r = RedisServer::start().unwrap();
    let c = build(&r.url(), false).await;
    c.set_bytes("json", "k", Bytes::from_static(b"v"), SetOptions::default())
        .await
        .unwrap();
    c.get_bytes("json", "k").await.unwrap();
    c.get_bytes("json", "missing").await.unwrap();
    let mut reg = prometheus_client::registry::Registry::default();
    c.register_metrics(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    for want in [
        r#"strata_cache_hits_total{namespace="json",tier="l1"} 1"#,
        r#"strata_cache_misses_total{namespace="json",tier="l2"} 1"#,
        r#"strata_tier_up{tier="l2"} 1"#,
        "strata_cache_operation_duration_seconds_bucket",
        "strata_cache_size_bytes",
        "strata_cache_entries",
        "strata_cache_evictions_total",
        "strata_cache_invalidations_total",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
}
