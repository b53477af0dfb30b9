//! How API values are stored: the body's bytes plus its Content-Type.
//!
//! The engine keeps a codec id per entry. Bodies sent as `application/json` are
//! stored with the JSON codec id and `application/msgpack` with MessagePack's, so a
//! Rust service reading the same namespace through typed handles decodes them
//! natively; no Content-Type (or `application/octet-stream`) is raw bytes. Any
//! other Content-Type is kept in front of the body under [`CODEC_TYPED`].

use bytes::{BufMut, Bytes, BytesMut};
use strata_cache::{Format, CODEC_RAW};

/// Codec id of "content-type length, content-type, body".
pub const CODEC_TYPED: u8 = 16;

/// Longest Content-Type kept.
pub const MAX_CONTENT_TYPE: usize = 255;

const OCTET: &str = "application/octet-stream";

/// Packs a body and its Content-Type into (payload, codec id). The Content-Type must
/// be at most [`MAX_CONTENT_TYPE`] bytes.
///
/// The payload is always a buffer of its own. A request body is a slice of the
/// connection's read buffer, and the memory tier would keep that whole buffer alive
/// for as long as it holds the value, outside its `max_bytes` (tests/api.rs,
/// `put_values_stay_within_max_bytes`).
pub fn pack(content_type: Option<&str>, body: Bytes) -> (Bytes, u8) {
    let codec = match content_type {
        None | Some(OCTET) => CODEC_RAW,
        Some("application/json") => Format::Json.id(),
        Some("application/msgpack") => Format::MessagePack.id(),
        Some(ct) => {
            let mut b = BytesMut::with_capacity(1 + ct.len() + body.len());
            b.put_u8(ct.len() as u8);
            b.put_slice(ct.as_bytes());
            b.put_slice(&body);
            return (b.freeze(), CODEC_TYPED);
        }
    };
    (Bytes::copy_from_slice(&body), codec)
}

/// Unpacks what [`pack`] stored (or what a Rust service wrote) into (Content-Type, body).
pub fn unpack(payload: Bytes, codec: u8) -> (String, Bytes) {
    if codec == CODEC_TYPED {
        if let Some(&len) = payload.first() {
            let end = 1 + len as usize;
            if let Some(ct) = payload
                .get(1..end)
                .and_then(|b| std::str::from_utf8(b).ok())
            {
                return (ct.to_owned(), payload.slice(end..));
            }
        }
        return (OCTET.into(), payload);
    }
    let ct = match Format::from_id(codec) {
        Some(Format::Json) => "application/json",
        Some(Format::MessagePack) => "application/msgpack",
        _ => OCTET,
    };
    (ct.into(), payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_round_trip() {
        for ct in [
            None,
            Some("application/json"),
            Some("text/html; charset=utf-8"),
            Some("image/png"),
        ] {
            let (p, c) = pack(ct, Bytes::from_static(b"body"));
            let (got, body) = unpack(p, c);
            assert_eq!(got, ct.unwrap_or(OCTET));
            assert_eq!(&body[..], b"body");
        }
    }

    #[test]
    fn garbage_is_octets_not_a_panic() {
        assert_eq!(unpack(Bytes::new(), CODEC_TYPED).0, OCTET);
        assert_eq!(
            unpack(Bytes::from_static(&[200, b'x']), CODEC_TYPED).0,
            OCTET
        );
    }
}
