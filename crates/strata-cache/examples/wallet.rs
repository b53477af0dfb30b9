//! A wallet service's cache, the way the README describes it: per-type TTLs
//! (sessions 15 min, balances 30 s, prices 5 s ± 20%), typed keys, get_or_load with
//! single flight, and invalidation events.
//!
//! ```text
//! cargo run -p strata-cache --example wallet                      # memory only
//! STRATA_REDIS_URL=redis://127.0.0.1:6379 cargo run -p strata-cache --example wallet
//! ```
//!
//! It checks what it prints and exits non-zero when something is off;
//! `crates/strata-cache/tests/examples.rs` runs it both ways.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use strata_cache::{Cache, CacheKey, Format, Invalidation, InvalidationEvent, Policy};

struct UserSession(uuid::Uuid);
impl CacheKey for UserSession {
    fn cache_key(&self) -> Cow<'_, str> {
        Cow::Owned(self.0.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Session {
    user_id: u64,
    roles: Vec<String>,
}

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
        .namespace("session", Policy::new(Duration::from_secs(15 * 60)))
        .namespace(
            "balance",
            Policy::new(Duration::from_secs(30)).format(Format::Binary),
        )
        .namespace("price", Policy::new(Duration::from_secs(5)).jitter(0.2));
    if let Ok(url) = std::env::var("STRATA_REDIS_URL") {
        builder = builder.redis_url(&url)?;
    }
    let cache = builder.build().await?;
    let sessions = cache.namespace::<UserSession, Session>("session")?;
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
    let calls = db_calls.load(Ordering::SeqCst);
    println!(
        "100 concurrent reads of a cold balance: {calls} database call(s), {:?}",
        started.elapsed()
    );
    check(calls == 1, "single flight: one database call")?;

    let token = UserSession(uuid::Uuid::new_v4());
    let session = Session {
        user_id: 1,
        roles: vec!["trader".into()],
    };
    sessions.set(&token, &session).await?;
    let ttl = sessions.ttl(&token).await?;
    println!("session ttl: {ttl:?}");
    check(
        ttl.is_some_and(|t| t > Duration::from_secs(14 * 60)),
        "sessions live 15 minutes",
    )?;
    check(
        sessions.get(&token).await? == Some(session),
        "the session reads back",
    )?;

    prices.set(&AssetPrice("BTC".into()), &97_000.0).await?;
    let btc = prices.get(&AssetPrice("BTC".into())).await?;
    println!("BTC price from cache: {btc:?}");
    check(btc == Some(97_000.0), "the price reads back")?;

    cache.fire(&TransferDone { from: 1, to: 2 }).await?;
    let after = balances.get(&WalletBalance(1)).await?;
    println!("balance 1 after transfer event: {after:?}");
    check(after.is_none(), "the transfer event dropped balance 1")?;
    println!("{}", serde_json::to_string_pretty(&cache.stats())?);
    Ok(())
}

fn check(ok: bool, what: &str) -> Result<(), Box<dyn std::error::Error>> {
    if ok {
        Ok(())
    } else {
        Err(format!("not so: {what}").into())
    }
}
