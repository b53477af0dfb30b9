//! Batches: `_mget`, `_mset`, `_preload`, and `POST /v1/invalidate`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use strata_cache::{Format, Invalidation, RawNamespace, SetOptions};

use super::cache_api::{check_key_segments, check_tags, parse_ttl};
use super::error::{ApiError, ApiResult};
use super::latency::ApiOp;
use super::stored;
use super::AppState;
use crate::config::Right;

/// Most keys or entries in one batch.
pub const MAX_BATCH: usize = 1000;

/// Maps a JSON body failure: wrong Content-Type is 415, too large 413, else 400.
pub fn json_error(e: JsonRejection) -> ApiError {
    match &e {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(_) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body exceeds server.max_body",
            )
        }
        _ => ApiError::bad_request("invalid_json", e.body_text()),
    }
}

fn ns_from(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    path.map(|Path(ns)| ns)
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MgetRequest {
    keys: Vec<String>,
}

/// `POST /v1/cache/{ns}/_mget` with `{"keys":[…]}`. Answers one item per key, in
/// order: `{"key","found","tier","content_type","value"}` where `value` is the JSON
/// itself for JSON entries and `value_base64` carries anything else.
pub async fn mget(
    State(st): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Json<MgetRequest>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let ns = ns_from(path)?;
    let Json(req) = body.map_err(json_error)?;
    let raw = st.namespace(&headers, &ns, Right::Read)?;
    if req.keys.len() > MAX_BATCH {
        return Err(too_many());
    }
    for k in &req.keys {
        check_key_segments(k)?;
    }
    let started = Instant::now();
    let hits = raw.mget(&req.keys).await?;
    st.latency.record(&ns, ApiOp::Mget, started.elapsed());
    let items: Vec<Value> = req
        .keys
        .iter()
        .zip(hits)
        .map(|(key, hit)| match hit {
            None => json!({"key": key, "found": false}),
            Some(h) => {
                let tier = h.tier.as_str();
                let (ct, body) = stored::unpack(h.value, h.codec);
                let json_value = (h.codec == Format::Json.id())
                    .then(|| serde_json::from_slice::<Box<RawValue>>(&body).ok())
                    .flatten();
                match json_value {
                    Some(v) => json!({"key": key, "found": true, "tier": tier,
                                      "content_type": ct, "value": v}),
                    None => json!({"key": key, "found": true, "tier": tier, "content_type": ct,
                                   "value_base64": base64::engine::general_purpose::STANDARD.encode(&body)}),
                }
            }
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

fn too_many() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "batch_too_large",
        format!("at most {MAX_BATCH} keys or entries per request"),
    )
}

/// One entry of `_mset` or `_preload`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryIn {
    key: String,
    /// Any JSON; stored as JSON (`application/json`).
    value: Option<Box<RawValue>>,
    /// Bytes, base64 (standard alphabet, padded).
    value_base64: Option<String>,
    /// Content-Type of `value_base64` (default `application/octet-stream`).
    content_type: Option<String>,
    ttl: Option<String>,
    tags: Option<Vec<String>>,
}

/// An entry checked and ready to write.
#[derive(Clone)]
struct Ready {
    key: String,
    payload: Bytes,
    codec: u8,
    ttl: Option<Duration>,
    tags: Vec<String>,
}

fn prepare(e: EntryIn, ttl: Option<Duration>, tags: &[String]) -> ApiResult<Ready> {
    check_key_segments(&e.key)?;
    let (payload, codec) = match (e.value, e.value_base64) {
        (Some(v), None) => {
            if e.content_type.is_some() {
                return Err(ApiError::bad_request(
                    "invalid_entry",
                    "`content_type` goes with `value_base64`; `value` is always JSON",
                ));
            }
            stored::pack(Some("application/json"), Bytes::from(v.get().to_owned()))
        }
        (None, Some(b64)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| {
                    ApiError::bad_request("invalid_entry", format!("value_base64: {e}"))
                })?;
            if e.content_type.as_ref().is_some_and(|c| {
                c.len() > stored::MAX_CONTENT_TYPE
                    || !c.is_ascii()
                    || c.chars().any(char::is_control)
            }) {
                return Err(ApiError::bad_request(
                    "invalid_content_type",
                    "content_type must be ASCII and at most 255 bytes",
                ));
            }
            stored::pack(e.content_type.as_deref(), Bytes::from(bytes))
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_entry",
                format!(
                    "entry `{}`: give exactly one of `value` and `value_base64`",
                    e.key
                ),
            ))
        }
    };
    Ok(Ready {
        key: e.key,
        payload,
        codec,
        ttl: e.ttl.as_deref().map(parse_ttl).transpose()?.or(ttl),
        tags: match e.tags {
            Some(t) => check_tags(t.iter().map(String::as_str))?,
            None => tags.to_vec(),
        },
    })
}

/// Writes entries, one engine call per distinct (ttl, tags).
async fn write(raw: &RawNamespace, entries: Vec<Ready>) -> strata_cache::Result<()> {
    // (ttl, tags) → entries written with them.
    type Groups<'a> = BTreeMap<(Option<Duration>, Vec<String>), Vec<(&'a str, Bytes, u8)>>;
    let mut groups = Groups::new();
    for e in &entries {
        groups.entry((e.ttl, e.tags.clone())).or_default().push((
            e.key.as_str(),
            e.payload.clone(),
            e.codec,
        ));
    }
    for ((ttl, tags), batch) in groups {
        let opts = SetOptions {
            ttl,
            tags,
            version: None,
        };
        raw.set_encoded(&batch, &opts).await?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsetRequest {
    entries: Vec<EntryIn>,
    ttl: Option<String>,
    tags: Option<Vec<String>>,
}

/// `POST /v1/cache/{ns}/_mset` with `{"entries":[…], "ttl"?, "tags"?}`: all or
/// nothing: one bad entry rejects the request before anything is written.
pub async fn mset(
    State(st): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Json<MsetRequest>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let ns = ns_from(path)?;
    let Json(req) = body.map_err(json_error)?;
    let raw = st.namespace(&headers, &ns, Right::Write)?;
    if req.entries.len() > MAX_BATCH {
        return Err(too_many());
    }
    let ttl = req.ttl.as_deref().map(parse_ttl).transpose()?;
    let tags = match &req.tags {
        Some(t) => check_tags(t.iter().map(String::as_str))?,
        None => Vec::new(),
    };
    let n = req.entries.len();
    let ready = req
        .entries
        .into_iter()
        .map(|e| prepare(e, ttl, &tags))
        .collect::<ApiResult<Vec<_>>>()?;
    let started = Instant::now();
    write(&raw, ready).await?;
    st.latency.record(&ns, ApiOp::Mset, started.elapsed());
    Ok(Json(json!({ "written": n })))
}

/// `_preload` accepts a bare list or `{"entries": […]}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PreloadRequest {
    /// `[{…}, …]`
    List(Vec<Value>),
    /// `{"entries": […], "ttl"?, "tags"?}`
    Wrapped {
        /// Entries.
        entries: Vec<Value>,
        /// TTL of entries without their own.
        ttl: Option<String>,
        /// Tags of entries without their own.
        tags: Option<Vec<String>>,
    },
}

/// `POST /v1/cache/{ns}/_preload`: warms a namespace from a list of entries. Unlike
/// `_mset` it is best effort: good entries are written, bad ones are reported with
/// their index, as a warm-up from a dump should not fail on one bad line.
pub async fn preload(
    State(st): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Json<PreloadRequest>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let ns = ns_from(path)?;
    let Json(req) = body.map_err(json_error)?;
    let raw = st.namespace(&headers, &ns, Right::Write)?;
    let (entries, ttl, tags) = match req {
        PreloadRequest::List(e) => (e, None, None),
        PreloadRequest::Wrapped { entries, ttl, tags } => (entries, ttl, tags),
    };
    if entries.len() > 100 * MAX_BATCH {
        return Err(too_many());
    }
    let ttl = ttl.as_deref().map(parse_ttl).transpose()?;
    let tags = match &tags {
        Some(t) => check_tags(t.iter().map(String::as_str))?,
        None => Vec::new(),
    };
    let mut failed = Vec::new();
    let mut loaded = 0usize;
    let mut ready = Vec::new();
    for (i, v) in entries.into_iter().enumerate() {
        let parsed = serde_json::from_value::<EntryIn>(v)
            .map_err(|e| ApiError::bad_request("invalid_entry", e.to_string()))
            .and_then(|e| prepare(e, ttl, &tags));
        match parsed {
            Ok(r) => ready.push((i, r)),
            Err(e) => failed.push(json!({"index": i, "code": e.code, "message": e.message})),
        }
    }
    let started = Instant::now();
    let mut it = ready.into_iter().peekable();
    while it.peek().is_some() {
        let chunk: Vec<(usize, Ready)> = it.by_ref().take(MAX_BATCH).collect();
        let (idx, batch): (Vec<usize>, Vec<Ready>) = chunk.into_iter().unzip();
        let n = batch.len();
        if write(&raw, batch.clone()).await.is_ok() {
            loaded += n;
            continue;
        }
        // Something in the chunk was refused (size, key); find which, one by one.
        for (i, r) in idx.into_iter().zip(batch) {
            match write(&raw, vec![r]).await {
                Ok(()) => loaded += 1,
                Err(e) => {
                    let e = ApiError::from(e);
                    failed.push(json!({"index": i, "code": e.code, "message": e.message}));
                }
            }
        }
    }
    st.latency.record(&ns, ApiOp::Mset, started.elapsed());
    Ok(Json(json!({ "loaded": loaded, "failed": failed })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidateRequest {
    namespace: String,
    keys: Option<Vec<String>>,
    prefix: Option<String>,
    pattern: Option<String>,
    tags: Option<Vec<String>>,
}

/// `POST /v1/invalidate` with `{namespace, keys|prefix|pattern|tags}`: drops the
/// matching entries in both tiers and on every instance.
pub async fn invalidate(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<InvalidateRequest>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(req) = body.map_err(json_error)?;
    let raw = st.namespace(&headers, &req.namespace, Right::Write)?;
    let ns = raw.name();
    let given = [
        req.keys.is_some(),
        req.prefix.is_some(),
        req.pattern.is_some(),
        req.tags.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ApiError::bad_request(
            "invalid_invalidation",
            "give exactly one of keys, prefix, pattern, tags",
        ));
    }
    let invs: Vec<Invalidation> = if let Some(keys) = req.keys {
        if keys.len() > MAX_BATCH {
            return Err(too_many());
        }
        vec![Invalidation::keys(ns, keys)]
    } else if let Some(p) = req.prefix {
        vec![Invalidation::prefix(ns, p)]
    } else if let Some(p) = req.pattern {
        vec![Invalidation::pattern(ns, p)]
    } else {
        let tags = check_tags(req.tags.iter().flatten().map(String::as_str))?;
        tags.into_iter().map(|t| Invalidation::tag(ns, t)).collect()
    };
    let mut n = 0;
    for inv in invs {
        n += st.cache.invalidate(inv).await?;
    }
    Ok(Json(json!({ "invalidated": n })))
}
