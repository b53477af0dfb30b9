//! `deploy/prometheus` and `deploy/grafana`: the files are valid, every alert's unit
//! tests pass, every metric the rules and dashboards use exists in a real scrape of
//! `strata serve` with Redis, the HTTP proxy and the PostgreSQL proxy on and some
//! traffic through each, and a real Prometheus evaluates them.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use common::{client, Strata};
use strata_testkit::{free_loopback_port, Postgres, RedisServer};

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/")).join(path)
}

/// Runs promtool; missing promtool fails when services are required (scripts/test.sh).
fn promtool(args: &[&str]) -> Option<String> {
    let bin = common::required_binary("promtool", "prometheus")?;
    let out = Command::new(bin)
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {said}");
    Some(said)
}

#[test]
fn prometheus_config_and_rules_are_valid_and_every_alert_is_unit_tested() {
    let Some(said) = promtool(&["check", "config", "prometheus.yml"]) else {
        return;
    };
    assert!(said.contains("SUCCESS"), "{said}");
    promtool(&["check", "rules", "rules.yml"]);
    let said = promtool(&["test", "rules", "tests.yml"]).unwrap();
    assert!(said.contains("SUCCESS"), "{said}");
    // Each alert appears in the tests, firing and quiet.
    let rules = std::fs::read_to_string(deploy("prometheus/rules.yml")).unwrap();
    let tests = std::fs::read_to_string(deploy("prometheus/tests.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    for a in alerts {
        let uses = tests.matches(&format!("alertname: {a}")).count();
        assert!(
            uses >= 2,
            "{a} is tested {uses} times; want a firing and a quiet case"
        );
    }
}

/// Names starting with `prefix` in PromQL text: `strata_` and `process_` for metrics,
/// `strata:` for recording rules.
fn names(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut i = 0;
    while let Some(at) = text[i..].find(prefix) {
        let start = i + at;
        let mut end = start + prefix.len();
        while end < b.len() && word(b[end]) {
            end += 1;
        }
        if start == 0 || !word(b[start - 1]) {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

/// Every metric name in PromQL text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut n = names(text, "strata_");
    n.extend(names(text, "process_"));
    n
}

/// The PromQL expressions of every panel of every dashboard, with its file.
fn dashboard_exprs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(deploy("grafana/dashboards")).unwrap() {
        let path = e.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let panels = v["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{file}");
        let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
        assert_eq!(ids.len(), panels.len(), "{file}: panel ids repeat");
        for p in panels {
            for t in p["targets"].as_array().expect("targets") {
                out.push((file.clone(), t["expr"].as_str().expect("expr").to_string()));
            }
        }
    }
    assert!(out.len() >= 20, "{out:?}");
    out
}

#[test]
fn dashboards_parse_and_use_only_recording_rules_that_exist() {
    let rules = std::fs::read_to_string(deploy("prometheus/rules.yml")).unwrap();
    let recorded: BTreeSet<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .map(str::to_string)
        .collect();
    for (file, expr) in dashboard_exprs() {
        for r in names(&expr, "strata:") {
            assert!(
                recorded.contains(&r),
                "{file}: `{r}` is not a recording rule in rules.yml"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_rules_and_dashboards_use_is_in_a_real_scrape() {
    let redis = RedisServer::start().expect("redis-server");
    let pg = Postgres::start().expect("postgresql");
    let origin = {
        let app = axum::Router::new()
            .route(
                "/api/mine",
                axum::routing::get(|| async { ([("cache-control", "private")], "mine") }),
            )
            .fallback(|| async { ([("cache-control", "max-age=60")], "hello") });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        addr
    };
    let (http_port, pg_port) = (free_loopback_port(), free_loopback_port());
    let s = Strata::start(&format!(
        "[redis]\nurl = \"{}\"\n[http]\nlisten = \"127.0.0.1:{http_port}\"\nupstream = \"http://{origin}\"\n\
         [postgres]\nlisten = \"127.0.0.1:{pg_port}\"\nupstream = \"{}\"\n",
        redis.url(),
        pg.url("postgres")
    ));
    // Traffic through each part.
    let c = client();
    c.put(s.url("/v1/cache/user/1"))
        .body("v")
        .send()
        .await
        .unwrap();
    c.get(s.url("/v1/cache/user/1")).send().await.unwrap();
    for path in ["/api/x", "/api/x", "/api/mine"] {
        c.get(format!("http://127.0.0.1:{http_port}{path}"))
            .send()
            .await
            .unwrap();
    }
    let (db, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={pg_port} user=postgres dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    db.query("SELECT 1", &[]).await.unwrap();

    let rules = std::fs::read_to_string(deploy("prometheus/rules.yml")).unwrap();
    let mut used = metric_names(&rules);
    for (_, expr) in dashboard_exprs() {
        used.extend(metric_names(&expr));
    }
    // The load generator serves those (the next test).
    used.retain(|m| !m.starts_with(LOADTEST));
    assert!(used.len() >= 10, "{used:?}");
    let mut missing = BTreeSet::new();
    // The PostgreSQL query counters appear once the insight thread has counted.
    for _ in 0..100 {
        let scrape = common::get_text(&c, &s.url("/metrics")).await;
        let present: BTreeSet<&str> = scrape
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        missing = used
            .iter()
            .filter(|m| !present.contains(m.as_str()))
            .cloned()
            .collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        missing.is_empty(),
        "used by rules.yml or a dashboard, absent from /metrics: {missing:?}"
    );
}

const LOADTEST: &str = "strata_loadtest_";

/// `strata load-test --metrics-listen` serves, while it runs and after, every
/// metric the load-test dashboard uses, promtool-clean, and its final counters agree
/// with the run's own report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_test_dashboard_reads_what_a_running_load_test_serves() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let port = free_loopback_port();
    let mut child = std::process::Command::new(common::strata_bin())
        .args([
            "load-test",
            "engine",
            "--namespace",
            "lt",
            "-u",
            "2",
            "-d",
            "3s",
        ])
        .args(["--mix", "get=80,set=20", "--keys", "100", "-q"])
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-linger", "60s", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(&mut child);
    let c = client();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let sample = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    // While it runs: operations are counted and the level is the users.
    let mut during = None;
    for _ in 0..200 {
        if let Ok(r) = c.get(&url).send().await {
            let text = r.text().await.unwrap();
            if sample(&text, "strata_loadtest_operations_total").is_some_and(|v| v > 0.0) {
                during = Some(text);
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let during = during.expect("live metrics with operations while the run goes");
    assert_eq!(
        sample(&during, "strata_loadtest_running{run=\"load-test\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&during, "strata_loadtest_users{run=\"load-test\"}"),
        Some(2.0)
    );
    // After it: the report is written and the exporter lingers with final numbers.
    for _ in 0..200 {
        if json.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let after = common::get_text(&c, &url).await;
    assert_eq!(
        sample(&after, "strata_loadtest_running{"),
        Some(0.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "strata_loadtest_operations_total{"),
        report["ops"].as_f64(),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "strata_loadtest_latency_seconds_count{run=\"load-test\",from=\"sent\"}"
        ),
        report["ops"].as_f64()
    );
    common::promtool_check_metrics(&after);
    let present: BTreeSet<&str> = after
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut used = BTreeSet::new();
    for (file, expr) in dashboard_exprs() {
        let names: BTreeSet<String> = metric_names(&expr)
            .into_iter()
            .filter(|m| m.starts_with(LOADTEST))
            .collect();
        if file == "strata-loadtest.json" {
            assert_eq!(names.len(), metric_names(&expr).len(), "{expr}");
        }
        used.extend(names);
    }
    assert!(used.len() >= 6, "{used:?}");
    let missing: Vec<_> = used
        .iter()
        .filter(|m| !present.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "dashboard uses {missing:?}; served:\n{after}"
    );
}

/// A real Prometheus scraping a real strata every second and evaluating rules.yml
/// (its recording interval shortened to 1 s): the hit-ratio rule returns the ratio
/// the test's own traffic produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_records_the_hit_ratio_the_traffic_produced() {
    let Some(bin) = common::required_binary("prometheus", "prometheus") else {
        return;
    };
    let s = Strata::start("");
    let c = client();
    // The namespace's series exist before Prometheus's first sample of them.
    c.put(s.url("/v1/cache/user/warm"))
        .body("v")
        .send()
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(deploy("prometheus/rules.yml"))
        .unwrap()
        .replace("interval: 30s", "interval: 1s");
    std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
    let port = free_loopback_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: strata\n    static_configs:\n      - targets: [\"{}\"]\n",
            s.url("").trim_start_matches("http://").trim_end_matches('/')
        ),
    )
    .unwrap();
    /// Kills Prometheus when the test ends, however it ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prometheus = Kill(
        Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let query = |q: &str| {
        let url = format!("http://127.0.0.1:{port}/api/v1/query");
        let c = c.clone();
        let q = q.to_string();
        async move {
            let r = c.get(url).query(&[("query", q)]).send().await.ok()?;
            let v: serde_json::Value = r.json().await.ok()?;
            v["data"]["result"].as_array().cloned()
        }
    };
    // Wait until Prometheus has scraped the warm-up state.
    let mut scraped = false;
    for _ in 0..150 {
        if query("strata_cache_sets_total{namespace=\"user\"}")
            .await
            .is_some_and(|r| !r.is_empty())
        {
            scraped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let log = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    assert!(scraped, "prometheus never scraped strata: {}", log());
    // 30 hits and 10 misses: a hit ratio of 0.75.
    for k in 0..10 {
        c.put(s.url(&format!("/v1/cache/user/k{k}")))
            .body("v")
            .send()
            .await
            .unwrap();
    }
    for _ in 0..3 {
        for k in 0..10 {
            c.get(s.url(&format!("/v1/cache/user/k{k}")))
                .send()
                .await
                .unwrap();
        }
    }
    for k in 0..10 {
        c.get(s.url(&format!("/v1/cache/user/missing{k}")))
            .send()
            .await
            .unwrap();
    }
    let mut last = None;
    for _ in 0..150 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let Some(r) = query("strata:cache_hit_ratio:rate5m{namespace=\"user\"}").await else {
            continue;
        };
        let v = r
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok());
        last = v;
        if v.is_some_and(|v| (v - 0.75).abs() < 0.01) {
            // And every dashboard panel's query is PromQL this Prometheus accepts.
            for (file, expr) in dashboard_exprs() {
                assert!(
                    query(&expr).await.is_some(),
                    "{file}: `{expr}` does not evaluate"
                );
            }
            return;
        }
    }
    panic!(
        "hit ratio recorded: {last:?}, want 0.75; prometheus: {}",
        log()
    );
}

fn yaml_docs(path: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(deploy(path)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

/// `strata config check` on a configuration body, with the admin token it names.
fn config_check(body: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("strata.toml");
    std::fs::write(&f, body).unwrap();
    let (st, out, err) = common::run_cli(
        &["config", "check", f.to_str().unwrap()],
        &[("STRATA_ADMIN_TOKEN", "0123456789abcdef0123")],
    );
    assert!(st.success(), "{err}");
    out
}

#[test]
fn every_yaml_file_parses() {
    for path in [
        "docker-compose.yml",
        "alertmanager.yml",
        "prometheus/prometheus.yml",
        "prometheus/compose.yml",
        "prometheus/rules.yml",
        "prometheus/tests.yml",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/strata.yml",
        "k8s/strata.yaml",
        "k8s/redis.yaml",
    ] {
        assert!(!yaml_docs(path).is_empty(), "{path}");
    }
    promtool(&["check", "config", "compose.yml"]);
}

#[test]
fn compose_runs_the_whole_stack_from_files_that_exist_and_a_valid_config() {
    let c = &yaml_docs("docker-compose.yml")[0];
    let services = c["services"].as_mapping().unwrap();
    for s in [
        "strata",
        "redis",
        "postgres",
        "prometheus",
        "grafana",
        "alertmanager",
    ] {
        assert!(services.contains_key(s), "no {s} service");
    }
    // Every bind mount names a file or directory in deploy/.
    for (name, svc) in services {
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let v = v.as_str().unwrap();
            if let Some(local) = v.strip_prefix("./") {
                let local = local.split(':').next().unwrap();
                assert!(deploy(local).exists(), "{name:?}: {local} does not exist");
            }
        }
    }
    assert_eq!(
        c["services"]["redis"]["command"][2], "yes",
        "appendonly: persistence on"
    );
    let out = config_check(&std::fs::read_to_string(deploy("strata.toml")).unwrap());
    assert!(out.contains("redis://redis:6379"), "{out}");
}

#[test]
fn kubernetes_files_describe_probed_replicas_sharing_one_redis() {
    let docs: Vec<serde_yaml::Value> = yaml_docs("k8s/strata.yaml")
        .into_iter()
        .chain(yaml_docs("k8s/redis.yaml"))
        .collect();
    for d in &docs {
        assert!(
            d["apiVersion"].is_string() && d["kind"].is_string(),
            "{d:?}"
        );
        assert!(d["metadata"]["name"].is_string(), "{d:?}");
    }
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let dep = find("Deployment", "strata");
    assert!(dep["spec"]["replicas"].as_u64().unwrap() >= 2);
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    find("Service", "strata");
    find("Service", "strata-redis");
    let toml = find("ConfigMap", "strata-config")["data"]["strata.toml"]
        .as_str()
        .unwrap();
    let out = config_check(toml);
    assert!(out.contains("redis://strata-redis:6379"), "{out}");
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_as_non_root_in_another() {
    let d =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Dockerfile")).unwrap();
    assert_eq!(d.lines().filter(|l| l.starts_with("FROM ")).count(), 2);
    let user = d
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("a USER line");
    assert!(user != "root" && user != "0", "{user}");
    assert!(
        d.contains("--locked"),
        "the image builds what Cargo.lock pins"
    );
}
