//! `/v1/stats`, `/health`, `/ready`, `/metrics`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use strata_cache::TierStats;

use axum::extract::rejection::JsonRejection;

use super::error::{ApiError, ApiResult};
use super::metrics::to_prometheus_text;
use super::AppState;
use crate::config::Right;

fn tier_json(t: &TierStats) -> Value {
    json!({
        "hit_rate": t.hit_ratio(),
        "hits": t.hits,
        "misses": t.misses,
        "sets": t.sets,
        "deletes": t.deletes,
        "expirations": t.expirations,
        "evictions": t.evictions,
        "invalidations": t.invalidations,
        "errors": t.errors,
        "corrupt": t.corrupt,
    })
}

/// `GET /v1/stats`: per namespace (those the caller has admin on) and tier.
pub async fn stats(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let caller = st.auth.caller(&headers)?;
    let s = st.cache.stats();
    let mut namespaces = Map::new();
    for ns in &s.namespaces {
        if !caller.allows(&ns.namespace, Right::Admin) {
            continue;
        }
        // A read hits when either tier answers. L1 misses go on to L2, so the reads
        // are L1's lookups, or L2's in a namespace that skips L1.
        let lookups = (ns.l1.hits + ns.l1.misses).max(ns.l2.hits + ns.l2.misses);
        let hits = ns.l1.hits + ns.l2.hits;
        let mut l1 = tier_json(&ns.l1);
        l1["entries"] = json!(ns.l1_entries);
        l1["bytes"] = json!(ns.l1_bytes);
        namespaces.insert(
            ns.namespace.clone(),
            json!({
                "hit_rate": if lookups == 0 { 0.0 } else { hits as f64 / lookups as f64 },
                "l1": l1,
                "l2": tier_json(&ns.l2),
                "loads": ns.loads,
                "load_errors": ns.load_errors,
                "coalesced": ns.coalesced,
                "latency": st.latency.snapshot(&ns.namespace),
            }),
        );
    }
    Ok(Json(json!({
        "uptime_seconds": st.started.elapsed().as_secs_f64(),
        "tiers": {
            "l1": {"up": true, "bytes": s.l1_bytes, "capacity_bytes": s.l1_capacity_bytes},
            "l2": match s.l2_up {
                None => json!({"configured": false}),
                Some(up) => json!({"configured": true, "up": up}),
            },
        },
        "invalidation_messages": {
            "received": s.invalidation_messages_received,
            "published": s.invalidation_messages_published,
        },
        "namespaces": namespaces,
    })))
}

/// `GET /health`: the process is alive and serving HTTP.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`: 200 while the cache can serve (Redis down is `degraded`, still
/// ready: memory serves), 503 while shutting down.
pub async fn ready(State(st): State<Arc<AppState>>) -> Response {
    if !st.ready.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    let l2 = st.cache.l2_up();
    let status = if l2 == Some(false) {
        "degraded"
    } else {
        "ready"
    };
    Json(json!({
        "status": status,
        "tiers": {
            "l1": "up",
            "l2": match l2 { None => "absent", Some(true) => "up", Some(false) => "down" },
        }
    }))
    .into_response()
}

/// `GET /metrics`: OpenMetrics when the scraper asks for it (Prometheus does),
/// else Prometheus text format 0.0.4.
pub async fn metrics(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    exposition(&st.registry, &headers)
}

/// A registry's metrics in the format the scraper's `Accept` asks for (also what
/// `strata load-test --metrics-listen` serves).
pub(crate) fn exposition(
    registry: &prometheus_client::registry::Registry,
    headers: &HeaderMap,
) -> Response {
    let mut out = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %e, "metrics encoding failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    if wants_openmetrics {
        let ct = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        ([(header::CONTENT_TYPE, ct)], out).into_response()
    } else {
        let ct = "text/plain; version=0.0.4; charset=utf-8";
        ([(header::CONTENT_TYPE, ct)], to_prometheus_text(&out)).into_response()
    }
}

/// `POST /v1/http/purge` with `{"urls":[…],"prefixes":[…],"tags":[…]}`: drops stored
/// proxy responses. Needs the `write` right on the proxy's namespace.
pub async fn http_purge(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<strata_http::Purge>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Some(http) = &st.http else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_http_proxy",
            "this server has no [http] proxy configured",
        ));
    };
    st.auth
        .caller(&headers)?
        .require(http.config().namespace(), Right::Write)?;
    let Json(req) = body.map_err(super::batch_api::json_error)?;
    let items = req.urls.len() + req.prefixes.len() + req.tags.len();
    if items == 0 {
        return Err(ApiError::bad_request(
            "invalid_purge",
            "give at least one of urls, prefixes, tags",
        ));
    }
    if items > super::batch_api::MAX_BATCH {
        return Err(ApiError::bad_request(
            "too_many",
            format!("at most {} items per purge", super::batch_api::MAX_BATCH),
        ));
    }
    let n = http.purge(&req).await?;
    Ok(Json(json!({ "purged": n })))
}
