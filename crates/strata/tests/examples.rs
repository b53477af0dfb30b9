//! The files in `examples/` work: the proxy configuration serves and invalidates in
//! front of a real API, and the load-test scenario runs against both.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use common::{client, Strata};
use strata_testkit::free_loopback_port;

fn example(path: &str) -> String {
    std::fs::read_to_string(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/").to_string() + path,
    )
    .unwrap()
}

/// An API with a list and a detail endpoint whose bodies show a version that every
/// write bumps.
async fn api() -> (SocketAddr, Arc<AtomicU64>) {
    let v = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new()
        .route(
            "/api/items",
            axum::routing::get(|State(v): State<Arc<AtomicU64>>| async move {
                format!("list v{}", v.load(Ordering::SeqCst))
            }),
        )
        .route(
            "/api/items/{id}",
            axum::routing::get(
                |Path(id): Path<String>, State(v): State<Arc<AtomicU64>>| async move {
                    format!("item {id} v{}", v.load(Ordering::SeqCst))
                },
            )
            .put(|State(v): State<Arc<AtomicU64>>| async move {
                v.fetch_add(1, Ordering::SeqCst);
                "updated"
            }),
        )
        .with_state(v.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_example_caches_cascades_invalidation_and_feeds_the_scenario() {
    let (api, _) = api().await;
    let proxy_port = free_loopback_port();
    let cfg = example("proxy-in-front-of-an-api/strata.toml")
        .replace("127.0.0.1:8000", &api.to_string())
        .replace("127.0.0.1:7080", &format!("127.0.0.1:{proxy_port}"));
    // strata's own API address (7070 in the file) is the harness's --listen.
    let _s = Strata::start(&cfg);
    let c = client();
    let get = |path: &str| {
        let c = c.clone();
        let url = format!("http://127.0.0.1:{proxy_port}{path}");
        async move {
            let r = c.get(url).send().await.unwrap();
            let x = r.headers()["x-cache"].to_str().unwrap().to_string();
            (x, r.text().await.unwrap())
        }
    };
    assert_eq!(
        get("/api/items?page=1&utm=a").await,
        ("MISS".into(), "list v0".into())
    );
    // Parameters outside the route's key share the entry.
    assert_eq!(
        get("/api/items?page=1&utm=b").await,
        ("HIT".into(), "list v0".into())
    );
    assert_eq!(get("/api/items/7").await.0, "MISS");
    assert_eq!(get("/api/items/7").await.0, "HIT");
    // A write to item 7 drops the item and, by tag, the list.
    let r = c
        .put(format!("http://127.0.0.1:{proxy_port}/api/items/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        get("/api/items/7").await,
        ("MISS".into(), "item 7 v1".into())
    );
    assert_eq!(
        get("/api/items?page=1").await,
        ("MISS".into(), "list v1".into())
    );

    // The scenario example, pointed at this API and proxy, with short runs.
    let scenario = example("load-test/scenario.toml")
        .replace("127.0.0.1:8000", &api.to_string())
        .replace("127.0.0.1:7080", &format!("127.0.0.1:{proxy_port}"))
        .replace("duration = \"30s\"", "duration = \"1s\"")
        .replace("warmup = \"10s\"", "warmup = \"1s\"")
        .replace(
            "stages = \"10s:100,30s:100,5s:0\"",
            "stages = \"1s:20,1s:20,1s:0\"",
        );
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("scenario.toml");
    std::fs::write(&f, scenario).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        common::run_cli(&["load-test", "--scenario", f.to_str().unwrap()], &[])
    })
    .await
    .unwrap();
    let (st, stdout, stderr) = out;
    assert!(st.success(), "{stdout}{stderr}");
    for name in [
        "baseline (API alone)",
        "warm cache (through strata)",
        "peak (through strata)",
    ] {
        assert!(stdout.contains(name), "{name}: {stdout}");
    }
}

/// Every `toml` block of docs/proxy-cookbook.md is a whole strata.toml that
/// `strata config check` accepts.
#[test]
fn every_recipe_of_the_proxy_cookbook_is_a_valid_config() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/proxy-cookbook.md"
    ))
    .unwrap();
    let blocks: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 5, "{} toml blocks", blocks.len());
    let dir = tempfile::tempdir().unwrap();
    for (i, block) in blocks.iter().enumerate() {
        let f = dir.path().join(format!("recipe{i}.toml"));
        std::fs::write(&f, block).unwrap();
        let (st, out, err) = common::run_cli(
            &["config", "check", f.to_str().unwrap()],
            &[("STRATA_ADMIN_TOKEN", "a-long-enough-test-token-0123456789")],
        );
        assert!(st.success(), "recipe {i}:\n{block}\n{out}{err}");
    }
}
