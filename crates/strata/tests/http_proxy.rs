//! `strata serve` with `[http]`: the real binary in front of a real origin, alone
//! and as two instances sharing Redis.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use common::{client, error_code, Strata};
use strata_testkit::{free_loopback_port, RedisServer};

/// An origin whose list and detail bodies show a data version that every unsafe
/// request bumps.
async fn origin() -> (SocketAddr, Arc<AtomicU64>) {
    let version = Arc::new(AtomicU64::new(0));
    let v = version.clone();
    let app = axum::Router::new()
        .fallback(
            |State(v): State<Arc<AtomicU64>>, req: axum::extract::Request| async move {
                if req.method() != axum::http::Method::GET {
                    v.fetch_add(1, Ordering::SeqCst);
                    return "changed".into_response();
                }
                let body = format!("{} v{}", req.uri().path(), v.load(Ordering::SeqCst));
                (
                    [("cache-control", "max-age=300"), ("cache-tag", "risks")],
                    body,
                )
                    .into_response()
            },
        )
        .with_state(v);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, version)
}

fn config(origin: SocketAddr, proxy_port: u16, extra: &str) -> String {
    format!(
        r#"
        {extra}
        [http]
        listen = "127.0.0.1:{proxy_port}"
        upstream = "http://{origin}"
        [[http.routes]]
        match = "/api/risks"
        tags = ["risk:list"]
        [[http.invalidate]]
        on = "POST /api/risks"
        tags = ["risk:list"]
        "#
    )
}

/// GET through a proxy as clients behind one load balancer do: same `Host`.
async fn fetch(port: u16, path: &str) -> (String, String) {
    let r = client()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .header("host", "api.test")
        .send()
        .await
        .unwrap();
    let x = r.headers()["x-cache"].to_str().unwrap().to_owned();
    (x, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_through_one_instance_invalidates_what_the_other_serves() {
    let redis = RedisServer::start().unwrap();
    let (origin, _) = origin().await;
    let (pa, pb) = (free_loopback_port(), free_loopback_port());
    let redis_cfg = format!("[redis]\nurl = \"{}\"", redis.url());
    let _a = Strata::start(&config(origin, pa, &redis_cfg));
    let _b = Strata::start(&config(origin, pb, &redis_cfg));

    assert_eq!(
        fetch(pa, "/api/risks").await,
        ("MISS".into(), "/api/risks v0".into())
    );
    // B finds A's response in Redis.
    assert_eq!(
        fetch(pb, "/api/risks").await,
        ("HIT".into(), "/api/risks v0".into())
    );
    assert_eq!(fetch(pb, "/api/risks").await.0, "HIT");

    let r = client()
        .post(format!("http://127.0.0.1:{pa}/api/risks"))
        .header("host", "api.test")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-cache"], "BYPASS");
    // B's memory tier heard the invalidation: its next read goes to the origin.
    let mut seen = String::new();
    for _ in 0..200 {
        let (x, body) = fetch(pb, "/api/risks").await;
        seen = format!("{x} {body}");
        if body == "/api/risks v1" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(seen.split_once(' ').unwrap().1, "/api/risks v1", "{seen}");
}

#[tokio::test]
async fn purge_endpoint_needs_a_token_and_drops_by_tag() {
    let (origin, _) = origin().await;
    let port = free_loopback_port();
    let extra = r#"
        [[auth.tokens]]
        name = "ops"
        token = "0123456789abcdef0123"
        namespaces = ["http"]
        rights = ["write"]
    "#;
    let s = Strata::start(&config(origin, port, extra));
    fetch(port, "/api/risks").await;
    assert_eq!(fetch(port, "/api/risks").await.0, "HIT");
    let c = client();
    let body = serde_json::json!({"tags": ["risks"]});
    let r = c
        .post(s.url("/v1/http/purge"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (401, "unauthorized".into()));
    let r = c
        .post(s.url("/v1/http/purge"))
        .bearer_auth("0123456789abcdef0123")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["purged"], 1);
    assert_eq!(fetch(port, "/api/risks").await.0, "MISS");
    let r = c
        .post(s.url("/v1/http/purge"))
        .bearer_auth("0123456789abcdef0123")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "invalid_purge".into()));
}

#[tokio::test]
async fn proxy_metrics_are_exported() {
    let (origin, _) = origin().await;
    let port = free_loopback_port();
    let s = Strata::start(&config(origin, port, ""));
    fetch(port, "/api/risks").await;
    fetch(port, "/api/risks").await;
    let text = common::get_text(&client(), &s.url("/metrics")).await;
    assert!(
        text.contains("strata_http_requests_total{route=\"/api/risks\",cache=\"hit\"} 1"),
        "{text}"
    );
    assert!(text.contains("strata_http_origin_duration_seconds_bucket"));
    common::promtool_check_metrics(&text);
}

#[test]
fn bad_http_config_points_at_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("strata.toml");
    std::fs::write(
        &f,
        "[http]\nupstream = \"http://127.0.0.1:1\"\n[[http.routes]]\nmatch = \"api/*/x\"\n",
    )
    .unwrap();
    let (st, _, err) = common::run_cli(&["config", "check", f.to_str().unwrap()], &[]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("strata.toml:4:"), "{err}");
    assert!(err.contains("http.routes.0.match"), "{err}");
}

#[tokio::test]
async fn sigterm_stops_the_proxy_workers_and_the_process_exits_cleanly() {
    let (origin, _) = origin().await;
    let port = free_loopback_port();
    let mut s = Strata::start(&config(origin, port, ""));
    assert_eq!(fetch(port, "/api/risks").await.0, "MISS");
    s.terminate();
    let status = s.wait(std::time::Duration::from_secs(15));
    assert!(status.success(), "{status}: {}", s.log());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn the_configuration_in_docs_http_md_is_valid() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/http.md"))
        .unwrap();
    let block = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block in docs/http.md");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("strata.toml");
    std::fs::write(&f, block).unwrap();
    let (st, out, err) = common::run_cli(&["config", "check", f.to_str().unwrap()], &[]);
    assert!(st.success(), "{err}");
    assert!(out.contains("risk-list"), "{out}");
}
