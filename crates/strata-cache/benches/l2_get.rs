//! The L2 read path against redis-benchmark, on one redis-server, in one run.
//!
//! Both sides read 100-byte values of 100k keys with 50 concurrent clients:
//! `redis-benchmark -c 50 -t get -d 100 -r 100000` (50 connections, one request at a
//! time each) and strata's `get` from 50 tasks on a namespace placed in L2 only (so
//! every read goes to Redis; strata multiplexes them over one pipelined connection,
//! and each read is GET + PTTL). Prints ops/s of each and the ratio.
//!
//! ```text
//! bench/compare-redis.sh            # or: cargo bench -p strata-cache --bench l2_get
//! ```

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use strata_cache::{Cache, Placement, Policy, RedisOptions, RedisTarget, SetOptions};
use strata_testkit::RedisServer;

const KEYS: usize = 100_000;
const CLIENTS: usize = 50;
const REQUESTS: usize = 300_000;

fn redis_benchmark(port: u16, test: &str) -> f64 {
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            &CLIENTS.to_string(),
        ])
        .args([
            "-n",
            &REQUESTS.to_string(),
            "-t",
            test,
            "-d",
            "100",
            "-r",
            &KEYS.to_string(),
            "-q",
        ])
        .output()
        .expect("redis-benchmark (Debian: apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    // "GET: 123456.79 requests per second, p50=0.191 msec"
    let line = text
        .split(['\r', '\n'])
        .rev()
        .find(|l| l.contains("requests per second"))
        .unwrap_or_else(|| panic!("{text}"));
    let rps = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{line}"));
    rps.parse().unwrap_or_else(|_| panic!("{line}"))
}

async fn strata_gets(url: &str) -> f64 {
    let mut opts = RedisOptions::new(RedisTarget::parse(url).unwrap());
    opts.op_timeout = Duration::from_secs(1);
    let cache = Cache::builder()
        .redis(opts)
        .namespace(
            "bench",
            Policy::new(Duration::from_secs(3600)).placement(Placement::L2Only),
        )
        .build()
        .await
        .unwrap();
    let ns = cache.raw("bench").unwrap();
    let value = Bytes::from(vec![b'x'; 100]);
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        let entries: Vec<(String, Bytes)> = chunk
            .iter()
            .map(|i| (format!("k{i}"), value.clone()))
            .collect();
        cache
            .mset_bytes("bench", entries, SetOptions::default())
            .await
            .unwrap();
    }
    let done = Arc::new(AtomicU64::new(0));
    let per_task = REQUESTS / CLIENTS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (ns, done) = (ns.clone(), done.clone());
            tokio::spawn(async move {
                for _ in 0..per_task {
                    let k = format!("k{}", rand::rng().random_range(0..KEYS));
                    let hit = ns.get(&k).await.unwrap();
                    assert!(hit.is_some(), "preloaded key {k} missing");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = cache.stats();
    let l2 = &stats.namespace("bench").unwrap().l2;
    assert_eq!(l2.errors, 0, "redis errors during the run");
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    // Only under `cargo bench`; `cargo test --benches` would pass no --bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let redis = RedisServer::start().expect("redis-server");
    // Preload redis-benchmark's own keys (key:000000000000 …) so its GETs hit too.
    redis_benchmark(redis.port(), "set");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rb = Vec::new();
    let mut st = Vec::new();
    for _ in 0..3 {
        rb.push(redis_benchmark(redis.port(), "get"));
        st.push(rt.block_on(strata_gets(&redis.url())));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratios: Vec<f64> = st.iter().zip(&rb).map(|(s, r)| s / r).collect();
    println!("\nL2 GET, 100-byte values, {KEYS} keys, {CLIENTS} concurrent clients, {REQUESTS} requests per run");
    println!("{:<40} {:>12}", "client", "ops/s (median of 3)");
    println!(
        "{:<40} {:>12.0}",
        "redis-benchmark -c 50 -t get -d 100",
        median(rb)
    );
    println!(
        "{:<40} {:>12.0}",
        "strata get (L2 only, 50 tasks)",
        median(st)
    );
    println!(
        "strata / redis-benchmark = {:.2}x (median of 3 paired runs)",
        median(ratios)
    );
}
