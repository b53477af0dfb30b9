//! Serving the proxy on a listener: HTTP/1.1 with keep-alive, a header timeout for
//! slow clients, a bound on connections, and a graceful drain on shutdown.
//!
//! Two shapes. [`serve`] runs every connection on the caller's runtime.
//! [`serve_on_workers`] accepts on the caller's runtime and hands each connection
//! to one of N threads, each with a single-threaded runtime and its own pool of
//! origin connections (nginx's worker model): a request and the origin request it
//! makes then run on one thread, with no cross-thread wake-ups per request. On
//! the 2-core bench machine that served ~1.25x the pass-through requests/s of the
//! shared runtime with a quarter of its p99 (docs/decisions.md); `strata serve`
//! uses it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::proxy::HttpCache;

fn http1_builder(proxy: &HttpCache) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(proxy.config().header_timeout())
        // Not `.max_headers(100)`: that is hyper's default limit anyway, and setting
        // it explicitly makes every parse fill a 100-slot array of its own (hyper
        // 1.x, `smallvec!` with a count) instead of using uninitialised stack.
        .max_buf_size(64 * 1024);
    http
}

/// Serves one connection until it closes; the permit is held until then.
fn spawn_connection(
    http: &http1::Builder,
    graceful: &GracefulShutdown,
    proxy: &HttpCache,
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let proxy = proxy.clone();
    let ip = http::HeaderValue::from_str(&peer.ip().to_string()).ok();
    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let proxy = proxy.clone();
        let ip = ip.clone();
        async move {
            // A bodiless request (most) gets the empty body, which is not boxed:
            // boxing hyper's `Incoming` costs an allocation per request.
            let req = req.map(|body| match http_body::Body::is_end_stream(&body) {
                true => axum::body::Body::empty(),
                false => axum::body::Body::new(body),
            });
            Ok::<_, std::convert::Infallible>(proxy.handle_from(req, Some(peer), ip).await)
        }
    });
    let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), svc));
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%peer, error = %e, "proxy connection ended with an error");
        }
        drop(permit);
    });
}

/// Accepts until `shutdown`, calling `each` with every connection and a permit of
/// the connection limit (held until the connection ends, so at most
/// `max_connections` are served at once; the rest wait in the kernel's backlog).
/// Accept errors (out of descriptors and the like) back off 50 ms rather than spin.
/// `strata serve` accepts its API connections with it too.
pub async fn accept_loop(
    listener: TcpListener,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
    mut each: impl FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit),
) {
    let limit = Arc::new(Semaphore::new(max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        each(stream, peer, permit);
    }
}

/// Serves `proxy` on `listener` until `shutdown` completes, then lets requests in
/// flight finish for up to `drain`.
///
/// ```no_run
/// # async fn run(proxy: strata_http::HttpCache) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind(proxy.config().listen()).await?;
/// strata_http::server::serve(listener, proxy, std::future::pending::<()>(),
///     std::time::Duration::from_secs(10)).await;
/// # Ok(()) }
/// ```
pub async fn serve(
    listener: TcpListener,
    proxy: HttpCache,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let http = http1_builder(&proxy);
    let _tick = TimerTick::start(tick_period(&proxy));
    let max = proxy.config().max_connections();
    accept_loop(listener, max, shutdown, |stream, peer, permit| {
        spawn_connection(&http, &graceful, &proxy, stream, peer, permit)
    })
    .await;
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("proxy drain deadline passed; closing remaining connections");
    }
}

type Handoff = (std::net::TcpStream, SocketAddr, OwnedSemaphorePermit);

/// Like [`serve`], with connections spread round-robin over `workers` threads that
/// each run a single-threaded runtime. Returns when every worker has drained.
pub async fn serve_on_workers(
    listener: TcpListener,
    proxy: HttpCache,
    workers: usize,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let mut senders = Vec::new();
    let mut done = Vec::new();
    for n in 0..workers.max(1) {
        let (tx, rx) = mpsc::unbounded_channel::<Handoff>();
        let (finished_tx, finished_rx) = tokio::sync::oneshot::channel::<()>();
        let proxy = proxy.fork();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("strata-proxy-{n}"))
            .spawn(move || {
                rt.block_on(worker(rx, proxy, drain));
                let _ = finished_tx.send(());
            })?;
        senders.push(tx);
        done.push(finished_rx);
    }
    let max = proxy.config().max_connections();
    let mut next = 0usize;
    accept_loop(listener, max, shutdown, |stream, peer, permit| {
        // A stream leaves this runtime's reactor to join the worker's.
        match stream.into_std() {
            Ok(std) => {
                let _ = senders[next % senders.len()].send((std, peer, permit));
                next = next.wrapping_add(1);
            }
            Err(e) => tracing::debug!(%peer, error = %e, "could not hand a connection over"),
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

async fn worker(mut rx: mpsc::UnboundedReceiver<Handoff>, proxy: HttpCache, drain: Duration) {
    let graceful = GracefulShutdown::new();
    let http = http1_builder(&proxy);
    let _tick = TimerTick::start(tick_period(&proxy));
    while let Some((std, peer, permit)) = rx.recv().await {
        match TcpStream::from_std(std) {
            Ok(stream) => spawn_connection(&http, &graceful, &proxy, stream, peer, permit),
            Err(e) => tracing::debug!(%peer, error = %e, "could not adopt a connection"),
        }
    }
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("proxy drain deadline passed; closing remaining connections");
    }
}

/// A timer that fires every `period` on the current runtime until dropped, so the
/// runtime's next planned timer wake-up is never more than `period` away.
///
/// Why: tokio wakes its own I/O driver (an eventfd write, then one more
/// `epoll_wait` return) whenever a timer is registered that expires before the
/// wake-up the driver planned when it last parked. On the pass-through path a
/// worker parks while the only timers are the origin response timeouts (30 s);
/// when the responses are relayed, hyper arms each connection's header timeout
/// (10 s) for its next request, earlier than that: one self-wake per request
/// (`strace -k`: `Sleep::poll` → `reregister` → `Waker::wake`). With a tick
/// nearer than any per-request timeout, a new timer never comes first.
struct TimerTick(tokio::task::AbortHandle);

impl TimerTick {
    fn start(period: Duration) -> TimerTick {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
            }
        });
        TimerTick(task.abort_handle())
    }
}

impl Drop for TimerTick {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Half the shortest per-request timeout, at most 1 s (1 wake-up a second per
/// worker), at least 1 ms.
fn tick_period(proxy: &HttpCache) -> Duration {
    let cfg = proxy.config();
    let shortest = cfg.header_timeout().min(cfg.response_timeout());
    (shortest / 2).clamp(Duration::from_millis(1), Duration::from_secs(1))
}
