//! The README's library example, verbatim, against a real Redis.

use std::time::Duration;
use strata_cache::{Cache, Format, Invalidation, Policy, SetOptions};

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct Balance {
    cents: i64,
}

async fn load_balance(_user: u64) -> Result<Balance, std::io::Error> {
    Ok(Balance { cents: 12_500 }) // your database query
}

async fn demo(url: &str) -> strata_cache::Result<()> {
    let cache = Cache::builder()
        .max_memory(256 << 20) // L1 bound, bytes
        .redis_url(url)? // or redis+cluster://a:7000,b:7000
        .namespace(
            "balance",
            Policy::new(Duration::from_secs(30)).format(Format::Binary),
        )
        .namespace("price", Policy::new(Duration::from_secs(5)).jitter(0.2))
        .build()
        .await?;

    let balances = cache.namespace::<u64, Balance>("balance")?;
    // Concurrent misses on one key run the loader once; Redis being down is not an error.
    let b = balances.get_or_load(&42, || load_balance(42)).await?;

    // Writes publish one invalidation message; every instance drops its L1 copy.
    balances
        .set_with(&42, &b, SetOptions::default().tags(["user:42"]))
        .await?;
    cache
        .invalidate(Invalidation::tag("balance", "user:42"))
        .await?;
    assert!(balances.get(&42).await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_example_runs() {
    let redis = strata_testkit::RedisServer::start().unwrap();
    demo(&redis.url()).await.unwrap();
}
