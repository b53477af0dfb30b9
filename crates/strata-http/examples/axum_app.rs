//! An axum service with strata's HTTP caching as a tower layer: per-route TTLs,
//! tags filled from the path, and invalidation when the data changes.
//!
//! ```text
//! cargo run -p strata-http --example axum_app
//! curl -i localhost:3000/risks/7      # X-Cache: MISS, then HIT
//! curl -X PUT localhost:3000/risks/7  # invalidates risk:7 and the list
//! ```
//!
//! With `REDIS_URL` set, every replica shares one Redis and invalidations reach
//! all of them.

use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use strata_cache::Cache;
use strata_http::{HttpCacheLayer, HttpConfig};

async fn list() -> Json<Value> {
    // Stands in for a slow query.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Json(json!({ "risks": [{ "id": 7, "severity": "high" }] }))
}

async fn detail(Path(id): Path<u64>) -> Json<Value> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    Json(json!({ "id": id, "severity": "high" }))
}

async fn update(Path(id): Path<u64>) -> Json<Value> {
    Json(json!({ "id": id, "updated": true }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = Cache::builder();
    if let Ok(url) = std::env::var("REDIS_URL") {
        builder = builder.redis_url(&url)?;
    }
    let cache = builder.build().await?;
    let cfg: HttpConfig = toml::from_str(
        r#"
        [[routes]]
        match = "/risks"
        ttl = "5m"
        key = { query = ["page", "severity"] }
        tags = ["risk:list"]

        [[routes]]
        match = "/risks/{id}"
        ttl = "5m"
        tags = ["risk:{id}"]

        [[invalidate]]
        on = "PUT /risks/{id}"
        tags = ["risk:{id}", "risk:list"]
        "#,
    )?;
    let app = Router::new()
        .route("/risks", get(list))
        .route("/risks/{id}", get(detail).put(update))
        .layer(HttpCacheLayer::new(cfg, &cache)?);
    let addr = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
