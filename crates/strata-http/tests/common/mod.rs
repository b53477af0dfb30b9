//! A real origin (axum on a loopback socket) and a real proxy in front of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use axum::Router;
use strata_cache::Cache;
use strata_http::{HttpCache, HttpConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// What the origin counts and how it behaves.
#[derive(Default)]
pub struct OriginState {
    /// Requests per path (path and query).
    pub hits: Mutex<HashMap<String, u64>>,
    /// Bumped by every unsafe request: the "data version" bodies show.
    pub version: AtomicU64,
    /// 304s answered.
    pub not_modified: AtomicU64,
    /// `/sie` answers 500 while set.
    pub failing: AtomicBool,
    /// `/flip` answers `private` while set.
    pub flip: AtomicBool,
    /// Last `X-Forwarded-For` seen.
    pub last_xff: Mutex<Option<String>>,
    /// Last `Accept-Encoding` seen.
    pub last_accept_encoding: Mutex<Option<String>>,
    /// Last `Range` seen.
    pub last_range: Mutex<Option<String>>,
    /// Requests to `/slow-nostore` being answered now, and the most there were.
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    /// The `Range` of every request to a `/seq` path, in order.
    pub seq_ranges: Mutex<Vec<Option<String>>>,
}

impl OriginState {
    pub fn hits(&self, pq: &str) -> u64 {
        self.hits.lock().unwrap().get(pq).copied().unwrap_or(0)
    }
}

/// A running origin.
pub struct Origin {
    pub addr: SocketAddr,
    pub state: Arc<OriginState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn count(st: &OriginState, uri: &axum::http::Uri) {
    let pq = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    *st.hits.lock().unwrap().entry(pq).or_default() += 1;
}

fn resp(status: StatusCode, headers: &[(&str, String)], body: impl Into<String>) -> Response {
    let mut r = (status, body.into()).into_response();
    for (k, v) in headers {
        r.headers_mut().append(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    r
}

async fn any(State(st): State<Arc<OriginState>>, req: axum::extract::Request) -> Response {
    count(&st, req.uri());
    let h = req.headers().clone();
    *st.last_xff.lock().unwrap() = h
        .get("x-forwarded-for")
        .map(|v| v.to_str().unwrap().to_owned());
    *st.last_accept_encoding.lock().unwrap() = h
        .get("accept-encoding")
        .map(|v| v.to_str().unwrap().to_owned());
    *st.last_range.lock().unwrap() = h.get("range").map(|v| v.to_str().unwrap().to_owned());
    let n = st.hits(req.uri().path_and_query().unwrap().as_str());
    let v = st.version.load(Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        st.version.fetch_add(1, Ordering::SeqCst);
        let mut extra = Vec::new();
        if path == "/api/risks" && method == axum::http::Method::POST {
            extra.push(("location", "/api/risks/99".to_owned()));
        }
        if path == "/api/lcl" {
            // Relative references, resolved against /api/lcl.
            extra.push(("location", "target".to_owned()));
            extra.push(("content-location", "other?x=1".to_owned()));
        }
        if path == "/tagged" {
            extra.push(("cache-tag", "alpha".to_owned()));
            extra.push(("surrogate-key", "gamma".to_owned()));
        }
        return resp(StatusCode::OK, &extra, format!("changed {path}"));
    }
    let cc = |v: &str| ("cache-control", v.to_owned());
    let json = ("content-type", "application/json".to_owned());
    if path.starts_with("/seq") {
        st.seq_ranges
            .lock()
            .unwrap()
            .push(h.get("range").map(|v| v.to_str().unwrap().to_owned()));
        return seq_response(&path, h.get("range"));
    }
    match path.as_str() {
        "/fresh" => resp(
            StatusCode::OK,
            &[cc("max-age=60"), json],
            format!("{{\"n\":{n}}}"),
        ),
        "/silent" | "/silent-unrouted" => resp(StatusCode::OK, &[], format!("n={n}")),
        "/short" => resp(StatusCode::OK, &[cc("max-age=0")], format!("n={n}")),
        "/qualified" => resp(
            StatusCode::OK,
            &[
                cc("max-age=60, no-cache=\"x-a\", private=\"x-b\""),
                ("x-a", "1".into()),
                ("x-b", "2".into()),
                ("x-c", "3".into()),
            ],
            format!("n={n}"),
        ),
        "/flip" => {
            if st.flip.load(Ordering::SeqCst) {
                resp(
                    StatusCode::OK,
                    &[cc("private, max-age=60")],
                    format!("mine n={n}"),
                )
            } else {
                resp(
                    StatusCode::OK,
                    &[cc("no-cache"), ("etag", "\"f1\"".into())],
                    format!("n={n}"),
                )
            }
        }
        "/surrogate" => {
            let cap = h
                .get("surrogate-capability")
                .map_or("", |v| v.to_str().unwrap())
                .to_owned();
            let target = cap.split('=').next().unwrap_or("").to_owned();
            resp(
                StatusCode::OK,
                &[
                    cc("no-store"),
                    ("surrogate-control", format!("max-age=60;{target}")),
                ],
                format!("n={n}"),
            )
        }
        "/age304" => {
            // Always revalidated; the first 304 says the response is 100 s old.
            if h.get("if-none-match").is_some() {
                let age = if n == 2 {
                    vec![("age", "100".to_owned())]
                } else {
                    vec![]
                };
                let mut hs = vec![cc("no-cache"), ("etag", "\"a\"".into())];
                hs.extend(age);
                return resp(StatusCode::NOT_MODIFIED, &hs, "");
            }
            resp(
                StatusCode::OK,
                &[cc("no-cache"), ("etag", "\"a\"".into())],
                format!("n={n}"),
            )
        }
        "/spaced" => resp(StatusCode::OK, &[cc("max-age =100")], format!("n={n}")),
        "/nostore" => resp(StatusCode::OK, &[cc("no-store")], format!("n={n}")),
        "/private" => {
            let user = h
                .get("x-user")
                .map_or("nobody", |v| v.to_str().unwrap())
                .to_owned();
            resp(
                StatusCode::OK,
                &[cc("private, max-age=60")],
                format!("account of {user}"),
            )
        }
        "/auth" => resp(StatusCode::OK, &[cc("max-age=60")], format!("n={n}")),
        "/auth-public" => resp(
            StatusCode::OK,
            &[cc("public, max-age=60")],
            format!("n={n}"),
        ),
        "/cookie" => resp(
            StatusCode::OK,
            &[cc("max-age=60"), ("set-cookie", format!("session=s{n}"))],
            format!("n={n}"),
        ),
        // Fresh for 60 s, or as long as the request's `x-max-age` asks (not a
        // selecting field: variants of one URL that live for different times).
        "/vary" => {
            let lang = h
                .get("accept-language")
                .map_or("none", |v| v.to_str().unwrap())
                .to_owned();
            let max_age = h
                .get("x-max-age")
                .map_or("60", |v| v.to_str().unwrap())
                .to_owned();
            resp(
                StatusCode::OK,
                &[
                    cc(&format!("max-age={max_age}")),
                    ("vary", "Accept-Language".into()),
                ],
                format!("lang={lang} n={n}"),
            )
        }
        "/vary-star" => resp(
            StatusCode::OK,
            &[cc("max-age=60"), ("vary", "*".into())],
            format!("n={n}"),
        ),
        "/etag" => {
            let tag = format!("\"v{v}\"");
            if h.get("if-none-match")
                .is_some_and(|t| t.to_str().unwrap() == tag)
            {
                st.not_modified.fetch_add(1, Ordering::SeqCst);
                return resp(
                    StatusCode::NOT_MODIFIED,
                    &[("etag", tag), cc("no-cache")],
                    "",
                );
            }
            resp(
                StatusCode::OK,
                &[("etag", tag), cc("no-cache")],
                format!("version {v} n={n}"),
            )
        }
        "/swr" => resp(
            StatusCode::OK,
            &[
                cc("max-age=60, stale-while-revalidate=1000"),
                ("age", "61".into()),
            ],
            format!("n={n}"),
        ),
        "/sie" => {
            if st.failing.load(Ordering::SeqCst) {
                return resp(StatusCode::INTERNAL_SERVER_ERROR, &[], "broken");
            }
            resp(
                StatusCode::OK,
                &[cc("max-age=60, stale-if-error=1000"), ("age", "61".into())],
                format!("n={n}"),
            )
        }
        "/no-sie" => resp(
            StatusCode::OK,
            &[cc("max-age=60"), ("age", "61".into())],
            format!("n={n}"),
        ),
        "/error" => resp(
            StatusCode::SERVICE_UNAVAILABLE,
            &[cc("max-age=60")],
            format!("n={n}"),
        ),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            resp(StatusCode::OK, &[cc("max-age=60")], format!("n={n}"))
        }
        "/slow-nostore" => {
            let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            st.max_in_flight.fetch_max(now, Ordering::SeqCst);
            // Long enough that every request of a test's burst arrives while the
            // first is still being answered, even on a loaded machine.
            tokio::time::sleep(Duration::from_secs(1)).await;
            st.in_flight.fetch_sub(1, Ordering::SeqCst);
            resp(StatusCode::OK, &[cc("no-store")], format!("n={n}"))
        }
        "/big" => resp(StatusCode::OK, &[cc("max-age=60")], "x".repeat(2 << 20)),
        "/json" => {
            let body = format!(
                "{{\"items\":[{}]}}",
                (0..500)
                    .map(|i| format!("{{\"id\":{i}}}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            resp(
                StatusCode::OK,
                &[cc("max-age=60"), json, ("etag", "\"j1\"".into())],
                body,
            )
        }
        "/tagged" => resp(
            StatusCode::OK,
            &[
                cc("max-age=60"),
                ("cache-tag", "alpha, beta".into()),
                ("surrogate-key", "gamma".into()),
            ],
            format!("n={n}"),
        ),
        "/echo-fields" => {
            let mut lines: Vec<String> = h
                .iter()
                .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
                .collect();
            lines.sort();
            resp(StatusCode::OK, &[cc("no-store")], lines.join("\n"))
        }
        "/echo-host" => {
            let host = h
                .get("x-forwarded-host")
                .map_or("none", |v| v.to_str().unwrap())
                .to_owned();
            let over = h
                .get("x-http-method-override")
                .map_or("none", |v| v.to_str().unwrap())
                .to_owned();
            resp(
                StatusCode::OK,
                &[cc("max-age=60")],
                format!("<a href=\"http://{host}/\"> override={over}"),
            )
        }
        p if p.starts_with("/api/") => resp(
            StatusCode::OK,
            &[cc("max-age=60"), json],
            format!("{{\"path\":\"{p}\",\"version\":{v},\"n\":{n}}}"),
        ),
        _ => resp(StatusCode::NOT_FOUND, &[], "no such thing"),
    }
}

/// The body of the `/seq` paths: `len` letters, a to z over and over, so any part
/// of it tells where it was cut.
pub fn seq(len: usize) -> String {
    (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

/// `/seq` paths honour one `bytes=a-b` or `bytes=a-` range with a 206. Variants
/// by name: `-nostore` (`no-store`), `-big` (2 MiB), `-chunked` (no
/// `Content-Length`: the body comes in 64 KiB chunks).
fn seq_response(path: &str, range: Option<&axum::http::HeaderValue>) -> Response {
    let len = if path.contains("-big") {
        2 << 20
    } else {
        10_000
    };
    let cc = if path.contains("-nostore") {
        "no-store"
    } else {
        "max-age=60"
    };
    let body = seq(len);
    let part = range
        .and_then(|v| v.to_str().ok()?.strip_prefix("bytes="))
        .and_then(|r| {
            let (a, b) = r.split_once('-')?;
            let a: usize = a.parse().ok()?;
            let b: usize = if b.is_empty() {
                len - 1
            } else {
                b.parse().ok()?
            };
            (a <= b && b < len).then_some((a, b))
        });
    let (status, content, content_range) = match part {
        Some((a, b)) => (
            StatusCode::PARTIAL_CONTENT,
            body[a..=b].to_owned(),
            Some(format!("bytes {a}-{b}/{len}")),
        ),
        None => (StatusCode::OK, body, None),
    };
    let mut r = if path.contains("-chunked") {
        let chunks: Vec<Result<bytes::Bytes, std::convert::Infallible>> = content
            .into_bytes()
            .chunks(64 << 10)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        let body = axum::body::Body::from_stream(futures::stream::iter(chunks));
        (status, body).into_response()
    } else {
        (status, content).into_response()
    };
    let h = r.headers_mut();
    h.insert("cache-control", cc.parse().unwrap());
    h.insert("content-type", "application/octet-stream".parse().unwrap());
    if let Some(cr) = content_range {
        h.insert("content-range", cr.parse().unwrap());
    }
    r
}

async fn user(
    State(st): State<Arc<OriginState>>,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> Response {
    count(&st, req.uri());
    resp(
        StatusCode::OK,
        &[("cache-control", "max-age=60".into())],
        format!("user {id}"),
    )
}

impl Origin {
    /// Starts on a free loopback port.
    pub async fn start() -> Origin {
        let state = Arc::new(OriginState::default());
        let app = Router::new()
            .route("/users/{id}", axum::routing::get(user))
            .fallback(any)
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Origin {
            addr,
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and closes its connections.
    pub async fn kill(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// A proxy serving on a free loopback port.
pub struct Proxy {
    pub addr: SocketAddr,
    pub http: HttpCache,
    pub cache: Cache,
    stop: Option<oneshot::Sender<()>>,
}

impl Proxy {
    /// A memory-only proxy for `origin` with extra `[http]` TOML.
    pub async fn start(origin: &Origin, extra: &str) -> Proxy {
        let cache = Cache::builder().build().await.unwrap();
        Self::start_on(origin, extra, cache).await
    }

    /// A proxy on a given engine (e.g. one sharing Redis with another proxy).
    pub async fn start_on(origin: &Origin, extra: &str, cache: Cache) -> Proxy {
        Self::start_for(&origin.url(), extra, cache).await
    }

    /// A proxy for any origin URL.
    pub async fn start_for(origin_url: &str, extra: &str, cache: Cache) -> Proxy {
        let toml = format!("upstream = \"{origin_url}\"\n{extra}");
        let cfg: HttpConfig = toml::from_str(&toml).unwrap();
        let http = HttpCache::new(cfg, &cache).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let p = http.clone();
        tokio::spawn(async move {
            strata_http::server::serve(
                listener,
                p,
                async {
                    let _ = rx.await;
                },
                Duration::from_secs(1),
            )
            .await;
        });
        Proxy {
            addr,
            http,
            cache,
            stop: Some(tx),
        }
    }

    pub fn url(&self, pq: &str) -> String {
        format!("http://{}{pq}", self.addr)
    }

    /// Signals shutdown: the server stops accepting and drains (1 s at most).
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A client that neither decompresses nor follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `X-Cache` of a response.
pub fn x_cache(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// GET with headers; returns (X-Cache, status, headers, body).
pub async fn get(url: &str, headers: &[(&str, &str)]) -> (String, u16, HeaderMap, bytes::Bytes) {
    let mut rb = client().get(url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    let xc = x_cache(&r);
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (xc, status, h, r.bytes().await.unwrap())
}

/// Polls `f` until it holds or 10 s pass.
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
