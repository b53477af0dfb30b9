//! hyper's HTTP/1.1 server (with the header-read timeout strata sets) in front of
//! the least relay: the request's fields written to the origin as they came
//! (less `Connection`), the response parsed with httparse into a `Response`, with
//! a 30 s response timeout. What a pass-through costs on hyper, before any of a
//! proxy's own work.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use strata_floors::{connect, read_response, serve};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

struct Origin {
    conn: TcpStream,
    buf: Vec<u8>,
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

async fn relay(
    req: Request<Incoming>,
    o: Arc<Mutex<Origin>>,
) -> std::io::Result<Response<Full<Bytes>>> {
    let mut o = o.lock().await;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        req.uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        if name != header::CONNECTION {
            for part in [name.as_str().as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
                out.extend_from_slice(part);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    let Origin { conn, buf } = &mut *o;
    conn.write_all(&out).await?;
    let (head, end) = tokio::time::timeout(Duration::from_secs(30), read_response(conn, buf))
        .await
        .map_err(|_| bad("origin timeout"))??;
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut fields);
    parsed
        .parse(&buf[..head])
        .map_err(|_| bad("response head"))?;
    let mut res = Response::new(Full::new(Bytes::copy_from_slice(&buf[head..end])));
    *res.status_mut() =
        StatusCode::from_u16(parsed.code.unwrap_or(502)).map_err(|_| bad("status"))?;
    for f in parsed.headers.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| bad("name"))?;
        if name != header::CONNECTION && name != header::CONTENT_LENGTH {
            let value = HeaderValue::from_bytes(f.value).map_err(|_| bad("value"))?;
            res.headers_mut().append(name, value);
        }
    }
    Ok(res)
}

fn main() -> std::io::Result<()> {
    serve(|c, origin| async move {
        let Ok(conn) = connect(&origin).await else {
            return;
        };
        let o = Arc::new(Mutex::new(Origin {
            conn,
            buf: Vec::with_capacity(8192),
        }));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
        let svc = hyper::service::service_fn(move |req| relay(req, o.clone()));
        let _ = http.serve_connection(TokioIo::new(c), svc).await;
    })
}
