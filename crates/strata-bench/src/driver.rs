//! Targets: what an operation is sent to.
//!
//! - `engine`: an in-process strata-cache namespace;
//! - `redis://…`: raw Redis, the baseline to compare strata against;
//! - `http://host:port` with a namespace: strata's cache API;
//! - an HTTP URL template (`http://127.0.0.1:8000/items/{key}?page={n}`): any API.
//!
//! Each worker opens a [`Session`] (its own HTTP connection, as wrk does); engine and
//! Redis sessions share the engine or the multiplexed Redis connection.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use strata_cache::{RawNamespace, SetOptions};

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
    Http(HttpTemplate),
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
        }
    }
}

/// One worker's view of the target.
pub struct Session {
    target: Target,
    /// (authority, connection) for HTTP targets.
    conn: Option<(String, SendRequest<Full<Bytes>>)>,
    timeout: Duration,
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
                match self.http(method, &url, &headers, body).await {
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
                let fill = |s: &str| {
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
                match self.http(t.method.clone(), &url, &headers, body).await {
                    Ok((s, hit)) if s < 400 => Outcome { error: None, hit },
                    Ok((s, _)) => Outcome::error(status_kind(s)),
                    Err(kind) => Outcome::error(kind),
                }
            }
        }
    }

    /// GETs a URL on this session's connection; the body as text (for scrapes).
    pub async fn get_text(&mut self, url: &str) -> Result<String, String> {
        let timeout = self.timeout;
        let fut = self.request(Method::GET, url, &[], None, true);
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok((200, _, body))) => Ok(String::from_utf8_lossy(&body).into_owned()),
            Ok(Ok((s, _, _))) => Err(format!("{url}: status {s}")),
            Ok(Err(kind)) => Err(format!("{url}: {kind}")),
            Err(_) => Err(format!("{url}: timeout")),
        }
    }

    /// Sends one request and reads the whole response: (status, hit as the
    /// response reports it).
    async fn http(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(String, String)],
        body: Option<Bytes>,
    ) -> Result<(u16, Option<bool>), &'static str> {
        self.request(method, url, headers, body, false)
            .await
            .map(|(s, h, _)| (s, h))
    }

    /// Sends one request on this worker's connection (opening it if needed).
    async fn request(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(String, String)],
        body: Option<Bytes>,
        keep_body: bool,
    ) -> Result<(u16, Option<bool>, Bytes), &'static str> {
        let uri: Uri = url.parse().map_err(|_| "bad_url")?;
        let authority = uri.authority().ok_or("bad_url")?.to_string();
        if self.conn.as_ref().is_none_or(|(a, _)| *a != authority) {
            self.conn = Some((authority.clone(), connect(&authority).await?));
        }
        let (_, sender) = self.conn.as_mut().expect("connected above");
        if sender.ready().await.is_err() {
            // The server closed the idle connection: reconnect once.
            self.conn = Some((authority.clone(), connect(&authority).await?));
        }
        let (_, sender) = self.conn.as_mut().expect("connected above");
        let path = uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &authority);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|_| "bad_request")?;
        let res = match sender.send_request(req).await {
            Ok(r) => r,
            Err(_) => {
                self.conn = None;
                return Err("io");
            }
        };
        let status = res.status().as_u16();
        let hit = hit_header(res.headers());
        let close = res
            .headers()
            .get(hyper::header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = match res.into_body().collect().await {
            Ok(b) if keep_body => b.to_bytes(),
            Ok(_) => Bytes::new(),
            Err(_) => {
                self.conn = None;
                return Err("io");
            }
        };
        if close {
            self.conn = None;
        }
        Ok((status, hit, body))
    }
}

async fn connect(authority: &str) -> Result<SendRequest<Full<Bytes>>, &'static str> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|_| "connect")?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| "connect")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn status_kind(status: u16) -> &'static str {
    match status {
        500..=599 => "http_5xx",
        400..=499 => "http_4xx",
        _ => "http_other",
    }
}

/// Hit or miss from `X-Cache` (HIT, STALE, REVALIDATED count as hits) or
/// `X-Cache-Tier` (any tier is a hit).
fn hit_header(h: &hyper::HeaderMap) -> Option<bool> {
    if let Some(v) = h.get("x-cache").and_then(|v| v.to_str().ok()) {
        let v = v.to_ascii_uppercase();
        return Some(
            v.starts_with("HIT") || v.starts_with("STALE") || v.starts_with("REVALIDATED"),
        );
    }
    h.get("x-cache-tier").map(|_| true)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_are_read_from_the_usual_headers() {
        let mut h = hyper::HeaderMap::new();
        assert_eq!(hit_header(&h), None);
        h.insert("x-cache", "MISS".parse().unwrap());
        assert_eq!(hit_header(&h), Some(false));
        h.insert("x-cache", "HIT from edge".parse().unwrap());
        assert_eq!(hit_header(&h), Some(true));
        let mut h = hyper::HeaderMap::new();
        h.insert("x-cache-tier", "l2".parse().unwrap());
        assert_eq!(hit_header(&h), Some(true));
    }
}
