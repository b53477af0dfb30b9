//! Schedulers against real HTTP servers on loopback and an in-process engine.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use strata_bench::dist::{KeyDist, KeyGen};
use strata_bench::driver::{HttpTemplate, Target};
use strata_bench::report::{own_resources, Report};
use strata_bench::runner::{run, Load, Plan};
use strata_bench::stages::Stages;
use strata_bench::workload::{Mix, ValueSize};

/// An HTTP server that answers every request; the first request after `stall_after`
/// (if set) takes one extra second. Odd request numbers are cache misses.
async fn server(stall_after: Option<Duration>) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let stalled = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let counter = served.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (served, stalled) = (counter.clone(), stalled.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                        let (served, stalled) = (served.clone(), stalled.clone());
                        async move {
                            let n = served.fetch_add(1, Ordering::Relaxed);
                            if stall_after.is_some_and(|d| started.elapsed() > d)
                                && !stalled.swap(true, Ordering::Relaxed)
                            {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                            let cache = if n % 2 == 0 { "HIT" } else { "MISS" };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("x-cache", cache)
                                    .body(Full::new(Bytes::from_static(b"ok")))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}/items/{{key}}?n={{n}}"), served)
}

fn plan(load: Load) -> Plan {
    Plan {
        load,
        count: None,
        warmup: Duration::ZERO,
        mix: Mix::reads(),
        keys: KeyGen::new(KeyDist::Uniform, 1000).unwrap(),
        key_prefix: "k".into(),
        value_size: ValueSize::Fixed(10),
        batch: 10,
        timeout: Duration::from_secs(5),
        max_lateness: Duration::from_secs(10),
        uses_keys: true,
        live: None,
    }
}

fn template(url: &str) -> Target {
    Target::Http(std::sync::Arc::new(HttpTemplate {
        method: Method::GET,
        url: url.to_owned(),
        headers: vec![],
        body: None,
    }))
}

fn report(out: &strata_bench::runner::RunOutput) -> Report {
    Report::new(
        "t",
        "x".into(),
        BTreeMap::new(),
        &out.gathered.totals,
        out.gathered.timeline.clone(),
        out.elapsed,
        own_resources(),
    )
}

/// The reason open loops exist: one stalled second. Measured from the send, it is a
/// single slow request and p99 does not see it; measured from the intended start,
/// every request that queued behind it is late, and p99 does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrected_p99_sees_a_stall_the_uncorrected_one_hides() {
    let (url, served) = server(Some(Duration::from_millis(800))).await;
    let p = plan(Load::Open {
        rate: Stages::constant(200.0, Duration::from_secs(4)),
        max_in_flight: 1,
    });
    let out = run(p, template(&url), |_, _| {}).await;
    let r = report(&out);
    assert!(served.load(Ordering::Relaxed) > 600, "{}", r.ops);
    assert!(r.latency.p99 >= 500.0, "corrected p99 {} ms", r.latency.p99);
    assert!(
        r.latency_sent.p99 < 100.0,
        "uncorrected p99 {} ms",
        r.latency_sent.p99
    );
    assert!(r.latency_sent.max >= 1000.0, "the stalled request itself");
    assert!(r.late_starts > 100, "{} late starts", r.late_starts);
    assert_eq!(r.error_rate, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_counts_hits_and_stops_at_its_count() {
    let (url, served) = server(None).await;
    let mut p = plan(Load::Closed(Stages::constant(4.0, Duration::from_secs(30))));
    p.count = Some(1000);
    let started = Instant::now();
    let out = run(p, template(&url), |_, _| {}).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a counted run ends at its count"
    );
    let r = report(&out);
    assert_eq!(r.ops, 1000);
    assert_eq!(served.load(Ordering::Relaxed), 1000);
    let hit = r.hit_rate.unwrap();
    assert!((hit - 0.5).abs() < 0.01, "{hit}");
    assert!(r.rps > 0.0 && r.latency.p50 > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_by_kind() {
    // Nothing listens on this port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut p = plan(Load::Closed(Stages::constant(1.0, Duration::from_secs(30))));
    p.count = Some(20);
    let out = run(
        p,
        template(&format!("http://127.0.0.1:{port}/x")),
        |_, _| {},
    )
    .await;
    let r = report(&out);
    assert_eq!(r.errors.get("connect"), Some(&20));
    assert_eq!(r.error_rate, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_seconds_are_left_out() {
    let (url, _) = server(None).await;
    let mut p = plan(Load::Closed(Stages::constant(
        1.0,
        Duration::from_millis(2500),
    )));
    p.warmup = Duration::from_millis(1500);
    let out = run(p, template(&url), |_, _| {}).await;
    let warm: Vec<bool> = out.gathered.timeline.iter().map(|p| p.warmup).collect();
    assert_eq!(warm.first(), Some(&true));
    assert_eq!(warm.last(), Some(&false));
    let in_timeline: f64 = out
        .gathered
        .timeline
        .iter()
        .filter(|p| !p.warmup)
        .map(|p| p.rps)
        .sum();
    assert!(in_timeline > 0.0);
    let total_ops: u64 = out.gathered.totals.ops;
    assert!(total_ops > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_target_runs_the_mix() {
    let cache = strata_cache::Cache::builder().build().await.unwrap();
    let mut p = plan(Load::Closed(Stages::constant(2.0, Duration::from_secs(30))));
    p.count = Some(5000);
    p.mix = "get=80,set=20".parse().unwrap();
    let out = run(p, Target::Engine(cache.raw("bench").unwrap()), |_, _| {}).await;
    let r = report(&out);
    assert_eq!(r.ops, 5000);
    let hit = r.hit_rate.unwrap();
    assert!(hit > 0.1 && hit < 1.0, "{hit}");
    assert_eq!(
        cache.stats().namespace("bench").unwrap().l1.sets,
        out.gathered.totals.ops - (out.gathered.totals.hits + out.gathered.totals.misses)
    );
}
