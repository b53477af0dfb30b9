//! `strata load-test`: builds a plan and a target from flags, runs it with a live
//! progress bar, prints a graded summary, writes `--json`, and applies the gates.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser};
use strata_bench::dist::{KeyDist, KeyGen};
use strata_bench::driver::{HttpTemplate, Target};
use strata_bench::live::Live;
use strata_bench::report::{compare, own_resources, Grade, Report, Threshold, Verdict};
use strata_bench::runner::{run, Load, Plan};
use strata_bench::stages::Stages;
use strata_bench::workload::{Mix, ValueSize, Ycsb};

/// Flags of `strata report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run saved with `strata load-test --json`.
    #[arg(long, short)]
    input: PathBuf,
    /// Also print the timeline and the latency distribution.
    #[arg(long)]
    detailed: bool,
    /// Also print what the figures suggest changing.
    #[arg(long)]
    recommendations: bool,
    /// Render the run as a self-contained HTML page here.
    #[arg(long)]
    html: Option<PathBuf>,
}

/// Runs `strata report`: re-renders a saved run.
pub fn report(a: ReportArgs) -> ExitCode {
    let r: Report = match std::fs::read_to_string(&a.input)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => return fail(format!("{}: {e}", a.input.display())),
    };
    print_summary(&r, &[], &[]);
    if a.detailed {
        println!();
        println!(
            "{:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
            "t (s)", "ops/s", "p50 ms", "p99 ms", "p99 int.", "max ms", "errors", "hit %"
        );
        for p in &r.timeline {
            println!(
                "{:>7.1} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7} {:>7}{}",
                p.t,
                p.rps,
                p.p50_ms,
                p.p99_ms,
                p.corrected_p99_ms,
                p.max_ms,
                p.errors,
                p.hit_rate
                    .map_or("-".to_owned(), |h| format!("{:.1}", h * 100.0)),
                if p.warmup { "  warm-up" } else { "" }
            );
        }
        if let Ok(h) = strata_bench::report::decode(&r.histograms.corrected) {
            println!();
            println!("latency distribution (from the intended start)");
            for q in [0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0] {
                println!(
                    "  {:>8.4}%  {:>10.3} ms",
                    q * 100.0,
                    h.value_at_quantile(q) as f64 / 1000.0
                );
            }
        }
    }
    if a.recommendations {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let advice = strata_bench::advice::recommend(&r, cores);
        println!();
        if advice.is_empty() {
            println!("recommendations: none; the figures look healthy");
        }
        for ad in advice {
            println!(
                "[{}] {}
    try: {}",
                ad.topic, ad.seen, ad.try_
            );
        }
    }
    if let Some(p) = &a.html {
        if let Err(e) = std::fs::write(p, strata_bench::html::render(&r)) {
            return fail(format!("{}: {e}", p.display()));
        }
    }
    ExitCode::SUCCESS
}

/// Exit code when a threshold fails.
pub const EXIT_THRESHOLD: u8 = 3;
/// Exit code when the run regressed against its baseline.
pub const EXIT_REGRESSION: u8 = 4;

/// Flags of `strata load-test`.
#[derive(Debug, Args)]
pub struct LoadTestArgs {
    /// `engine`, `redis://host:port`, `http://host:7070` with --namespace (strata's
    /// cache API), or any URL, where `{key}` and `{n}` are replaced per request.
    #[arg(required_unless_present = "scenario")]
    pub(crate) target: Option<String>,
    /// A TOML file of named runs, run in sequence and compared in one table.
    #[arg(long, conflicts_with = "target")]
    pub(crate) scenario: Option<PathBuf>,
    /// Namespace (cache API and engine targets).
    #[arg(long)]
    namespace: Option<String>,
    /// Bearer token for the cache API.
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// strata.toml the `engine` target is built from (default: built-in defaults).
    #[arg(long)]
    config: Option<PathBuf>,
    /// How long to run (ignored with --stages).
    #[arg(long, short, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Stop after this many operations (or at the end of --duration, if sooner).
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Closed loop: concurrent users.
    #[arg(long, short, default_value_t = 10)]
    users: u32,
    /// Open loop: arrivals per second (latency is then measured from each
    /// request's intended start as well as from its send).
    #[arg(long, short)]
    rate: Option<f64>,
    /// Load shape, e.g. 30s:50,5m:50,30s:0: users, or arrivals/s with --rate.
    #[arg(long)]
    stages: Option<String>,
    /// Open loop: connections carrying the arrivals.
    #[arg(long, default_value_t = 100)]
    max_in_flight: usize,
    /// Excluded from the results.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Operation weights (get=80,set=15,delete=5,mget=…) or a read ratio (0.9).
    #[arg(long, default_value = "0.9")]
    mix: String,
    /// YCSB core workload a-f (sets the mix and key distribution).
    #[arg(long)]
    workload: Option<String>,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// uniform, zipfian[:θ], ycsb-zipfian, hotspot[:set:ops], sequential, latest.
    #[arg(long, default_value = "zipfian")]
    key_dist: String,
    /// Key names are PREFIX + index.
    #[arg(long, default_value = "key:")]
    key_prefix: String,
    /// Value sizes: 100, 100-1000, or 100:80,10000:20.
    #[arg(long, default_value = "100")]
    value_size: String,
    /// Keys per mget.
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// HTTP method of a URL template target.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Header of a URL template target, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Body of a URL template target.
    #[arg(long)]
    body: Option<String>,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Gate, e.g. 'p99<10ms', 'error_rate<0.1%', 'rps>5000' (repeatable).
    #[arg(long = "threshold")]
    thresholds: Vec<String>,
    /// A previous run's --json to compare with.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Allowed regression against --baseline, e.g. 10%.
    #[arg(long, default_value = "10%")]
    max_regression: String,
    /// Write the full report (with encoded histograms) here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Write a self-contained HTML page with charts here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Write every key once, in order, before the run (untimed), so that reads hit.
    #[arg(long)]
    prefill: bool,
    /// Serve live `strata_loadtest_*` metrics at http://ADDR/metrics while the run
    /// goes, for Prometheus (deploy/grafana's "Strata: load tests" dashboard).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
    /// With --metrics-listen: keep serving this long after the run, so the last
    /// scrape sees its final numbers (make it at least the scrape interval).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub(crate) metrics_linger: Duration,
}

/// Flags of `strata benchmark`.
#[derive(Debug, Args)]
pub struct BenchmarkArgs {
    /// engine, redis://…, or http://host:7070 (strata's cache API).
    #[arg(default_value = "engine")]
    target: String,
    /// get (on prefilled keys), set, or mixed (80% get, 20% set).
    #[arg(long, default_value = "get", value_parser = ["get", "set", "mixed"])]
    operation: String,
    /// Operations to time.
    #[arg(long, short = 'n', default_value_t = 100_000)]
    count: u64,
    /// Keys per read (above 1, reads are batched: mget / _mget / MGET).
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Distinct keys (prefilled before get and mixed runs).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Concurrent callers.
    #[arg(long, short, default_value_t = 1)]
    users: u32,
    /// Namespace (engine and cache API).
    #[arg(long, default_value = "bench")]
    namespace: String,
    /// Value size in bytes.
    #[arg(long, default_value = "100")]
    value_size: String,
    /// Write the report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs `strata benchmark`: a fixed-count run of one operation, after writing every
/// key once when the operation reads.
pub fn benchmark(b: BenchmarkArgs) -> ExitCode {
    let parse = |extra: &[String]| -> Result<LoadTestArgs, String> {
        let mut argv: Vec<String> = [
            "strata",
            "load-test",
            &b.target,
            "--namespace",
            &b.namespace,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.extend([
            "--keys".into(),
            b.keys.to_string(),
            "--value-size".into(),
            b.value_size.clone(),
        ]);
        argv.extend(extra.iter().cloned());
        match crate::cli::Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        {
            crate::cli::Command::LoadTest(a) => Ok(*a),
            _ => Err("internal: not a load-test".into()),
        }
    };
    let s = |v: &str| v.to_owned();
    let mix = match (b.operation.as_str(), b.batch_size > 1) {
        ("get", false) => "get=1",
        ("get", true) => "mget=1",
        ("set", _) => "set=1",
        (_, false) => "get=80,set=20",
        (_, true) => "mget=80,set=20",
    };
    let mut run = vec![
        s("--mix"),
        s(mix),
        s("--key-dist"),
        s("uniform"),
        s("-n"),
        b.count.to_string(),
        // The count ends the run, not the clock.
        s("--duration"),
        s("24h"),
        s("-u"),
        b.users.to_string(),
        s("--batch-size"),
        b.batch_size.to_string(),
        s("-q"),
    ];
    if b.operation != "set" {
        run.push(s("--prefill"));
    }
    if let Some(j) = &b.json {
        run.extend([s("--json"), j.display().to_string()]);
    }
    match parse(&run) {
        Ok(a) => main(a),
        Err(e) => fail(e),
    }
}

pub(crate) fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// Runs `strata load-test`.
pub fn main(a: LoadTestArgs) -> ExitCode {
    if let Some(file) = a.scenario.clone() {
        return crate::scenario::run(&file, a);
    }
    execute(a, "load-test", &mut None)
}

/// One run; the report (when the run got that far) is left in `slot`.
pub(crate) fn execute(a: LoadTestArgs, name: &str, slot: &mut Option<Report>) -> ExitCode {
    if a.target.is_none() {
        return fail("give a target, or --scenario FILE");
    }
    let thresholds: Vec<Threshold> = match a.thresholds.iter().map(|t| t.parse()).collect() {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let max_regression = match a
        .max_regression
        .trim_end_matches('%')
        .parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0)
    {
        Some(v) => v / 100.0,
        None => {
            return fail(format!(
                "--max-regression `{}`: write e.g. 10%",
                a.max_regression
            ))
        }
    };
    let baseline: Option<Report> = match &a.baseline {
        None => None,
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
        {
            Ok(r) => Some(r),
            Err(e) => return fail(format!("{}: {e}", p.display())),
        },
    };
    let (mix, dist) = match &a.workload {
        Some(w) => match w.parse::<Ycsb>() {
            Ok(y) => y.workload(),
            Err(e) => return fail(e),
        },
        None => match (a.mix.parse::<Mix>(), a.key_dist.parse::<KeyDist>()) {
            (Ok(m), Ok(d)) => (m, d),
            (Err(e), _) | (_, Err(e)) => return fail(e),
        },
    };
    let keys = match KeyGen::new(dist, a.keys) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let value_size: ValueSize = match a.value_size.parse() {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let stages = match &a.stages {
        Some(s) => match s.parse::<Stages>() {
            Ok(s) => Some(s),
            Err(e) => return fail(e),
        },
        None => None,
    };
    let load = match a.rate {
        Some(r) if !(r > 0.0 && r.is_finite()) => return fail("--rate must be above 0"),
        Some(r) => Load::Open {
            rate: stages.unwrap_or_else(|| Stages::constant(r, a.duration)),
            max_in_flight: a.max_in_flight.max(1),
        },
        None => {
            if a.users == 0 || a.users > 10_000 {
                return fail("--users must be between 1 and 10000");
            }
            Load::Closed(stages.unwrap_or_else(|| Stages::constant(a.users as f64, a.duration)))
        }
    };
    let plan = Plan {
        load,
        count: a.count,
        warmup: a.warmup,
        mix,
        keys,
        key_prefix: a.key_prefix.clone(),
        value_size,
        batch: a.batch_size.max(1),
        timeout: a.timeout,
        max_lateness: Duration::from_secs(10),
        uses_keys: true,
        live: a.metrics_listen.map(|_| Live::new(name)),
    };
    let rt = match crate::cli::runtime(true) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let (target, engine) = match build_target(&a).await {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        let exporter = match (a.metrics_listen, &plan.live) {
            (Some(addr), Some(live)) => match serve_live_metrics(addr, live).await {
                Ok(task) => Some(task),
                Err(e) => return fail(format!("--metrics-listen {addr}: {e}")),
            },
            _ => None,
        };
        if a.prefill {
            prefill(&target, &plan).await;
        }
        let metrics_url = match &target {
            Target::CacheApi { base, .. } => {
                Some(format!("{}/metrics", base.trim_end_matches('/')))
            }
            _ => None,
        };
        let before = match &metrics_url {
            Some(u) => scrape(u).await,
            None => BTreeMap::new(),
        };
        let settings = settings(&a);
        let described = target.describe();
        let bar = progress_bar(&plan, a.quiet);
        let cpu_before = own_resources().cpu_seconds;
        let out = run(plan, target, |p, t| {
            if let Some(bar) = &bar {
                bar.set_position(t.as_secs());
                bar.set_message(format!(
                    "{:>9.0} ops/s  p99 {:>8.2} ms  errors {}{}",
                    p.rps,
                    p.corrected_p99_ms,
                    p.errors,
                    if p.warmup { "  (warm-up)" } else { "" }
                ));
            }
        })
        .await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let measured = out
            .elapsed
            .saturating_sub(a.warmup)
            .max(Duration::from_millis(1));
        let mut resources = own_resources();
        resources.cpu_seconds -= cpu_before;
        let mut report = Report::new(
            name,
            described,
            settings,
            &out.gathered.totals,
            out.gathered.timeline,
            measured,
            resources,
        );
        if let Some((cache, ns)) = &engine {
            // In process: the engine's own counters, under the names of a scrape.
            if let Some(st) = cache.stats().namespace(ns) {
                let l1 = &st.l1;
                report.server = [
                    ("strata_cache_hits_total", l1.hits + st.l2.hits),
                    ("strata_cache_misses_total", st.l2.misses.max(l1.misses)),
                    ("strata_cache_sets_total", l1.sets.max(st.l2.sets)),
                    ("strata_cache_evictions_total", l1.evictions),
                    ("strata_cache_expirations_total", l1.expirations),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v as f64))
                .collect();
            }
        }
        if let Some(u) = &metrics_url {
            let after = scrape(u).await;
            report.server = server_delta(&before, &after);
        }
        let code = conclude(
            &a,
            report,
            &thresholds,
            baseline.as_ref(),
            max_regression,
            slot,
        );
        if let Some(task) = exporter {
            if !a.metrics_linger.is_zero() && !a.quiet {
                eprintln!(
                    "serving the final metrics on http://{}/metrics for {}",
                    a.metrics_listen.expect("set with the exporter"),
                    humantime::format_duration(a.metrics_linger)
                );
            }
            tokio::time::sleep(a.metrics_linger).await;
            task.abort();
        }
        code
    })
}

/// Grades, compares, prints and writes the report; the exit code says how it went.
fn conclude(
    a: &LoadTestArgs,
    report: Report,
    thresholds: &[Threshold],
    baseline: Option<&Report>,
    max_regression: f64,
    slot: &mut Option<Report>,
) -> ExitCode {
    let verdicts: Vec<Verdict> = thresholds.iter().map(|t| t.check(&report)).collect();
    *slot = Some(report.clone());
    let changes = baseline
        .map(|b| compare(b, &report, max_regression))
        .unwrap_or_default();
    print_summary(&report, &verdicts, &changes);
    if let Some(p) = &a.json {
        let json = serde_json::to_string_pretty(&report).expect("reports serialize");
        if let Err(e) = std::fs::write(p, json) {
            eprintln!("error: {}: {e}", p.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(p) = &a.html {
        if let Err(e) = std::fs::write(p, strata_bench::html::render(&report)) {
            eprintln!("error: {}: {e}", p.display());
            return ExitCode::FAILURE;
        }
    }
    if verdicts.iter().any(|v| v.grade == Grade::Fail) {
        for v in verdicts.iter().filter(|v| v.grade == Grade::Fail) {
            eprintln!("threshold failed: {}: {}", v.threshold, v.detail);
        }
        return ExitCode::from(EXIT_THRESHOLD);
    }
    if changes.iter().any(|c| c.regressed) {
        for c in changes.iter().filter(|c| c.regressed) {
            eprintln!(
                "regression: {} went from {:.4} to {:.4} ({:+.1}%, allowed {:.1}%)",
                c.figure,
                c.baseline,
                c.current,
                c.change * 100.0,
                max_regression * 100.0
            );
        }
        return ExitCode::from(EXIT_REGRESSION);
    }
    ExitCode::SUCCESS
}

/// Serves `GET /metrics` with the run's live metrics until the task is aborted.
async fn serve_live_metrics(
    addr: std::net::SocketAddr,
    live: &Live,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut registry = prometheus_client::registry::Registry::default();
    live.register(&mut registry);
    let registry = std::sync::Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let registry = registry.clone();
            async move { crate::server::admin_api::exposition(&registry, &headers) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}

/// Writes every key of the plan once, in order, from 4 workers (untimed).
async fn prefill(target: &Target, plan: &Plan) {
    let fill = Plan {
        load: Load::Closed(Stages::constant(4.0, Duration::from_secs(3600))),
        count: Some(plan.keys.len()),
        warmup: Duration::ZERO,
        mix: "set=1".parse().expect("static mix"),
        keys: KeyGen::new(KeyDist::Sequential, plan.keys.len()).expect("non-empty key space"),
        // The prefill is not the run: it stays out of the live metrics.
        live: None,
        ..plan.clone()
    };
    let out = run(fill, target.clone(), |_, _| {}).await;
    let errors = out.gathered.totals.error_count();
    if errors > 0 {
        eprintln!("warning: {errors} writes of the prefill failed");
    }
}

/// The target, and for `engine` the cache and namespace (to read its counters).
async fn build_target(
    a: &LoadTestArgs,
) -> Result<(Target, Option<(strata_cache::Cache, String)>), String> {
    let t = a.target.as_deref().unwrap_or_default();
    if t == "engine" {
        let cfg = match &a.config {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                crate::config::load(&crate::config::Sources {
                    text: Some((p.display().to_string(), text)),
                    env: std::env::vars().collect(),
                    flags: Vec::new(),
                })
                .map_err(|errs| {
                    errs.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                })?
            }
            None => crate::config::Config::default(),
        };
        let cache = crate::server::build_cache(&cfg)
            .await
            .map_err(|e| e.to_string())?;
        let ns = a.namespace.as_deref().unwrap_or("loadtest");
        let raw = cache.raw(ns).map_err(|e| e.to_string())?;
        return Ok((Target::Engine(raw), Some((cache, ns.to_owned()))));
    }
    if t.starts_with("redis://") || t.starts_with("rediss://") {
        return Ok((Target::redis(t).await?, None));
    }
    if t.starts_with("http://") {
        if let Some(ns) = &a.namespace {
            return Ok((
                Target::CacheApi {
                    base: t.to_owned(),
                    namespace: ns.clone(),
                    token: a.token.clone(),
                },
                None,
            ));
        }
        let method = a
            .method
            .parse()
            .map_err(|_| format!("--method `{}` is not an HTTP method", a.method))?;
        let headers = a
            .headers
            .iter()
            .map(|h| {
                h.split_once(':')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| format!("--header `{h}`: write `Name: value`"))
            })
            .collect::<Result<_, _>>()?;
        let template = HttpTemplate {
            method,
            url: t.to_owned(),
            headers,
            body: a.body.clone(),
        };
        return Ok((Target::Http(std::sync::Arc::new(template)), None));
    }
    Err(format!(
        "target `{t}`: use engine, redis://host:port, http://host:7070 --namespace NS, or an http:// URL"
    ))
}

/// Settings echoed into the report (no token).
fn settings(a: &LoadTestArgs) -> BTreeMap<String, String> {
    let mut s = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        s.insert(k.to_owned(), v);
    };
    put("target", a.target.clone().unwrap_or_default());
    match a.rate {
        Some(r) => put("rate", r.to_string()),
        None => put("users", a.users.to_string()),
    }
    if let Some(st) = &a.stages {
        put("stages", st.clone());
    }
    put(
        "duration",
        humantime::format_duration(a.duration).to_string(),
    );
    if let Some(c) = a.count {
        put("count", c.to_string());
    }
    put("warmup", humantime::format_duration(a.warmup).to_string());
    put("mix", a.workload.clone().unwrap_or_else(|| a.mix.clone()));
    put("keys", a.keys.to_string());
    put("key_dist", a.key_dist.clone());
    put("value_size", a.value_size.clone());
    if let Some(ns) = &a.namespace {
        put("namespace", ns.clone());
    }
    s
}

fn progress_bar(plan: &Plan, quiet: bool) -> Option<indicatif::ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let total = match &plan.load {
        Load::Closed(s) => s.total(),
        Load::Open { rate, .. } => rate.total(),
    };
    let bar = indicatif::ProgressBar::new(total.as_secs());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    Some(bar)
}

/// Sums of `strata_*` counters in a Prometheus scrape, by family (labels summed).
async fn scrape(url: &str) -> BTreeMap<String, f64> {
    let Ok(text) = http_get(url).await else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for sample in strata_bench::promtext::parse(&text) {
        let name = sample.name.as_str();
        let wanted = (name.starts_with("strata_cache_") && name.ends_with("_total"))
            || name == "process_cpu_seconds_total"
            || name == "process_resident_memory_bytes";
        if wanted {
            *out.entry(name.to_owned()).or_insert(0.0) += sample.value;
        }
    }
    out
}

/// What the server did during the run: counters as changes, gauges as their value
/// at the end.
fn server_delta(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| {
            let v = if k.ends_with("_total") {
                v - before.get(k).copied().unwrap_or(0.0)
            } else {
                *v
            };
            (k.clone(), v)
        })
        .collect()
}

async fn http_get(url: &str) -> Result<String, String> {
    let mut s = Target::Http(std::sync::Arc::new(HttpTemplate {
        method: hyper::Method::GET,
        url: url.to_owned(),
        headers: vec![],
        body: None,
    }))
    .session(Duration::from_secs(5));
    s.get_text(url).await
}

fn print_summary(r: &Report, verdicts: &[Verdict], changes: &[strata_bench::report::Change]) {
    let color = std::io::stdout().is_terminal();
    let paint = |g: Grade, s: &str| -> String {
        if !color {
            return s.to_owned();
        }
        let code = match g {
            Grade::Excellent => "32",
            Grade::Good => "36",
            Grade::Poor => "33",
            Grade::Fail => "31",
        };
        format!("\x1b[{code}m{s}\x1b[0m")
    };
    println!("target      {}", r.target);
    println!(
        "operations  {} in {:.1} s = {:.0} ops/s, errors {} ({:.3}%)",
        r.ops,
        r.duration_s,
        r.rps,
        r.errors.values().sum::<u64>(),
        r.error_rate * 100.0
    );
    if !r.errors.is_empty() {
        let kinds: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("errors      {}", kinds.join(" "));
    }
    if let Some(h) = r.hit_rate {
        println!("hit rate    {:.2}%", h * 100.0);
    }
    let l = &r.latency;
    let s = &r.latency_sent;
    println!(
        "latency ms  {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "p50", "p90", "p95", "p99", "p99.9", "max"
    );
    println!(
        "  intended  {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
        l.p50, l.p90, l.p95, l.p99, l.p999, l.max
    );
    println!(
        "  sent      {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
        s.p50, s.p90, s.p95, s.p99, s.p999, s.max
    );
    if r.late_starts + r.dropped_starts > 0 {
        println!(
            "open loop   {} late starts, {} dropped",
            r.late_starts, r.dropped_starts
        );
    }
    println!(
        "generator   {:.2} CPU s, {:.0} MiB peak RSS",
        r.resources.cpu_seconds,
        r.resources.max_rss_bytes as f64 / (1 << 20) as f64
    );
    for (k, v) in &r.server {
        if k.ends_with("_total") {
            println!("server      {k} +{v}");
        } else {
            println!("server      {k} {v} (at the end)");
        }
    }
    for v in verdicts {
        println!(
            "threshold   {:<24} {:<10} {}",
            v.threshold,
            paint(v.grade, &v.grade.to_string()),
            v.detail
        );
    }
    for c in changes {
        let g = if c.regressed {
            Grade::Fail
        } else {
            Grade::Good
        };
        println!(
            "baseline    {:<10} {:>12.4} -> {:>12.4} {:>+8.1}% {}",
            c.figure,
            c.baseline,
            c.current,
            c.change * 100.0,
            paint(g, if c.regressed { "REGRESSED" } else { "ok" })
        );
    }
}
