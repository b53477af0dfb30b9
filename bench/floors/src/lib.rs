//! Shared by the two reference relays: one kept-alive origin connection per client
//! connection, and reading a `Content-Length` framed response from it.

use std::future::Future;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// Runs `relay(client, origin address)` for every connection accepted on the
/// address the command line gives (`LISTEN ORIGIN`, both `host:port`), on one
/// current-thread runtime: for one request at a time, what each of strata's
/// proxy workers is.
pub fn serve<F, Fut>(relay: F) -> std::io::Result<()>
where
    F: Fn(TcpStream, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut a = std::env::args().skip(1);
    let (Some(listen), Some(origin)) = (a.next(), a.next()) else {
        eprintln!("usage: LISTEN_ADDR ORIGIN_ADDR");
        std::process::exit(2)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let l = TcpListener::bind(listen).await?;
        loop {
            let (c, _) = l.accept().await?;
            c.set_nodelay(true)?;
            tokio::spawn(relay(c, origin.clone()));
        }
    })
}

/// A connection to the origin with TCP_NODELAY, as strata and nginx set it.
pub async fn connect(origin: &str) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(origin).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads one response into `buf` (cleared first); returns the head's length and
/// the whole message's. Only `Content-Length` framing: the origin is nginx
/// serving a file.
pub async fn read_response(
    o: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<(usize, usize)> {
    buf.clear();
    loop {
        // Into spare capacity: no zeroed scratch buffer per read.
        buf.reserve(8192);
        if o.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut fields);
        if let Ok(httparse::Status::Complete(head)) = res.parse(buf) {
            let len = res
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= head + len {
                return Ok((head, head + len));
            }
        }
    }
}
