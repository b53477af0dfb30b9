//! Byte ranges of a stored response (RFC 9110 §14): `Range` and `If-Range` read
//! against a complete representation the cache holds.
//!
//! The proxy answers one range from a stored 200 with a 206, and an unsatisfiable
//! one with a 416. Everything it does not handle it may ignore (§14.2), and then
//! the client gets the whole 200: units other than `bytes`, several ranges (no
//! `multipart/byteranges`), syntax errors, an `If-Range` that does not match.
//!
//! ```
//! use strata_http::range::{parse, Ranged};
//!
//! assert_eq!(parse("bytes=0-9", 100), Ranged::Part { start: 0, end: 9 });
//! assert_eq!(parse("bytes=-10", 100), Ranged::Part { start: 90, end: 99 });
//! assert_eq!(parse("bytes=100-", 100), Ranged::Unsatisfiable);
//! assert_eq!(parse("bytes=0-1,5-6", 100), Ranged::Whole);
//! ```

use http::header::{DATE, ETAG, LAST_MODIFIED};
use http::HeaderMap;

/// What a `Range` field asks of a representation `len` bytes long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ranged {
    /// Bytes `start..=end`, both within the representation.
    Part { start: u64, end: u64 },
    /// A valid single range that starts past the end: 416.
    Unsatisfiable,
    /// Not something this cache answers with a part: serve the whole.
    Whole,
}

/// Reads a `Range` field value against a representation of `len` bytes.
///
/// One `bytes` range (`first-last`, `first-`, or `-suffix`) gives
/// [`Ranged::Part`] or [`Ranged::Unsatisfiable`]; anything else, including an
/// empty representation (whose only satisfiable range would be all of nothing),
/// gives [`Ranged::Whole`].
pub fn parse(value: &str, len: u64) -> Ranged {
    let Some((unit, set)) = value.split_once('=') else {
        return Ranged::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || len == 0 {
        return Ranged::Whole;
    }
    // `1#range-spec`: empty list elements are allowed and skipped (RFC 9110 §5.6.1).
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return Ranged::Whole;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return Ranged::Whole;
    };
    if first.is_empty() {
        // suffix-range: the last `n` bytes.
        return match number(last) {
            Some(0) => Ranged::Unsatisfiable,
            Some(n) => Ranged::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => Ranged::Whole,
        };
    }
    let Some(start) = number(first) else {
        return Ranged::Whole;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match number(last) {
            Some(end) if end >= start => end,
            // last-pos before first-pos makes the field invalid (§14.1.1).
            _ => return Ranged::Whole,
        }
    };
    if start >= len {
        return Ranged::Unsatisfiable;
    }
    Ranged::Part {
        start,
        end: end.min(len - 1),
    }
}

/// A decimal of 1DIGIT or more; past `u64::MAX` it saturates (a position that
/// large is past any representation's end anyway).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

/// Whether an `If-Range` value lets a range of the stored response with
/// `headers` be served (RFC 9110 §13.1.5): an entity tag must match the stored
/// `ETag` by strong comparison; a date must equal the stored `Last-Modified`,
/// and only a strong one counts (`Date` at least a second later, §8.8.2.2).
/// Anything else means "send the whole representation".
pub fn if_range_holds(if_range: &str, headers: &HeaderMap) -> bool {
    let if_range = if_range.trim();
    if if_range.starts_with('"') || if_range.starts_with("W/") {
        let Some(etag) = headers.get(ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let etag = etag.trim();
        return !if_range.starts_with("W/") && !etag.starts_with("W/") && if_range == etag;
    }
    let date = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok())
    };
    let (Ok(wanted), Some(modified), Some(dated)) = (
        httpdate::parse_http_date(if_range),
        date(LAST_MODIFIED),
        date(DATE),
    ) else {
        return false;
    };
    wanted == modified
        && dated
            .duration_since(modified)
            .is_ok_and(|d| d.as_secs() >= 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn single_ranges() {
        let p = |start, end| Ranged::Part { start, end };
        assert_eq!(parse("bytes=0-0", 10), p(0, 0));
        assert_eq!(parse("bytes=2-5", 10), p(2, 5));
        assert_eq!(parse("bytes=2-", 10), p(2, 9));
        assert_eq!(parse("bytes=2-400", 10), p(2, 9));
        assert_eq!(parse("bytes=-3", 10), p(7, 9));
        assert_eq!(parse("bytes=-30", 10), p(0, 9));
        assert_eq!(parse("BYTES = 1-2 ,", 10), p(1, 2));
        assert_eq!(parse("bytes=0-99999999999999999999999", 10), p(0, 9));
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(parse("bytes=10-", 10), Ranged::Unsatisfiable);
        assert_eq!(parse("bytes=10-20", 10), Ranged::Unsatisfiable);
        assert_eq!(parse("bytes=-0", 10), Ranged::Unsatisfiable);
        assert_eq!(
            parse("bytes=99999999999999999999999-", 10),
            Ranged::Unsatisfiable
        );
    }

    #[test]
    fn what_is_not_one_byte_range_is_ignored() {
        for v in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=0x1-2",
        ] {
            assert_eq!(parse(v, 10), Ranged::Whole, "{v:?}");
        }
        assert_eq!(parse("bytes=0-", 0), Ranged::Whole);
        assert_eq!(parse("bytes=-1", 0), Ranged::Whole);
    }

    fn stored(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in fields {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn if_range_by_entity_tag_is_a_strong_match() {
        let h = stored(&[("etag", "\"v1\"")]);
        assert!(if_range_holds("\"v1\"", &h));
        assert!(!if_range_holds("\"v2\"", &h));
        assert!(!if_range_holds("W/\"v1\"", &h));
        assert!(!if_range_holds("\"v1\"", &stored(&[("etag", "W/\"v1\"")])));
        assert!(!if_range_holds("\"v1\"", &stored(&[])));
    }

    #[test]
    fn if_range_by_date_needs_a_strong_last_modified() {
        let lm = "Sun, 06 Nov 1994 08:49:37 GMT";
        let strong = stored(&[
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("date", "Sun, 06 Nov 1994 08:49:38 GMT"),
        ]);
        assert!(if_range_holds(lm, &strong));
        assert!(!if_range_holds("Sun, 06 Nov 1994 08:49:36 GMT", &strong));
        assert!(!if_range_holds("yesterday", &strong));
        let weak = stored(&[
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert!(!if_range_holds(lm, &weak));
        let undated = stored(&[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert!(!if_range_holds(lm, &undated));
    }
}
