//! HTTP/1.1 to the origin for the requests a cache sends most: a `GET` or `HEAD`
//! without a body. The requesting task writes the request and reads the response
//! itself; everything else (other methods, requests with a body) goes through
//! hyper's client (upstream.rs).
//!
//! Why: hyper's client drives each connection from a task of its own, so a request
//! goes to that task through a channel, and the response head and every body frame
//! come back through others, each a wake-up and a task poll. Doing without them took
//! 2-3 µs of user CPU and 5.5-6.5 µs of added latency off a pass-through request
//! (docs/decisions.md, "Bodiless GETs and HEADs to the origin").
//!
//! What is parsed by hand is small, and the parsing of heads and chunk sizes is
//! httparse's, the parser inside hyper. The framing rules are RFC 9112 §6.3's, and
//! strict where a lax reading could hand one response's bytes to the next request:
//!
//! - no body for `HEAD`, 1xx, 204 and 304, whatever the fields say;
//! - `Transfer-Encoding` wins over `Content-Length`, which is then dropped, and the
//!   connection is not reused; a last coding other than `chunked`, or any
//!   `Transfer-Encoding` in an HTTP/1.0 response, means "read to the close";
//! - `Content-Length` must be digits, the same in every value, or the response is an
//!   error (502);
//! - a connection goes back to the pool only when its response was read to the end,
//!   nothing follows it in the buffer, and neither side said `close`.
//!
//! The parsing half has no I/O ([`parse_head`], [`Decoder`]) and is fuzzed
//! (`fuzz/fuzz_targets/origin_response.rs`).

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{ready, Context, Poll, Waker};

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::fields::{is_cache_only, is_hop_by_hop, strip_hop_by_hop};
use crate::upstream::{Pool, UpstreamError};

/// Most bytes in a response head (status line and fields). nginx refuses heads
/// over its `proxy_buffer_size` (4 or 8 KiB by default); this is generous.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most fields in a response head: hyper's default.
pub const MAX_FIELDS: usize = 100;
/// Longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;
/// Most bytes of trailer fields after the last chunk; they are read and dropped.
const MAX_TRAILERS: usize = 64 * 1024;
/// Smallest and largest read from the origin; reads grow while they fill up.
const MIN_READ: usize = 8 * 1024;
const MAX_READ: usize = 256 * 1024;

/// How a response's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the origin closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    /// The status code.
    pub status: StatusCode,
    /// The reason phrase, when it is not the status code's usual one: relayed as
    /// it came, as hyper's client and nginx do.
    pub reason: Option<Bytes>,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The end-to-end fields, in order; values share the read buffer. Hop-by-hop
    /// fields (RFC 9110 §7.6.1), the standard ones and those `Connection` lists,
    /// describe this connection, not the response: they are read for the framing
    /// and left out, so a proxy relays the map as it is.
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Parses the response head at the start of `buf` and removes it from `buf`.
/// `Ok(None)`: more bytes are needed. Interim responses (1xx) are dropped; a 101
/// is an error, because strata never asks for an upgrade. `head_request`: the
/// request was `HEAD`, so the response has no body.
///
/// ```
/// use bytes::BytesMut;
/// use strata_http::h1::{parse_head, Framing};
///
/// let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"[..]);
/// let head = parse_head(&mut buf, false).unwrap().unwrap();
/// assert_eq!(head.status, 200);
/// assert_eq!(head.framing, Framing::Length(2));
/// assert!(head.keep_alive);
/// assert_eq!(&buf[..], b"hi");
///
/// let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-"[..]);
/// assert!(parse_head(&mut partial, false).unwrap().is_none());
/// ```
pub fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, String> {
    parse_head_with(buf, head_request, false, &mut Vec::new())
}

/// [`parse_head`] with `fields` as scratch space for where each field lies: a
/// connection keeps one between responses, so a head costs neither an allocation
/// nor the zeroing of a fixed array (1.6 KiB, ~100 instructions, bench/ir-pass.sh).
/// `relayed`: the head is for a client, so the cache-only fields
/// ([`OriginRequest::relayed`](crate::upstream::OriginRequest::relayed)) are left
/// out too.
pub(crate) fn parse_head_with(
    buf: &mut BytesMut,
    head_request: bool,
    relayed: bool,
    fields: &mut Vec<(Span, Span)>,
) -> Result<Option<Head>, String> {
    loop {
        let Some(parsed) = parse_one(buf, fields)? else {
            return Ok(None);
        };
        let Parsed {
            len,
            status,
            reason,
            version,
            count,
            framing,
        } = parsed;
        if status.is_informational() {
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err("the origin switched protocols (101) unasked".into());
            }
            buf.advance(len);
            continue;
        }
        let head = buf.split_to(len).freeze();
        let reason = range(reason);
        let reason = (status.canonical_reason().map(str::as_bytes) != Some(&head[reason.clone()]))
            .then(|| head.slice(reason));
        let mut headers = HeaderMap::with_capacity(count);
        for &(name, value) in &fields[..count] {
            let name = HeaderName::from_bytes(&head[range(name)])
                .map_err(|_| "a field name the origin sent is not valid".to_owned())?;
            if framing.drop_length && name == http::header::CONTENT_LENGTH {
                continue;
            }
            // Left out here rather than removed later: a removal hashes the name
            // and shifts the map (with the `Connection` scan, ~4% of a
            // pass-through request's instructions, bench/ir-pass.sh). When
            // `Connection` lists other fields it stays until they are found.
            if !framing.lists_fields && is_hop_by_hop(&name) {
                continue;
            }
            if relayed && is_cache_only(name.as_str()) {
                continue;
            }
            // SAFETY: httparse, with the default configuration used here (no
            // obsolete line folding), accepted these bytes as a field value: HTAB,
            // SP to `~` and 0x80-0xFF, exactly the bytes a `HeaderValue` may hold
            // (`httparse_values_are_header_values` checks all 256). hyper's own
            // parser relies on the same; checking again was ~460 instructions of a
            // pass-through request (bench/ir-pass.sh). Debug builds check anyway.
            let value =
                unsafe { HeaderValue::from_maybe_shared_unchecked(head.slice(range(value))) };
            headers.append(name, value);
        }
        if framing.lists_fields {
            strip_hop_by_hop(&mut headers);
        }
        let no_body =
            head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        let framing_kind = match framing.kind {
            _ if no_body => Framing::Empty,
            Framing::Length(0) => Framing::Empty,
            k => k,
        };
        let keep_alive = framing.keep_alive && framing_kind != Framing::Close;
        return Ok(Some(Head {
            status,
            reason,
            version,
            headers,
            framing: framing_kind,
            keep_alive,
        }));
    }
}

/// Where a piece of the head lies in it (a head is at most 64 KiB).
pub(crate) type Span = (u32, u32);

fn range((start, end): Span) -> std::ops::Range<usize> {
    start as usize..end as usize
}

/// One head, parsed but not yet taken from the buffer.
struct Parsed {
    len: usize,
    status: StatusCode,
    reason: Span,
    version: Version,
    /// Fields, in `parse_one`'s scratch list.
    count: usize,
    framing: FramingFields,
}

/// What the framing fields of a head say.
struct FramingFields {
    kind: Framing,
    keep_alive: bool,
    /// `Content-Length` is overridden by `Transfer-Encoding` and must not reach
    /// the client beside a body framed otherwise.
    drop_length: bool,
    /// `Connection` lists something besides `close` and `keep-alive`: a field
    /// name, which must then go too (rare; the head is then stripped whole).
    lists_fields: bool,
}

fn parse_one(buf: &BytesMut, fields: &mut Vec<(Span, Span)>) -> Result<Option<Parsed>, String> {
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(_) if buf.len() > MAX_HEAD => {
            return Err(format!(
                "the origin's response head is over {MAX_HEAD} bytes"
            ))
        }
        Ok(_) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(format!(
                "the origin's response has more than {MAX_FIELDS} fields"
            ))
        }
        Err(e) => return Err(format!("the origin's response head is malformed: {e}")),
    };
    // httparse checked that the code is three digits.
    let status = res
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or("the origin's status code is invalid")?;
    let version = match res.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Where a piece httparse returned lies in `buf`. Not every piece does: a
    // reason phrase that is not UTF-8 comes back as a static "" (then relayed
    // empty, as hyper does).
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| -> Option<Span> {
        let start = (s.as_ptr() as usize).checked_sub(base)?;
        let end = start.checked_add(s.len()).filter(|&e| e <= len)?;
        // Both at most MAX_HEAD.
        Some((start as u32, end as u32))
    };
    let reason = res
        .reason
        .and_then(|r| span(r.as_bytes()))
        .unwrap_or((0, 0));
    let mut lengths = Lengths::default();
    let mut transfer_encoding = None;
    let (mut close, mut keep_alive, mut lists_fields) = (false, false, false);
    fields.clear();
    for h in res.headers.iter() {
        fields.push(match (span(h.name.as_bytes()), span(h.value)) {
            (Some(name), Some(value)) => (name, value),
            _ => return Err("the origin's response head is malformed".into()),
        });
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths.add(h.value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The last coding of the last field is the one that frames the body.
            if let Some(last) = tokens(h.value).last() {
                transfer_encoding = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in tokens(h.value) {
                let (c, k) = (
                    t.eq_ignore_ascii_case(b"close"),
                    t.eq_ignore_ascii_case(b"keep-alive"),
                );
                close |= c;
                keep_alive |= k;
                lists_fields |= !c && !k;
            }
        }
    }
    let persistent = match version {
        Version::HTTP_10 => keep_alive && !close,
        _ => !close,
    };
    let framing = match transfer_encoding {
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
        Some(_) if version == Version::HTTP_10 => FramingFields {
            kind: Framing::Close,
            keep_alive: false,
            drop_length: true,
            lists_fields,
        },
        Some(chunked) => FramingFields {
            kind: if chunked {
                Framing::Chunked
            } else {
                Framing::Close
            },
            // Both fields: a sign of an attempt at response splitting (§6.3).
            keep_alive: persistent && lengths.seen == 0,
            drop_length: true,
            lists_fields,
        },
        None => FramingFields {
            kind: match lengths.value()? {
                Some(n) => Framing::Length(n),
                None => Framing::Close,
            },
            keep_alive: persistent,
            drop_length: false,
            lists_fields,
        },
    };
    Ok(Some(Parsed {
        len,
        status,
        reason,
        version,
        count: res.headers.len(),
        framing,
    }))
}

/// `Content-Length` values: all must be the same number (RFC 9110 §8.6).
#[derive(Default)]
struct Lengths {
    seen: usize,
    value: Option<u64>,
    invalid: bool,
}

impl Lengths {
    fn add(&mut self, field: &[u8]) {
        for v in field.split(|b| *b == b',') {
            self.seen += 1;
            let v = v.trim_ascii();
            let n = match std::str::from_utf8(v) {
                Ok(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
                _ => None,
            };
            match (n, self.value) {
                (None, _) => self.invalid = true,
                (Some(n), Some(m)) if n != m => self.invalid = true,
                (Some(n), _) => self.value = Some(n),
            }
        }
    }

    fn value(&self) -> Result<Option<u64>, String> {
        if self.invalid {
            return Err("the origin's Content-Length is invalid or contradicts itself".into());
        }
        Ok(self.value)
    }
}

/// The non-empty, trimmed elements of a comma-separated field value.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Takes a response body out of the bytes read from the origin, frame by frame.
///
/// ```
/// use bytes::BytesMut;
/// use strata_http::h1::{Decoder, Framing};
///
/// let mut d = Decoder::new(Framing::Chunked);
/// let mut buf = BytesMut::from(&b"2\r\nhi\r\n0\r\n\r\n"[..]);
/// assert_eq!(&d.decode(&mut buf).unwrap().unwrap()[..], b"hi");
/// assert!(d.decode(&mut buf).unwrap().is_none());
/// assert!(d.is_done() && buf.is_empty());
/// ```
#[derive(Debug)]
pub struct Decoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes left.
    Length(u64),
    /// Before a chunk-size line.
    Size,
    /// This many bytes left in a chunk.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer fields after the last chunk, up to an empty line.
    Trailers,
    /// Until the connection ends.
    Close,
    Done,
}

impl Decoder {
    /// A decoder for a body framed as `framing` says.
    pub fn new(framing: Framing) -> Decoder {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Size,
            Framing::Close => State::Close,
        };
        Decoder { state }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The next piece of body from `buf`, removed from it; `Ok(None)` when `buf`
    /// holds no more (read more, unless [`Decoder::is_done`]).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, String> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Length(n) | State::Data(n) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                    let left = n - take as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::DataEnd,
                        _ => State::Data(left),
                    };
                    return Ok(Some(buf.split_to(take).freeze()));
                }
                State::Size => {
                    let Some(end) = find_crlf(&buf[..buf.len().min(MAX_CHUNK_LINE)]) else {
                        if buf.len() >= MAX_CHUNK_LINE {
                            return Err("a chunk-size line from the origin is too long".into());
                        }
                        return Ok(None);
                    };
                    let line = &buf[..end];
                    // httparse takes an empty size as 0 and a bare LF inside an
                    // extension as part of it; neither is HTTP.
                    if !line.first().is_some_and(u8::is_ascii_hexdigit) || line.contains(&b'\n') {
                        return Err("a chunk-size line from the origin is malformed".into());
                    }
                    let size = match httparse::parse_chunk_size(&buf[..end + 2]) {
                        Ok(httparse::Status::Complete((_, size))) => size,
                        _ => return Err("a chunk-size line from the origin is malformed".into()),
                    };
                    buf.advance(end + 2);
                    self.state = match size {
                        0 => State::Trailers,
                        n => State::Data(n),
                    };
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("a chunk from the origin is longer than its size".into());
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    let mut fields = [httparse::EMPTY_HEADER; 32];
                    match httparse::parse_headers(buf, &mut fields) {
                        // The bound holds however the bytes arrive: whole or in pieces.
                        Ok(httparse::Status::Complete((used, _))) if used <= MAX_TRAILERS => {
                            buf.advance(used);
                            self.state = State::Done;
                        }
                        Ok(httparse::Status::Partial) if buf.len() <= MAX_TRAILERS => {
                            return Ok(None)
                        }
                        Ok(_) => return Err("the origin's trailer fields are too long".into()),
                        Err(e) => {
                            return Err(format!("the origin's trailer fields are malformed: {e}"))
                        }
                    }
                }
                State::Close => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(buf.split().freeze()));
                }
            }
        }
    }

    /// The origin closed the connection: the end of a body read to the close, an
    /// error for any other body not yet whole.
    pub fn end_of_input(&mut self) -> Result<(), String> {
        match self.state {
            State::Close | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err("the origin closed the connection before the body's end".into()),
        }
    }

    /// Bytes left, when known.
    fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// A connection to the origin, plain or TLS.
pub(crate) enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// A keep-alive connection to the origin with what has been read from it and not
/// yet used.
pub(crate) struct Conn {
    io: Io,
    buf: BytesMut,
    out: Vec<u8>,
    /// Scratch for [`parse_head_with`].
    fields: Vec<(Span, Span)>,
    read_size: usize,
}

/// Why a request got no response head.
pub(crate) enum Failed {
    /// The request could not be written; the origin cannot have acted on it whole.
    Unsent(UpstreamError),
    /// Written, and then no (complete) head came.
    Sent(UpstreamError),
}

impl Conn {
    pub(crate) fn new(io: Io) -> Conn {
        Conn {
            io,
            buf: BytesMut::new(),
            out: Vec::new(),
            fields: Vec::new(),
            read_size: MIN_READ,
        }
    }

    /// Whether an idle connection can take a request: the origin has not closed
    /// it and sent nothing since its last response. For a plain connection this
    /// asks the event loop's readiness flag, which a short read cleared, so a
    /// quiet connection costs no system call.
    pub(crate) fn is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match &mut self.io {
            Io::Plain(s) => match s.poll_read_ready(&mut cx) {
                Poll::Pending => true,
                Poll::Ready(Err(_)) => false,
                Poll::Ready(Ok(())) => {
                    let mut probe = [0u8; 1];
                    matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                }
            },
            Io::Tls(s) => {
                let mut probe = [0u8; 1];
                let mut probe = ReadBuf::new(&mut probe);
                Pin::new(&mut **s)
                    .poll_read(&mut cx, &mut probe)
                    .is_pending()
            }
        }
    }

    /// Writes a bodiless request and reads its response head. `reused`: the
    /// connection carried an earlier request, so its end before any answer is
    /// [`UpstreamError::Reused`] (most often the origin's idle timeout).
    pub(crate) async fn request(
        &mut self,
        req: &RequestHead<'_>,
        reused: bool,
    ) -> Result<Head, Failed> {
        write_head(&mut self.out, req);
        let written = async {
            self.io.write_all(&self.out).await?;
            self.io.flush().await
        };
        if let Err(e) = written.await {
            return Err(Failed::Unsent(UpstreamError::Protocol(format!(
                "writing the request: {e}"
            ))));
        }
        let head_request = req.method == http::Method::HEAD;
        let mut answered = false;
        loop {
            // Nothing to parse until the first read (a pooled connection's buffer is
            // empty, or it would not have been taken).
            if !self.buf.is_empty() {
                match parse_head_with(&mut self.buf, head_request, req.relayed, &mut self.fields) {
                    Ok(Some(head)) => return Ok(head),
                    Ok(None) => {}
                    Err(e) => return Err(Failed::Sent(UpstreamError::Protocol(e))),
                }
            }
            let broke = match self.read().await {
                Ok(0) => "the origin closed the connection".to_owned(),
                Ok(_) => {
                    answered = true;
                    continue;
                }
                Err(e) => e.to_string(),
            };
            return Err(Failed::Sent(if reused && !answered {
                UpstreamError::Reused(broke)
            } else {
                UpstreamError::Protocol(format!("{broke} before a complete response head"))
            }));
        }
    }

    async fn read(&mut self) -> std::io::Result<usize> {
        let spare = self.reserve();
        let n = self.io.read_buf(&mut self.buf).await?;
        self.grow_reads(n, spare);
        Ok(n)
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let spare = self.reserve();
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.buf
        ))?;
        self.grow_reads(n, spare);
        Poll::Ready(Ok(n))
    }

    /// Room for the next read; returns how much there is.
    fn reserve(&mut self) -> usize {
        if self.buf.capacity() - self.buf.len() < self.read_size / 2 {
            self.buf.reserve(self.read_size);
        }
        self.buf.capacity() - self.buf.len()
    }

    /// A read that filled all the room there was: a large body, read in bigger
    /// pieces from now on.
    fn grow_reads(&mut self, n: usize, spare: usize) {
        if n == spare && self.read_size < MAX_READ {
            self.read_size *= 2;
        }
    }

    /// The response body after `head`, which gives the connection back to `pool`
    /// once read to the end if it can carry another request.
    pub(crate) fn into_body(self, head: &Head, pool: Weak<Pool<Conn>>) -> Body {
        let body = OriginBody {
            decoder: Decoder::new(head.framing),
            conn: Some(self),
            keep_alive: head.keep_alive,
            pool,
        };
        if body.decoder.is_done() {
            let mut body = body;
            body.release();
            return Body::empty();
        }
        Body::new(body)
    }
}

/// What [`Conn::request`] writes: an
/// [`OriginRequest`](crate::upstream::OriginRequest) without its body (which is
/// empty, and not `Sync`, so a borrow of it could not be held across an await).
pub(crate) struct RequestHead<'a> {
    pub(crate) method: &'a http::Method,
    pub(crate) uri: &'a http::Uri,
    pub(crate) fields: &'a [(HeaderName, HeaderValue)],
    /// The response goes to a client as it is.
    pub(crate) relayed: bool,
}

/// The request line and fields, in origin form (the target is the path and query).
fn write_head(out: &mut Vec<u8>, req: &RequestHead<'_>) {
    out.clear();
    let target = req
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.fields {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A response body read from its connection by whoever polls it. Dropped before
/// its end (client gone, a body too large to store abandoned), it closes the
/// connection: the unread rest would be taken for the next response.
struct OriginBody {
    conn: Option<Conn>,
    decoder: Decoder,
    keep_alive: bool,
    pool: Weak<Pool<Conn>>,
}

impl OriginBody {
    fn release(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if self.keep_alive && conn.buf.is_empty() {
                if let Some(pool) = self.pool.upgrade() {
                    // An idle connection keeps no large buffer: up to 256 of them wait.
                    if conn.read_size > MIN_READ {
                        conn.buf = BytesMut::new();
                        conn.read_size = MIN_READ;
                    }
                    pool.put(conn);
                }
            }
        }
    }
}

impl http_body::Body for OriginBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut conn.buf) {
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(UpstreamError::Protocol(e))));
                }
                Ok(Some(data)) => {
                    if this.decoder.is_done() {
                        this.release();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(None) if this.decoder.is_done() => {
                    this.release();
                    return Poll::Ready(None);
                }
                Ok(None) => {}
            }
            let read = ready!(conn.poll_read(cx));
            let ended = match read {
                Ok(0) => this.decoder.end_of_input(),
                Ok(_) => continue,
                Err(e) => Err(format!("reading the body: {e}")),
            };
            // A connection that ended or failed is not reused.
            this.conn = None;
            return Poll::Ready(ended.err().map(|e| Err(UpstreamError::Protocol(e))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What makes the unchecked `HeaderValue`s of `parse_head_with` sound: every
    /// byte httparse accepts inside a field value, a `HeaderValue` may hold.
    #[test]
    fn httparse_values_are_header_values() {
        let mut accepted = 0;
        for b in 0..=255u8 {
            let mut raw = b"HTTP/1.1 200 OK\r\nx-v: a".to_vec();
            raw.extend_from_slice(&[b, b'a']);
            raw.extend_from_slice(b"\r\n\r\n");
            let mut slots = [httparse::EMPTY_HEADER; 4];
            let mut res = httparse::Response::new(&mut slots);
            if let Ok(httparse::Status::Complete(_)) =
                httparse::ParserConfig::default().parse_response(&mut res, &raw)
            {
                accepted += 1;
                let value = res.headers[0].value;
                assert!(
                    HeaderValue::from_bytes(value).is_ok(),
                    "byte {b:#04x}: httparse accepts it, HeaderValue does not"
                );
            }
        }
        // HTAB, SP to `~`, 0x80-0xFF: the check above was not vacuous.
        assert_eq!(accepted, 1 + 95 + 128);
    }

    fn head(raw: &str) -> Result<Option<Head>, String> {
        parse_head(&mut BytesMut::from(raw.as_bytes()), false)
    }

    fn framing(raw: &str) -> (Framing, bool) {
        let h = head(raw).unwrap().unwrap();
        (h.framing, h.keep_alive)
    }

    /// Decodes all of `raw` fed in pieces of `step` bytes, then the end of input.
    fn body(framing: Framing, raw: &[u8], step: usize) -> Result<(Vec<u8>, usize), String> {
        let mut d = Decoder::new(framing);
        let (mut out, mut buf) = (Vec::new(), BytesMut::new());
        for piece in raw.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(b) = d.decode(&mut buf)? {
                out.extend_from_slice(&b);
            }
        }
        if !d.is_done() {
            d.end_of_input()?;
        }
        Ok((out, buf.len()))
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let cases = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\nContent-Length: 5\r\n\r\n",
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
                Framing::Chunked,
                true,
            ),
            // Both: Transfer-Encoding wins and the connection is not reused.
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framing::Chunked,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                Framing::Close,
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", Framing::Close, false),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
                Framing::Length(5),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n",
                Framing::Length(5),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: Keep-Alive\r\n\r\n",
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
                Framing::Close,
                false,
            ),
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framing::Empty,
                true,
            ),
        ];
        for (raw, want, keep_alive) in cases {
            assert_eq!(framing(raw), (want, keep_alive), "{raw:?}");
        }
        let h = parse_head(
            &mut BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"[..]),
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Empty, true), "HEAD");
    }

    #[test]
    fn only_an_unusual_reason_phrase_is_kept() {
        let reason = |raw: &str| head(raw).unwrap().unwrap().reason;
        assert_eq!(reason("HTTP/1.1 200 OK\r\n\r\n"), None);
        assert_eq!(reason("HTTP/1.1 404 Not Found\r\n\r\n"), None);
        assert_eq!(
            reason("HTTP/1.1 200 Okay then\r\n\r\n").unwrap(),
            "Okay then"
        );
        assert_eq!(reason("HTTP/1.1 200 \r\n\r\n").unwrap(), "");
        // Found by the fuzzer: httparse gives a reason that is not UTF-8 as "".
        let raw = b"HTTP/1.1 404 No\xef\xef\r\nA: b\r\n\r\n";
        let h = parse_head(&mut BytesMut::from(&raw[..]), false)
            .unwrap()
            .unwrap();
        assert_eq!((h.reason.unwrap(), h.headers.len()), (Bytes::new(), 1));
    }

    #[test]
    fn hop_by_hop_fields_are_left_out() {
        let h = head("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        let names: Vec<_> = h.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["content-length", "x-a"]);
        assert!(h.keep_alive);
        // Fields `Connection` lists go too, whatever the order of the lines.
        let h = head("HTTP/1.1 200 OK\r\nX-B: 2\r\nConnection: X-B, close\r\nUpgrade: h2c\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        let mut names: Vec<_> = h.headers.keys().map(|n| n.as_str()).collect();
        names.sort();
        assert_eq!(names, ["content-length", "x-a"]);
        assert!(!h.keep_alive);
    }

    #[test]
    fn a_length_overridden_by_transfer_encoding_is_dropped() {
        let h = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(h.headers.get("content-length").is_none());
        assert_eq!(h.headers["x-a"], "1");
        assert_eq!(h.framing, Framing::Chunked);
        // The framing is the connection's: it does not reach a client.
        assert!(h.headers.get("transfer-encoding").is_none());
    }

    #[test]
    fn bad_lengths_and_heads_are_errors() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX-A: 1\r\n b\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert!(head(raw).is_err(), "{raw:?}");
        }
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "X-A: 1\r\n".repeat(MAX_FIELDS + 1)
        );
        assert!(head(&many).unwrap_err().contains("fields"));
        let exactly = format!("HTTP/1.1 200 OK\r\n{}\r\n", "X-A: 1\r\n".repeat(MAX_FIELDS));
        assert_eq!(head(&exactly).unwrap().unwrap().headers.len(), MAX_FIELDS);
        let long = format!("HTTP/1.1 200 OK\r\nX-A: {}", "a".repeat(MAX_HEAD));
        assert!(head(&long).unwrap_err().contains("over"));
    }

    #[test]
    fn interim_responses_are_skipped_and_partial_heads_wait() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let mut buf = BytesMut::from(&raw[..]);
        let h = parse_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert!(h.headers.get("link").is_none());
        assert_eq!(&buf[..], b"hi");
        for cut in 0..raw.len() - 2 {
            let mut buf = BytesMut::from(&raw[..cut]);
            let before = buf.len();
            let parsed = parse_head(&mut buf, false).unwrap();
            assert!(parsed.is_none(), "cut at {cut}");
            // Only whole interim heads are consumed.
            assert!(buf.len() <= before);
        }
    }

    #[test]
    fn bodies_decode_the_same_in_any_pieces() {
        let chunked = b"4;ext=\"a;b\"\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(
                body(Framing::Chunked, chunked, step).unwrap(),
                (b"Wikipedia in\r\n\r\nchunks.".to_vec(), 0)
            );
            assert_eq!(
                body(Framing::Length(5), b"helloHTTP", step).unwrap(),
                (b"hello".to_vec(), 4),
                "what follows a body stays in the buffer"
            );
            assert_eq!(
                body(Framing::Close, b"to the end", step).unwrap(),
                (b"to the end".to_vec(), 0)
            );
        }
        assert_eq!(body(Framing::Chunked, b"0\r\n\r\n", 1).unwrap().0, b"");
    }

    #[test]
    fn malformed_or_cut_bodies_are_errors() {
        for raw in [
            &b"\r\nhi\r\n0\r\n\r\n"[..],
            b"; x\r\nhi\r\n0\r\n\r\n",
            b"2;a\nb\r\nhi\r\n0\r\n\r\n",
            b"2\nhi\r\n0\r\n\r\n",
            b"g\r\n",
            b"2\r\nhix\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"2\r\nhi\r\n0\r\nbad field\r\n\r\n",
            b"5\r\nhi",
        ] {
            assert!(body(Framing::Chunked, raw, 1).is_err(), "{raw:?}");
        }
        assert!(body(Framing::Length(5), b"hi", 1).is_err());
        let long_ext = format!("2;{}\r\nhi\r\n0\r\n\r\n", "x".repeat(MAX_CHUNK_LINE));
        assert!(body(Framing::Chunked, long_ext.as_bytes(), 1000).is_err());
        let long_trailer = format!("0\r\nX-T: {}\r\n\r\n", "x".repeat(MAX_TRAILERS));
        assert!(body(Framing::Chunked, long_trailer.as_bytes(), 1000).is_err());
    }

    #[tokio::test]
    async fn an_idle_connection_the_origin_closed_is_not_usable() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (mut origin, _) = l.accept().await.unwrap();
        let mut conn = Conn::new(Io::Plain(c));
        assert!(conn.is_usable(), "open and quiet");
        // Bytes nobody asked for: the connection is out of step.
        origin.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!conn.is_usable(), "unread bytes");

        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (origin, _) = l.accept().await.unwrap();
        let mut conn = Conn::new(Io::Plain(c));
        assert!(conn.is_usable());
        drop(origin);
        // The event loop learns of the close when it next polls.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!conn.is_usable(), "closed by the origin");
    }

    #[test]
    fn requests_are_written_in_origin_form() {
        let mut req = crate::upstream::OriginRequest::new(
            http::Method::GET,
            "http://o.example:81/a/b?x=1".parse().unwrap(),
        );
        for (name, value) in [("host", "o.example:81"), ("x-many", "1"), ("x-many", "2")] {
            req.fields
                .push((name.parse().unwrap(), value.parse().unwrap()));
        }
        let mut out = Vec::new();
        let head = RequestHead {
            method: &req.method,
            uri: &req.uri,
            fields: &req.fields,
            relayed: false,
        };
        write_head(&mut out, &head);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /a/b?x=1 HTTP/1.1\r\nhost: o.example:81\r\nx-many: 1\r\nx-many: 2\r\n\r\n"
        );
    }
}
