//! The origin: pooled keep-alive HTTP/1.1 connections, connect and response
//! timeouts, and reading a body up to a size bound without ever buffering more than
//! that.
//!
//! A bodiless `GET` or `HEAD`, what a cache sends nearly always, goes out through
//! strata's own HTTP/1.1 ([`crate::h1`]); any other request through hyper's
//! connection API. Each kind has a pool of its own.
//!
//! Why not hyper-util's pooled client: measured at a fixed 15k requests/s through
//! the proxy, the origin leg cost ~14 µs of user CPU per request with it, as much as
//! nginx's whole proxied request (docs/decisions.md). A connection here is taken
//! from a `Vec`, used, and put back when its response body has been read to the
//! end; a request that finds no ready connection opens one.
//!
//! An `https://` origin is reached over TLS (rustls, certificates checked against
//! Mozilla's roots or a configured CA file); the pool and everything above it do
//! not change.

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use http_body::{Body as _, Frame};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::fields::strip_relayed;
use crate::h1;

/// Why the origin gave no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The in-process service (tower layer) failed.
    #[error("the wrapped service failed: {0}")]
    Service(String),
    /// Could not connect (refused, unreachable, connect timeout).
    #[error("cannot connect to the origin: {0}")]
    Connect(String),
    /// No complete answer within the response timeout.
    #[error("the origin did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection broke or the origin spoke nonsense.
    #[error("origin error: {0}")]
    Protocol(String),
    /// A pooled keep-alive connection failed after the request went out and
    /// before an answer came: most often the origin closing it for idleness just
    /// as the request arrived. The caller may send a request that is safe to
    /// repeat again; it will go out on another connection.
    #[error("origin closed a reused connection before answering: {0}")]
    Reused(String),
}

impl UpstreamError {
    /// Metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Protocol(_) | UpstreamError::Reused(_) => "protocol",
            UpstreamError::Service(_) => "service",
        }
    }
}

/// A request for the origin: method, target, field lines in order, body.
///
/// The fields are a list, not a `HeaderMap`: a bodiless `GET` or `HEAD` is
/// written to the connection straight from it. Building a map for each proxied
/// request, hashing every name into it, then dropping it, was ~10% of a
/// pass-through request's user-space instructions (bench/ir-pass.sh). Requests
/// that go through hyper, or to an in-process service, become a
/// [`Request`] with [`OriginRequest::into_request`].
///
/// ```
/// use axum::body::Body;
/// use http::{header, Method};
/// use strata_http::upstream::OriginRequest;
///
/// let mut req = OriginRequest::new(Method::GET, "http://origin:8000/a?b=1".parse().unwrap());
/// req.fields.push((header::HOST, "origin:8000".parse().unwrap()));
/// let req = req.into_request();
/// assert_eq!(req.headers()["host"], "origin:8000");
/// ```
pub struct OriginRequest {
    /// The method.
    pub method: Method,
    /// The target, absolute (`http://origin/path?query`) or origin-form.
    pub uri: Uri,
    /// The field lines, in the order they are sent; `Host` among them.
    pub fields: Vec<(HeaderName, HeaderValue)>,
    /// The body.
    pub body: Body,
    /// The response goes to a client as it comes: the fields a client never gets
    /// of a relayed response (hop-by-hop, `Cache-Tag`, `Surrogate-Key`,
    /// `Surrogate-Control`) are left out of it. Strata's own HTTP/1.1 drops them
    /// while it reads the head, which costs less than a pass over the map after
    /// it (bench/ir-pass.sh).
    pub relayed: bool,
}

impl OriginRequest {
    /// A bodiless request with no fields.
    pub fn new(method: Method, uri: Uri) -> OriginRequest {
        OriginRequest {
            method,
            uri,
            fields: Vec::new(),
            body: Body::empty(),
            relayed: false,
        }
    }

    /// The same request as a [`Request`].
    pub fn into_request(self) -> Request<Body> {
        let mut req = Request::new(self.body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        let h = req.headers_mut();
        h.reserve(self.fields.len());
        for (name, value) in self.fields {
            h.append(name, value);
        }
        req
    }
}

impl From<Request<Body>> for OriginRequest {
    fn from(req: Request<Body>) -> OriginRequest {
        let (parts, body) = req.into_parts();
        OriginRequest {
            method: parts.method,
            uri: parts.uri,
            fields: parts
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
            body,
            relayed: false,
        }
    }
}

/// The origin server.
#[derive(Clone)]
pub struct Upstream {
    authority: Authority,
    /// `authority` as a `Host` value, made once: cloning it per request shares it.
    host: HeaderValue,
    base_path: String,
    /// For an `https://` origin.
    tls: Option<Tls>,
    /// Connections for hyper's client.
    pool: Arc<Pool<SendRequest<Body>>>,
    /// Connections for strata's own HTTP/1.1.
    conns: Arc<Pool<h1::Conn>>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

/// How an `https://` origin is reached: the client settings and the name its
/// certificate must carry.
#[derive(Clone)]
struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl Tls {
    fn new(host: &str, roots: RootCertStore) -> Result<Tls, String> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("`{host}` cannot be checked against a certificate: {e}"))?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}

/// Mozilla's roots, as webpki-roots ships them.
fn public_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// The CA certificates in a PEM file, for an origin whose certificate a private CA
/// signed.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(roots)
}

/// Idle connections to the origin, most recently used last.
pub(crate) struct Pool<T> {
    idle: Mutex<Vec<T>>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
        }
    }
}

/// Most idle connections kept; more are closed when their response ends.
const MAX_IDLE: usize = 256;

/// What an idle connection can do now.
enum Idle {
    Ready,
    /// Its previous response is still finishing: kept for later.
    Busy,
    /// Closed: dropped.
    Dead,
}

impl<T> Pool<T> {
    /// The most recently used idle connection that `check` finds ready.
    fn take(&self, mut check: impl FnMut(&mut T) -> Idle) -> Option<T> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            match check(&mut idle[i]) {
                Idle::Ready => return Some(idle.swap_remove(i)),
                Idle::Busy => {}
                Idle::Dead => {
                    idle.swap_remove(i);
                }
            }
        }
        None
    }

    /// Keeps an idle connection, unless there are enough.
    pub(crate) fn put(&self, conn: T) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// hyper's view of a pooled connection.
fn hyper_idle(s: &mut SendRequest<Body>) -> Idle {
    if s.is_closed() {
        Idle::Dead
    } else if s.is_ready() {
        Idle::Ready
    } else {
        Idle::Busy
    }
}

impl Upstream {
    /// Checks an origin URL: `http://host[:port][/base]` or `https://…`, no
    /// query. Returns the authority and the base path (without a trailing slash).
    pub fn parse(url: &str) -> Result<(Authority, String), String> {
        Self::parse_target(url).map(|(_, authority, base)| (authority, base))
    }

    /// [`Upstream::parse`], and whether the origin speaks TLS.
    fn parse_target(url: &str) -> Result<(bool, Authority, String), String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let tls = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => false,
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) => {
                return Err(format!(
                    "`{url}`: scheme {s} is not supported for the origin; use http:// or https://"
                ))
            }
            None => return Err(format!("`{url}`: write the origin as http://host:port")),
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("`{url}` has no host"))?;
        if uri.query().is_some() {
            return Err(format!("`{url}`: the origin URL cannot have a query"));
        }
        let base = uri.path().trim_end_matches('/').to_owned();
        Ok((tls, authority, base))
    }

    /// A client for `url` with the given timeouts.
    pub fn new(
        url: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, String> {
        let (tls, authority, base_path) = Self::parse_target(url)?;
        let host =
            HeaderValue::from_str(authority.as_str()).map_err(|e| format!("origin {url}: {e}"))?;
        let tls = match tls {
            true => Some(Tls::new(bare_host(&authority), public_roots())?),
            false => None,
        };
        Ok(Upstream {
            authority,
            host,
            base_path,
            tls,
            pool: Arc::default(),
            conns: Arc::default(),
            connect_timeout,
            response_timeout,
        })
    }

    /// Checks an `https://` origin's certificate against the CA certificates in
    /// `roots` (see [`load_roots`]) instead of Mozilla's. An error for an
    /// `http://` origin, which has no certificate to check.
    pub fn with_roots(mut self, roots: RootCertStore) -> Result<Self, String> {
        if self.tls.is_none() {
            return Err("a CA file applies only to an https:// origin".into());
        }
        self.tls = Some(Tls::new(bare_host(&self.authority), roots)?);
        Ok(self)
    }

    /// The same origin with a pool of its own, for another runtime (a pooled
    /// connection is driven by the runtime that opened it).
    pub fn fork(&self) -> Upstream {
        Upstream {
            pool: Arc::default(),
            conns: Arc::default(),
            ..self.clone()
        }
    }

    /// The origin's `host:port`, sent as `Host` unless the client's is preserved.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// [`Upstream::authority`] as a `Host` field value.
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// The origin URI for a request's path and query.
    pub fn uri_for(&self, pq: Option<&PathAndQuery>) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(match self.tls {
            Some(_) => Scheme::HTTPS,
            None => Scheme::HTTP,
        });
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(self.path_for(pq));
        Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("http://invalid/"))
    }

    /// [`Upstream::uri_for`] in origin form (`/base/path?query`), which is all a
    /// request to this origin needs: the connection knows where it goes, and the
    /// caller sets `Host`. Cheaper than the absolute form, which a pass-through
    /// request would build only to drop (bench/ir-pass.sh).
    pub fn target_for(&self, pq: Option<&PathAndQuery>) -> Uri {
        Uri::from(self.path_for(pq))
    }

    fn path_for(&self, pq: Option<&PathAndQuery>) -> PathAndQuery {
        match pq {
            // The common case, no base path: the parsed path is shared, not reparsed.
            Some(pq) if self.base_path.is_empty() => pq.clone(),
            _ => {
                let pq = pq.map_or("/", |p| p.as_str());
                // A parsed base path followed by a parsed path: always valid.
                PathAndQuery::try_from(format!("{}{}", self.base_path, pq))
                    .unwrap_or_else(|_| PathAndQuery::from_static("/"))
            }
        }
    }

    /// Sends a request; the response timeout bounds the wait for its head.
    pub async fn send(
        &self,
        req: impl Into<OriginRequest>,
    ) -> Result<Response<Body>, UpstreamError> {
        self.send_within_timeout(req.into(), false).await
    }

    /// Like [`Upstream::send`], on a new connection and within what is `left` of
    /// the response timeout: for a request sent again after
    /// [`UpstreamError::Reused`], which another pooled connection the origin closed
    /// at the same moment could fail the same way.
    pub async fn send_fresh(
        &self,
        req: OriginRequest,
        left: Duration,
    ) -> Result<Response<Body>, UpstreamError> {
        self.send_within(req, true, left).await
    }

    async fn send_within_timeout(
        &self,
        req: OriginRequest,
        fresh: bool,
    ) -> Result<Response<Body>, UpstreamError> {
        self.send_within(req, fresh, self.response_timeout).await
    }

    async fn send_within(
        &self,
        req: OriginRequest,
        fresh: bool,
        left: Duration,
    ) -> Result<Response<Body>, UpstreamError> {
        match tokio::time::timeout(left, self.send_pooled(req, fresh)).await {
            Err(_) => Err(UpstreamError::Timeout(self.response_timeout)),
            Ok(r) => r,
        }
    }

    async fn send_pooled(
        &self,
        req: OriginRequest,
        fresh: bool,
    ) -> Result<Response<Body>, UpstreamError> {
        let method = &req.method;
        if (method == Method::GET || method == Method::HEAD) && req.body.is_end_stream() {
            return self.send_h1(req, fresh).await;
        }
        let relayed = req.relayed;
        let mut req = req.into_request();
        // HTTP/1.1 to an origin: origin-form target, `Host` already set by the caller.
        if let Some(pq) = req.uri().path_and_query().cloned() {
            *req.uri_mut() = Uri::from(pq);
        }
        // A pooled connection the origin closed a moment ago hands the request back
        // unsent; it then goes out on another one. A fresh connection gets one try.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let pooled = if fresh {
                None
            } else {
                self.pool.take(hyper_idle)
            };
            let (mut sender, reused) = match pooled {
                Some(s) => (s, true),
                None => (self.connect_hyper().await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(res) => {
                    let (mut parts, body) = res.into_parts();
                    if relayed {
                        strip_relayed(&mut parts.headers);
                    }
                    if body.is_end_stream() {
                        // Nothing to read (304, HEAD, empty): the connection is free now.
                        if !sender.is_closed() {
                            self.pool.put(sender);
                        }
                        return Ok(Response::from_parts(parts, Body::empty()));
                    }
                    let body = PooledBody {
                        inner: body,
                        sender: Some(sender),
                        pool: Arc::downgrade(&self.pool),
                    };
                    return Ok(Response::from_parts(parts, Body::new(body)));
                }
                Err(mut e) => match e.take_message() {
                    Some(back) if reused && attempts < 8 => req = back,
                    // Sent, so not ours to repeat: the caller knows whether it may.
                    None if reused => return Err(UpstreamError::Reused(error_chain(e.error()))),
                    _ => return Err(UpstreamError::Protocol(error_chain(e.error()))),
                },
            }
        }
    }

    /// A bodiless GET or HEAD through strata's own HTTP/1.1 ([`h1`]). As with
    /// hyper's client, a request a pooled connection could not take is written to
    /// another one; one that was sent is not repeated here.
    async fn send_h1(
        &self,
        req: OriginRequest,
        fresh: bool,
    ) -> Result<Response<Body>, UpstreamError> {
        let head = h1::RequestHead {
            method: &req.method,
            uri: &req.uri,
            fields: &req.fields,
            relayed: req.relayed,
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let pooled = match fresh {
                true => None,
                false => self.conns.take(|c| match c.is_usable() {
                    true => Idle::Ready,
                    false => Idle::Dead,
                }),
            };
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => h1::Conn::new(self.connect().await?),
            };
            match conn.request(&head, reused).await {
                Ok(head) => {
                    let body = conn.into_body(&head, Arc::downgrade(&self.conns));
                    let mut res = Response::new(body);
                    *res.status_mut() = head.status;
                    *res.version_mut() = head.version;
                    *res.headers_mut() = head.headers;
                    if let Some(reason) = head.reason {
                        // httparse checked its bytes.
                        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason) {
                            res.extensions_mut().insert(reason);
                        }
                    }
                    return Ok(res);
                }
                Err(h1::Failed::Unsent(_)) if reused && attempts < 8 => {}
                Err(h1::Failed::Unsent(e) | h1::Failed::Sent(e)) => return Err(e),
            }
        }
    }

    /// A new connection to the origin: TCP and, for https, the TLS handshake, both
    /// within the connect timeout.
    async fn connect(&self) -> Result<h1::Io, UpstreamError> {
        let default_port = if self.tls.is_some() { 443 } else { 80 };
        let port = self.authority.port_u16().unwrap_or(default_port);
        let host = bare_host(&self.authority);
        let connecting = async {
            let stream = tokio::net::TcpStream::connect((host, port))
                .await
                .map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            match &self.tls {
                None => Ok(h1::Io::Plain(stream)),
                Some(tls) => {
                    let stream = tls
                        .connector
                        .connect(tls.name.clone(), stream)
                        .await
                        .map_err(|e| format!("TLS with {host}: {e}"))?;
                    Ok(h1::Io::Tls(Box::new(stream)))
                }
            }
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Err(_) => Err(UpstreamError::Connect(format!(
                "no connection within {:?}",
                self.connect_timeout
            ))),
            Ok(r) => r.map_err(UpstreamError::Connect),
        }
    }

    /// A new connection driven by hyper's client.
    async fn connect_hyper(&self) -> Result<SendRequest<Body>, UpstreamError> {
        let io = self.connect().await?;
        start_connection(io).await.map_err(UpstreamError::Connect)
    }

    /// The response timeout.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }
}

/// HTTP/1.1 on a connected stream; the connection is driven by a task on the
/// runtime that opened it (one per proxy worker).
async fn start_connection<I>(io: I) -> Result<SendRequest<Body>, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| error_chain(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "origin connection ended with an error");
        }
    });
    Ok(sender)
}

/// The host of an authority without an IPv6 literal's brackets.
fn bare_host(authority: &Authority) -> &str {
    authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// A response body that returns its connection to the pool once read to the end.
/// Dropped early (client gone, a body too large to store abandoned), it lets the
/// connection go: the unread rest would corrupt the next response on it.
struct PooledBody {
    inner: Incoming,
    sender: Option<SendRequest<Body>>,
    pool: Weak<Pool<SendRequest<Body>>>,
}

impl PooledBody {
    fn release(&mut self) {
        if let (Some(s), Some(pool)) = (self.sender.take(), self.pool.upgrade()) {
            if !s.is_closed() {
                pool.put(s);
            }
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Read to the end by someone who never polled past the last frame.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.sender = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A body read up to a bound.
pub enum Collected {
    /// The whole body.
    Complete(Bytes),
    /// Bigger than the bound: what was read so far and the rest, to stream on.
    TooLarge(Bytes, Body),
}

/// Reads `body` until its end or until it exceeds `limit` bytes, within `deadline`.
pub async fn collect(
    mut body: Body,
    limit: usize,
    deadline: Duration,
) -> Result<Collected, UpstreamError> {
    let read = async {
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| UpstreamError::Protocol(error_chain(&e)))?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                if buf.len() > limit {
                    return Ok((buf.freeze(), true));
                }
            }
        }
        Ok((buf.freeze(), false))
    };
    match tokio::time::timeout(deadline, read).await {
        Err(_) => Err(UpstreamError::Timeout(deadline)),
        Ok(Err(e)) => Err(e),
        Ok(Ok((b, too_large))) => {
            if too_large {
                Ok(Collected::TooLarge(b, body))
            } else {
                Ok(Collected::Complete(b))
            }
        }
    }
}

/// A body that yields `head` and then the rest of `tail`: how a response that
/// turned out too large to store still reaches the client whole.
pub fn chain(head: Bytes, tail: Body) -> Body {
    use futures::StreamExt;
    let first = futures::stream::once(async move { Ok::<_, axum::Error>(head) });
    let rest = tail.into_data_stream();
    Body::from_stream(first.chain(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_uris_keep_the_base_path_and_the_query() {
        let t = Duration::from_secs(1);
        let pq = |s: &str| s.parse::<PathAndQuery>().unwrap();
        let bare = Upstream::new("http://127.0.0.1:8000", t, t).unwrap();
        let based = Upstream::new("http://api.local:81/v2/", t, t).unwrap();
        let secure = Upstream::new("https://api.example.com/v1", t, t).unwrap();
        let cases = [
            (
                &bare,
                Some(pq("/a/b?x=1&y")),
                "http://127.0.0.1:8000/a/b?x=1&y",
            ),
            (&bare, None, "http://127.0.0.1:8000/"),
            (&based, Some(pq("/a?x=1")), "http://api.local:81/v2/a?x=1"),
            (&based, None, "http://api.local:81/v2/"),
            (&secure, Some(pq("/a")), "https://api.example.com/v1/a"),
        ];
        for (u, path, want) in cases {
            assert_eq!(u.uri_for(path.as_ref()).to_string(), want);
            // The origin form is the same target without scheme and authority.
            let origin_form = &want[want.find("//").unwrap() + 2..];
            let origin_form = &origin_form[origin_form.find('/').unwrap()..];
            assert_eq!(u.target_for(path.as_ref()).to_string(), origin_form);
        }
    }
}
