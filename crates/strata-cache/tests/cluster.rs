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
