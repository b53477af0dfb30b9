//! `GET|PUT|DELETE /v1/cache/{ns}/{key}` and `DELETE /v1/cache/{ns}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use strata_cache::{Invalidation, RawNamespace, SetOptions, Tier};

use super::error::{ApiError, ApiResult};
use super::latency::ApiOp;
use super::stored;
use super::AppState;
use crate::config::Right;

/// `?ttl=30s`.
#[derive(Debug, Deserialize)]
pub struct TtlQuery {
    ttl: Option<String>,
}

/// Parses a TTL given by a client: a human duration, longer than zero.
pub fn parse_ttl(raw: &str) -> ApiResult<Duration> {
    let d = humantime::parse_duration(raw.trim()).map_err(|e| {
        ApiError::bad_request(
            "invalid_ttl",
            format!("ttl `{raw}`: {e}; write e.g. 500ms, 30s, 5m, 1h"),
        )
    })?;
    if d.is_zero() {
        return Err(ApiError::bad_request(
            "invalid_ttl",
            "ttl must be longer than 0",
        ));
    }
    if d > Duration::from_secs(10 * 365 * 86_400) {
        return Err(ApiError::bad_request(
            "invalid_ttl",
            "ttl must be at most 10 years",
        ));
    }
    Ok(d)
}

/// Checks a tag list from a header or a body.
pub fn check_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> ApiResult<Vec<String>> {
    let mut out = Vec::new();
    for t in tags {
        let t = t.trim();
        if t.is_empty() || t.len() > 250 || t.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "invalid_tags",
                "tags are 1-250 characters without control characters",
            ));
        }
        out.push(t.to_owned());
    }
    if out.len() > 64 {
        return Err(ApiError::bad_request(
            "invalid_tags",
            "at most 64 tags per entry",
        ));
    }
    Ok(out)
}

/// Rejects keys a URL cannot carry faithfully: `.` and `..` segments are rewritten
/// by clients and proxies, so the key read would not be the key written.
pub fn check_key_segments(key: &str) -> ApiResult<()> {
    if key.split('/').any(|s| s == "." || s == "..") {
        return Err(ApiError::bad_request(
            "invalid_key",
            "keys may not contain `.` or `..` path segments",
        ));
    }
    Ok(())
}

impl AppState {
    /// The namespace handle, after the strict-mode and permission checks.
    pub fn namespace(
        &self,
        headers: &HeaderMap,
        ns: &str,
        right: Right,
    ) -> ApiResult<RawNamespace> {
        self.auth.caller(headers)?.require(ns, right)?;
        self.open_namespace(ns)
    }

    /// The namespace handle, refusing undeclared ones in strict mode.
    pub fn open_namespace(&self, ns: &str) -> ApiResult<RawNamespace> {
        if self.config.cache.strict && !self.config.namespaces.contains_key(ns) {
            strata_cache::key::validate_namespace(ns)?;
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_namespace",
                format!("namespace `{ns}` is not declared and the server is strict"),
            ));
        }
        Ok(self.cache.raw(ns)?)
    }
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad_request("invalid_path", e.body_text())
}

/// `GET /v1/cache/{ns}/{*key}` (HEAD too).
pub async fn get_key(
    State(st): State<Arc<AppState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Path((ns, key)) = path.map_err(path_error)?;
    check_key_segments(&key)?;
    let raw = st.namespace(&headers, &ns, Right::Read)?;
    let started = Instant::now();
    let hit = raw.get(&key).await?;
    let op = match &hit {
        Some(h) if h.tier == Tier::L1 => ApiOp::GetL1,
        Some(_) => ApiOp::GetL2,
        None => ApiOp::GetMiss,
    };
    st.latency.record(&ns, op, started.elapsed());
    let Some(hit) = hit else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no key `{key}` in namespace `{ns}`"),
        ));
    };
    let (content_type, body) = stored::unpack(hit.value, hit.codec);
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert("x-cache-tier", HeaderValue::from_static(hit.tier.as_str()));
    Ok(res)
}

/// `PUT /v1/cache/{ns}/{*key}`: the body is the value.
pub async fn put_key(
    State(st): State<Arc<AppState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<TtlQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    let Path((ns, key)) = path.map_err(path_error)?;
    check_key_segments(&key)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let raw = st.namespace(&headers, &ns, Right::Write)?;
    let body = body.map_err(body_error)?;
    let mut opts = SetOptions::default();
    if let Some(t) = &q.ttl {
        opts.ttl = Some(parse_ttl(t)?);
    }
    if let Some(v) = headers.get("x-cache-tags") {
        let v = v
            .to_str()
            .map_err(|_| ApiError::bad_request("invalid_tags", "X-Cache-Tags must be ASCII"))?;
        opts.tags = check_tags(v.split(','))?;
    }
    let content_type = match headers.get(header::CONTENT_TYPE) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|s| s.len() <= stored::MAX_CONTENT_TYPE)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_content_type",
                        "Content-Type must be ASCII and at most 255 bytes",
                    )
                })?,
        ),
    };
    let (payload, codec) = stored::pack(content_type, body);
    let started = Instant::now();
    raw.set_encoded(&[(key.as_str(), payload, codec)], &opts)
        .await?;
    st.latency.record(&ns, ApiOp::Set, started.elapsed());
    Ok(StatusCode::NO_CONTENT)
}

/// Maps a body read failure: too large is 413, anything else 400.
pub fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body exceeds server.max_body",
        )
    } else {
        ApiError::bad_request("invalid_body", e.body_text())
    }
}

/// `DELETE /v1/cache/{ns}/{*key}`.
pub async fn delete_key(
    State(st): State<Arc<AppState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let Path((ns, key)) = path.map_err(path_error)?;
    check_key_segments(&key)?;
    let raw = st.namespace(&headers, &ns, Right::Write)?;
    let started = Instant::now();
    let deleted = raw.delete(&key).await?;
    st.latency.record(&ns, ApiOp::Delete, started.elapsed());
    Ok(Json(serde_json::json!({ "deleted": deleted })))
}

/// `DELETE /v1/cache/{ns}`: drops the whole namespace on every instance.
pub async fn clear_namespace(
    State(st): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let Path(ns) = path.map_err(path_error)?;
    let raw = st.namespace(&headers, &ns, Right::Admin)?;
    let n = st
        .cache
        .invalidate(Invalidation::namespace(raw.name()))
        .await?;
    tracing::info!(namespace = %ns, entries = n, "namespace cleared");
    Ok(Json(serde_json::json!({ "invalidated": n })))
}
