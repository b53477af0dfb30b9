//! The origin leg at the byte level: a hand-written origin over a raw socket frames
//! its responses every way HTTP/1.1 allows, closes pooled connections under the
//! proxy, and drops requests; the proxy's origin client must get each right.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the raw origin saw.
#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    /// (method, path, body) of every request read.
    requests: Mutex<Vec<(String, String, Vec<u8>)>>,
}

impl Seen {
    fn count(&self, method: &str, path: &str) -> usize {
        let r = self.requests.lock().unwrap();
        r.iter()
            .filter(|(m, p, _)| m == method && p == path)
            .count()
    }
}

fn big() -> Vec<u8> {
    (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Reads one request (head, then a Content-Length or chunked body); None at EOF.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, String, Vec<u8>)> {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut fields);
        if let Ok(httparse::Status::Complete(len)) = req.parse(buf) {
            let method = req.method.unwrap().to_owned();
            let path = req.path.unwrap().to_owned();
            let header = |n: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(n))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let length = header("content-length").map(|v| v.parse::<usize>().unwrap());
            let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
            buf.drain(..len);
            let body = if chunked {
                read_chunked(s, buf).await?
            } else {
                let n = length.unwrap_or(0);
                while buf.len() < n {
                    if read_more(s, buf).await == 0 {
                        return None;
                    }
                }
                buf.drain(..n).collect()
            };
            return Some((method, path, body));
        }
        if read_more(s, buf).await == 0 {
            return None;
        }
    }
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 8192];
    let n = s.read(&mut chunk).await.unwrap_or(0);
    buf.extend_from_slice(&chunk[..n]);
    n
}

async fn read_chunked(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if read_more(s, buf).await == 0 {
                return None;
            }
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16).unwrap();
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            if read_more(s, buf).await == 0 {
                return None;
            }
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
        if size == 0 {
            return Some(body);
        }
    }
}

/// An origin answering by path:
/// - `/len`: 100,000 bytes with Content-Length;
/// - `/chunked`: the same in chunks with an extension and a trailer;
/// - `/close`: the same, delimited by closing the connection;
/// - `/once`: a short answer, then the connection is closed 20 ms later;
/// - `/drop`: the connection is closed without an answer;
/// - `/stale`: answered on a new connection, closed without an answer on one that
///   served a request before (an origin's idle timeout racing a reused connection);
/// - `/echo`: the length of the request body it received.
async fn raw_origin() -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let st = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            st.connections.fetch_add(1, Ordering::SeqCst);
            let st = st.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut served = 0;
                while let Some((method, path, body)) = read_request(&mut s, &mut buf).await {
                    served += 1;
                    st.requests
                        .lock()
                        .unwrap()
                        .push((method.clone(), path.clone(), body.clone()));
                    let nostore = "cache-control: no-store\r\n";
                    match path.as_str() {
                        "/len" => {
                            let b = big();
                            let head = format!(
                                "HTTP/1.1 200 OK\r\n{nostore}content-length: {}\r\n\r\n",
                                b.len()
                            );
                            s.write_all(head.as_bytes()).await.unwrap();
                            s.write_all(&b).await.unwrap();
                        }
                        "/chunked" => {
                            let mut out = format!(
                                "HTTP/1.1 200 OK\r\n{nostore}transfer-encoding: chunked\r\n\r\n"
                            )
                            .into_bytes();
                            for piece in big().chunks(7_001) {
                                out.extend(format!("{:X};ext=1\r\n", piece.len()).bytes());
                                out.extend(piece);
                                out.extend(b"\r\n");
                            }
                            out.extend(b"0\r\nx-trailer: yes\r\n\r\n");
                            // In two writes split mid-chunk-line.
                            let (a, b) = out.split_at(out.len() / 2 + 3);
                            s.write_all(a).await.unwrap();
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            s.write_all(b).await.unwrap();
                        }
                        "/close" => {
                            let head =
                                format!("HTTP/1.1 200 OK\r\n{nostore}connection: close\r\n\r\n");
                            s.write_all(head.as_bytes()).await.unwrap();
                            s.write_all(&big()).await.unwrap();
                            return;
                        }
                        "/once" => {
                            s.write_all(
                                format!(
                                    "HTTP/1.1 200 OK\r\n{nostore}content-length: 4\r\n\r\nonce"
                                )
                                .as_bytes(),
                            )
                            .await
                            .unwrap();
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            return;
                        }
                        "/drop" => return,
                        "/stale" if served > 1 => return,
                        _ => {
                            let b = body.len().to_string();
                            let head = format!(
                                "HTTP/1.1 200 OK\r\n{nostore}content-length: {}\r\n\r\n{b}",
                                b.len()
                            );
                            s.write_all(head.as_bytes()).await.unwrap();
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// A request read to its end, so the proxy's next one goes out on the pooled
/// connection it used.
async fn pool_one(c: &reqwest::Client, proxy: &Proxy, method: reqwest::Method) {
    c.request(method, proxy.url("/len"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
}

async fn proxy_for(addr: SocketAddr) -> Proxy {
    let cache = strata_cache::Cache::builder().build().await.unwrap();
    Proxy::start_for(&format!("http://{addr}"), "", cache).await
}

#[tokio::test]
async fn bodies_framed_by_length_chunks_or_close_reach_the_client_whole() {
    let (addr, seen) = raw_origin().await;
    let proxy = proxy_for(addr).await;
    let c = common::client();
    for path in ["/len", "/chunked", "/close", "/len", "/chunked"] {
        let r = c.get(proxy.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), 100_000, "{path}");
        assert!(body[..] == big()[..], "{path}: body differs");
    }
    // Length and chunked responses left their connection reusable; `/close` could not.
    let conns = seen.connections.load(Ordering::SeqCst);
    assert!(conns <= 3, "{conns} connections for 5 sequential requests");
}

#[tokio::test]
async fn a_pooled_connection_the_origin_closed_is_not_used() {
    let (addr, seen) = raw_origin().await;
    let proxy = proxy_for(addr).await;
    let c = common::client();
    // POSTs: a request with a body is never sent twice, so one that went out on the
    // closed connection would come back 502.
    for _ in 0..3 {
        let r = c.post(proxy.url("/once")).body("b").send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "once");
        // The origin closes the connection the proxy keeps.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.count("POST", "/once"), 3);
    // GETs go through strata's own HTTP/1.1 and a pool of their own. (Whether
    // the closed connection is noticed before use is tested in h1.rs: a GET
    // written to it would reach no one and be sent again, so the count here
    // cannot tell.)
    for _ in 0..3 {
        let r = c.get(proxy.url("/once")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "once");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.count("GET", "/once"), 3);
}

#[tokio::test]
async fn a_dropped_request_gets_502_and_is_never_repeated_more_than_once() {
    let (addr, seen) = raw_origin().await;
    let proxy = proxy_for(addr).await;
    let c = common::client();
    // A pooled connection first, so the next request goes out on a reused one.
    pool_one(&c, &proxy, reqwest::Method::GET).await;
    let r = c.get(proxy.url("/drop")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    // Dropped on a reused connection: sent once more, on a new one, which the
    // origin drops too; never a third time.
    assert_eq!(seen.count("GET", "/drop"), 2);
    pool_one(&c, &proxy, reqwest::Method::POST).await;
    let r = c.post(proxy.url("/drop")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(seen.count("POST", "/drop"), 1, "a POST is never sent twice");
}

#[tokio::test]
async fn a_repeatable_request_the_origin_dropped_on_a_reused_connection_is_sent_again() {
    let (addr, seen) = raw_origin().await;
    let proxy = proxy_for(addr).await;
    let c = common::client();
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        // One pooled connection, then a request on it that the origin drops.
        pool_one(&c, &proxy, method.clone()).await;
        let r = c
            .request(method.clone(), proxy.url("/stale"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{method}");
        assert_eq!(seen.count(method.as_str(), "/stale"), 2, "{method}");
    }
    // With a body it cannot be sent again: the client hears of the failure.
    pool_one(&c, &proxy, reqwest::Method::PUT).await;
    let r = c.put(proxy.url("/stale")).body("b").send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(seen.count("PUT", "/stale"), 1);
}

#[tokio::test]
async fn request_bodies_of_known_and_unknown_length_arrive_whole() {
    let (addr, seen) = raw_origin().await;
    let proxy = proxy_for(addr).await;
    let c = common::client();
    let r = c.post(proxy.url("/echo")).body(big()).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "100000");
    // No length: the client sends chunks, the proxy re-frames them for the origin.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        big().chunks(10_000).map(|p| Ok(p.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(pieces));
    let r = c.put(proxy.url("/echo")).body(body).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "100000");
    let r = c.post(proxy.url("/echo")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "0");
    let reqs = seen.requests.lock().unwrap();
    assert!(reqs
        .iter()
        .filter(|(m, p, _)| m != "GET" && p == "/echo")
        .all(|(_, _, b)| b.is_empty() || b[..] == big()[..]));
}
