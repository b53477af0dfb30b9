//! The cache REST API of a real `strata serve` process, memory tier only.

mod common;

use std::time::Duration;

use common::{client, error_code, get_json, post_json, Strata};
use futures::StreamExt;
use serde_json::{json, Value};

#[tokio::test]
async fn every_endpoint_round_trips() {
    let s = Strata::start("[namespaces.user]\nttl = \"1h\"\n");
    let c = client();

    // PUT keeps the Content-Type; GET returns it and the tier.
    let r = c
        .put(s.url("/v1/cache/user/42?ttl=30s"))
        .header("content-type", "text/html; charset=utf-8")
        .header("x-cache-tags", "team:7, vip")
        .body("<b>Ada</b>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.headers().contains_key("x-request-id"));
    let r = c.get(s.url("/v1/cache/user/42")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers()["x-cache-tier"], "l1");
    assert_eq!(r.text().await.unwrap(), "<b>Ada</b>");
    // HEAD answers like GET without a body.
    let r = c.head(s.url("/v1/cache/user/42")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Keys may contain slashes.
    let r = c
        .put(s.url("/v1/cache/user/org/7/member/9"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .get(s.url("/v1/cache/user/org/7/member/9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.text().await.unwrap(), "x");

    // A miss is 404 with a JSON error.
    let r = c.get(s.url("/v1/cache/user/nobody")).send().await.unwrap();
    assert_eq!(error_code(r).await, (404, "not_found".into()));

    // Batches.
    let r = c
        .post(s.url("/v1/cache/user/_mset"))
        .json(&json!({"entries": [
            {"key": "a", "value": {"n": 1}},
            {"key": "b", "value_base64": "AAEC", "content_type": "image/png", "tags": ["img"]},
        ], "ttl": "10m", "tags": ["batch"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r: Value = post_json(
        &c,
        &s.url("/v1/cache/user/_mget"),
        &json!({"keys": ["a", "b", "zz"]}),
    )
    .await;
    let items = r["items"].as_array().unwrap();
    assert_eq!(items[0]["value"], json!({"n": 1}));
    assert_eq!(items[0]["tier"], "l1");
    assert_eq!(items[1]["value_base64"], "AAEC");
    assert_eq!(items[1]["content_type"], "image/png");
    assert_eq!(items[2]["found"], false);

    // Invalidation by tag drops exactly the tagged entries.
    let r: Value = post_json(
        &c,
        &s.url("/v1/invalidate"),
        &json!({"namespace": "user", "tags": ["img"]}),
    )
    .await;
    assert_eq!(r["invalidated"], 1);
    assert_eq!(
        c.get(s.url("/v1/cache/user/b"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(s.url("/v1/cache/user/a"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // By prefix.
    let r: Value = post_json(
        &c,
        &s.url("/v1/invalidate"),
        &json!({"namespace": "user", "prefix": "org/"}),
    )
    .await;
    assert_eq!(r["invalidated"], 1);
    // By keys.
    let r: Value = post_json(
        &c,
        &s.url("/v1/invalidate"),
        &json!({"namespace": "user", "keys": ["a"]}),
    )
    .await;
    assert_eq!(r["invalidated"], 1);

    // Preload is best effort and says what it refused.
    let r: Value = post_json(
        &c,
        &s.url("/v1/cache/user/_preload"),
        &json!([
            {"key": "p1", "value": "one"},
            {"key": "p2", "value": [2]},
            {"key": "", "value": 3},
            {"key": "p4"},
        ]),
    )
    .await;
    assert_eq!(r["loaded"], 2, "{r}");
    let failed: Vec<u64> = r["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["index"].as_u64().unwrap())
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(failed.contains(&2) && failed.contains(&3), "{r}");
    assert_eq!(
        c.get(s.url("/v1/cache/user/p2"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "[2]"
    );

    // DELETE a key, then the namespace.
    let r: Value = c
        .delete(s.url("/v1/cache/user/p1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["deleted"], true);
    let r: Value = c
        .delete(s.url("/v1/cache/user"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["invalidated"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(
        c.get(s.url("/v1/cache/user/p2"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Stats reflect the traffic.
    let st: Value = get_json(&c, &s.url("/v1/stats")).await;
    let user = &st["namespaces"]["user"];
    assert!(user["l1"]["hits"].as_u64().unwrap() >= 5, "{st}");
    assert!(user["l1"]["misses"].as_u64().unwrap() >= 3, "{st}");
    assert!(user["hit_rate"].as_f64().unwrap() > 0.0);
    assert!(
        user["latency"]["get_l1"]["count"].as_u64().unwrap() >= 3,
        "{st}"
    );
    assert!(user["latency"]["get_l1"]["p99_ms"].as_f64().is_some());
    assert_eq!(st["tiers"]["l2"]["configured"], false);

    // Health and readiness.
    let r: Value = get_json(&c, &s.url("/health")).await;
    assert_eq!(r["status"], "ok");
    let r: Value = get_json(&c, &s.url("/ready")).await;
    assert_eq!(r["status"], "ready");
}

#[tokio::test]
async fn expired_entries_are_gone() {
    let s = Strata::start("");
    let c = client();
    let r = c
        .put(s.url("/v1/cache/t/k?ttl=300ms"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        c.get(s.url("/v1/cache/t/k")).send().await.unwrap().status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        c.get(s.url("/v1/cache/t/k")).send().await.unwrap().status(),
        404
    );
}

/// Every bad input gets its error, and the server keeps serving others.
#[tokio::test]
async fn bad_inputs_get_clear_errors() {
    // A small body limit keeps the oversized upload within socket buffers: the
    // server answers 413 on Content-Length alone, without reading the body.
    let s = Strata::start(
        "[server]\nmax_body = \"64KiB\"\n[namespaces.user]\nttl = \"1h\"\nmax_value_size = \"1KiB\"\n",
    );
    let c = client();
    c.put(s.url("/v1/cache/user/good"))
        .body("ok")
        .send()
        .await
        .unwrap();
    let long_key = "k".repeat(300);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            c.put(s.url(&format!("/v1/cache/user/{long_key}")))
                .body("v"),
            413,
            "key_too_long",
        ),
        (
            c.put(s.url("/v1/cache/user/big")).body(vec![b'x'; 2000]),
            413,
            "value_too_large",
        ),
        (
            c.put(s.url("/v1/cache/user/huge"))
                .body(vec![b'x'; 100_000]),
            413,
            "body_too_large",
        ),
        (
            c.put(s.url("/v1/cache/user/k?ttl=soon")).body("v"),
            400,
            "invalid_ttl",
        ),
        (
            c.put(s.url("/v1/cache/user/k?ttl=0s")).body("v"),
            400,
            "invalid_ttl",
        ),
        (
            c.put(s.url("/v1/cache/user/%FF%FE")).body("v"),
            400,
            "invalid_path",
        ),
        (
            c.put(s.url("/v1/cache/user/a%2F..%2Fb")).body("v"),
            400,
            "invalid_key",
        ),
        (
            c.put(s.url("/v1/cache/user/%01")).body("v"),
            400,
            "invalid_key",
        ),
        (
            c.put(s.url("/v1/cache/bad%20ns/k")).body("v"),
            400,
            "invalid_namespace",
        ),
        (
            c.put(s.url("/v1/cache/user/k"))
                .header("x-cache-tags", ",,")
                .body("v"),
            400,
            "invalid_tags",
        ),
        (
            c.post(s.url("/v1/cache/user/_mget"))
                .body("{\"keys\":[\"a\"]}"),
            415,
            "unsupported_media_type",
        ),
        (
            c.post(s.url("/v1/cache/user/_mget"))
                .header("content-type", "application/json")
                .body("{nope"),
            400,
            "invalid_json",
        ),
        (
            c.post(s.url("/v1/cache/user/_mset"))
                .json(&json!({"entries": [{"key": "a", "value": 1, "value_base64": "AA=="}]})),
            400,
            "invalid_entry",
        ),
        (
            c.post(s.url("/v1/cache/user/_mset"))
                .json(&json!({"entries": [{"key": "a", "value_base64": "!!"}]})),
            400,
            "invalid_entry",
        ),
        (
            c.post(s.url("/v1/invalidate"))
                .json(&json!({"namespace": "user", "keys": ["a"], "prefix": "b"})),
            400,
            "invalid_invalidation",
        ),
        (
            c.post(s.url("/v1/cache/user/_mget"))
                .json(&json!({"keys": vec!["k"; 1001]})),
            413,
            "batch_too_large",
        ),
        (
            c.patch(s.url("/v1/cache/user/k")),
            405,
            "method_not_allowed",
        ),
        (
            c.get(s.url("/v1/cache/user/_mget")),
            405,
            "method_not_allowed",
        ),
        (c.get(s.url("/v2/anything")), 404, "no_route"),
    ];
    for (i, (req, status, code)) in cases.into_iter().enumerate() {
        let r = req.send().await.unwrap();
        assert_eq!(error_code(r).await, (status, code.to_owned()), "case {i}");
        // Still serving.
        let r = c.get(s.url("/v1/cache/user/good")).send().await.unwrap();
        assert_eq!(r.status(), 200, "after case {i}");
    }
    // An _mset with one bad entry wrote nothing.
    let r = c
        .post(s.url("/v1/cache/user/_mset"))
        .json(&json!({"entries": [{"key": "first", "value": 1}, {"key": "", "value": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        c.get(s.url("/v1/cache/user/first"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn garbage_on_the_socket_does_not_hurt_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Strata::start("");
    let c = client();
    for junk in [
        &b"\x00\x01\x02 garbage\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        &[b'A'; 100_000][..],
    ] {
        let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
            .await
            .unwrap();
        let _ = sock.write_all(junk).await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), sock.read_to_end(&mut buf)).await;
        assert_eq!(c.get(s.url("/health")).send().await.unwrap().status(), 200);
    }
    // Too many headers: refused, server fine.
    let mut req = c.get(s.url("/health"));
    for i in 0..100 {
        req = req.header(format!("x-h{i}"), "v");
    }
    assert!(req.send().await.map(|r| r.status().as_u16()).unwrap_or(431) >= 400);
    assert_eq!(c.get(s.url("/health")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Strata::start("[server]\nheader_timeout = \"500ms\"\n");
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    sock.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Never finishes its headers: the server closes the connection.
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "connection still open after the header timeout");
    // An idle keep-alive connection does not hold its slot forever either.
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    sock.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 64];
    let n = sock.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "idle keep-alive connection never closed");
}

#[tokio::test]
async fn strict_mode_refuses_undeclared_namespaces() {
    let s = Strata::start("[cache]\nstrict = true\n[namespaces.user]\nttl = \"1h\"\n");
    let c = client();
    let r = c
        .put(s.url("/v1/cache/other/k"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (404, "unknown_namespace".into()));
    let r = c
        .put(s.url("/v1/cache/user/k"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn metrics_are_valid_and_named_as_documented() {
    let s = Strata::start("");
    let c = client();
    c.put(s.url("/v1/cache/user/1"))
        .body("v")
        .send()
        .await
        .unwrap();
    c.get(s.url("/v1/cache/user/1")).send().await.unwrap();
    c.get(s.url("/v1/cache/user/2")).send().await.unwrap();
    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "strata_cache_hits_total{namespace=\"user\",tier=\"l1\"} 1",
        "strata_cache_misses_total{namespace=\"user\",tier=\"l1\"} 1",
        "strata_cache_size_bytes",
        "strata_cache_entries",
        "strata_cache_evictions_total",
        "strata_cache_invalidations_total",
        "strata_api_requests_total{route=\"/v1/cache/{ns}/{*key}\",method=\"GET\",status=\"200\"} 1",
        "strata_api_request_duration_seconds_bucket",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    // OpenMetrics for scrapers that ask for it.
    let r = c
        .get(s.url("/metrics"))
        .header("accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().ends_with("# EOF\n"));
    common::promtool_check_metrics(&text);
}

/// A PUT body is a slice of the connection's read buffer; stored as is, each small
/// value kept a whole buffer alive outside `max_bytes` (16x and more). Filling the
/// memory tier over must grow the server by about its budget.
#[tokio::test]
async fn put_values_stay_within_max_bytes() {
    const BUDGET: u64 = 6 << 20;
    let s = Strata::start(&format!("[memory]\nmax_bytes = {BUDGET}\n"));
    let c = client();
    let put = |i: usize| {
        c.put(s.url(&format!("/v1/cache/m/user:{i}")))
            .body(vec![b'x'; 100])
            .send()
    };
    // Warm up connections, buffers and per-namespace state before the baseline.
    for i in 0..200 {
        assert_eq!(put(i).await.unwrap().status(), 204);
    }
    let base = strata_testkit::resident_bytes(s.pid());
    let puts = futures::stream::iter(0..40_000).map(|i| async move {
        assert_eq!(put(i).await.unwrap().status(), 204);
    });
    puts.buffer_unordered(8).collect::<Vec<()>>().await;
    let stats = get_json(&c, &s.url("/v1/stats")).await;
    assert!(
        stats["namespaces"]["m"]["l1"]["evictions"]
            .as_u64()
            .unwrap()
            > 0,
        "the memory tier filled: {stats}"
    );
    let growth = strata_testkit::resident_bytes(s.pid()).saturating_sub(base);
    assert!(
        growth <= 2 * BUDGET,
        "server grew {growth} bytes for max_bytes {BUDGET}"
    );
}
