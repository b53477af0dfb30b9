//! The tower layer around a real axum app, over real sockets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use strata_http::{HttpCacheLayer, HttpConfig, Purge};

async fn serve(app: Router) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn an_axum_app_gets_caching_invalidation_and_compression() {
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let cache = strata_cache::Cache::builder().build().await.unwrap();
    let cfg: HttpConfig = toml::from_str(
        r#"
        [[routes]]
        match = "/prices/{symbol}"
        ttl = "1h"
        tags = ["price:{symbol}"]
        [[invalidate]]
        on = "POST /prices/{symbol}"
        tags = ["price:{symbol}"]
        "#,
    )
    .unwrap();
    let layer = HttpCacheLayer::new(cfg, &cache).unwrap();
    let app = Router::new()
        .route(
            "/prices/{symbol}",
            get(move || {
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    (
                        [("content-type", "application/json")],
                        format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(2000)),
                    )
                }
            })
            // Tags for a cache, which the client must not see.
            .post(|| async { ([("cache-tag", "price:BTC")], "updated") }),
        )
        .layer(layer.clone());
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    let get = |p: &'static str| {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://{addr}{p}"))
                .header("accept-encoding", "gzip")
                .send()
                .await
                .unwrap();
            let x = r.headers()["x-cache"].to_str().unwrap().to_owned();
            let ce = r
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_owned());
            (x, ce)
        }
    };
    assert_eq!(get("/prices/BTC").await.0, "MISS");
    assert_eq!(
        get("/prices/BTC").await,
        ("HIT".into(), Some("gzip".into()))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let r = client
        .post(format!("http://{addr}/prices/BTC"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-cache"], "BYPASS");
    assert!(r.headers().get("cache-tag").is_none());
    assert_eq!(get("/prices/BTC").await.0, "MISS");
    assert_eq!(get("/prices/ETH").await.0, "MISS");
    assert_eq!(get("/prices/ETH").await.0, "HIT");
    let n = layer
        .purge(&Purge {
            tags: vec!["price:ETH".into()],
            ..Purge::default()
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(get("/prices/ETH").await.0, "MISS");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}
