//! The least a tokio HTTP/1.1 relay does per bodiless request: read the request
//! head, write it unchanged to the origin, read the response, write it back. No
//! header handling at all; a floor, not a proxy.

use strata_floors::{connect, read_response, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn relay(mut c: TcpStream, origin: String) -> std::io::Result<()> {
    let mut o = connect(&origin).await?;
    let (mut req, mut res) = (Vec::with_capacity(8192), Vec::with_capacity(8192));
    loop {
        req.clear();
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            req.reserve(4096);
            if c.read_buf(&mut req).await? == 0 {
                return Ok(());
            }
        }
        o.write_all(&req).await?;
        let (_, end) = read_response(&mut o, &mut res).await?;
        c.write_all(&res[..end]).await?;
    }
}

fn main() -> std::io::Result<()> {
    serve(|c, origin| async move {
        let _ = relay(c, origin).await;
    })
}
