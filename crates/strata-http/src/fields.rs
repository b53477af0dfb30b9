//! Header fields the proxy adds, drops and compares: the names it sets on every
//! request and response, the lists it filters by (hop-by-hop, override,
//! conditional, cache-only), the small functions that apply them, and the values
//! it writes (decimals, the timing text) without needless allocations.

use std::time::Duration;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::entry::Entry;
use crate::freshness;

// Names of the fields every proxied request or response gets, made once: a
// `&str` name is parsed and classified on each use.
pub(crate) static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
pub(crate) static X_PROCESS_TIME: HeaderName = HeaderName::from_static("x-process-time");
pub(crate) static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static SURROGATE_CAPABILITY: HeaderName =
    HeaderName::from_static("surrogate-capability");

/// Hop-by-hop fields (RFC 9110 §7.6.1) and the legacy ones proxies also drop.
pub(crate) const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request fields a client could use to make the origin build a response for
/// something other than what the key says (cache poisoning); the proxy sets the
/// forwarding fields itself and drops the override ones.
pub(crate) const UNKEYED_OVERRIDES: &[&str] = &[
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-prefix",
    "x-host",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Request fields that make a conditional or partial request; a fetch meant for
/// the cache asks for the whole representation and answers conditionals itself.
pub(crate) const CONDITIONALS: &[&str] = &[
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
    "range",
];

/// Response fields meant for the cache, not the client. The code asks
/// [`is_cache_only`], which spells them out to be quicker; the tests hold it to
/// this list.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const CACHE_ONLY: &[&str] = &["cache-tag", "surrogate-key", "surrogate-control"];

/// Of those, the ones a stored entry drops (it keeps `Surrogate-Control`, which a
/// revalidation re-reads).
pub(crate) const TAG_FIELDS: &[&str] = &["cache-tag", "surrogate-key"];

/// Fields a 304 to the client carries (RFC 9110 §15.4.5).
pub(crate) const NOT_MODIFIED_FIELDS: &[HeaderName] = &[
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
    header::AGE,
    header::LAST_MODIFIED,
];

/// Fields a 304 from the origin may not change in the stored response.
pub(crate) const NOT_UPDATED_BY_304: &[&str] = &[
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "content-range",
    // Both identify the stored body, which a 304 does not replace.
    "content-md5",
    "etag",
];

/// A decimal field value (`Age`, `Content-Length`) in one allocation:
/// `HeaderValue::from(u64)` builds a `BytesMut` and freezes it, two.
pub(crate) fn decimal(n: u64) -> HeaderValue {
    HeaderValue::from_bytes(itoa::Buffer::new().format(n).as_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// A duration in whole microseconds (saturating; a request never takes 584,000
/// years).
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Text of a short header value, built without a heap allocation. Writes that
/// would overflow it fail and leave it as it was; the longest value built here, a
/// `Server-Timing` with two 20-digit durations, is 89 bytes (unit-tested below).
pub(crate) struct StackText {
    buf: [u8; 128],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            buf: [0; 128],
            len: 0,
        }
    }
}

impl StackText {
    pub(crate) fn value(&self) -> Option<HeaderValue> {
        HeaderValue::from_bytes(&self.buf[..self.len]).ok()
    }

    /// Appends `n / 10^decimals` written with exactly `decimals` decimals
    /// (`1234, 3` → `1.234`, `5, 3` → `0.005`; at most 6 decimals). Digit by
    /// digit from the right into a scratch array, copied once: ~80 instructions
    /// per request fewer than itoa's two numbers, the point and the zeros each
    /// written through `fmt::Write` (bench/ir-pass.sh).
    pub(crate) fn push_decimal(&mut self, n: u64, decimals: u32) -> std::fmt::Result {
        let decimals = decimals.min(6);
        // u64::MAX has 20 digits; with the point, 21.
        let mut digits = [0u8; 24];
        let (mut at, mut n, mut written) = (digits.len(), n, 0);
        loop {
            if written == decimals && decimals > 0 {
                at -= 1;
                digits[at] = b'.';
            }
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            written += 1;
            if n == 0 && written > decimals {
                break;
            }
        }
        self.push(&digits[at..])
    }

    /// Appends ASCII bytes; fails, leaving the text as it was, when they do not
    /// fit. (`value` validates whatever was pushed.)
    fn push(&mut self, bytes: &[u8]) -> std::fmt::Result {
        let end = self.len + bytes.len();
        let dest = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dest.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s.as_bytes())
    }
}

/// A selecting field's value as `Vary` matching compares it (RFC 9111 §4.1): all
/// lines combined, list members trimmed, so `1, 2`, ` 1,2 ` and two lines `1`
/// and `2` select the same response. `None` if absent.
/// The `Vary` fields of a stored response that select a variant: all but
/// `Accept-Encoding`, since one identity body serves every encoding.
pub(crate) fn selecting(e: &Entry) -> impl Iterator<Item = &(HeaderName, Option<HeaderValue>)> {
    e.vary.iter().filter(|(n, _)| *n != header::ACCEPT_ENCODING)
}

pub(crate) fn vary_value(h: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut it = h.get_all(name).iter().peekable();
    it.peek()?;
    let mut v: Vec<u8> = Vec::new();
    for line in it {
        for member in line.as_bytes().split(|b| *b == b',') {
            if !v.is_empty() {
                v.push(b',');
            }
            v.extend_from_slice(member.trim_ascii());
        }
    }
    HeaderValue::from_bytes(&v).ok()
}

/// The field names a message's `Connection` lines list as hop-by-hop (RFC 9110
/// §7.6.1), beyond those [`HOP_BY_HOP`] drops anyway. Read once per message: the
/// usual `Connection: keep-alive` or `close` lists no other field, so such a
/// message allocates nothing and each of its fields is checked against an empty
/// list. Scanning the field lines again for each field was ~9% of a pass-through
/// request's user-space instructions (bench/ir-pass.sh, docs/decisions.md).
pub(crate) struct ConnectionListed<'a> {
    names: Vec<&'a str>,
    /// `close` was listed; `Close` is a reserved field name (RFC 9110 §18.4), so
    /// a field of that name goes too.
    close: bool,
}

impl<'a> ConnectionListed<'a> {
    pub(crate) fn of(h: &'a HeaderMap) -> Self {
        let mut listed = ConnectionListed {
            names: Vec::new(),
            close: false,
        };
        for line in h.get_all(header::CONNECTION) {
            // A line that is not text names no field anyone could send.
            let Ok(line) = line.to_str() else { continue };
            for t in line.split(',').map(str::trim) {
                if t.eq_ignore_ascii_case("close") {
                    listed.close = true;
                } else if !t.is_empty() && !HOP_BY_HOP.iter().any(|h| t.eq_ignore_ascii_case(h)) {
                    listed.names.push(t);
                }
            }
        }
        listed
    }

    /// Whether `name` (a lowercase field name) is listed.
    pub(crate) fn contains(&self, name: &str) -> bool {
        (self.close && name == "close") || self.names.iter().any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// Removes every field whose name `doomed` selects, in one pass over the names
/// present; a message with none of them (most) allocates nothing. (A `remove`
/// per candidate name parsed and hashed each one: ~5% of a proxied request's
/// user CPU, perf, docs/decisions.md.)
pub(crate) fn strip(h: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let gone = h.keys().filter(|n| doomed(n)).cloned().collect();
    remove_all(h, gone);
}

/// Removes the fields named; `gone` is empty, and so never allocated, when nothing
/// matched.
fn remove_all(h: &mut HeaderMap, gone: Vec<HeaderName>) {
    for name in gone {
        h.remove(name);
    }
}

/// Whether `name` is one of the [`HOP_BY_HOP`] fields.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    is_hop_by_hop_name(name.as_str())
}

/// [`is_hop_by_hop`] for a lowercase name. By length first: it runs for every
/// field of every message relayed, and a field of any other length (most) is
/// decided by one comparison; nine comparisons of each name were ~250
/// instructions of a pass-through request (bench/ir-pass.sh).
#[inline]
fn is_hop_by_hop_name(n: &str) -> bool {
    match n.len() {
        2 => n == "te",
        7 => n == "trailer" || n == "upgrade",
        10 => n == "connection" || n == "keep-alive",
        16 => n == "proxy-connection",
        17 => n == "transfer-encoding",
        18 => n == "proxy-authenticate",
        19 => n == "proxy-authorization",
        _ => false,
    }
}

/// Removes the hop-by-hop fields: the standard ones and those `Connection` lists.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap) {
    strip_hop_by_hop_and(h, |_| false);
}

/// Removes the hop-by-hop fields and those `also` selects (by lowercase name), in
/// one pass over the names present, and a second only when there is a
/// `Connection` field, which may list more (a response from strata's own
/// HTTP/1.1 client never has one left: looking it up was ~150 instructions of a
/// pass-through request, bench/ir-pass.sh).
fn strip_hop_by_hop_and(h: &mut HeaderMap, also: impl Fn(&str) -> bool) {
    let mut connection = false;
    let mut gone: Vec<HeaderName> = h
        .keys()
        .filter(|n| {
            let n = n.as_str();
            connection |= n == "connection";
            is_hop_by_hop_name(n) || also(n)
        })
        .cloned()
        .collect();
    if connection {
        let listed = ConnectionListed::of(h);
        gone.extend(h.keys().filter(|n| listed.contains(n.as_str())).cloned());
    }
    remove_all(h, gone);
}

pub(crate) fn strip_cache_only(h: &mut HeaderMap) {
    strip(h, |n| is_cache_only(n.as_str()));
}

/// Whether a lowercase field name is one of [`CACHE_ONLY`], by length first as
/// [`is_hop_by_hop`].
#[inline]
pub(crate) fn is_cache_only(n: &str) -> bool {
    match n.len() {
        9 => n == "cache-tag",
        13 => n == "surrogate-key",
        17 => n == "surrogate-control",
        _ => false,
    }
}

/// What a client never gets of an origin's response passed through: the
/// hop-by-hop fields and the cache-only ones, in one pass over the names
/// (`strip_hop_by_hop` then `strip_cache_only` walked them twice: 234 more
/// instructions per pass-through request, bench/ir-pass.sh).
pub(crate) fn strip_relayed(h: &mut HeaderMap) {
    strip_hop_by_hop_and(h, is_cache_only);
}

pub(crate) fn add_vary(h: &mut HeaderMap, field: &str) {
    let present = freshness::vary_names(h).any(|n| n == field || n == "*");
    if !present {
        h.append(
            header::VARY,
            HeaderValue::from_str(field).unwrap_or(HeaderValue::from_static("accept-encoding")),
        );
    }
}

/// A compressed body is a different representation: its `ETag` can only be weak.
pub(crate) fn weaken_etag(h: &mut HeaderMap) {
    if let Some(tag) = h.get(header::ETAG).cloned() {
        if !tag.as_bytes().starts_with(b"W/") {
            let mut v = b"W/".to_vec();
            v.extend_from_slice(tag.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                h.insert(header::ETAG, v);
            }
        }
    }
}

/// Whether a client's conditional GET/HEAD is satisfied by the stored response
/// (RFC 9110 §13.1.2, §13.1.3, evaluated as §13.2.2 orders them).
pub(crate) fn not_modified(req: &HeaderMap, e: &Entry) -> bool {
    if e.status != StatusCode::OK {
        return false;
    }
    if let Some(inm) = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let Some(etag) = e.headers.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        let ours = opaque(etag);
        return inm.split(',').any(|t| t.trim() == "*" || opaque(t) == ours);
    }
    if let Some(ims) = req
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
    {
        let lm = e
            .headers
            .get(header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s.trim()).ok());
        return lm.is_some_and(|lm| lm <= ims);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freshness::Timing;
    use std::fmt::Write;

    #[test]
    fn client_conditionals() {
        let mut h = HeaderMap::new();
        h.insert("etag", "\"v1\"".parse().unwrap());
        h.insert(
            "last-modified",
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        let e = Entry::new(StatusCode::OK, h, Timing::default());
        let req = |k: &str, v: &str| {
            let mut r = HeaderMap::new();
            r.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
            r
        };
        assert!(not_modified(&req("if-none-match", "\"v0\", W/\"v1\""), &e));
        assert!(not_modified(&req("if-none-match", "*"), &e));
        assert!(!not_modified(&req("if-none-match", "\"v2\""), &e));
        assert!(not_modified(
            &req("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
            &e
        ));
        assert!(!not_modified(
            &req("if-modified-since", "Sat, 05 Nov 1994 08:49:37 GMT"),
            &e
        ));
        assert!(!not_modified(&HeaderMap::new(), &e));
    }

    #[test]
    fn vary_values_are_normalised() {
        let mut a = HeaderMap::new();
        a.insert("foo", " 1, 2 ".parse().unwrap());
        let mut b = HeaderMap::new();
        b.append("foo", "1".parse().unwrap());
        b.append("foo", "2".parse().unwrap());
        let foo = HeaderName::from_static("foo");
        assert_eq!(vary_value(&a, &foo), vary_value(&b, &foo));
        assert_eq!(vary_value(&a, &foo).unwrap(), "1,2");
        assert_eq!(vary_value(&HeaderMap::new(), &foo), None);
    }

    #[test]
    fn decimals_are_fixed_width() {
        let cases = [
            (0, 3, "0.000"),
            (5, 3, "0.005"),
            (1234, 3, "1.234"),
            (1_000, 3, "1.000"),
            (1_234_567, 6, "1.234567"),
            (42, 6, "0.000042"),
            (999_999, 6, "0.999999"),
            (1_000_000, 6, "1.000000"),
            (u64::MAX, 6, "18446744073709.551615"),
            (u64::MAX, 3, "18446744073709551.615"),
            (7, 0, "7"),
        ];
        for (n, d, want) in cases {
            let mut s = StackText::default();
            s.write_str("x=").unwrap();
            s.push_decimal(n, d).unwrap();
            assert_eq!(
                s.value().unwrap(),
                format!("x={want}"),
                "{n} with {d} decimals"
            );
        }
        assert_eq!(micros(Duration::from_nanos(1_999)), 1);
    }

    #[test]
    fn stack_text_holds_the_longest_timing_and_refuses_overflow() {
        let mut t = StackText::default();
        let _ = t.write_str("cache;desc=REVALIDATED, origin;dur=");
        t.push_decimal(u64::MAX, 3).unwrap();
        let _ = t.write_str(", total;dur=");
        t.push_decimal(u64::MAX, 3).unwrap();
        let longest = "cache;desc=REVALIDATED, origin;dur=18446744073709551.615, \
                       total;dur=18446744073709551.615";
        assert_eq!(t.value().unwrap(), longest);
        let mut t = StackText::default();
        assert!(t.write_str(&"x".repeat(128)).is_ok());
        assert!(t.write_str("y").is_err());
        assert_eq!(t.value().unwrap().len(), 128);
    }

    #[test]
    fn hop_by_hop_and_connection_listed_fields_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("content-type", "text/plain".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn a_relayed_response_loses_hop_by_hop_and_cache_only_fields() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        for f in CACHE_ONLY {
            h.insert(*f, "a".parse().unwrap());
        }
        h.insert("content-type", "text/plain".parse().unwrap());
        h.append("x-multi", "1".parse().unwrap());
        h.append("x-multi", "2".parse().unwrap());
        strip_relayed(&mut h);
        // Removal may reorder fields of different names (not those of one name).
        let mut left: Vec<_> = h
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        left.sort_by_key(|(n, _)| *n);
        assert_eq!(
            left,
            [
                ("content-type", "text/plain"),
                ("x-multi", "1"),
                ("x-multi", "2")
            ]
        );
    }

    #[test]
    fn connection_lists_are_read_once_whatever_their_form() {
        let mut h = HeaderMap::new();
        h.append("connection", "Keep-Alive".parse().unwrap());
        h.append("connection", " X-A ,, x-b".parse().unwrap());
        h.append("connection", "Close".parse().unwrap());
        let listed = ConnectionListed::of(&h);
        assert!(listed.contains("x-a") && listed.contains("x-b") && listed.contains("close"));
        assert!(!listed.contains("x-c") && !listed.contains("content-type"));
        // Names hop-by-hop anyway take no room in the list.
        assert_eq!(listed.names, ["X-A", "x-b"]);
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive".parse().unwrap());
        assert!(!ConnectionListed::of(&h).contains("close"));
    }

    #[test]
    fn the_hop_by_hop_test_and_list_agree() {
        for name in HOP_BY_HOP {
            assert!(is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
            assert!(!is_cache_only(name), "{name}");
        }
        for name in CACHE_ONLY {
            assert!(is_cache_only(name), "{name}");
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["cache-tab", "surrogate-kex", "surrogate-contro1", "via"] {
            assert!(!is_cache_only(name), "{name}");
        }
        // Names of the same lengths as hop-by-hop ones, which are told apart by more
        // than their length.
        let same_lengths = [
            "tk",
            "referer",
            "user-agent",
            "content-location",
            "x-forwarded-proto",
            "x-forwarded-prefix",
            "content-disposition",
        ];
        for name in ["content-length", "x-connection", "keep-alive2", "via"]
            .into_iter()
            .chain(same_lengths)
        {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn every_doomed_field_goes() {
        let mut h = HeaderMap::new();
        for i in 0..20 {
            h.insert(
                HeaderName::try_from(format!("x-drop-{i}")).unwrap(),
                "1".parse().unwrap(),
            );
        }
        h.insert("content-type", "text/plain".parse().unwrap());
        strip(&mut h, |n| n.as_str().starts_with("x-drop-"));
        assert_eq!(h.len(), 1);
    }
}
