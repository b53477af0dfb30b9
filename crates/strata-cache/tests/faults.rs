//! Redis dying and coming back under traffic.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{cache, eventually};
use strata_cache::{SetOptions, Tier};
use strata_testkit::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_traffic_then_restarted() {
    let mut redis = RedisServer::start().unwrap();
    let c = cache(&redis.url()).await;
    assert_eq!(c.l2_up(), Some(true));
    // An entry cached in L1 before the outage.
    c.set_bytes(
        "user",
        "before",
        Bytes::from_static(b"old"),
        SetOptions::default(),
    )
    .await
    .unwrap();

    // Traffic: get_or_load over a rotating key set, counting errors.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..8u64 {
        let (c, stop, errors, ok) = (c.clone(), stop.clone(), errors.clone(), ok.clone());
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("k{}", (w * 1000 + i) % 200);
                let value = Bytes::from(format!("v{key}"));
                let r = c
                    .get_or_load_bytes("user", &key, move || async move {
                        Ok::<_, std::io::Error>(value)
                    })
                    .await;
                match r {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
                i += 1;
                tokio::task::yield_now().await;
            }
        }));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            ok.load(Ordering::Relaxed) > 500
        })
        .await
    );

    redis.kill();
    let down = eventually(Duration::from_secs(10), || async {
        c.l2_up() == Some(false)
    })
    .await;
    assert!(down, "tier never reported down");
    let ok_at_down = ok.load(Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || async {
            ok.load(Ordering::Relaxed) > ok_at_down + 500
        })
        .await,
        "traffic stalled while redis was down"
    );

    // A write during the outage goes to L1 only and is remembered for Redis.
    c.set_bytes(
        "user",
        "during",
        Bytes::from_static(b"new"),
        SetOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        c.get_bytes("user", "during").await.unwrap().unwrap().tier,
        Tier::L1
    );

    redis.restart().unwrap();
    let back_at = Instant::now();
    let up = eventually(Duration::from_secs(10), || async {
        c.l2_up() == Some(true)
    })
    .await;
    assert!(up, "tier never came back up");
    eprintln!(
        "circuit closed {:?} after redis restarted",
        back_at.elapsed()
    );
    // L1 was flushed on recovery: the pre-outage entry is not served from memory.
    assert_eq!(
        c.get_bytes("user", "before").await.unwrap(),
        None,
        "stale L1 entry survived recovery"
    );

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        errors.load(Ordering::Relaxed),
        0,
        "get_or_load surfaced errors during the outage"
    );
    // Traffic after recovery reaches Redis again.
    c.set_bytes(
        "user",
        "after",
        Bytes::from_static(b"x"),
        SetOptions::default(),
    )
    .await
    .unwrap();
    assert!(redis
        .command("EXISTS strata:user:k:after")
        .unwrap()
        .starts_with(":1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_while_down_is_replayed() {
    let mut redis = RedisServer::start().unwrap();
    let c = cache(&redis.url()).await;
    c.set_bytes(
        "user",
        "x",
        Bytes::from_static(b"v1"),
        SetOptions::default(),
    )
    .await
    .unwrap();
    // Kill Redis; after the restart the key is put back by hand, standing in for a
    // Redis that persisted or replicated it.
    redis.kill();
    // Writes and deletes fail over to memory and open the circuit.
    for _ in 0..5 {
        let _ = c.get_bytes("user", "y").await;
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            c.l2_up() == Some(false)
        })
        .await
    );
    assert!(c.delete("user", "x").await.is_ok());
    redis.restart().unwrap();
    // The restarted Redis still has the old value (as a persistent or replicated one would).
    let v1 = {
        let codec = strata_cache::EnvelopeCodec {
            compression: strata_cache::Compression::None,
            compress_min: usize::MAX,
            keyring: None,
            max_payload: 1 << 20,
        };
        let env = strata_cache::Envelope {
            codec: 0,
            created_ms: 1,
            version: 0,
            ttl_ms: 60_000,
            payload: Bytes::from_static(b"v1"),
        };
        codec.encode(&env, b"strata:user:k:x").unwrap()
    };
    assert!(redis_set_bytes(redis.port(), "strata:user:k:x", &v1));
    assert!(
        eventually(Duration::from_secs(10), || async {
            c.l2_up() == Some(true)
        })
        .await
    );
    // The delete made during the outage reached Redis on recovery.
    let gone = eventually(Duration::from_secs(5), || async {
        redis
            .command("EXISTS strata:user:k:x")
            .unwrap()
            .starts_with(":0")
    })
    .await;
    assert!(gone, "delete made while redis was down was not replayed");
    assert_eq!(c.get_bytes("user", "x").await.unwrap(), None);
}

/// SET with a binary value, over RESP.
fn redis_set_bytes(port: u16, key: &str, value: &[u8]) -> bool {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut cmd = format!(
        "*3\r\n$3\r\nSET\r\n${}\r\n{}\r\n${}\r\n",
        key.len(),
        key,
        value.len()
    )
    .into_bytes();
    cmd.extend_from_slice(value);
    cmd.extend_from_slice(b"\r\n");
    s.write_all(&cmd).unwrap();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap();
    buf[..n].starts_with(b"+OK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_redis_down_and_picks_it_up() {
    let mut redis = RedisServer::start().unwrap();
    let url = redis.url();
    redis.kill();
    let c = cache(&url).await;
    assert_eq!(c.l2_up(), Some(false));
    let v = c
        .get_or_load_bytes("user", "a", || async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"x"))
        })
        .await
        .unwrap();
    assert_eq!(v, Bytes::from_static(b"x"));
    redis.restart().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            c.l2_up() == Some(true)
        })
        .await
    );
    c.set_bytes("user", "b", Bytes::from_static(b"y"), SetOptions::default())
        .await
        .unwrap();
    assert!(redis
        .command("EXISTS strata:user:k:b")
        .unwrap()
        .starts_with(":1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_drop_flushes_coherent_l1() {
    let redis = RedisServer::start().unwrap();
    let c = cache(&redis.url()).await;
    c.set_bytes("user", "k", Bytes::from_static(b"v"), SetOptions::default())
        .await
        .unwrap();
    assert_eq!(
        c.get_bytes("user", "k").await.unwrap().unwrap().tier,
        Tier::L1
    );
    // Kill only the pub/sub connection: Redis itself stays up.
    let killed = redis.command("CLIENT KILL TYPE pubsub").unwrap();
    assert!(killed.starts_with(":1"), "{killed}");
    // The L1 copy is dropped (read comes from L2 again).
    let flushed = eventually(Duration::from_secs(5), || async {
        c.get_bytes("user", "k")
            .await
            .unwrap()
            .is_some_and(|h| h.tier == Tier::L2)
    })
    .await;
    assert!(flushed, "L1 not flushed after the subscription dropped");
    // And the subscription is re-established: another instance's write reaches us.
    let other = cache(&redis.url()).await;
    other
        .set_bytes(
            "user",
            "k",
            Bytes::from_static(b"v2"),
            SetOptions::default(),
        )
        .await
        .unwrap();
    let seen = eventually(Duration::from_secs(5), || async {
        c.get_bytes("user", "k")
            .await
            .unwrap()
            .is_some_and(|h| h.value == Bytes::from_static(b"v2"))
    })
    .await;
    assert!(seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_publish_is_retried() {
    use strata_cache::{Cache, Invalidation, Policy};

    let redis = RedisServer::start().unwrap();
    // A's circuit never opens here, so nothing but the publisher's retry can deliver
    // the message (recovery replay would otherwise re-publish it).
    let mut o = common::opts(&redis.url());
    o.failure_threshold = 1_000_000;
    let a = Cache::builder()
        .redis(o)
        .namespace("user", Policy::new(Duration::from_secs(60)))
        .build()
        .await
        .unwrap();
    let b = cache(&redis.url()).await;
    a.set_bytes(
        "user",
        "k",
        Bytes::from_static(b"v1"),
        SetOptions::default(),
    )
    .await
    .unwrap();
    let cached = eventually(Duration::from_secs(5), || async {
        b.get_bytes("user", "k")
            .await
            .unwrap()
            .is_some_and(|h| h.tier == Tier::L1)
    })
    .await;
    assert!(cached);
    // Redis refuses PUBLISH (NOPERM: never executed, unlike a command that merely
    // timed out, which Redis still runs later); everything else keeps working.
    assert!(redis
        .command("ACL SETUSER default -publish")
        .unwrap()
        .starts_with("+OK"));
    a.invalidate(Invalidation::key("user", "k")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = b.get_bytes("user", "k").await.unwrap();
    assert!(
        still.is_some_and(|h| h.tier == Tier::L1),
        "the message got through while PUBLISH was refused"
    );
    // A process exiting now would be told its last change did not go out.
    assert!(!a.flush_invalidations(Duration::from_millis(200)).await);
    assert!(redis
        .command("ACL SETUSER default +publish")
        .unwrap()
        .starts_with("+OK"));
    assert!(
        a.flush_invalidations(Duration::from_secs(10)).await,
        "the retried message was never published"
    );
    let dropped = eventually(Duration::from_secs(10), || async {
        !b.get_bytes("user", "k")
            .await
            .unwrap()
            .is_some_and(|h| h.tier == Tier::L1)
    })
    .await;
    assert!(
        dropped,
        "b kept its L1 copy: the failed publish was not retried"
    );
}
