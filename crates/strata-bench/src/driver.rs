//! Targets: what an operation is sent to.
//!
//! - `engine`: an in-process strata-cache namespace;
//! - `redis://…`: raw Redis, the baseline to compare strata against;
//! - `http://host:port` with a namespace: strata's cache API;
//! - an HTTP URL template (`http://127.0.0.1:8000/items/{key}?page={n}`): any API.
//!
//! Each worker opens a [`Session`] (its own HTTP connection, as wrk does; see [`crate::h1`]); engine and
//! Redis sessions share the engine or the multiplexed Redis connection.

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use strata_cache::{RawNamespace, SetOptions};

use crate::h1;
use crate::recorder::Outcome;
use crate::workload::OpKind;

/// One operation to perform.
#[derive(Debug, Clone)]
pub struct Op {
    /// What to do.
    pub kind: OpKind,
    /// Key names (one, or a batch for `mget`).
    pub keys: Vec<String>,
    /// Key index of the first key (for `{n}` in templates).
    pub index: u64,
    /// Value for `set`.
    pub value: Bytes,
}

/// An HTTP request template: `{key}` and `{n}` are replaced in the URL, headers and body.
#[derive(Debug, Clone)]
pub struct HttpTemplate {
    /// Method.
    pub method: Method,
    /// URL with placeholders.
    pub url: String,
    /// Headers (name, value template).
    pub headers: Vec<(String, String)>,
    /// Body template, if any.
    pub body: Option<String>,
}

/// Where operations go.
#[derive(Clone)]
pub enum Target {
    /// In-process strata-cache.
    Engine(RawNamespace),
    /// Raw Redis: GET / SET / DEL / MGET.
    Redis(redis::aio::MultiplexedConnection),
    /// strata's cache API at a base URL (`http://127.0.0.1:7070`) and namespace.
    CacheApi {
        /// Base URL.
        base: String,
        /// Namespace.
        namespace: String,
        /// Bearer token, if the server needs one.
        token: Option<String>,
    },
    /// Any HTTP endpoint.
    Http(std::sync::Arc<HttpTemplate>),
}

impl Target {
    /// Opens Redis or checks an HTTP URL; the engine is built by the caller.
    pub async fn redis(url: &str) -> Result<Target, String> {
        let client = redis::Client::open(url).map_err(|e| format!("{url}: {e}"))?;
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| format!("{url}: no answer within 5 s"))?
        .map_err(|e| format!("{url}: {e}"))?;
        Ok(Target::Redis(conn))
    }

    /// Whether operations need key names (a URL template without `{key}` or `{n}`
    /// does not, and then the runner skips drawing keys).
    pub fn uses_keys(&self) -> bool {
        match self {
            Target::Http(t) => {
                let has = |s: &str| s.contains("{key}") || s.contains("{n}");
                has(&t.url)
                    || t.headers.iter().any(|(_, v)| has(v))
                    || t.body.as_deref().is_some_and(has)
            }
            _ => true,
        }
    }

    /// Short description for reports (no credentials).
    pub fn describe(&self) -> String {
        match self {
            Target::Engine(ns) => format!("engine (namespace {})", ns.name()),
            Target::Redis(_) => "redis".into(),
            Target::CacheApi {
                base, namespace, ..
            } => format!("strata cache API {base} (namespace {namespace})"),
            Target::Http(t) => format!("{} {}", t.method, t.url),
        }
    }

    /// A per-worker session.
    pub fn session(&self, timeout: Duration) -> Session {
        Session {
            target: self.clone(),
            conn: None,
            timeout,
            fixed: matches!(self, Target::Http(_)) && !self.uses_keys(),
            rendered: None,
        }
    }
}

/// One worker's view of the target.
pub struct Session {
    target: Target,
    /// The HTTP connection, for HTTP targets.
    conn: Option<h1::Conn>,
    timeout: Duration,
    /// A URL template without placeholders: its request is rendered once.
    fixed: bool,
    /// (authority, bytes) of that request.
    rendered: Option<(String, Vec<u8>)>,
}

impl Session {
    /// Performs one operation, never panicking on the target's behaviour.
    pub async fn call(&mut self, op: &Op) -> Outcome {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.call_inner(op)).await {
            Ok(o) => o,
            Err(_) => {
                // The connection may hold a half-read response: start over.
                self.conn = None;
                Outcome::error("timeout")
            }
        }
    }

    async fn call_inner(&mut self, op: &Op) -> Outcome {
        match &self.target {
            Target::Engine(ns) => engine_call(ns, op).await,
            Target::Redis(conn) => redis_call(&mut conn.clone(), op).await,
            Target::CacheApi {
                base,
                namespace,
                token,
            } => {
                let (method, url, body) = cache_api_request(base, namespace, op);
                let mut headers = Vec::new();
                if let Some(t) = token {
                    headers.push(("authorization".to_owned(), format!("Bearer {t}")));
                }
                if op.kind == OpKind::Mget {
                    headers.push(("content-type".to_owned(), "application/json".to_owned()));
                }
                match self
                    .request(&method, &url, &headers, body, false)
                    .await
                    .map(|r| (r.status, r.hit))
                {
                    Ok((status, hit)) => match status {
                        200..=299 => Outcome {
                            error: None,
                            hit: if matches!(op.kind, OpKind::Get | OpKind::Mget) {
                                Some(hit.unwrap_or(true))
                            } else {
                                None
                            },
                        },
                        404 if op.kind == OpKind::Get => Outcome {
                            error: None,
                            hit: Some(false),
                        },
                        s => Outcome::error(status_kind(s)),
                    },
                    Err(kind) => Outcome::error(kind),
                }
            }
            Target::Http(t) => {
                let t = t.clone();
                let head = t.method == Method::HEAD;
                let res = if self.fixed {
                    // No placeholders: the request bytes are the same every time.
                    if self.rendered.is_none() {
                        let (authority, path) = match split_url(&t.url) {
                            Ok(v) => v,
                            Err(kind) => return Outcome::error(kind),
                        };
                        let body = t.body.as_deref().unwrap_or("").as_bytes();
                        let bytes =
                            h1::render(t.method.as_str(), path, authority, &t.headers, body);
                        self.rendered = Some((authority.to_owned(), bytes));
                    }
                    let (authority, bytes) = self.rendered.take().expect("rendered above");
                    let r = self.send(&authority, &bytes, head, false).await;
                    self.rendered = Some((authority, bytes));
                    r
                } else {
                    let fill = |s: &str| -> String {
                        s.replace("{key}", op.keys.first().map_or("", String::as_str))
                            .replace("{n}", &op.index.to_string())
                    };
                    let url = fill(&t.url);
                    let headers: Vec<(String, String)> = t
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), fill(v)))
                        .collect();
                    let body = t.body.as_deref().map(|b| Bytes::from(fill(b)));
                    self.request(&t.method, &url, &headers, body, false).await
                };
                match res {
                    Ok(r) if r.status < 400 => Outcome {
                        error: None,
                        hit: r.hit,
                    },
                    Ok(r) => Outcome::error(status_kind(r.status)),
                    Err(kind) => Outcome::error(kind),
                }
            }
        }
    }

    /// GETs a URL on this session's connection; the body as text (for scrapes).
    pub async fn get_text(&mut self, url: &str) -> Result<String, String> {
        self.get_text_with(url, &[]).await
    }

    /// [`Session::get_text`] with extra request headers (an `Authorization`, say).
    pub async fn get_text_with(
        &mut self,
        url: &str,
        headers: &[(String, String)],
    ) -> Result<String, String> {
        let timeout = self.timeout;
        let fut = self.request(&Method::GET, url, headers, None, true);
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(r)) if r.status == 200 => Ok(String::from_utf8_lossy(&r.body).into_owned()),
            Ok(Ok(r)) => Err(format!("{url}: status {}", r.status)),
            Ok(Err(kind)) => Err(format!("{url}: {kind}")),
            Err(_) => Err(format!("{url}: timeout")),
        }
    }

    /// Renders and sends one request.
    async fn request(
        &mut self,
        method: &Method,
        url: &str,
        headers: &[(String, String)],
        body: Option<Bytes>,
        keep_body: bool,
    ) -> Result<h1::Response, &'static str> {
        let (authority, path) = split_url(url)?;
        let bytes = h1::render(
            method.as_str(),
            path,
            authority,
            headers,
            body.as_deref().unwrap_or(&[]),
        );
        self.send(authority, &bytes, *method == Method::HEAD, keep_body)
            .await
    }

    /// Sends rendered bytes on this worker's connection, opening one if needed. A
    /// kept-alive connection the server has meanwhile closed is retried once on a
    /// new connection, as browsers and wrk do.
    async fn send(
        &mut self,
        authority: &str,
        bytes: &[u8],
        head: bool,
        keep_body: bool,
    ) -> Result<h1::Response, &'static str> {
        for attempt in 0..2 {
            let fresh = self.conn.as_ref().is_none_or(|c| c.authority != authority);
            if fresh {
                self.conn = Some(h1::Conn::open(authority).await?);
            }
            let conn = self.conn.as_mut().expect("connected above");
            match conn.exchange(bytes, head, keep_body).await {
                Ok(r) => {
                    if !r.reusable {
                        self.conn = None;
                    }
                    return Ok(r);
                }
                Err(e) => {
                    self.conn = None;
                    if fresh || attempt == 1 || e != "io" {
                        return Err(e);
                    }
                }
            }
        }
        Err("io")
    }
}

/// `http://authority/path?query` → (authority, path and query).
fn split_url(url: &str) -> Result<(&str, &str), &'static str> {
    let rest = url.strip_prefix("http://").ok_or("bad_url")?;
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(cut);
    if authority.is_empty() {
        return Err("bad_url");
    }
    Ok((authority, if path.is_empty() { "/" } else { path }))
}

fn status_kind(status: u16) -> &'static str {
    match status {
        500..=599 => "http_5xx",
        400..=499 => "http_4xx",
        _ => "http_other",
    }
}

fn cache_api_request(base: &str, ns: &str, op: &Op) -> (Method, String, Option<Bytes>) {
    let base = base.trim_end_matches('/');
    let key = op.keys.first().map_or("", String::as_str);
    match op.kind {
        OpKind::Get => (Method::GET, format!("{base}/v1/cache/{ns}/{key}"), None),
        OpKind::Set => (
            Method::PUT,
            format!("{base}/v1/cache/{ns}/{key}"),
            Some(op.value.clone()),
        ),
        OpKind::Delete => (Method::DELETE, format!("{base}/v1/cache/{ns}/{key}"), None),
        OpKind::Mget => (
            Method::POST,
            format!("{base}/v1/cache/{ns}/_mget"),
            Some(Bytes::from(
                serde_json::json!({ "keys": op.keys }).to_string(),
            )),
        ),
    }
}

async fn engine_call(ns: &RawNamespace, op: &Op) -> Outcome {
    let key = op.keys.first().map_or("", String::as_str);
    match op.kind {
        OpKind::Get => match ns.get(key).await {
            Ok(h) => Outcome {
                error: None,
                hit: Some(h.is_some()),
            },
            Err(_) => Outcome::error("engine"),
        },
        OpKind::Set => match ns.set(key, op.value.clone(), SetOptions::default()).await {
            Ok(()) => Outcome::OK,
            Err(_) => Outcome::error("engine"),
        },
        OpKind::Delete => match ns.delete(key).await {
            Ok(_) => Outcome::OK,
            Err(_) => Outcome::error("engine"),
        },
        OpKind::Mget => match ns.mget(&op.keys).await {
            Ok(hits) => Outcome {
                error: None,
                hit: Some(hits.iter().all(Option::is_some)),
            },
            Err(_) => Outcome::error("engine"),
        },
    }
}

async fn redis_call(conn: &mut redis::aio::MultiplexedConnection, op: &Op) -> Outcome {
    let key = op.keys.first().map_or("", String::as_str);
    let res: Result<Outcome, redis::RedisError> = match op.kind {
        OpKind::Get => redis::cmd("GET")
            .arg(key)
            .query_async::<Option<Vec<u8>>>(conn)
            .await
            .map(|v| Outcome {
                error: None,
                hit: Some(v.is_some()),
            }),
        OpKind::Set => redis::cmd("SET")
            .arg(key)
            .arg(op.value.as_ref())
            .query_async::<()>(conn)
            .await
            .map(|_| Outcome::OK),
        OpKind::Delete => redis::cmd("DEL")
            .arg(key)
            .query_async::<i64>(conn)
            .await
            .map(|_| Outcome::OK),
        OpKind::Mget => redis::cmd("MGET")
            .arg(&op.keys)
            .query_async::<Vec<Option<Vec<u8>>>>(conn)
            .await
            .map(|v| Outcome {
                error: None,
                hit: Some(v.iter().all(Option::is_some)),
            }),
    };
    res.unwrap_or_else(|e| {
        Outcome::error(if e.is_timeout() {
            "timeout"
        } else if e.is_io_error() || e.is_connection_dropped() {
            "connect"
        } else {
            "redis"
        })
    })
}
