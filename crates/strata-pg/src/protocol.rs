//! The PostgreSQL v3 wire protocol, as far as a proxy that observes needs it:
//! startup packets, a frame scanner that finds message boundaries in a byte stream
//! without copying it, parsers for the messages it inspects, and `ErrorResponse`
//! encoding for the errors the proxy itself sends.
//!
//! The scanner never needs a whole message to forward it: messages it does not
//! inspect (rows, COPY data, passwords) pass through as they arrive, whatever their
//! size. Messages it inspects (queries, command tags, errors) are buffered whole up to
//! a limit; past it, only a prefix is seen.
//!
//! ```
//! use strata_pg::protocol::{Scanner, Seen};
//!
//! // Two messages, 'Q' "SELECT 1\0" and 'X' (Terminate), in one read.
//! let mut bytes = vec![b'Q', 0, 0, 0, 13];
//! bytes.extend_from_slice(b"SELECT 1\0");
//! bytes.extend_from_slice(&[b'X', 0, 0, 0, 4]);
//! let mut seen = Vec::new();
//! let mut scanner = Scanner::frontend();
//! let n = scanner.scan(&bytes, |s| {
//!     if let Seen::Message { tag, body, .. } = s {
//!         seen.push((tag, body.to_vec()));
//!     }
//! }).unwrap();
//! assert_eq!(n, bytes.len()); // everything may be forwarded
//! assert_eq!(seen[0], (b'Q', b"SELECT 1\0".to_vec()));
//! assert_eq!(seen[1], (b'X', vec![]));
//! ```

use bytes::{BufMut, BytesMut};

/// `SSLRequest`'s code in a startup packet.
pub const SSL_REQUEST: u32 = 80_877_103;
/// `GSSENCRequest`'s code.
pub const GSSENC_REQUEST: u32 = 80_877_104;
/// `CancelRequest`'s code.
pub const CANCEL_REQUEST: u32 = 80_877_102;
/// Protocol 3.0 in a `StartupMessage`.
pub const PROTOCOL_3: u32 = 196_608;
/// PostgreSQL's own bound on a startup packet (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: usize = 10_000;
/// PostgreSQL's own bound on any message (`PQ_LARGE_MESSAGE_LIMIT`, 1 GiB - 1).
pub const MAX_MESSAGE_LEN: usize = 0x3fff_ffff;
/// How much of an inspected message is buffered to read it (queries larger than
/// this are forwarded with only their prefix seen).
pub const DEFAULT_INSPECT_LIMIT: usize = 1 << 20;
/// The prefix of an over-limit inspected message that is still looked at (statement
/// and portal names come first).
pub const PREFIX_LEN: usize = 512;

/// A protocol violation: the connection cannot continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A length field below its minimum or above the limit.
    #[error("invalid message length {len} for message type {tag:?}")]
    BadLength {
        /// The message type byte (0 in a startup packet).
        tag: char,
        /// The length as sent.
        len: u64,
    },
    /// A startup packet this proxy does not understand.
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.x")]
    UnsupportedProtocol {
        /// Major version.
        major: u16,
        /// Minor version.
        minor: u16,
    },
    /// A startup message whose parameters are not NUL-terminated pairs.
    #[error("invalid startup packet layout: {0}")]
    BadStartup(&'static str),
}

/// What the client sent first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// Wants TLS.
    SslRequest,
    /// Wants GSSAPI encryption.
    GssEncRequest,
    /// Cancel the query running on backend `pid` (authenticated by `secret`).
    Cancel {
        /// Backend process id, as the server sent in `BackendKeyData`.
        pid: u32,
        /// The secret key from `BackendKeyData`.
        secret: u32,
    },
    /// A session: protocol version and parameters (`user`, `database`, …).
    Startup {
        /// `major << 16 | minor`.
        version: u32,
        /// Parameters in the order sent.
        params: Vec<(String, String)>,
    },
}

impl Startup {
    /// A startup parameter by name.
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            Startup::Startup { params, .. } => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// The length a startup packet declares, from its first four bytes; errors on a
/// length PostgreSQL would refuse.
pub fn startup_len(head: [u8; 4]) -> Result<usize, ProtocolError> {
    let len = u32::from_be_bytes(head) as usize;
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Err(ProtocolError::BadLength {
            tag: '\0',
            len: len as u64,
        });
    }
    Ok(len)
}

/// Parses a whole startup packet (length included).
pub fn parse_startup(packet: &[u8]) -> Result<Startup, ProtocolError> {
    if packet.len() < 8 {
        return Err(ProtocolError::BadStartup("shorter than 8 bytes"));
    }
    let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let rest = &packet[8..];
    match code {
        SSL_REQUEST => Ok(Startup::SslRequest),
        GSSENC_REQUEST => Ok(Startup::GssEncRequest),
        CANCEL_REQUEST => {
            if rest.len() < 8 {
                return Err(ProtocolError::BadStartup("cancel request too short"));
            }
            Ok(Startup::Cancel {
                pid: u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
                secret: u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]),
            })
        }
        v if v >> 16 == 3 => {
            let mut params = Vec::new();
            let mut fields = rest.split(|b| *b == 0);
            loop {
                let Some(k) = fields.next() else {
                    return Err(ProtocolError::BadStartup("missing terminator"));
                };
                if k.is_empty() {
                    break;
                }
                let Some(v) = fields.next() else {
                    return Err(ProtocolError::BadStartup("parameter without a value"));
                };
                params.push((
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ));
            }
            if !params.iter().any(|(k, _)| k == "user") {
                return Err(ProtocolError::BadStartup("no user name in startup packet"));
            }
            Ok(Startup::Startup { version: v, params })
        }
        v => Err(ProtocolError::UnsupportedProtocol {
            major: (v >> 16) as u16,
            minor: (v & 0xffff) as u16,
        }),
    }
}

/// What the scanner saw.
#[derive(Debug)]
pub enum Seen<'a> {
    /// An inspected message. `complete` is false when it was over the inspect limit
    /// and `body` is only its first [`PREFIX_LEN`] bytes.
    Message {
        /// Message type byte.
        tag: u8,
        /// The body (after the length), whole or a prefix.
        body: &'a [u8],
        /// Whether `body` is the whole body.
        complete: bool,
    },
    /// A message that is not inspected, forwarded as it arrives.
    Passed {
        /// Message type byte.
        tag: u8,
    },
}

/// Finds message boundaries in one direction of a session (after startup).
#[derive(Debug, Clone)]
pub struct Scanner {
    /// Bytes of the current uninspected message still to pass through.
    remaining: usize,
    inspect: fn(u8) -> bool,
    inspect_limit: usize,
    max_len: usize,
}

/// Frontend messages the proxy reads: Query, Parse, Bind, Execute, Sync, Close,
/// Terminate. Never `p` (passwords) or `d` (COPY data).
fn frontend_inspected(tag: u8) -> bool {
    matches!(tag, b'Q' | b'P' | b'B' | b'E' | b'S' | b'C' | b'X')
}

/// Backend messages the proxy reads: CommandComplete, ErrorResponse, ReadyForQuery,
/// EmptyQueryResponse, PortalSuspended, BackendKeyData, Authentication,
/// ParameterStatus. Never rows.
fn backend_inspected(tag: u8) -> bool {
    matches!(tag, b'C' | b'E' | b'Z' | b'I' | b's' | b'K' | b'R' | b'S')
}

impl Scanner {
    /// For client → server bytes.
    pub fn frontend() -> Self {
        Self::new(frontend_inspected)
    }

    /// For server → client bytes.
    pub fn backend() -> Self {
        Self::new(backend_inspected)
    }

    fn new(inspect: fn(u8) -> bool) -> Self {
        Scanner {
            remaining: 0,
            inspect,
            inspect_limit: DEFAULT_INSPECT_LIMIT,
            max_len: MAX_MESSAGE_LEN,
        }
    }

    /// Sets how large an inspected message may be and still be read whole.
    pub fn with_inspect_limit(mut self, limit: usize) -> Self {
        self.inspect_limit = limit.max(PREFIX_LEN);
        self
    }

    /// Whether the scanner is between messages (nothing partial has been forwarded),
    /// so a message of the proxy's own can be inserted into the stream.
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0
    }

    /// Scans `buf` and reports each message to `on`. Returns how many leading bytes of
    /// `buf` may be forwarded now; the rest (a partial inspected message or header)
    /// must be kept and passed again with more bytes after it.
    pub fn scan(
        &mut self,
        buf: &[u8],
        mut on: impl FnMut(Seen<'_>),
    ) -> Result<usize, ProtocolError> {
        let mut pos = 0;
        loop {
            if self.remaining > 0 {
                let n = self.remaining.min(buf.len() - pos);
                pos += n;
                self.remaining -= n;
                if self.remaining > 0 {
                    return Ok(pos);
                }
            }
            let avail = &buf[pos..];
            if avail.len() < 5 {
                return Ok(pos);
            }
            let tag = avail[0];
            let len = u32::from_be_bytes([avail[1], avail[2], avail[3], avail[4]]) as usize;
            if len < 4 || len > self.max_len {
                return Err(ProtocolError::BadLength {
                    tag: tag as char,
                    len: len as u64,
                });
            }
            let total = 1 + len;
            if !(self.inspect)(tag) {
                on(Seen::Passed { tag });
                self.remaining = total;
                continue;
            }
            if len - 4 <= self.inspect_limit {
                if avail.len() < total {
                    return Ok(pos);
                }
                on(Seen::Message {
                    tag,
                    body: &avail[5..total],
                    complete: true,
                });
                pos += total;
            } else {
                let want = 5 + PREFIX_LEN;
                if avail.len() < want {
                    return Ok(pos);
                }
                on(Seen::Message {
                    tag,
                    body: &avail[5..want],
                    complete: false,
                });
                self.remaining = total;
            }
        }
    }
}

/// Reads a NUL-terminated string at the start of `b`; returns it and the rest.
pub fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|c| *c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}

/// Rows affected or returned, from a `CommandComplete` tag (`SELECT 5`,
/// `INSERT 0 3`, `UPDATE 2`, `COPY 10`); 0 for tags without a count (`BEGIN`).
pub fn command_rows(tag: &[u8]) -> u64 {
    let tag = tag.strip_suffix(&[0]).unwrap_or(tag);
    tag.rsplit(|c| *c == b' ')
        .next()
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// One field of an `ErrorResponse` / `NoticeResponse` body (`b'C'` SQLSTATE, `b'M'`
/// message, `b'S'` severity).
pub fn error_field(body: &[u8], field: u8) -> Option<&[u8]> {
    let mut rest = body;
    while let Some((&code, tail)) = rest.split_first() {
        if code == 0 {
            return None;
        }
        let (value, next) = cstr(tail)?;
        if code == field {
            return Some(value);
        }
        rest = next;
    }
    None
}

/// Encodes an `ErrorResponse` the proxy itself sends (`severity` is `FATAL` or
/// `ERROR`; `code` a SQLSTATE).
pub fn error_response(severity: &str, code: &str, message: &str) -> BytesMut {
    let mut body = BytesMut::with_capacity(32 + message.len());
    for (f, v) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        body.put_u8(f);
        // A NUL inside would end the field early: drop any.
        body.extend(v.bytes().filter(|b| *b != 0));
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(b'E');
    out.put_u32((4 + body.len()) as u32);
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn scan_all(s: &mut Scanner, chunks: &[&[u8]]) -> (Vec<(u8, Vec<u8>, bool)>, usize) {
        let mut seen = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut forwarded = 0;
        for c in chunks {
            pending.extend_from_slice(c);
            let n = s
                .scan(&pending, |m| {
                    if let Seen::Message {
                        tag,
                        body,
                        complete,
                    } = m
                    {
                        seen.push((tag, body.to_vec(), complete))
                    }
                })
                .unwrap();
            forwarded += n;
            pending.drain(..n);
        }
        (seen, forwarded)
    }

    #[test]
    fn messages_split_anywhere_are_seen_once_and_all_bytes_forwarded() {
        let mut stream = msg(b'Q', b"SELECT 1\0");
        stream.extend(msg(b'd', &[7u8; 3000]));
        stream.extend(msg(b'P', b"s1\0SELECT $1\0\0\0"));
        stream.extend(msg(b'S', b""));
        for split in 0..stream.len() {
            let mut s = Scanner::frontend();
            let (seen, fwd) = scan_all(&mut s, &[&stream[..split], &stream[split..]]);
            assert_eq!(fwd, stream.len(), "split at {split}");
            let tags: Vec<u8> = seen.iter().map(|m| m.0).collect();
            assert_eq!(tags, b"QPS", "split at {split}");
            assert_eq!(seen[0].1, b"SELECT 1\0");
        }
        // Byte by byte.
        let mut s = Scanner::frontend();
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        let (seen, fwd) = scan_all(&mut s, &chunks);
        assert_eq!((seen.len(), fwd), (3, stream.len()));
    }

    #[test]
    fn uninspected_messages_pass_before_they_are_whole() {
        let mut s = Scanner::backend();
        let row = msg(b'D', &[1u8; 10_000]);
        // Only the header and part of the row have arrived: all of it may go.
        assert_eq!(s.scan(&row[..100], |_| {}).unwrap(), 100);
        assert!(!s.at_boundary());
        assert_eq!(s.scan(&row[100..], |_| {}).unwrap(), row.len() - 100);
        assert!(s.at_boundary());
    }

    #[test]
    fn inspected_messages_over_the_limit_show_a_prefix() {
        let mut s = Scanner::frontend().with_inspect_limit(1000);
        let mut body = b"big\0".to_vec();
        body.extend(vec![b'x'; 5000]);
        let m = msg(b'P', &body);
        let (seen, fwd) = scan_all(&mut s, &[&m[..600], &m[600..]]);
        assert_eq!(fwd, m.len());
        assert_eq!(seen.len(), 1);
        assert!(!seen[0].2);
        assert_eq!(seen[0].1.len(), PREFIX_LEN);
        assert!(seen[0].1.starts_with(b"big\0"));
    }

    #[test]
    fn absurd_lengths_are_errors() {
        let mut s = Scanner::frontend();
        assert!(s.scan(&[b'Q', 0, 0, 0, 3], |_| {}).is_err());
        assert!(s.scan(&[b'Q', 0xff, 0xff, 0xff, 0xff], |_| {}).is_err());
        assert!(startup_len([0, 0, 0, 4]).is_err());
        assert!(startup_len([0, 1, 0, 0]).is_err());
        assert_eq!(startup_len([0, 0, 0, 8]).unwrap(), 8);
    }

    #[test]
    fn startup_packets() {
        let mut p = vec![0, 0, 0, 0];
        p.extend_from_slice(&PROTOCOL_3.to_be_bytes());
        p.extend_from_slice(b"user\0alice\0database\0shop\0\0");
        let n = p.len() as u32;
        p[..4].copy_from_slice(&n.to_be_bytes());
        let s = parse_startup(&p).unwrap();
        assert_eq!(s.param("user"), Some("alice"));
        assert_eq!(s.param("database"), Some("shop"));

        let mut ssl = vec![0, 0, 0, 8];
        ssl.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        assert_eq!(parse_startup(&ssl).unwrap(), Startup::SslRequest);

        let mut cancel = vec![0, 0, 0, 16];
        cancel.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
        cancel.extend_from_slice(&42u32.to_be_bytes());
        cancel.extend_from_slice(&7u32.to_be_bytes());
        assert_eq!(
            parse_startup(&cancel).unwrap(),
            Startup::Cancel { pid: 42, secret: 7 }
        );

        let mut v2 = vec![0, 0, 0, 8];
        v2.extend_from_slice(&(2u32 << 16).to_be_bytes());
        assert!(matches!(
            parse_startup(&v2),
            Err(ProtocolError::UnsupportedProtocol { major: 2, .. })
        ));
        let mut no_user = vec![0, 0, 0, 0];
        no_user.extend_from_slice(&PROTOCOL_3.to_be_bytes());
        no_user.extend_from_slice(b"database\0x\0\0");
        assert!(parse_startup(&no_user).is_err());
        let mut unterminated = vec![0, 0, 0, 0];
        unterminated.extend_from_slice(&PROTOCOL_3.to_be_bytes());
        unterminated.extend_from_slice(b"user\0x");
        assert!(parse_startup(&unterminated).is_err());
    }

    #[test]
    fn command_tags_and_error_fields() {
        assert_eq!(command_rows(b"SELECT 5\0"), 5);
        assert_eq!(command_rows(b"INSERT 0 3\0"), 3);
        assert_eq!(command_rows(b"BEGIN\0"), 0);
        assert_eq!(command_rows(b""), 0);
        let e = error_response("FATAL", "08P01", "bad\0 thing");
        assert_eq!(e[0], b'E');
        let body = &e[5..];
        assert_eq!(error_field(body, b'C'), Some(&b"08P01"[..]));
        assert_eq!(error_field(body, b'M'), Some(&b"bad thing"[..]));
        assert_eq!(error_field(body, b'X'), None);
        assert_eq!(error_field(b"Cxx", b'C'), None, "unterminated");
    }
}
