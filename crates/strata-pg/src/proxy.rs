//! The session-mode proxy: one server connection per client, bytes relayed unchanged
//! in both directions, each direction scanned for message boundaries so queries can
//! be timed. Authentication passes through (trust, md5, SCRAM), so the proxy holds
//! no passwords. `SSLRequest` is answered `S` and the client's TLS terminated here
//! when a certificate is configured, else `N`; `GSSENCRequest` is answered `N`;
//! cancel requests go to the server as they came (the key in them is the server's
//! own).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::rustls;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::insight::{Insight, InsightConfig, SessionInfo};
use crate::metrics::PgMetrics;
use crate::protocol::{
    error_response, parse_startup, startup_len, ProtocolError, Scanner, Seen, Startup,
};
use crate::tracker::{QueryEvent, Tracker};

/// Where the PostgreSQL server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Upstream {
    /// Parses `postgres://[user@]host[:port][/db]` (or `postgresql://`); only host
    /// and port are used: clients bring their own user, database and password.
    ///
    /// ```
    /// let u = strata_pg::Upstream::parse("postgres://app@db.internal:6432/shop").unwrap();
    /// assert_eq!((u.host.as_str(), u.port), ("db.internal", 6432));
    /// ```
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| format!("`{url}`: expected postgres://host:port"))?;
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let hostport = authority.rsplit('@').next().unwrap_or("");
        // `[v6]:port`, `[v6]`, `host:port`, `host`.
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6
                    .split_once(']')
                    .ok_or_else(|| format!("`{url}`: unclosed `[`"))?;
                (h, after.strip_prefix(':'))
            }
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            },
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("`{url}`: port `{p}` is not a number"))?,
            None => 5432,
        };
        if host.is_empty() {
            return Err(format!("`{url}`: no host"));
        }
        Ok(Upstream {
            host: host.to_string(),
            port,
        })
    }
}

/// Proxy settings.
#[derive(Debug, Clone)]
pub struct PgProxyConfig {
    /// The PostgreSQL server.
    pub upstream: Upstream,
    /// Client sessions at once; more get `53300 too many connections`.
    pub max_client_connections: usize,
    /// Connecting to the server.
    pub connect_timeout: Duration,
    /// A client must finish its startup packet within this.
    pub startup_timeout: Duration,
    /// Idle clients (nothing in flight) are disconnected after this; None: never.
    pub client_idle_timeout: Option<Duration>,
    /// On shutdown, sessions get this long to end before they are closed.
    pub shutdown_grace: Duration,
    /// Offered to clients that ask for TLS (`SSLRequest` answered `S`); None: `N`.
    pub tls: Option<Arc<ServerConfig>>,
    /// TLS to the server; None: plain text.
    pub upstream_tls: Option<UpstreamTls>,
    /// Query insight.
    pub insight: InsightConfig,
}

impl PgProxyConfig {
    /// Defaults for `upstream`.
    pub fn new(upstream: Upstream) -> Self {
        PgProxyConfig {
            upstream,
            max_client_connections: 1000,
            connect_timeout: Duration::from_secs(5),
            startup_timeout: Duration::from_secs(10),
            client_idle_timeout: None,
            shutdown_grace: Duration::from_secs(10),
            tls: None,
            upstream_tls: None,
            insight: InsightConfig::default(),
        }
    }
}

/// The PostgreSQL proxy.
///
/// ```no_run
/// # async fn run() {
/// use strata_pg::{PgProxy, PgProxyConfig, Upstream};
/// let cfg = PgProxyConfig::new(Upstream::parse("postgres://127.0.0.1:5432").unwrap());
/// let proxy = PgProxy::new(cfg);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:6433").await.unwrap();
/// proxy.serve(listener, std::future::pending()).await;
/// # }
/// ```
pub struct PgProxy {
    cfg: PgProxyConfig,
    insight: Insight,
    limit: Arc<Semaphore>,
    next_conn: AtomicU64,
    metrics: PgMetrics,
}

impl PgProxy {
    /// A proxy and its insight thread.
    pub fn new(cfg: PgProxyConfig) -> Arc<Self> {
        let metrics = PgMetrics::new();
        metrics.max_clients.set(cfg.max_client_connections as i64);
        Arc::new(PgProxy {
            insight: Insight::start(cfg.insight.clone(), metrics.clone()),
            limit: Arc::new(Semaphore::new(cfg.max_client_connections)),
            next_conn: AtomicU64::new(1),
            metrics,
            cfg,
        })
    }

    /// Query statistics, slow log, N+1 findings.
    pub fn insight(&self) -> &Insight {
        &self.insight
    }

    /// Its metrics (register them with [`PgMetrics::register`]).
    pub fn metrics(&self) -> &PgMetrics {
        &self.metrics
    }

    /// The configuration.
    pub fn config(&self) -> &PgProxyConfig {
        &self.cfg
    }

    /// Accepts sessions until `shutdown` resolves, then gives open sessions
    /// `shutdown_grace` to end. Sessions run on the caller's runtime.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let mut sessions = JoinSet::new();
        let this = self.clone();
        self.accept_until(listener, shutdown, |sock, peer, permit| {
            // Reap ended sessions so the set holds only live ones.
            while sessions.try_join_next().is_some() {}
            sessions.spawn(this.clone().session(sock, peer, permit));
        })
        .await;
        drain(sessions, self.cfg.shutdown_grace).await;
    }

    /// Like [`PgProxy::serve`], with sessions handed round-robin to `workers` threads
    /// that each run a single-threaded runtime: a session's two directions and its
    /// wake-ups stay on one thread (measured in docs/decisions.md). Returns when
    /// every worker has drained.
    pub async fn serve_on_workers(
        self: Arc<Self>,
        listener: TcpListener,
        workers: usize,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        type Handoff = (
            std::net::TcpStream,
            SocketAddr,
            Option<OwnedSemaphorePermit>,
        );
        let mut senders = Vec::new();
        let mut done = Vec::new();
        for n in 0..workers.max(1) {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Handoff>();
            let (finished_tx, finished_rx) = tokio::sync::oneshot::channel::<()>();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let this = self.clone();
            std::thread::Builder::new()
                .name(format!("strata-pg-{n}"))
                .spawn(move || {
                    rt.block_on(async move {
                        let mut sessions = JoinSet::new();
                        loop {
                            tokio::select! {
                                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                                got = rx.recv() => match got {
                                    Some((std, peer, permit)) => match TcpStream::from_std(std) {
                                        Ok(sock) => {
                                            sessions.spawn(this.clone().session(sock, peer, permit));
                                        }
                                        Err(e) => tracing::debug!(%peer, error = %e, "could not adopt a session"),
                                    },
                                    None => break,
                                },
                            }
                        }
                        drain(sessions, this.cfg.shutdown_grace).await;
                    });
                    let _ = finished_tx.send(());
                })?;
            senders.push(tx);
            done.push(finished_rx);
        }
        let mut next = 0usize;
        self.accept_until(listener, shutdown, |sock, peer, permit| {
            // A stream leaves this runtime's reactor to join the worker's.
            match sock.into_std() {
                Ok(std) => {
                    let _ = senders[next % senders.len()].send((std, peer, permit));
                    next = next.wrapping_add(1);
                }
                Err(e) => tracing::debug!(%peer, error = %e, "could not hand a session over"),
            }
        })
        .await;
        // Closing the channels tells the workers to drain and stop.
        drop(senders);
        for d in done {
            let _ = d.await;
        }
        Ok(())
    }

    async fn accept_until(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        mut on_accept: impl FnMut(TcpStream, SocketAddr, Option<OwnedSemaphorePermit>),
    ) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((sock, peer)) => {
                        // No permit: the session is refused after its startup packet.
                        let permit = self.limit.clone().try_acquire_owned().ok();
                        on_accept(sock, peer, permit);
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "postgres proxy: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    async fn session(
        self: Arc<Self>,
        mut client: TcpStream,
        peer: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let _ = client.set_nodelay(true);
        let tls = self.cfg.tls.clone();
        match self.begin(&mut client, tls.is_some()).await {
            None => {}
            Some(Begin::Session(startup, packet)) => {
                let (r, w) = client.split();
                self.run(r, w, startup, packet, peer, permit).await;
            }
            Some(Begin::Tls) => {
                let Some(tls) = tls else { return };
                let accept = TlsAcceptor::from(tls).accept(client);
                let Ok(Ok(mut stream)) =
                    tokio::time::timeout(self.cfg.startup_timeout, accept).await
                else {
                    return;
                };
                if let Some(Begin::Session(startup, packet)) = self.begin(&mut stream, false).await
                {
                    let (r, w) = tokio::io::split(stream);
                    self.run(r, w, startup, packet, peer, permit).await;
                }
            }
        }
    }

    /// Reads the startup packets within `startup_timeout`; protocol errors are
    /// answered here and end the session (None).
    async fn begin<S>(&self, client: &mut S, offer_tls: bool) -> Option<Begin>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let read = read_startup(client, offer_tls);
        match tokio::time::timeout(self.cfg.startup_timeout, read).await {
            Ok(Ok(b)) => Some(b),
            Ok(Err(StartupError::Protocol(e))) => {
                self.metrics.protocol_errors.inc();
                let code = match e {
                    ProtocolError::UnsupportedProtocol { .. } => "0A000",
                    _ => "08P01",
                };
                let _ = fatal(client, code, &e.to_string()).await;
                None
            }
            Ok(Err(StartupError::Io)) | Err(_) => None,
        }
    }

    /// A session whose startup packet has been read: cancel, refuse at the limit,
    /// or connect to the server and relay.
    async fn run<R, W>(
        &self,
        client_r: R,
        mut client_w: W,
        startup: Startup,
        packet: Vec<u8>,
        peer: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if let Startup::Cancel { .. } = startup {
            self.forward_cancel(&packet).await;
            return;
        }
        let Some(_permit) = permit else {
            self.metrics.refused.inc();
            let msg = format!(
                "sorry, too many clients already (strata max_client_connections = {})",
                self.cfg.max_client_connections
            );
            let _ = fatal(&mut client_w, "53300", &msg).await;
            return;
        };
        let up = &self.cfg.upstream;
        let server = match tokio::time::timeout(
            self.cfg.connect_timeout,
            TcpStream::connect((up.host.as_str(), up.port)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return self.unreachable(&mut client_w, &e.to_string()).await,
            Err(_) => return self.unreachable(&mut client_w, "connect timed out").await,
        };
        let _ = server.set_nodelay(true);
        let server = match self.upstream_tls(server).await {
            Ok(s) => s,
            Err(why) => return self.unreachable(&mut client_w, &why).await,
        };
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let user = startup.param("user").unwrap_or_default().to_string();
        let info = Arc::new(SessionInfo {
            database: startup.param("database").unwrap_or(&user).to_string(),
            user,
            client: peer.ip().to_string(),
        });
        self.metrics.clients.inc();
        self.metrics.servers.inc();
        match server {
            ServerStream::Plain(mut tcp) => {
                let (sr, sw) = tcp.split();
                self.relay(conn, client_r, client_w, sr, sw, &packet, &info)
                    .await;
            }
            ServerStream::Tls(tls) => {
                let (sr, sw) = tokio::io::split(tls);
                self.relay(conn, client_r, client_w, sr, sw, &packet, &info)
                    .await;
            }
        }
        self.metrics.clients.dec();
        self.metrics.servers.dec();
        self.insight.closed(conn);
    }

    /// Asks the server for TLS when `upstream_tls` says to: an `SSLRequest`, then a
    /// handshake on `S`; on `N`, plain text if only preferred, else an error.
    async fn upstream_tls(&self, mut server: TcpStream) -> Result<ServerStream, String> {
        let Some(tls) = &self.cfg.upstream_tls else {
            return Ok(ServerStream::Plain(server));
        };
        let mut req = Vec::with_capacity(8);
        req.extend_from_slice(&8u32.to_be_bytes());
        req.extend_from_slice(&crate::protocol::SSL_REQUEST.to_be_bytes());
        let answer = async {
            server.write_all(&req).await?;
            let mut b = [0u8; 1];
            server.read_exact(&mut b).await?;
            Ok::<u8, std::io::Error>(b[0])
        };
        let answer = tokio::time::timeout(self.cfg.connect_timeout, answer)
            .await
            .map_err(|_| "TLS request timed out".to_string())?
            .map_err(|e| format!("TLS request: {e}"))?;
        match answer {
            b'S' => {
                let name = ServerName::try_from(self.cfg.upstream.host.clone())
                    .map_err(|e| format!("server name for TLS: {e}"))?;
                let connect = TlsConnector::from(tls.config.clone()).connect(name, server);
                let stream = tokio::time::timeout(self.cfg.connect_timeout, connect)
                    .await
                    .map_err(|_| "TLS handshake timed out".to_string())?
                    .map_err(|e| format!("TLS handshake with the server: {e}"))?;
                Ok(ServerStream::Tls(Box::new(stream)))
            }
            b'N' if !tls.required => Ok(ServerStream::Plain(server)),
            b'N' => Err("the server does not accept TLS (upstream_tls requires it)".into()),
            other => Err(format!("unexpected answer {other:#04x} to the TLS request")),
        }
    }

    async fn unreachable<W: AsyncWrite + Unpin>(&self, client: &mut W, why: &str) {
        self.metrics.connect_errors.inc();
        let up = &self.cfg.upstream;
        tracing::warn!(upstream = %format!("{}:{}", up.host, up.port), error = why, "postgres proxy: server unreachable");
        let msg = format!(
            "strata: cannot reach the PostgreSQL server at {}:{}: {why}",
            up.host, up.port
        );
        let _ = fatal(client, "08006", &msg).await;
    }

    /// A cancel request names the server's own backend pid and key (the client got
    /// them from the server through us), so it goes to the server as it is.
    async fn forward_cancel(&self, packet: &[u8]) {
        let up = &self.cfg.upstream;
        let connect = TcpStream::connect((up.host.as_str(), up.port));
        if let Ok(Ok(mut s)) = tokio::time::timeout(self.cfg.connect_timeout, connect).await {
            if s.write_all(packet).await.is_ok() {
                // The server closes when it has handled it.
                let mut sink = [0u8; 64];
                let _ = tokio::time::timeout(self.cfg.connect_timeout, s.read(&mut sink)).await;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn relay<R, W, SR, SW>(
        &self,
        conn: u64,
        client_r: R,
        mut client: W,
        server_r: SR,
        mut server_w: SW,
        startup: &[u8],
        info: &Arc<SessionInfo>,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
        SR: AsyncRead + Unpin,
        SW: AsyncWrite + Unpin,
    {
        if server_w.write_all(startup).await.is_err() {
            return self.unreachable(&mut client, "connection closed").await;
        }
        let tracker = Mutex::new(Tracker::new(conn, self.cfg.insight.log_parameters));
        let mut front = Scanner::frontend();
        let mut back = Scanner::backend();
        let end = tokio::select! {
            r = pump_client(client_r, &mut server_w, &mut front, &tracker, self.cfg.client_idle_timeout) => r,
            r = pump_server(server_r, &mut client, &mut back, &tracker, &self.insight, info) => r,
        };
        let t = tracker.into_inner().unwrap_or_else(|p| p.into_inner());
        match end {
            End::ClientGone => {}
            End::ServerGone => {
                // Tell the client why, unless the server did or we are mid-message.
                if !t.server_fatal && back.at_boundary() {
                    let _ = fatal(
                        &mut client,
                        "08006",
                        "strata: the PostgreSQL server closed the connection",
                    )
                    .await;
                }
            }
            End::ClientProtocol(e) => {
                self.metrics.protocol_errors.inc();
                let _ = fatal(&mut client, "08P01", &e.to_string()).await;
            }
            End::ServerProtocol(e) => {
                self.metrics.protocol_errors.inc();
                tracing::warn!(error = %e, "postgres proxy: invalid message from the server");
                if back.at_boundary() {
                    let msg = format!("strata: invalid message from the server: {e}");
                    let _ = fatal(&mut client, "08P01", &msg).await;
                }
            }
            End::Idle => {
                let _ = fatal(
                    &mut client,
                    "57P05",
                    "terminating connection due to idle timeout (strata client_idle_timeout)",
                )
                .await;
            }
        }
    }
}

/// Gives sessions `grace` to end, then closes the rest.
async fn drain(mut sessions: JoinSet<()>, grace: Duration) {
    let _ = tokio::time::timeout(grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    sessions.shutdown().await;
}

enum End {
    ClientGone,
    ServerGone,
    ClientProtocol(ProtocolError),
    ServerProtocol(ProtocolError),
    Idle,
}

const READ_CHUNK: usize = 16 * 1024;

async fn pump_client<R, W>(
    mut from: R,
    to: &mut W,
    scanner: &mut Scanner,
    tracker: &Mutex<Tracker>,
    idle: Option<Duration>,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut terminated = false;
    loop {
        buf.reserve(READ_CHUNK);
        let read = match idle {
            Some(limit) => loop {
                match tokio::time::timeout(limit, from.read_buf(&mut buf)).await {
                    Ok(r) => break r,
                    // Only a session with nothing in flight is idle.
                    Err(_) if lock(tracker).is_idle() => return End::Idle,
                    Err(_) => continue,
                }
            },
            None => from.read_buf(&mut buf).await,
        };
        match read {
            Ok(0) | Err(_) => return End::ClientGone,
            Ok(_) => {}
        }
        let now = Instant::now();
        let scanned = {
            let mut t = lock(tracker);
            scanner.scan(&buf, |seen| {
                if let Seen::Message {
                    tag,
                    body,
                    complete,
                } = seen
                {
                    terminated |= tag == b'X';
                    t.client_message(tag, body, complete, now);
                }
            })
        };
        let n = match scanned {
            Ok(n) => n,
            Err(e) => return End::ClientProtocol(e),
        };
        if n > 0 {
            let chunk = buf.split_to(n);
            if to.write_all(&chunk).await.is_err() {
                return End::ServerGone;
            }
        }
        if terminated {
            return End::ClientGone;
        }
    }
}

async fn pump_server<R, W>(
    mut from: R,
    to: &mut W,
    scanner: &mut Scanner,
    tracker: &Mutex<Tracker>,
    insight: &Insight,
    info: &Arc<SessionInfo>,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut done: Vec<QueryEvent> = Vec::new();
    loop {
        buf.reserve(READ_CHUNK);
        match from.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return End::ServerGone,
            Ok(_) => {}
        }
        let now = Instant::now();
        let scanned = {
            let mut t = lock(tracker);
            scanner.scan(&buf, |seen| {
                if let Seen::Message { tag, body, .. } = seen {
                    if let Some(ev) = t.server_message(tag, body, now) {
                        done.push(ev);
                    }
                }
            })
        };
        for ev in done.drain(..) {
            insight.record(ev, info);
        }
        let n = match scanned {
            Ok(n) => n,
            Err(e) => return End::ServerProtocol(e),
        };
        if n > 0 {
            let chunk = buf.split_to(n);
            if to.write_all(&chunk).await.is_err() {
                return End::ClientGone;
            }
        }
    }
}

fn lock(t: &Mutex<Tracker>) -> std::sync::MutexGuard<'_, Tracker> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

enum StartupError {
    Io,
    Protocol(ProtocolError),
}

impl From<std::io::Error> for StartupError {
    fn from(_: std::io::Error) -> Self {
        StartupError::Io
    }
}

impl From<ProtocolError> for StartupError {
    fn from(e: ProtocolError) -> Self {
        StartupError::Protocol(e)
    }
}

/// The connection to the server.
enum ServerStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// TLS to the server, as `upstream_tls` configures it.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// rustls client settings (roots or, for `require`, no verification).
    pub config: Arc<rustls::ClientConfig>,
    /// Whether a server that answers `N` is refused (`require`, `verify-full`) rather
    /// than used in plain text (`prefer`).
    pub required: bool,
}

impl UpstreamTls {
    /// `mode` is libpq's: `prefer` or `require` (encrypted, certificate not checked:
    /// what libpq does for those), `verify-full` (checked against `ca`, and the
    /// name against the upstream host). `disable` is None.
    pub fn new(mode: &str, ca: Option<&std::path::Path>) -> Result<Option<Self>, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::CertificateDer;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let (config, required) = match mode {
            "disable" => return Ok(None),
            "prefer" | "require" => (
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                    .with_no_client_auth(),
                mode == "require",
            ),
            "verify-full" => {
                let ca = ca.ok_or("verify-full needs upstream_tls_ca (PEM roots)")?;
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca)
                    .map_err(|e| format!("{}: {e}", ca.display()))?
                {
                    let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
                    roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("{}: no certificate in it", ca.display()));
                }
                (
                    builder.with_root_certificates(roots).with_no_client_auth(),
                    true,
                )
            }
            other => {
                return Err(format!(
                    "unknown mode `{other}`: disable, prefer, require or verify-full"
                ))
            }
        };
        Ok(Some(UpstreamTls {
            config: Arc::new(config),
            required,
        }))
    }
}

/// libpq's `sslmode=require`: encryption without checking who answers. Signatures
/// are still checked, so the session is at least bound to the key presented.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How a session begins.
enum Begin {
    /// A startup message (or a cancel request) and its bytes.
    Session(Startup, Vec<u8>),
    /// The client asked for TLS and was told `S`: the handshake comes next.
    Tls,
}

/// Reads startup packets, answering GSSAPI encryption requests `N` and TLS requests
/// `S` when `offer_tls` (else `N`), until a startup message, a cancel request, or an
/// accepted TLS request.
async fn read_startup<S>(client: &mut S, offer_tls: bool) -> Result<Begin, StartupError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // libpq asks for GSSAPI then TLS at most once each.
    for _ in 0..3 {
        let mut head = [0u8; 4];
        client.read_exact(&mut head).await?;
        let len = startup_len(head)?;
        let mut packet = vec![0u8; len];
        packet[..4].copy_from_slice(&head);
        client.read_exact(&mut packet[4..]).await?;
        match parse_startup(&packet)? {
            Startup::SslRequest if offer_tls => {
                client.write_all(b"S").await?;
                return Ok(Begin::Tls);
            }
            Startup::SslRequest | Startup::GssEncRequest => client.write_all(b"N").await?,
            s => return Ok(Begin::Session(s, packet)),
        }
    }
    Err(ProtocolError::BadStartup("too many encryption requests").into())
}

async fn fatal<W: AsyncWrite + Unpin>(
    client: &mut W,
    code: &str,
    message: &str,
) -> std::io::Result<()> {
    client
        .write_all(&error_response("FATAL", code, message))
        .await?;
    client.shutdown().await
}

/// Loads a PEM certificate chain and private key for client-side TLS.
pub fn load_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match or are unusable: {e}"))?;
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let u = Upstream::parse("postgres://127.0.0.1:5432").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 5432));
        let u = Upstream::parse("postgresql://u:p@db/x?sslmode=disable").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("db", 5432));
        let u = Upstream::parse("postgres://[::1]:6000").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 6000));
        assert!(Upstream::parse("mysql://x").is_err());
        assert!(Upstream::parse("postgres://h:notaport").is_err());
        assert!(Upstream::parse("postgres:///db").is_err());
        let u = Upstream::parse("postgres://[::1]/db").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 5432));
    }
}
