//! `strata serve` with a real Redis: two tiers, two instances, Redis failures.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client, get_json, Strata};
use serde_json::Value;
use strata_testkit::RedisServer;

fn config(redis: &str) -> String {
    format!("[redis]\nurl = \"{redis}\"\n[namespaces.user]\nttl = \"1h\"\n")
}

#[tokio::test]
async fn instances_share_l2_and_invalidate_each_other() {
    let redis = RedisServer::start().expect("redis-server");
    let a = Strata::start(&config(&redis.url()));
    let b = Strata::start(&config(&redis.url()));
    let c = client();
    let put = |s: &Strata, v: &'static str| c.put(s.url("/v1/cache/user/1")).body(v).send();
    assert_eq!(put(&a, "v1").await.unwrap().status(), 204);
    // B finds it in Redis, then in memory. A's write also sent an invalidation
    // message; if it reaches B after B's first read, it drops that copy (the engine
    // cannot tell it apart from a newer write), so B may need another read.
    let r = c.get(b.url("/v1/cache/user/1")).send().await.unwrap();
    assert_eq!(r.headers()["x-cache-tier"], "l2");
    assert_eq!(r.text().await.unwrap(), "v1");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let r = c.get(b.url("/v1/cache/user/1")).send().await.unwrap();
        let tier = r.headers()["x-cache-tier"].to_str().unwrap().to_owned();
        assert_eq!(r.text().await.unwrap(), "v1");
        if tier == "l1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never kept the value in memory"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A changes it: B's memory copy is dropped by the invalidation message.
    assert_eq!(put(&a, "v2").await.unwrap().status(), 204);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let r = c.get(b.url("/v1/cache/user/1")).send().await.unwrap();
        if r.text().await.unwrap() == "v2" {
            break;
        }
        assert!(Instant::now() < deadline, "B still serves the old value");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st: Value = get_json(&c, &b.url("/v1/stats")).await;
    assert_eq!(st["tiers"]["l2"]["up"], true);
    assert!(
        st["invalidation_messages"]["received"].as_u64().unwrap() >= 1,
        "{st}"
    );
}

/// Redis killed and restarted under GET traffic: no GET fails (a miss is an
/// answer, a 5xx or a broken connection is a failure), `/ready` says degraded
/// while Redis is down, and the tier comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_under_traffic_fails_no_get() {
    let mut redis = RedisServer::start().expect("redis-server");
    let s = Strata::start(&config(&redis.url()));
    let c = client();
    for i in 0..50 {
        let r = c
            .put(s.url(&format!("/v1/cache/user/{i}")))
            .body(format!("v{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (stop, ok, failed, c) = (stop.clone(), ok.clone(), failed.clone(), c.clone());
        let base = s.url("/v1/cache/user/");
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i = (i + 7) % 50;
                match c.get(format!("{base}{i}")).send().await {
                    Ok(r) if r.status() == 200 || r.status() == 404 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        eprintln!("GET failed: {}", r.status());
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("GET failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    // Writes go on, to memory.
    let r = c
        .put(s.url("/v1/cache/user/during"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    wait_for_ready_status(&c, &s, "degraded").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart().unwrap();
    wait_for_ready_status(&c, &s, "ready").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "too little traffic to mean anything"
    );
}

/// Polls `/ready` until it reports `status`, for at most 5 s.
async fn wait_for_ready_status(c: &reqwest::Client, s: &Strata, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r: Value = get_json(c, &s.url("/ready")).await;
        if r["status"] == status {
            return;
        }
        assert!(Instant::now() < deadline, "/ready never said {status}: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
