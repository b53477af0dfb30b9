//! Bearer tokens with per-namespace rights.
//!
//! Tokens are compared in constant time against every configured token (no early
//! exit), so timing tells nothing about which token or which prefix matched.

use axum::http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::{Config, Right};

/// Who made a request.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// Authentication is off (development default on loopback).
    Anyone,
    /// A token holder.
    Token(&'a TokenView),
}

/// What a matched token may do (no secret inside).
#[derive(Debug)]
pub struct TokenView {
    /// Label for logs.
    pub name: String,
    namespaces: Vec<String>,
    rights: Vec<Right>,
}

/// The token table.
pub struct Auth {
    required: bool,
    /// (secret, what it may do).
    tokens: Vec<(Vec<u8>, TokenView)>,
}

impl Auth {
    /// Builds the table; token values come from the file or the environment.
    pub fn from_config(cfg: &Config) -> Self {
        let tokens = cfg
            .auth
            .tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let secret = match (&t.token, &t.token_env) {
                    (Some(s), _) => s.clone(),
                    (None, Some(var)) => std::env::var(var).ok()?,
                    (None, None) => return None,
                };
                let view = TokenView {
                    name: t.name.clone().unwrap_or_else(|| format!("token{i}")),
                    namespaces: t.namespaces.clone(),
                    rights: t.rights.clone(),
                };
                Some((secret.into_bytes(), view))
            })
            .collect();
        Auth {
            required: cfg.auth_required(),
            tokens,
        }
    }

    /// Identifies the caller: 401 without a valid token when tokens are required.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller<'_>, ApiError> {
        if !self.required {
            return Ok(Caller::Anyone);
        }
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this server requires `Authorization: Bearer <token>`",
                )
            })?;
        let mut found = None;
        for (secret, view) in &self.tokens {
            // Every token is compared, match or not.
            if bool::from(secret.ct_eq(presented.as_bytes())) && found.is_none() {
                found = Some(view);
            }
        }
        match found {
            Some(v) => {
                tracing::Span::current().record("token", v.name.as_str());
                Ok(Caller::Token(v))
            }
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown token",
            )),
        }
    }

    /// Names of configured tokens (for the startup log line).
    pub fn token_names(&self) -> Vec<&str> {
        self.tokens.iter().map(|(_, v)| v.name.as_str()).collect()
    }
}

impl Caller<'_> {
    /// 403 unless the caller has `right` on `namespace`.
    pub fn require(&self, namespace: &str, right: Right) -> Result<(), ApiError> {
        match self {
            Caller::Anyone => Ok(()),
            Caller::Token(t) => {
                if !t.rights.contains(&right) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        format!("token `{}` lacks the `{}` right", t.name, right.as_str()),
                    ));
                }
                if !t.covers(namespace) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        format!("token `{}` may not use namespace `{namespace}`", t.name),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Whether the caller may see `namespace` with `right` (filters listings).
    pub fn allows(&self, namespace: &str, right: Right) -> bool {
        self.require(namespace, right).is_ok()
    }
}

impl TokenView {
    fn covers(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => namespace.starts_with(prefix),
            None => p == namespace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(toml: &str) -> Auth {
        Auth::from_config(&Config::from_toml_str(toml).unwrap())
    }

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    #[test]
    fn open_without_tokens_on_loopback() {
        let a = auth("");
        assert!(matches!(a.caller(&HeaderMap::new()), Ok(Caller::Anyone)));
    }

    #[test]
    fn rights_and_namespaces_are_enforced() {
        let a = auth(
            r#"
            [[auth.tokens]]
            token = "reader-0123456789"
            namespaces = ["user", "price*"]
            rights = ["read"]
            "#,
        );
        assert_eq!(a.caller(&HeaderMap::new()).unwrap_err().status, 401);
        assert_eq!(
            a.caller(&headers("nope-0123456789")).unwrap_err().status,
            401
        );
        let c = a.caller(&headers("reader-0123456789")).unwrap();
        assert!(c.require("user", Right::Read).is_ok());
        assert!(c.require("prices_eu", Right::Read).is_ok());
        assert_eq!(c.require("session", Right::Read).unwrap_err().status, 403);
        assert_eq!(c.require("user", Right::Write).unwrap_err().status, 403);
    }
}
