//! `max_memory` bounds what the memory tier really takes, not only the sum of its
//! keys' and values' lengths: slots, index, allocator blocks and the eviction
//! policy's ghost list are charged too.
//!
//! Each fill runs in a child process (this test binary, re-run on one test), so
//! that the resident set it measures is its own whatever the test harness.

use std::time::Duration;

use bytes::Bytes;
use strata_cache::{Cache, Policy, SetOptions};

const MAX_MEMORY: u64 = 32 << 20;
const CHILD_ENV: &str = "STRATA_MEMORY_BOUND_VALUE_LEN";

fn rss_bytes() -> u64 {
    strata_testkit::resident_bytes(std::process::id())
}

/// The child: fills a memory-only cache three times over with distinct values of
/// the given length and prints how much its resident set grew.
#[tokio::test(flavor = "current_thread")]
async fn fill_child() {
    let Some(len) = std::env::var(CHILD_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return; // run by the parent test only
    };
    let base = rss_bytes();
    let cache = Cache::builder()
        .max_memory(MAX_MEMORY)
        .namespace("m", Policy::new(Duration::from_secs(3600)))
        .build()
        .await
        .unwrap();
    let ns = cache.raw("m").unwrap();
    let inserts = 3 * MAX_MEMORY as usize / (len + 100);
    for i in 0..inserts {
        // A fresh buffer per value, as values read from a client or a loader are.
        let value = Bytes::from(vec![(i % 251) as u8; len]);
        ns.set(&format!("user:{i}"), value, SetOptions::default())
            .await
            .unwrap();
    }
    let stats = cache.stats();
    println!(
        "rss_growth={} l1_bytes={} capacity={}",
        rss_bytes().saturating_sub(base),
        stats.l1_bytes,
        stats.l1_capacity_bytes
    );
}

#[test]
fn resident_memory_stays_within_max_memory() {
    for len in [10usize, 100, 1000] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["fill_child", "--exact", "--nocapture"])
            .env(CHILD_ENV, len.to_string())
            .output()
            .expect("run the child test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}");
        let field = |name: &str| -> u64 {
            stdout
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in child output: {stdout}"))
        };
        let (growth, weight, capacity) =
            (field("rss_growth="), field("l1_bytes="), field("capacity="));
        // The cache filled: what it holds weighs nearly its capacity.
        assert!(
            weight > capacity * 9 / 10,
            "{len}-byte values: {weight} of {capacity}"
        );
        let ratio = growth as f64 / MAX_MEMORY as f64;
        assert!(
            ratio <= 1.2,
            "{len}-byte values: resident set grew {growth} bytes for max_memory {MAX_MEMORY} ({ratio:.2}x)"
        );
    }
}
