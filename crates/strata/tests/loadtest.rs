//! `strata load-test` as a process: against a real `strata serve`, its JSON, gates
//! and exit codes.

mod common;

use common::{run_cli, Strata};
use serde_json::Value;

fn load_test(args: &[&str]) -> (Option<i32>, String, String) {
    let (st, out, err) = run_cli(args, &[]);
    (st.code(), out, err)
}

#[test]
fn against_strata_serve_with_json_and_server_counters() {
    let s = Strata::start("");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let base = s.url("");
    let (code, out, err) = load_test(&[
        "load-test",
        &base,
        "--namespace",
        "lt",
        "-u",
        "4",
        "-n",
        "2000",
        "--mix",
        "get=70,set=30",
        "--keys",
        "200",
        "--json",
        json.to_str().unwrap(),
        "--threshold",
        "p99<5s",
        "--threshold",
        "error_rate<1%",
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("EXCELLENT"), "{out}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // The schema is an interface: these keys, this version.
    let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "dropped_starts",
            "duration_s",
            "error_rate",
            "errors",
            "histograms",
            "hit_rate",
            "late_starts",
            "latency",
            "latency_sent",
            "name",
            "ops",
            "resources",
            "rps",
            "schema",
            "server",
            "settings",
            "target",
            "timeline"
        ]
    );
    assert_eq!(r["schema"], 1);
    assert_eq!(r["ops"], 2000);
    assert_eq!(r["error_rate"], 0.0);
    for p in ["p50", "p90", "p95", "p99", "p999", "max", "mean"] {
        assert!(r["latency"][p].as_f64().unwrap() > 0.0, "{p}");
    }
    // The server saw what the generator did.
    let sets = r["server"]["strata_cache_sets_total"].as_f64().unwrap();
    let hits = r["server"]["strata_cache_hits_total"].as_f64().unwrap();
    assert!(sets > 400.0 && hits > 0.0, "{}", r["server"]);
    // And what it cost the server.
    // (CPU is counted in 10 ms ticks: present, possibly 0 for so short a run.)
    assert!(r["server"]["process_cpu_seconds_total"].as_f64().unwrap() >= 0.0);
    assert!(
        r["server"]["process_resident_memory_bytes"]
            .as_f64()
            .unwrap()
            > 1e6
    );
    assert!(r["hit_rate"].as_f64().unwrap() > 0.0);
    assert!(!r["histograms"]["corrected"].as_str().unwrap().is_empty());
}

#[test]
fn gates_exit_with_distinct_codes() {
    let s = Strata::start("");
    let base = s.url("");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let common = [
        "load-test",
        &base,
        "--namespace",
        "g",
        "-u",
        "2",
        "-n",
        "500",
        "--keys",
        "50",
    ];
    // A threshold nobody meets: exit 3, and the figure is named.
    let mut args = common.to_vec();
    args.extend(["--threshold", "p50<0.0001ms"]);
    let (code, out, err) = load_test(&args);
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(err.contains("threshold failed: p50<0.0001ms"), "{err}");
    assert!(out.contains("FAIL"), "{out}");
    // A baseline far better than this run: exit 4, with the change.
    let mut args = common.to_vec();
    args.extend(["--json", json.to_str().unwrap()]);
    assert_eq!(load_test(&args).0, Some(0));
    let mut r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    r["rps"] = Value::from(r["rps"].as_f64().unwrap() * 100.0);
    let better = dir.path().join("better.json");
    std::fs::write(&better, r.to_string()).unwrap();
    let mut args = common.to_vec();
    args.extend([
        "--baseline",
        better.to_str().unwrap(),
        "--max-regression",
        "10%",
    ]);
    let (code, out, err) = load_test(&args);
    assert_eq!(code, Some(4), "{out}\n{err}");
    assert!(err.contains("regression: rps went from"), "{err}");
    // Bad arguments: exit 2 with the reason.
    for bad in [
        &["load-test", "ftp://x"][..],
        &["load-test", "engine", "--key-dist", "gaussian"],
        &["load-test", "engine", "--stages", "30s"],
        &["load-test", "engine", "--threshold", "p99<<1"],
        &["load-test", "engine", "--rate", "-5"],
    ] {
        let (code, _, err) = load_test(bad);
        assert_eq!(code, Some(2), "{bad:?}: {err}");
        assert!(err.starts_with("error:"), "{bad:?}: {err}");
    }
}

#[test]
fn engine_target_with_a_ycsb_preset_then_report() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let (code, out, err) = load_test(&[
        "load-test",
        "engine",
        "--workload",
        "ycsb-a",
        "-u",
        "2",
        "-n",
        "20000",
        "--keys",
        "1000",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("engine (namespace loadtest)"), "{out}");
    assert!(out.contains("hit rate"), "{out}");
    // The engine's own counters stand in for a server scrape.
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(r["server"]["strata_cache_sets_total"].as_f64().unwrap() > 0.0);

    // `strata report` re-renders it.
    let html = dir.path().join("run.html");
    let (code, out, err) = load_test(&[
        "report",
        "--input",
        json.to_str().unwrap(),
        "--detailed",
        "--recommendations",
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("t (s)") && out.contains("latency distribution"),
        "{out}"
    );
    assert!(
        out.contains("recommendations") || out.contains("try:"),
        "{out}"
    );
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("<svg id=\"latency\""));
    let (code, _, err) = load_test(&["report", "--input", "/nonexistent.json"]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn benchmark_prefills_then_times_a_fixed_count() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let (code, out, err) = load_test(&[
        "benchmark",
        "--operation",
        "get",
        "--count",
        "5000",
        "--keys",
        "500",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["ops"], 5000, "the prefill is not timed");
    assert_eq!(r["hit_rate"], 1.0, "every read finds its prefilled key");

    let s = Strata::start("");
    let (code, out, err) = load_test(&[
        "benchmark",
        &s.url(""),
        "--operation",
        "mixed",
        "--batch-size",
        "5",
        "--count",
        "2000",
        "--keys",
        "200",
        "-u",
        "4",
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("operations  2000"), "{out}");
    assert!(out.contains("hit rate    100.00%"), "{out}");
}

#[test]
fn scenario_runs_in_sequence_and_compares() {
    let s = Strata::start("");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenario.toml");
    std::fs::write(
        &file,
        format!(
            r#"
            [defaults]
            count = 1000
            keys = 100
            users = 2

            [[run]]
            name = "cache api"
            target = "{}"
            namespace = "sc"
            prefill = true

            [[run]]
            name = "engine, impossible gate"
            target = "engine"
            threshold = ["p50<0.0001ms"]
            "#,
            s.url("")
        ),
    )
    .unwrap();
    let json = dir.path().join("all.json");
    let (code, out, err) = load_test(&[
        "load-test",
        "--scenario",
        file.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    // Both ran; the second's gate failed, so the scenario exits 3.
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(
        out.contains("== cache api") && out.contains("== engine, impossible gate"),
        "{out}"
    );
    let table = out.split("ops/s vs 1").nth(1).expect("comparison table");
    assert!(
        table.contains("cache api") && table.contains("engine, impossible gate"),
        "{out}"
    );
    let all: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(all["runs"].as_array().unwrap().len(), 2);
    assert_eq!(all["runs"][0]["hit_rate"], 1.0, "prefilled reads hit");

    // A run with a bad flag stops the scenario before anything runs.
    std::fs::write(&file, "[[run]]\ntarget = \"engine\"\nusres = 3\n").unwrap();
    let (code, out, err) = load_test(&["load-test", "--scenario", file.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(err.contains("--usres"), "{err}");
    assert!(!out.contains("=="), "{out}");
}

#[test]
fn metrics_watches_a_live_server() {
    let s = Strata::start("");
    let base = s.url("");
    // Traffic in the background while `strata metrics` watches.
    let traffic = std::process::Command::new(common::strata_bin())
        .args([
            "load-test",
            &base,
            "--namespace",
            "m",
            "-u",
            "2",
            "-d",
            "3s",
            "-q",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (code, out, err) = load_test(&[
        "metrics",
        "--url",
        &base,
        "--duration",
        "2s",
        "--interval",
        "500ms",
        "--json",
    ]);
    let _ = traffic.wait_with_output();
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows.len() >= 3, "{out}");
    assert!(
        rows.iter()
            .any(|r| r["requests_per_s"].as_f64().unwrap() > 10.0
                && r["p99_ms"].as_f64().is_some()
                && r["hit_rate"].as_f64().is_some()),
        "{out}"
    );
    assert!(rows.iter().all(|r| r["rss_bytes"].as_f64().unwrap() > 0.0));
    // Nothing listening: a clear error, exit 1.
    let port = strata_testkit::free_loopback_port();
    let (code, _, err) = load_test(&["metrics", "--url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("error:"), "{err}");
}

#[test]
fn invalidation_test_measures_propagation_and_fails_when_it_does_not_arrive() {
    let redis = strata_testkit::RedisServer::start().expect("redis-server");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("inv.json");
    let url = redis.url();
    let (code, out, err) = load_test(&[
        "invalidation-test",
        "--redis-url",
        &url,
        "--entries",
        "200",
        "--rounds",
        "10",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let kinds: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["key", "prefix", "tag"]);
    for k in r["results"].as_array().unwrap() {
        assert_eq!(k["missed"], 0, "{k}");
        assert!(k["propagation_p50_ms"].as_f64().unwrap() > 0.0, "{k}");
        assert!(
            k["entries_per_invalidation"].as_f64().unwrap() >= 1.0,
            "{k}"
        );
    }
    // With PUBLISH refused, invalidations never reach the second instance: exit 3.
    assert!(redis
        .command("ACL SETUSER default -publish")
        .unwrap()
        .starts_with("+OK"));
    let (code, out, err) = load_test(&[
        "invalidation-test",
        "--redis-url",
        &url,
        "--entries",
        "20",
        "--rounds",
        "2",
        "--timeout",
        "300ms",
    ]);
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(err.contains("never reached the second instance"), "{err}");
}
