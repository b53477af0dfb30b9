//! `/v1/db/*`: what the PostgreSQL proxy learned. Query shapes and table names are
//! operator information, so every endpoint needs the `admin` right on the
//! pseudo-namespace `postgres` (a token with `namespaces = ["*"]` has it).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::config::Right;

/// The namespace name tokens are checked against for `/v1/db/*`.
pub const DB_NAMESPACE: &str = "postgres";
const MAX_LIMIT: usize = 5000;

fn proxy<'a>(st: &'a AppState, headers: &HeaderMap) -> ApiResult<&'a strata_pg::PgProxy> {
    let Some(pg) = &st.pg else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_postgres_proxy",
            "this server has no [postgres] proxy configured",
        ));
    };
    st.auth
        .caller(headers)?
        .require(DB_NAMESPACE, Right::Admin)?;
    Ok(pg)
}

/// Query string of `/v1/db/queries`.
#[derive(Debug, Deserialize)]
pub struct QueriesParams {
    /// `total_time` (default), `mean`, `calls` or `p99`.
    sort: Option<String>,
    /// At most this many rows (default 100, at most 5000).
    limit: Option<usize>,
}

/// `GET /v1/db/queries?sort=total_time|mean|calls|p99&limit=N`: per-fingerprint
/// statistics, with the change since `POST /v1/db/baseline` when one was taken.
pub async fn queries(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<QueriesParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let pg = proxy(&st, &headers)?;
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let sort: strata_pg::SortBy = p
        .sort
        .as_deref()
        .unwrap_or("total_time")
        .parse()
        .map_err(|e: String| ApiError::bad_request("invalid_sort", e))?;
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be 1..={MAX_LIMIT}"),
        ));
    }
    Ok(Json(
        json!({ "queries": pg.insight().queries(sort, limit) }),
    ))
}

/// `GET /v1/db/slow`: the slow-query log, newest first.
pub async fn slow(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let pg = proxy(&st, &headers)?;
    Ok(Json(json!({
        "threshold_ms": pg.config().insight.slow_threshold.as_secs_f64() * 1e3,
        "queries": pg.insight().slow(),
    })))
}

/// `GET /v1/db/n-plus-one`: N+1 findings, most repeated first.
pub async fn n_plus_one(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let pg = proxy(&st, &headers)?;
    Ok(Json(json!({ "findings": pg.insight().n_plus_one() })))
}

/// `GET /v1/db/tables`: statements that read and wrote each table.
pub async fn tables(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let pg = proxy(&st, &headers)?;
    let tables: Vec<Value> = pg
        .insight()
        .tables()
        .into_iter()
        .map(|(name, t)| json!({"table": name, "reads": t.reads, "writes": t.writes}))
        .collect();
    Ok(Json(json!({ "tables": tables })))
}

/// `POST /v1/db/baseline`: snapshots the statistics; `/v1/db/queries` then reports
/// each fingerprint's change since.
pub async fn baseline(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let pg = proxy(&st, &headers)?;
    pg.insight().flushed().await;
    let n = pg.insight().take_baseline();
    Ok(Json(json!({ "fingerprints": n })))
}
