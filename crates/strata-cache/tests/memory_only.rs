//! A cache with no Redis, and invalidation messages arriving from elsewhere.

use std::time::Duration;

use bytes::Bytes;
use strata_cache::{
    Cache, CacheError, Invalidation, InvalidationMessage, MessageItem, Policy, SetOptions, Tier,
};

async fn cache() -> Cache {
    Cache::builder()
        .max_memory(1 << 20)
        .namespace("user", Policy::new(Duration::from_secs(60)))
        .build()
        .await
        .unwrap()
}

fn message(origin: &str, items: Vec<Invalidation>) -> Vec<u8> {
    InvalidationMessage {
        v: 1,
        origin: origin.into(),
        items: items
            .into_iter()
            .map(|invalidation| MessageItem {
                invalidation,
                resolved: vec![],
            })
            .collect(),
    }
    .to_bytes()
}

#[tokio::test]
async fn works_without_redis() {
    let c = cache().await;
    assert_eq!(c.l2_up(), None);
    c.set_bytes("user", "a", Bytes::from_static(b"1"), SetOptions::default())
        .await
        .unwrap();
    let hit = c.get_bytes("user", "a").await.unwrap().unwrap();
    assert_eq!((hit.value, hit.tier), (Bytes::from_static(b"1"), Tier::L1));
    let v = c
        .get_or_load_bytes("user", "b", || async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"2"))
        })
        .await
        .unwrap();
    assert_eq!(v, Bytes::from_static(b"2"));
    assert!(c.exists("user", "b").await.unwrap());
    let ttl = c.ttl("user", "b").await.unwrap().unwrap();
    assert!(
        ttl > Duration::from_secs(55) && ttl <= Duration::from_secs(60),
        "{ttl:?}"
    );
    let s = c.stats();
    let ns = s.namespace("user").unwrap();
    assert_eq!((ns.l1.hits, ns.loads, ns.l1_entries), (1, 1, 2));
    assert!(ns.l1_bytes > 0);
    assert!(c.ping_l2().await.is_err());
    // Reads validate keys too (the byte scan runs on the miss path).
    for bad in ["a\nb", ""] {
        assert!(
            matches!(
                c.get_bytes("user", bad).await,
                Err(CacheError::InvalidKey(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        c.get_bytes("user", &"k".repeat(251)).await,
        Err(CacheError::KeyTooLong { .. })
    ));
    assert_eq!(
        c.stats().namespace("user").unwrap().l1.misses,
        1,
        "invalid reads are not counted as misses"
    );
}

#[tokio::test]
async fn memory_bound_holds() {
    let c = Cache::builder()
        .max_memory(256 * 1024)
        .build()
        .await
        .unwrap();
    let ns = c.raw("big").unwrap();
    for i in 0..10_000 {
        ns.set(
            &format!("k{i}"),
            Bytes::from(vec![0u8; 1000]),
            SetOptions::default(),
        )
        .await
        .unwrap();
    }
    let s = c.stats();
    assert!(s.l1_bytes <= 256 * 1024, "{} bytes held", s.l1_bytes);
    assert!(s.namespace("big").unwrap().l1.evictions > 9000);
}

#[tokio::test]
async fn messages_from_other_instances_drop_entries() {
    let c = cache().await;
    for k in ["1", "2", "p:1"] {
        c.set_bytes("user", k, Bytes::from_static(b"v"), SetOptions::default())
            .await
            .unwrap();
    }
    let dropped = c
        .receive_invalidation(&message(
            "other",
            vec![
                Invalidation::key("user", "1"),
                Invalidation::prefix("user", "p:"),
            ],
        ))
        .unwrap();
    assert_eq!(dropped, 2);
    assert_eq!(c.get_bytes("user", "1").await.unwrap(), None);
    assert!(c.get_bytes("user", "2").await.unwrap().is_some());
    // Our own messages are ignored.
    let own = message(c.instance_id(), vec![Invalidation::key("user", "2")]);
    assert_eq!(c.receive_invalidation(&own).unwrap(), 0);
    assert!(c.get_bytes("user", "2").await.unwrap().is_some());
    // Unknown namespaces are not created from the wire.
    c.receive_invalidation(&message("other", vec![Invalidation::namespace("ghost")]))
        .unwrap();
    assert!(!c.namespaces().contains(&"ghost".to_string()));
    // Garbage is a clear error and changes nothing.
    for bad in [
        &b"not json"[..],
        br#"{"v":2,"origin":"x","items":[]}"#,
        br#"{"v":1,"origin":"x","items":[{"ns":"bad ns","op":"namespace"}]}"#,
    ] {
        assert!(matches!(
            c.receive_invalidation(bad),
            Err(CacheError::Codec(_) | CacheError::InvalidNamespace(_))
        ));
    }
    assert!(c.get_bytes("user", "2").await.unwrap().is_some());
    // Two valid messages came from another instance (the ghost one dropped nothing).
    assert_eq!(c.stats().invalidation_messages_received, 2);
}

#[tokio::test]
async fn tag_invalidation_stays_correct_past_the_tag_index_bound() {
    let c = Cache::builder()
        .max_memory(256 << 20)
        .namespace(
            "local",
            Policy::default().placement(strata_cache::Placement::L1Only),
        )
        .build()
        .await
        .unwrap();
    let ns = c.raw("local").unwrap();
    // More tagged entries than the local index keeps (100,000 pairs).
    let keys: Vec<String> = (0..100_001).map(|i| format!("k{i}")).collect();
    for chunk in keys.chunks(10_000) {
        let entries = chunk
            .iter()
            .map(|k| (k.clone(), Bytes::from_static(b"v")))
            .collect();
        c.mset_bytes("local", entries, SetOptions::default().tags(["big"]))
            .await
            .unwrap();
    }
    ns.set(
        "x",
        Bytes::from_static(b"v"),
        SetOptions::default().tags(["small"]),
    )
    .await
    .unwrap();
    // The index overflowed before "x" was written, yet invalidating its tag drops it.
    c.invalidate(Invalidation::tag("local", "small"))
        .await
        .unwrap();
    assert_eq!(ns.get("x").await.unwrap(), None);
    // After that flush the index works precisely again.
    ns.set(
        "y",
        Bytes::from_static(b"v"),
        SetOptions::default().tags(["t"]),
    )
    .await
    .unwrap();
    ns.set("z", Bytes::from_static(b"v"), SetOptions::default())
        .await
        .unwrap();
    assert_eq!(
        c.invalidate(Invalidation::tag("local", "t")).await.unwrap(),
        1
    );
    assert_eq!(ns.get("y").await.unwrap(), None);
    assert!(ns.get("z").await.unwrap().is_some());
}
