//! The engine against a real standalone redis-server.

mod common;

use strata_testkit::RedisServer;

fn exists(r: &RedisServer, key: &str) -> bool {
    r.command(&format!("EXISTS {key}"))
        .unwrap()
        .starts_with(":1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_tiers() {
    let r = RedisServer::start().unwrap();
    common::basic_tiers(&r.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_instance_invalidation() {
    let r = RedisServer::start().unwrap();
    common::cross_instance_invalidation(&r.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_publish_nothing() {
    let r = RedisServer::start().unwrap();
    common::reads_publish_nothing(&r.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight() {
    let r = RedisServer::start().unwrap();
    common::single_flight(&r.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expiry_and_l1_never_outlives_l2() {
    let r = RedisServer::start().unwrap();
    common::ttl_expiry_and_l1_never_outlives_l2(&r.url(), |k| exists(&r, k)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_entries_are_misses() {
    let r = RedisServer::start().unwrap();
    common::corrupt_entries_are_misses(&r.url(), |k, v| {
        assert!(r
            .command(&format!("SET {k} {v}"))
            .unwrap()
            .starts_with("+OK"));
    })
    .await;
}
