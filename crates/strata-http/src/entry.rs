//! A stored response: status, headers, timing, the request values its `Vary`
//! names, tags, and its body in one or more encodings.
//!
//! The format is a small length-prefixed binary layout rather than a serde format
//! because a hit decodes it on every request: header values and bodies are
//! zero-copy slices of the stored bytes, so a hit allocates only the header map.
//! Decoding never panics; anything malformed is an error and the entry a miss.
//!
//! ```
//! use bytes::Bytes;
//! use strata_http::entry::Entry;
//! use strata_http::compress::Encoding;
//! let mut e = Entry::new(http::StatusCode::OK, http::HeaderMap::new(), Default::default());
//! e.bodies.push((Encoding::Identity, Bytes::from_static(b"hello")));
//! let back = Entry::decode(e.encode()).unwrap();
//! assert_eq!(back.body(Encoding::Identity).unwrap(), &b"hello"[..]);
//! ```

use bytes::{BufMut, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::compress::Encoding;
use crate::freshness::Timing;

const MAGIC: &[u8; 3] = b"SH1";
/// Cache codec id of stored responses (application ids start at 16; 16 is the
/// REST API's typed framing).
pub const CODEC_HTTP: u8 = 17;
/// Cache codec id of the record a primary key holds when its response varies on
/// request fields ([`VaryRecord`]). The variants themselves are stored under
/// [`crate::key::variant_key`]s.
pub const CODEC_VARY: u8 = 18;
/// Most bodies one entry carries (identity plus each encoding).
const MAX_BODIES: usize = 4;

/// A stored response.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Status.
    pub status: StatusCode,
    /// End-to-end response headers as stored (no hop-by-hop fields, no cookies).
    pub headers: HeaderMap,
    /// Freshness and age.
    pub timing: Timing,
    /// For each field the response's `Vary` names: the request's value, if any.
    pub vary: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Tags it was stored with (kept so a rewrite keeps them).
    pub tags: Vec<String>,
    /// The body as the origin sent it first, then any encodings computed since.
    pub bodies: Vec<(Encoding, Bytes)>,
}

/// The record a key holds when its response varies on request fields: which
/// fields select a variant, and until when a variant stored under it lives.
///
/// Stored as text: the names comma-separated, lowercase, then `;until=` and the
/// expiry in unix milliseconds. The record is kept as long as the longest-lived
/// variant, so a variant stored later with a shorter life does not make the
/// earlier ones unreachable when the record would otherwise expire with it.
///
/// ```
/// use strata_http::entry::VaryRecord;
/// let r = VaryRecord {
///     names: vec![http::header::ACCEPT_LANGUAGE],
///     until: 1_700_000_060_000,
/// };
/// assert_eq!(&r.encode()[..], b"accept-language;until=1700000060000");
/// assert_eq!(VaryRecord::decode(&r.encode()), Some(r));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaryRecord {
    /// The selecting fields, in the order of the response's `Vary`.
    pub names: Vec<HeaderName>,
    /// When the longest-lived variant stored under the record expires, in unix
    /// milliseconds; 0 for a record written before strata kept it.
    pub until: u64,
}

impl VaryRecord {
    /// The stored form.
    pub fn encode(&self) -> Bytes {
        let mut out = String::with_capacity(64);
        for (i, name) in self.names.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(name.as_str());
        }
        out.push_str(";until=");
        out.push_str(itoa::Buffer::new().format(self.until));
        Bytes::from(out)
    }

    /// Parses a stored record; names that are not field names are left out, and
    /// a record without `;until=` (as older versions wrote it) has `until` 0.
    /// `None` when the bytes are not text or the expiry is not a number.
    pub fn decode(stored: &[u8]) -> Option<VaryRecord> {
        let text = std::str::from_utf8(stored).ok()?;
        let (names, until) = match text.split_once(";until=") {
            Some((names, until)) => (names, until.parse().ok()?),
            None => (text, 0),
        };
        let names = names
            .split(',')
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        Some(VaryRecord { names, until })
    }
}

/// Why stored bytes are not an entry.
#[derive(Debug, thiserror::Error)]
#[error("stored response is malformed: {0}")]
pub struct Malformed(&'static str);

impl Entry {
    /// An entry without bodies, vary values or tags.
    pub fn new(status: StatusCode, headers: HeaderMap, timing: Timing) -> Self {
        Entry {
            status,
            headers,
            timing,
            vary: Vec::new(),
            tags: Vec::new(),
            bodies: Vec::new(),
        }
    }

    /// The body in `enc`, if stored.
    pub fn body(&self, enc: Encoding) -> Option<&Bytes> {
        self.bodies.iter().find(|(e, _)| *e == enc).map(|(_, b)| b)
    }

    /// The body as the origin sent it.
    pub fn origin_body(&self) -> &Bytes {
        static EMPTY: Bytes = Bytes::new();
        self.bodies.first().map_or(&EMPTY, |(_, b)| b)
    }

    /// Adds an encoding unless present or the entry is full; true if added.
    pub fn add_body(&mut self, enc: Encoding, body: Bytes) -> bool {
        if self.body(enc).is_some() || self.bodies.len() >= MAX_BODIES {
            return false;
        }
        self.bodies.push((enc, body));
        true
    }

    /// Whether the response has validators (`ETag` or `Last-Modified`).
    pub fn has_validators(&self) -> bool {
        self.headers.contains_key(http::header::ETAG)
            || self.headers.contains_key(http::header::LAST_MODIFIED)
    }

    /// Serializes the entry into a buffer of exactly its length: the memory tier
    /// charges an entry its length, so spare capacity would be memory it cannot see.
    pub fn encode(&self) -> Bytes {
        let body_len: usize = self.bodies.iter().map(|(_, b)| b.len()).sum();
        let mut out = Vec::with_capacity(256 + body_len);
        out.put_slice(MAGIC);
        out.put_u16(self.status.as_u16());
        let t = &self.timing;
        for v in [t.response_time, t.initial_age, t.lifetime, t.swr, t.sie] {
            out.put_u64(v);
        }
        out.put_u8(u8::from(t.no_cache) | (u8::from(t.forbids_stale) << 1));
        out.put_u16(self.headers.len() as u16);
        for (name, value) in &self.headers {
            put_bytes8(&mut out, name.as_str().as_bytes());
            put_bytes32(&mut out, value.as_bytes());
        }
        out.put_u16(self.vary.len() as u16);
        for (name, value) in &self.vary {
            put_bytes8(&mut out, name.as_str().as_bytes());
            match value {
                Some(v) => {
                    out.put_u8(1);
                    put_bytes32(&mut out, v.as_bytes());
                }
                None => out.put_u8(0),
            }
        }
        out.put_u16(self.tags.len() as u16);
        for tag in &self.tags {
            put_bytes32(&mut out, tag.as_bytes());
        }
        out.put_u8(self.bodies.len() as u8);
        for (enc, body) in &self.bodies {
            out.put_u8(*enc as u8);
            put_bytes32(&mut out, body);
        }
        // In place with glibc's realloc; a no-op when the estimate was exact.
        out.shrink_to_fit();
        Bytes::from(out)
    }

    /// Parses stored bytes; header values and bodies share `bytes`' buffer.
    pub fn decode(bytes: Bytes) -> Result<Entry, Malformed> {
        let mut r = Reader { b: bytes, at: 0 };
        if r.take(3)? != &MAGIC[..] {
            return Err(Malformed("unknown format"));
        }
        let status = StatusCode::from_u16(r.u16()?).map_err(|_| Malformed("status"))?;
        let mut n = [0u64; 5];
        for v in &mut n {
            *v = r.u64()?;
        }
        let flags = r.u8()?;
        let timing = Timing {
            response_time: n[0],
            initial_age: n[1],
            lifetime: n[2],
            swr: n[3],
            sie: n[4],
            no_cache: flags & 1 != 0,
            forbids_stale: flags & 2 != 0,
        };
        let count = r.u16()? as usize;
        let mut headers = HeaderMap::with_capacity(count.min(128));
        for _ in 0..count {
            let name = r.name()?;
            let value = r.value()?;
            headers.append(name, value);
        }
        let count = r.u16()? as usize;
        let mut vary = Vec::with_capacity(count.min(16));
        for _ in 0..count {
            let name = r.name()?;
            let value = match r.u8()? {
                0 => None,
                1 => Some(r.value()?),
                _ => return Err(Malformed("vary flag")),
            };
            vary.push((name, value));
        }
        let count = r.u16()? as usize;
        let mut tags = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let t = r.bytes32()?;
            tags.push(String::from_utf8(t.to_vec()).map_err(|_| Malformed("tag"))?);
        }
        let count = r.u8()? as usize;
        if count > MAX_BODIES {
            return Err(Malformed("too many bodies"));
        }
        let mut bodies = Vec::with_capacity(count);
        for _ in 0..count {
            let enc = Encoding::from_id(r.u8()?).ok_or(Malformed("encoding"))?;
            bodies.push((enc, r.bytes32()?));
        }
        if r.at != r.b.len() {
            return Err(Malformed("trailing bytes"));
        }
        Ok(Entry {
            status,
            headers,
            timing,
            vary,
            tags,
            bodies,
        })
    }
}

fn put_bytes8(out: &mut Vec<u8>, b: &[u8]) {
    // Header names are at most 255 bytes here: longer ones never reach storage
    // (hyper refuses them and we only store names we received).
    let b = &b[..b.len().min(255)];
    out.put_u8(b.len() as u8);
    out.put_slice(b);
}

fn put_bytes32(out: &mut Vec<u8>, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

struct Reader {
    b: Bytes,
    at: usize,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<&[u8], Malformed> {
        let end = self.at.checked_add(n).ok_or(Malformed("length"))?;
        let s = self.b.get(self.at..end).ok_or(Malformed("truncated"))?;
        self.at = end;
        Ok(s)
    }

    fn slice(&mut self, n: usize) -> Result<Bytes, Malformed> {
        let end = self.at.checked_add(n).ok_or(Malformed("length"))?;
        if end > self.b.len() {
            return Err(Malformed("truncated"));
        }
        let s = self.b.slice(self.at..end);
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }

    fn bytes32(&mut self) -> Result<Bytes, Malformed> {
        let n = self.u32()? as usize;
        self.slice(n)
    }

    fn name(&mut self) -> Result<HeaderName, Malformed> {
        let n = self.u8()? as usize;
        HeaderName::from_bytes(self.take(n)?).map_err(|_| Malformed("header name"))
    }

    fn value(&mut self) -> Result<HeaderValue, Malformed> {
        let v = self.bytes32()?;
        HeaderValue::from_maybe_shared(v).map_err(|_| Malformed("header value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vary_records_round_trip_and_read_the_old_form() {
        let r = VaryRecord {
            names: vec![
                HeaderName::from_static("accept-language"),
                HeaderName::from_static("x-tenant"),
            ],
            until: 42,
        };
        assert_eq!(&r.encode()[..], b"accept-language,x-tenant;until=42");
        assert_eq!(VaryRecord::decode(&r.encode()), Some(r.clone()));
        // As versions before `until` wrote it.
        let old = VaryRecord::decode(b"accept-language,x-tenant").unwrap();
        assert_eq!((old.names, old.until), (r.names, 0));
        assert_eq!(VaryRecord::decode(b"a;until=soon"), None);
        assert_eq!(VaryRecord::decode(b"\xff"), None);
        let odd = VaryRecord::decode(b"a,,b c;until=1").unwrap();
        assert_eq!(odd.names, [HeaderName::from_static("a")]);
    }

    fn sample() -> Entry {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h.append("x-multi", "a".parse().unwrap());
        h.append("x-multi", "b".parse().unwrap());
        let mut e = Entry::new(
            StatusCode::NOT_FOUND,
            h,
            Timing {
                response_time: 1,
                initial_age: 2,
                lifetime: 3,
                swr: 4,
                sie: 5,
                no_cache: true,
                forbids_stale: true,
            },
        );
        e.vary.push((
            HeaderName::from_static("accept-language"),
            Some("de".parse().unwrap()),
        ));
        e.vary.push((HeaderName::from_static("x-absent"), None));
        e.tags = vec!["risk:1".into(), "url:/r".into()];
        e.bodies
            .push((Encoding::Identity, Bytes::from_static(b"{}")));
        e.bodies
            .push((Encoding::Gzip, Bytes::from_static(b"\x1f\x8b")));
        e
    }

    #[test]
    fn round_trip() {
        let e = sample();
        let d = Entry::decode(e.encode()).unwrap();
        assert_eq!(d.status, e.status);
        assert_eq!(d.headers, e.headers);
        assert_eq!(d.timing, e.timing);
        assert_eq!(d.vary, e.vary);
        assert_eq!(d.tags, e.tags);
        assert_eq!(d.bodies, e.bodies);
    }

    #[test]
    fn encoded_buffer_has_no_spare_capacity() {
        // Headers under and over the initial estimate of 256 bytes.
        let mut big = sample();
        big.headers
            .insert("x-long", "v".repeat(1000).parse().unwrap());
        for e in [sample(), big] {
            let bytes = e.encode();
            let len = bytes.len();
            let owned = bytes.try_into_mut().expect("the only reference");
            assert_eq!(owned.capacity(), len);
        }
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(Entry::decode(bytes.slice(..n)).is_err(), "prefix {n}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[i] ^= 0xff;
            let _ = Entry::decode(Bytes::from(b));
        }
    }
}
