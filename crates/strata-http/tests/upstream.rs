//! The origin client's connection pool against a hand-written HTTP/1.1 origin that
//! counts connections and can drop them between responses.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use strata_http::upstream::Upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `Content-Length` responses; with `close_after`, closes every connection
/// after that many responses without saying so (as an idle timeout would).
async fn origin(close_after: Option<usize>) -> (String, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut served = 0;
                loop {
                    let mut chunk = [0u8; 1024];
                    let n = match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        served += 1;
                        let body = format!("response {served}");
                        let head =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                        if s.write_all(format!("{head}{body}").as_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                        if close_after == Some(served) {
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, conns)
}

async fn get(u: &Upstream, host: &str) -> Result<String, String> {
    let mut req = http::Request::new(Body::empty());
    *req.uri_mut() = u.uri_for(Some(&"/x".parse().unwrap()));
    req.headers_mut().insert("host", host.parse().unwrap());
    let res = u.send(req).await.map_err(|e| e.to_string())?;
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    let (url, conns) = origin(None).await;
    let u = Upstream::new(&url, Duration::from_secs(1), Duration::from_secs(5)).unwrap();
    for i in 1..=20 {
        assert_eq!(get(&u, "o").await.unwrap(), format!("response {i}"));
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn connections_the_origin_dropped_are_replaced_without_errors() {
    let (url, conns) = origin(Some(1)).await;
    let u = Upstream::new(&url, Duration::from_secs(1), Duration::from_secs(5)).unwrap();
    for _ in 0..20 {
        // Back to back: a request that races the close is handed back unsent by
        // hyper and retried on a new connection.
        assert_eq!(get(&u, "o").await.unwrap(), "response 1");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn a_dead_origin_is_a_connect_error() {
    let port = strata_testkit::free_loopback_port();
    let u = Upstream::new(
        &format!("http://127.0.0.1:{port}"),
        Duration::from_secs(1),
        Duration::from_secs(5),
    )
    .unwrap();
    let e = get(&u, "o").await.unwrap_err();
    assert!(e.starts_with("cannot connect"), "{e}");
}
