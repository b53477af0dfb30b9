//! Recommendations from a run's figures: what the numbers suggest changing.

use crate::report::Report;

/// One recommendation: what was seen and what to try.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Advice {
    /// Short topic (`capacity`, `ttl`, `errors`, `queueing`, …).
    pub topic: &'static str,
    /// What the figures show.
    pub seen: String,
    /// What to try.
    pub try_: String,
}

fn advice(topic: &'static str, seen: String, try_: &str) -> Advice {
    Advice {
        topic,
        seen,
        try_: try_.to_owned(),
    }
}

/// Recommendations for a run, most important first. `cores` is the generator
/// machine's core count (to tell a CPU-bound generator).
///
/// ```
/// # use std::collections::BTreeMap;
/// # use std::time::Duration;
/// # use strata_bench::{advice::recommend, recorder::{Counts, Outcome}, report::{Report, Resources}};
/// let mut c = Counts::default();
/// for _ in 0..100 { c.record(Duration::from_millis(1), Duration::from_millis(1), false, Outcome::error("timeout")); }
/// let r = Report::new("t", "x".into(), BTreeMap::new(), &c, vec![], Duration::from_secs(1), Resources::default());
/// assert_eq!(recommend(&r, 2)[0].topic, "errors");
/// ```
pub fn recommend(r: &Report, cores: usize) -> Vec<Advice> {
    let mut out = Vec::new();
    if r.error_rate > 0.01 {
        let (kind, n) = r
            .errors
            .iter()
            .max_by_key(|(_, n)| **n)
            .map_or(("unknown", 0), |(k, n)| (k.as_str(), *n));
        let what = match kind {
            "connect" => "the target refuses or drops connections: check its connection limit (server.max_connections), file-descriptor limit and listen backlog",
            "timeout" => "requests time out: the target is saturated at this load; lower the load or add capacity, and look at its slowest dependency",
            "http_5xx" => "the target answers with server errors: read its logs at this load",
            "http_4xx" => "the target rejects the requests: check the URL, token and payload (a 401/403 means the token)",
            "protocol" => "the target's answers are not valid HTTP/1.1",
            _ => "look at the target's logs for the failing operations",
        };
        out.push(advice(
            "errors",
            format!(
                "{:.2}% of operations failed, mostly `{kind}` ({n})",
                r.error_rate * 100.0
            ),
            what,
        ));
    }
    if let Some(hit) = r.hit_rate {
        if hit < 0.8 {
            let evictions = r.server.get("strata_cache_evictions_total").copied();
            let sets = r
                .server
                .get("strata_cache_sets_total")
                .copied()
                .unwrap_or(0.0);
            let expirations = r
                .server
                .get("strata_cache_expirations_total")
                .copied()
                .unwrap_or(0.0);
            match evictions {
                Some(e) if sets > 0.0 && e / sets > 0.1 => out.push(advice(
                    "capacity",
                    format!(
                        "hit rate {:.1}% with {e:.0} evictions for {sets:.0} writes: the memory tier is too small for the working set",
                        hit * 100.0
                    ),
                    "raise memory.max_bytes, shorten l1_ttl of large or rarely read namespaces, or move large values to l2_only",
                )),
                Some(_) if expirations > 0.0 => out.push(advice(
                    "ttl",
                    format!(
                        "hit rate {:.1}% with few evictions but {expirations:.0} expirations: entries expire before they are read again",
                        hit * 100.0
                    ),
                    "lengthen the namespace's ttl (with jitter), or warm it with _preload",
                )),
                Some(_) => out.push(advice(
                    "key design",
                    format!("hit rate {:.1}% with few evictions: keys rarely repeat", hit * 100.0),
                    "check the key space (--keys, --key-dist) and whether keys embed volatile parts (timestamps, request ids, unsorted query strings)",
                )),
                None => out.push(advice(
                    "hit rate",
                    format!(
                        "hit rate {:.1}%; this target does not report evictions or expirations",
                        hit * 100.0
                    ),
                    "if its cache is full, give it more memory; else lengthen TTLs or check the key space (--keys, --key-dist)",
                )),
            }
        }
    }
    if r.latency_sent.p99 > 0.0 && r.latency.p99 > 5.0 * r.latency_sent.p99 && r.latency.p99 > 1.0 {
        out.push(advice(
            "queueing",
            format!(
                "p99 from the intended start is {:.1} ms but {:.1} ms from the send: requests waited for the target (it stalled or could not keep up with the rate)",
                r.latency.p99, r.latency_sent.p99
            ),
            "lower --rate to find the sustainable throughput, or look for pauses on the target (GC, locks, a slow dependency)",
        ));
    }
    if r.dropped_starts > 0 {
        out.push(advice(
            "generator",
            format!(
                "{} starts were dropped, more than 10 s behind schedule",
                r.dropped_starts
            ),
            "raise --max-in-flight, or lower --rate: the target cannot take this rate",
        ));
    }
    if r.latency.p50 > 0.0 && r.latency.p99 > 10.0 * r.latency.p50 && r.latency.p99 > 1.0 {
        out.push(advice(
            "tail",
            format!(
                "p99 is {:.0}x the median ({:.2} ms vs {:.2} ms)",
                r.latency.p99 / r.latency.p50,
                r.latency.p99,
                r.latency.p50
            ),
            "a few requests are much slower: for strata, compare strata_cache_operation_duration_seconds (Redis, loaders) with the API's latency; otherwise look for pauses and slow paths",
        ));
    }
    let cpu_share = r.resources.cpu_seconds / (r.duration_s.max(1e-9) * cores.max(1) as f64);
    if cpu_share > 0.9 {
        out.push(advice(
            "generator",
            format!(
                "the generator used {:.0}% of the machine's CPU",
                cpu_share * 100.0
            ),
            "the generator may be the bottleneck: run it on another machine or use fewer users",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{Counts, Outcome};
    use crate::report::Resources;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn run(hits: u64, misses: u64, server: &[(&str, f64)]) -> Report {
        let mut c = Counts::default();
        let d = Duration::from_micros(500);
        for i in 0..hits + misses {
            let hit = Outcome {
                error: None,
                hit: Some(i < hits),
            };
            c.record(d, d, false, hit);
        }
        let mut r = Report::new(
            "t",
            "x".into(),
            BTreeMap::new(),
            &c,
            vec![],
            Duration::from_secs(10),
            Resources::default(),
        );
        r.server = server.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        r
    }

    #[test]
    fn low_hit_rate_with_evictions_is_capacity() {
        let r = run(
            50,
            50,
            &[
                ("strata_cache_evictions_total", 900.0),
                ("strata_cache_sets_total", 1000.0),
            ],
        );
        assert_eq!(recommend(&r, 2)[0].topic, "capacity");
    }

    #[test]
    fn low_hit_rate_with_expirations_is_ttl() {
        let r = run(
            50,
            50,
            &[
                ("strata_cache_evictions_total", 0.0),
                ("strata_cache_sets_total", 1000.0),
                ("strata_cache_expirations_total", 400.0),
            ],
        );
        assert_eq!(recommend(&r, 2)[0].topic, "ttl");
    }

    #[test]
    fn low_hit_rate_without_either_is_key_design() {
        let r = run(
            50,
            50,
            &[
                ("strata_cache_evictions_total", 0.0),
                ("strata_cache_sets_total", 1000.0),
            ],
        );
        assert_eq!(recommend(&r, 2)[0].topic, "key design");
        assert_eq!(recommend(&run(50, 50, &[]), 2)[0].topic, "hit rate");
    }

    #[test]
    fn a_healthy_run_gets_no_advice() {
        let r = run(95, 5, &[]);
        assert!(recommend(&r, 2).is_empty());
    }
}
