//! `strata invalidation-test`: how long invalidations take, and how long until a
//! second instance stops serving what was invalidated.
//!
//! Two engines (instance A and B) share one Redis, as two replicas of a service
//! would. For each kind of invalidation (key, prefix, tag): A writes the entries, B
//! reads them into its memory tier, A invalidates; the test times A's call and, from
//! the call's start, the moment B no longer serves any of the invalidated entries
//! from memory (its copy dropped by the message on the invalidation channel).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use strata_cache::{Cache, Invalidation, RawNamespace, SetOptions, Tier};

use crate::loadtest::fail;

/// Flags of `strata invalidation-test`.
#[derive(Debug, Args)]
pub struct InvalidationTestArgs {
    /// Redis both instances share (the embedded default has no Redis: invalidation
    /// between instances needs one).
    #[arg(long, env = "STRATA__REDIS__URL")]
    redis_url: String,
    /// Entries written before each phase.
    #[arg(long, short = 'n', default_value_t = 1000)]
    entries: u64,
    /// Key pattern; `{n}` is the entry number.
    #[arg(long, default_value = "item:{n}")]
    pattern: String,
    /// Namespace used (emptied at the start).
    #[arg(long, default_value = "invalidation-test")]
    namespace: String,
    /// Invalidations timed per kind.
    #[arg(long, default_value_t = 100)]
    rounds: u64,
    /// Longest wait for one propagation.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// Timings of one kind, milliseconds.
#[derive(Debug, serde::Serialize)]
struct KindResult {
    kind: &'static str,
    rounds: u64,
    entries_per_invalidation: f64,
    invalidate_p50_ms: f64,
    invalidate_p99_ms: f64,
    propagation_p50_ms: f64,
    propagation_p99_ms: f64,
    propagation_max_ms: f64,
    /// Rounds where B still served an invalidated entry after `--timeout`.
    missed: u64,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Runs `strata invalidation-test`.
pub fn main(a: InvalidationTestArgs) -> ExitCode {
    if a.entries == 0 || a.rounds == 0 {
        return fail("--entries and --rounds must be at least 1");
    }
    if !a.pattern.contains("{n}") {
        return fail("--pattern must contain {n}");
    }
    let rt = match crate::cli::runtime(true) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let build = || async {
            Cache::builder()
                .redis_url(&a.redis_url)?
                .max_memory(256 << 20)
                .build()
                .await
        };
        let (ca, cb) = match (build().await, build().await) {
            (Ok(x), Ok(y)) => (x, y),
            (Err(e), _) | (_, Err(e)) => return fail(format!("{}: {e}", a.redis_url)),
        };
        if ca.ping_l2().await.is_err() {
            return fail(format!("{}: Redis does not answer", a.redis_url));
        }
        let (na, nb) = match (ca.raw(&a.namespace), cb.raw(&a.namespace)) {
            (Ok(x), Ok(y)) => (x, y),
            (Err(e), _) | (_, Err(e)) => return fail(e),
        };
        let _ = ca.invalidate(Invalidation::namespace(&a.namespace)).await;
        let key = |n: u64| a.pattern.replace("{n}", &n.to_string());
        let prefix = a.pattern.split("{n}").next().unwrap_or_default().to_owned();
        let mut results = Vec::new();
        for kind in ["key", "prefix", "tag"] {
            let mut inv_h = hist();
            let mut prop_h = hist();
            let mut missed = 0;
            let mut per = 0u64;
            for round in 0..a.rounds {
                // Entries n = 0..entries, tagged by n % 10; one round's target:
                let (targets, inv): (Vec<String>, Invalidation) = match kind {
                    "key" => {
                        let k = key(round % a.entries);
                        (vec![k.clone()], Invalidation::key(&a.namespace, k))
                    }
                    "prefix" => {
                        // Entries whose number starts with digit d (1-9).
                        let d = 1 + round % 9;
                        let p = format!("{prefix}{d}");
                        let t = (0..a.entries)
                            .filter(|n| n.to_string().starts_with(&d.to_string()))
                            .map(key)
                            .collect();
                        (t, Invalidation::prefix(&a.namespace, p))
                    }
                    _ => {
                        let g = round % 10;
                        let t = (0..a.entries).filter(|n| n % 10 == g).map(key).collect();
                        (t, Invalidation::tag(&a.namespace, format!("g{g}")))
                    }
                };
                if let Err(e) = fill(&na, &nb, a.entries, &key, &targets).await {
                    return fail(e);
                }
                per += targets.len() as u64;
                let t0 = Instant::now();
                if let Err(e) = ca.invalidate(inv).await {
                    return fail(format!("invalidate: {e}"));
                }
                inv_h.saturating_record(t0.elapsed().as_micros() as u64);
                match gone_from_memory(&nb, &targets, a.timeout).await {
                    true => prop_h.saturating_record(t0.elapsed().as_micros() as u64),
                    false => missed += 1,
                }
            }
            results.push(KindResult {
                kind,
                rounds: a.rounds,
                entries_per_invalidation: per as f64 / a.rounds as f64,
                invalidate_p50_ms: ms(&inv_h, 0.5),
                invalidate_p99_ms: ms(&inv_h, 0.99),
                propagation_p50_ms: ms(&prop_h, 0.5),
                propagation_p99_ms: ms(&prop_h, 0.99),
                propagation_max_ms: if prop_h.is_empty() {
                    0.0
                } else {
                    prop_h.max() as f64 / 1000.0
                },
                missed,
            });
        }
        let _ = ca.invalidate(Invalidation::namespace(&a.namespace)).await;
        println!(
            "{:<7} {:>7} {:>9} {:>12} {:>12} {:>12} {:>12} {:>8}",
            "kind", "rounds", "entries", "inval p50", "inval p99", "prop p50", "prop p99", "missed"
        );
        for r in &results {
            println!(
                "{:<7} {:>7} {:>9.1} {:>9.3} ms {:>9.3} ms {:>9.3} ms {:>9.3} ms {:>8}",
                r.kind,
                r.rounds,
                r.entries_per_invalidation,
                r.invalidate_p50_ms,
                r.invalidate_p99_ms,
                r.propagation_p50_ms,
                r.propagation_p99_ms,
                r.missed
            );
        }
        if let Some(p) = &a.json {
            let json = serde_json::json!({ "schema": 1, "entries": a.entries, "results": results });
            if let Err(e) =
                std::fs::write(p, serde_json::to_string_pretty(&json).unwrap_or_default())
            {
                return fail(format!("{}: {e}", p.display()));
            }
        }
        if results.iter().any(|r| r.missed > 0) {
            eprintln!(
                "some invalidations never reached the second instance within {:?}",
                a.timeout
            );
            return ExitCode::from(crate::loadtest::EXIT_THRESHOLD);
        }
        ExitCode::SUCCESS
    })
}

/// Writes all entries through A (tagged g0-g9 by number) and reads the targets
/// through B until B serves each from memory.
async fn fill(
    na: &RawNamespace,
    nb: &RawNamespace,
    entries: u64,
    key: &impl Fn(u64) -> String,
    targets: &[String],
) -> Result<(), String> {
    let value = Bytes::from_static(b"invalidation-test value");
    for g in 0..10u64 {
        let batch: Vec<String> = (0..entries).filter(|n| n % 10 == g).map(key).collect();
        let refs: Vec<(&str, Bytes, u8)> = batch
            .iter()
            .map(|k| (k.as_str(), value.clone(), strata_cache::CODEC_RAW))
            .collect();
        for chunk in refs.chunks(500) {
            na.set_encoded(chunk, &SetOptions::default().tags([format!("g{g}")]))
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
    }
    // B reads each target until it serves it from memory. A read that overlaps the
    // arrival of A's own write messages does not fill B's memory (by design: it may
    // have read the old value), so a few reads may be needed.
    let deadline = Instant::now() + Duration::from_secs(5);
    for k in targets {
        loop {
            match nb.get(k).await {
                Ok(Some(h)) if h.tier == Tier::L1 => break,
                other if Instant::now() > deadline => {
                    return Err(format!("instance B did not cache `{k}`: {other:?}"))
                }
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
    Ok(())
}

/// Polls B until none of `keys` is served from its memory; false on timeout.
async fn gone_from_memory(nb: &RawNamespace, keys: &[String], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut left: Vec<&String> = keys.iter().collect();
    loop {
        let mut still = Vec::new();
        for k in left {
            if nb.in_memory(k) {
                still.push(k);
            }
        }
        if still.is_empty() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        left = still;
        tokio::task::yield_now().await;
    }
}
