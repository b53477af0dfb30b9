//! The examples run and hold to what they print: `examples/wallet.rs` in memory and
//! against a real Redis (it checks its own claims and exits non-zero otherwise).

use std::path::PathBuf;
use std::process::Command;

/// The example binary cargo built beside this test (`cargo test` and nextest build
/// every example of the package before running tests).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/examples-<hash> → target/<profile>/examples/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} not built: run through `cargo test` or `cargo nextest run`",
        path.display()
    );
    path
}

fn run(env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(example("wallet"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn wallet_runs_in_memory() {
    let out = run(&[]);
    assert!(out.contains("1 database call(s)"), "{out}");
    assert!(out.contains("after transfer event: None"), "{out}");
}

#[test]
fn wallet_runs_against_redis() {
    let redis = strata_testkit::RedisServer::start().unwrap();
    let out = run(&[("STRATA_REDIS_URL", &redis.url())]);
    assert!(out.contains("1 database call(s)"), "{out}");
    // The balance went through Redis: its L2 counters moved.
    let stats: serde_json::Value = serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap();
    let balance = stats["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["namespace"] == "balance")
        .unwrap()
        .clone();
    assert!(balance["l2"]["sets"].as_u64().unwrap() >= 1, "{out}");
}
