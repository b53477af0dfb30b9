//! `strata metrics`: a live table of a running server's rates, from its `/metrics`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use strata_bench::driver::{HttpTemplate, Target};
use strata_bench::promtext::{buckets, parse, quantile, sum, Sample};

use crate::loadtest::fail;

/// Flags of `strata metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// The server (its `/metrics` is read).
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    url: String,
    /// How long to watch.
    #[arg(long, short, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Time between rows.
    #[arg(long, short, default_value = "5s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// One JSON object per row instead of a table.
    #[arg(long)]
    json: bool,
}

/// One row: rates over an interval.
#[derive(Debug, serde::Serialize)]
struct Row {
    t: f64,
    requests_per_s: f64,
    errors_per_s: f64,
    p99_ms: Option<f64>,
    hits_per_s: f64,
    misses_per_s: f64,
    hit_rate: Option<f64>,
    l1_bytes: f64,
    rss_bytes: f64,
}

fn row(prev: &[Sample], cur: &[Sample], t: f64, dt: f64) -> Row {
    let delta = |name: &str, keep: &dyn Fn(&Sample) -> bool| {
        (sum(cur, name, keep) - sum(prev, name, keep)).max(0.0)
    };
    let all = |_: &Sample| true;
    let tier = |t: &'static str| move |s: &Sample| s.label("tier") == Some(t);
    let api = "strata_api_requests_total";
    let (h1, h2) = (
        delta("strata_cache_hits_total", &tier("l1")),
        delta("strata_cache_hits_total", &tier("l2")),
    );
    let (m1, m2) = (
        delta("strata_cache_misses_total", &tier("l1")),
        delta("strata_cache_misses_total", &tier("l2")),
    );
    // A read hits when either tier answers; L1 misses go on to L2 (as /v1/stats).
    let lookups = (h1 + m1).max(h2 + m2);
    let now_b = buckets(cur, "strata_api_request_duration_seconds");
    let prev_b = buckets(prev, "strata_api_request_duration_seconds");
    let diff: Vec<(f64, f64)> = now_b
        .iter()
        .map(|&(le, c)| {
            let before = prev_b.iter().find(|(l, _)| *l == le).map_or(0.0, |b| b.1);
            (le, (c - before).max(0.0))
        })
        .collect();
    Row {
        t,
        requests_per_s: delta(api, &all) / dt,
        errors_per_s: delta(api, &|s| {
            s.label("status").is_some_and(|v| v.starts_with('5'))
        }) / dt,
        p99_ms: quantile(&diff, 0.99).map(|s| s * 1000.0),
        hits_per_s: (h1 + h2) / dt,
        misses_per_s: (lookups - h1 - h2).max(0.0) / dt,
        hit_rate: (lookups > 0.0).then(|| (h1 + h2) / lookups),
        l1_bytes: sum(cur, "strata_cache_size_bytes", all),
        rss_bytes: sum(cur, "process_resident_memory_bytes", all),
    }
}

/// Runs `strata metrics`.
pub fn main(a: MetricsArgs) -> ExitCode {
    if a.interval.is_zero() {
        return fail("--interval must be longer than 0");
    }
    let url = format!("{}/metrics", a.url.trim_end_matches('/'));
    let rt = match crate::cli::runtime(false) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let template = HttpTemplate {
            method: hyper::Method::GET,
            url: url.clone(),
            headers: vec![],
            body: None,
        };
        let mut session =
            Target::Http(std::sync::Arc::new(template)).session(Duration::from_secs(5));
        let mut prev = match session.get_text(&url).await {
            Ok(t) => parse(&t),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let start = Instant::now();
        let mut last = start;
        if !a.json {
            println!(
                "{:>7} {:>10} {:>8} {:>9} {:>10} {:>10} {:>7} {:>9} {:>9}",
                "t (s)",
                "req/s",
                "5xx/s",
                "p99 ms",
                "hits/s",
                "misses/s",
                "hit %",
                "L1 MiB",
                "RSS MiB"
            );
        }
        let mut next = start + a.interval;
        while next <= start + a.duration {
            tokio::time::sleep_until(next.into()).await;
            next += a.interval;
            let cur = match session.get_text(&url).await {
                Ok(t) => parse(&t),
                Err(e) => {
                    eprintln!("warning: {e}");
                    continue;
                }
            };
            let now = Instant::now();
            let r = row(
                &prev,
                &cur,
                start.elapsed().as_secs_f64(),
                now.duration_since(last).as_secs_f64(),
            );
            (prev, last) = (cur, now);
            if a.json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            } else {
                let mib = |b: f64| b / (1 << 20) as f64;
                println!(
                    "{:>7.1} {:>10.1} {:>8.1} {:>9} {:>10.1} {:>10.1} {:>7} {:>9.1} {:>9.1}",
                    r.t,
                    r.requests_per_s,
                    r.errors_per_s,
                    r.p99_ms.map_or("-".into(), |p| format!("{p:.3}")),
                    r.hits_per_s,
                    r.misses_per_s,
                    r.hit_rate
                        .map_or("-".into(), |h| format!("{:.1}", h * 100.0)),
                    mib(r.l1_bytes),
                    mib(r.rss_bytes),
                );
            }
        }
        ExitCode::SUCCESS
    })
}
