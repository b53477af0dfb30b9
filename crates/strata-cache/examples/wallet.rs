//! A wallet service's cache, the way the README describes it: per-type TTLs,
//! typed keys, get_or_load with single flight, and invalidation events.
//!
//! ```text
//! cargo run -p strata-cache --example wallet                      # memory only
//! STRATA_REDIS_URL=redis://127.0.0.1:6379 cargo run -p strata-cache --example wallet
//! ```

use std::borrow::Cow;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use strata_cache::{Cache, CacheKey, Format, Invalidation, InvalidationEvent, Policy};

struct WalletBalance(u64);
impl CacheKey for WalletBalance {
    fn cache_key(&self) -> Cow<'_, str> {
        Cow::Owned(self.0.to_string())
    }
}

struct AssetPrice(String);
impl CacheKey for AssetPrice {
    fn cache_key(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Balance {
    cents: i64,
}

/// Fired by the wallet service after any transfer.
struct TransferDone {
    from: u64,
    to: u64,
}

impl InvalidationEvent for TransferDone {
    fn invalidations(&self) -> Vec<Invalidation> {
        vec![Invalidation::keys(
            "balance",
            [self.from.to_string(), self.to.to_string()],
        )]
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = Cache::builder()
        .max_memory(64 << 20)
        .namespace(
            "balance",
            Policy::new(Duration::from_secs(30)).format(Format::Binary),
        )
        .namespace("price", Policy::new(Duration::from_secs(5)).jitter(0.2));
    if let Ok(url) = std::env::var("STRATA_REDIS_URL") {
        builder = builder.redis_url(&url)?;
    }
    let cache = builder.build().await?;
    let balances = cache.namespace::<WalletBalance, Balance>("balance")?;
    let prices = cache.namespace::<AssetPrice, f64>("price")?;

    // 100 concurrent requests for one cold balance: the "database" is asked once.
    let db_calls = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (balances, db_calls) = (balances.clone(), db_calls.clone());
        tasks.push(tokio::spawn(async move {
            balances
                .get_or_load(&WalletBalance(1), move || async move {
                    db_calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await; // a slow query
                    Ok::<_, std::io::Error>(Balance { cents: 12_500 })
                })
                .await
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "100 concurrent reads of a cold balance: {} database call(s), {:?}",
        db_calls.load(Ordering::SeqCst),
        started.elapsed()
    );

    prices.set(&AssetPrice("BTC".into()), &97_000.0).await?;
    println!(
        "BTC price from cache: {:?}",
        prices.get(&AssetPrice("BTC".into())).await?
    );

    cache.fire(&TransferDone { from: 1, to: 2 }).await?;
    println!(
        "balance 1 after transfer event: {:?}",
        balances.get(&WalletBalance(1)).await?
    );
    println!("{}", serde_json::to_string_pretty(&cache.stats())?);
    Ok(())
}
