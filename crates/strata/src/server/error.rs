//! API errors: `{"error":{"code":"…","message":"…"}}` with the right status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use strata_cache::CacheError;

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (`invalid_ttl`, `key_too_long`, …).
    pub code: &'static str,
    /// For humans.
    pub message: String,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut res = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"strata\""),
            );
        }
        res
    }
}

impl From<CacheError> for ApiError {
    fn from(e: CacheError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            CacheError::KeyTooLong { .. } => (S::PAYLOAD_TOO_LARGE, "key_too_long"),
            CacheError::ValueTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "value_too_large"),
            CacheError::InvalidKey(_) => (S::BAD_REQUEST, "invalid_key"),
            CacheError::InvalidNamespace(_) => (S::BAD_REQUEST, "invalid_namespace"),
            CacheError::Codec(_) => (S::BAD_REQUEST, "invalid_value"),
            // Namespace limit and similar: the request asked for something impossible.
            CacheError::Config(_) => (S::BAD_REQUEST, "rejected"),
            CacheError::TierDown | CacheError::Timeout(_) | CacheError::Redis(_) => {
                (S::SERVICE_UNAVAILABLE, "tier_unavailable")
            }
            _ => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::warn!(error = %e, "cache operation failed");
        }
        ApiError::new(status, code, e.to_string())
    }
}

/// Result of an API handler.
pub type ApiResult<T> = Result<T, ApiError>;
