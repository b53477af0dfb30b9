//! The same scenarios against a real 3-master Redis Cluster.

mod common;

use strata_testkit::RedisCluster;

/// Runs an inline command on whichever node owns the key (follows one MOVED).
fn on_owner(c: &mut RedisCluster, cmd: &str) -> String {
    let r = c.nodes()[0].command(cmd).unwrap();
    if let Some(rest) = r.strip_prefix("-MOVED ") {
        let addr = rest.split_whitespace().nth(1).unwrap().trim();
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        return strata_testkit::redis_command(port, cmd).unwrap();
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_tiers() {
    let c = RedisCluster::start(3).unwrap();
    common::basic_tiers(&c.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_instance_invalidation() {
    let c = RedisCluster::start(3).unwrap();
    common::cross_instance_invalidation(&c.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_publish_nothing() {
    let c = RedisCluster::start(3).unwrap();
    common::reads_publish_nothing(&c.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight() {
    let c = RedisCluster::start(3).unwrap();
    common::single_flight(&c.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expiry_and_l1_never_outlives_l2() {
    let c = std::sync::Mutex::new(RedisCluster::start(3).unwrap());
    let url = c.lock().unwrap().url();
    common::ttl_expiry_and_l1_never_outlives_l2(&url, |k| {
        on_owner(&mut c.lock().unwrap(), &format!("EXISTS {k}")).starts_with(":1")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_entries_are_misses() {
    let c = std::sync::Mutex::new(RedisCluster::start(3).unwrap());
    let url = c.lock().unwrap().url();
    common::corrupt_entries_are_misses(&url, |k, v| {
        assert!(on_owner(&mut c.lock().unwrap(), &format!("SET {k} {v}")).starts_with("+OK"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colocated_namespace_shares_one_slot_and_tag_sets_expire() {
    use std::time::Duration;

    use bytes::Bytes;
    use strata_cache::{Cache, Invalidation, Policy, SetOptions};

    let mut c = RedisCluster::start(3).unwrap();
    let cache = Cache::builder()
        .redis(common::opts(&c.url()))
        .namespace("team", Policy::new(Duration::from_secs(60)).colocate(true))
        .namespace("spread", Policy::new(Duration::from_secs(60)))
        .build()
        .await
        .unwrap();
    let keys: Vec<String> = (0..20).map(|i| format!("member-{i}")).collect();
    for k in &keys {
        cache
            .set_bytes(
                "team",
                k,
                Bytes::from_static(b"v"),
                SetOptions::default().tags(["t1"]),
            )
            .await
            .unwrap();
        cache
            .set_bytes("spread", k, Bytes::from_static(b"v"), SetOptions::default())
            .await
            .unwrap();
    }
    let slot = |c: &mut RedisCluster, key: &str| on_owner(c, &format!("CLUSTER KEYSLOT {key}"));
    let mut team_slots = std::collections::HashSet::new();
    for k in &keys {
        team_slots.insert(slot(&mut c, &format!("strata:{{team}}:k:{k}")));
    }
    team_slots.insert(slot(&mut c, "strata:{team}:t:t1"));
    assert_eq!(
        team_slots.len(),
        1,
        "colocated namespace spans slots: {team_slots:?}"
    );
    let mut spread_slots = std::collections::HashSet::new();
    for k in &keys {
        spread_slots.insert(slot(&mut c, &format!("strata:spread:k:{k}")));
    }
    assert!(spread_slots.len() > 1, "default layout should spread keys");
    // The tag set has a TTL no shorter than its members'.
    let pttl: i64 = on_owner(&mut c, "PTTL strata:{team}:t:t1")[1..]
        .trim()
        .parse()
        .unwrap();
    assert!(pttl > 50_000 && pttl <= 60_000, "tag set pttl {pttl}");
    // Tag invalidation works on the cluster.
    assert_eq!(
        cache
            .invalidate(Invalidation::tag("team", "t1"))
            .await
            .unwrap(),
        40,
        "20 keys × 2 tiers"
    );
    assert!(on_owner(&mut c, "EXISTS strata:{team}:k:member-3").starts_with(":0"));
    assert!(on_owner(&mut c, "EXISTS strata:{team}:t:t1").starts_with(":0"));
}
