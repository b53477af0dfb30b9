//! `Cache-Control` parsing (RFC 9111 §5.2) for requests and responses.
//!
//! The parser is lenient where RFC 9111 asks recipients to be (unknown directives
//! are ignored, names are case-insensitive, values may be quoted) and conservative
//! where a wrong guess would serve stale or private data: a malformed or conflicting
//! freshness value counts as zero.

use http::HeaderMap;

/// Seconds from a `delta-seconds` value, or `Invalid` when it is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    /// A valid number of seconds (saturated at 2^31 as §1.2.2 asks).
    Secs(u64),
    /// Present but not a number: treated as 0 for freshness.
    Invalid,
}

impl Delta {
    /// Seconds, with an invalid value counting as 0.
    pub fn secs(self) -> u64 {
        match self {
            Delta::Secs(s) => s,
            Delta::Invalid => 0,
        }
    }
}

/// The directives of a response that a shared cache acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    /// `no-store`.
    pub no_store: bool,
    /// Unqualified `no-cache`: revalidate every use.
    pub no_cache: bool,
    /// `no-cache="a, b"`: the response may be reused, without these fields.
    pub no_cache_fields: Vec<String>,
    /// Unqualified `private`: a shared cache does not store it.
    pub private: bool,
    /// `private="a, b"`: a shared cache stores the response without these fields.
    pub private_fields: Vec<String>,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `must-understand`.
    pub must_understand: bool,
    /// `immutable`.
    pub immutable: bool,
    /// `no-transform`: the proxy must not compress the body.
    pub no_transform: bool,
    /// `max-age`.
    pub max_age: Option<Delta>,
    /// `s-maxage`.
    pub s_maxage: Option<Delta>,
    /// `stale-while-revalidate` (RFC 5861).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error` (RFC 5861).
    pub stale_if_error: Option<u64>,
    /// `Surrogate-Control: max-age` for this cache (Edge Architecture 1.0): when
    /// present it replaces every `Cache-Control` freshness and storage directive.
    pub surrogate_max_age: Option<Delta>,
}

/// The device token strata answers to in `Surrogate-Control` targets
/// (`max-age=60;strata`) and advertises in `Surrogate-Capability`.
pub const SURROGATE_TOKEN: &str = "strata";

/// The directives of a request that a shared cache acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-store`: do not store the response to this request.
    pub no_store: bool,
    /// `no-cache` (or `Pragma: no-cache` without `Cache-Control`).
    pub no_cache: bool,
    /// `max-age`: the client accepts nothing older.
    pub max_age: Option<u64>,
    /// `max-stale`, with `Some(None)` for "any staleness".
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh`.
    pub min_fresh: Option<u64>,
    /// `only-if-cached`.
    pub only_if_cached: bool,
}

/// Splits `Cache-Control` field values into `(lowercase name, value)` pairs,
/// unquoting quoted values. Commas inside quotes do not split.
///
/// ```
/// let h = http::HeaderValue::from_static("max-age=60, private=\"set-cookie, x\"");
/// let d: Vec<_> = strata_http::cache_control::directives([&h].into_iter()).collect();
/// assert_eq!(d[0], ("max-age".to_string(), Some("60".to_string())));
/// assert_eq!(d[1], ("private".to_string(), Some("set-cookie, x".to_string())));
/// ```
pub fn directives<'a>(
    values: impl Iterator<Item = &'a http::HeaderValue>,
) -> impl Iterator<Item = (String, Option<String>)> {
    let mut out = Vec::new();
    for v in values {
        // Non-ASCII bytes cannot be part of a directive we understand; keep the rest.
        let s = String::from_utf8_lossy(v.as_bytes());
        split_directives(&s, &mut out);
    }
    out.into_iter()
}

fn split_directives(s: &str, out: &mut Vec<(String, Option<String>)>) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // name
        while i < b.len() && (b[i] == b',' || b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        let start = i;
        while i < b.len() && !matches!(b[i], b'=' | b',' | b' ' | b'\t') {
            i += 1;
        }
        let name = s[start..i].to_ascii_lowercase();
        // `max-age =100` and `max-age= 100` are not the grammar (no whitespace
        // around `=`): such a directive keeps its name but gets a value nothing
        // parses, so freshness from it is zero rather than a guess.
        let mut spaced = false;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            spaced = true;
            i += 1;
        }
        let mut value = None;
        if i < b.len() && b[i] == b'=' {
            i += 1;
            if spaced || (i < b.len() && (b[i] == b' ' || b[i] == b'\t')) {
                value = Some(" ".to_owned());
            } else if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    // Byte-wise copy of ASCII; the lossy conversion above made any
                    // other byte a valid UTF-8 sequence we copy whole.
                    let ch = s[i..].chars().next().unwrap_or('?');
                    v.push(ch);
                    i += ch.len_utf8();
                }
                i += 1; // closing quote (or end)
                value = Some(v);
            } else {
                let vs = i;
                while i < b.len() && b[i] != b',' {
                    i += 1;
                }
                value = Some(s[vs..i].trim_end().to_owned());
            }
        }
        // Skip anything up to the next comma (garbage after a value).
        while i < b.len() && b[i] != b',' {
            i += 1;
        }
        if !name.is_empty() {
            out.push((name, value));
        }
    }
}

/// The field names of a qualified `no-cache` / `private`, lowercased; `None` when
/// the directive is unqualified (or names nothing, which means the same).
fn field_list(v: Option<&str>) -> Option<Vec<String>> {
    let fields: Vec<String> = v?
        .split(',')
        .map(|f| f.trim().to_ascii_lowercase())
        .filter(|f| !f.is_empty())
        .collect();
    (!fields.is_empty()).then_some(fields)
}

/// Parses `delta-seconds`: digits only; huge values saturate at 2^31.
fn delta(v: Option<&str>) -> Delta {
    match v {
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Delta::Secs(s.parse::<u64>().unwrap_or(1 << 31).min(1 << 31))
        }
        _ => Delta::Invalid,
    }
}

/// A duplicated freshness directive with different values is invalid (§4.2.1): it
/// counts as zero rather than picking one.
fn merge_delta(slot: &mut Option<Delta>, d: Delta) {
    *slot = match *slot {
        None => Some(d),
        Some(prev) if prev == d => Some(prev),
        Some(_) => Some(Delta::Invalid),
    };
}

impl ResponseDirectives {
    /// Reads the `Cache-Control` fields of a response (and `Pragma: no-cache` when
    /// there is no `Cache-Control`).
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut d = ResponseDirectives::default();
        for (name, value) in directives(headers.get_all(http::header::CACHE_CONTROL).iter()) {
            match name.as_str() {
                "no-store" => d.no_store = true,
                "no-cache" => match field_list(value.as_deref()) {
                    Some(fields) => d.no_cache_fields.extend(fields),
                    None => d.no_cache = true,
                },
                "private" => match field_list(value.as_deref()) {
                    Some(fields) => d.private_fields.extend(fields),
                    None => d.private = true,
                },
                "public" => d.public = true,
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "must-understand" => d.must_understand = true,
                "immutable" => d.immutable = true,
                "no-transform" => d.no_transform = true,
                "max-age" => merge_delta(&mut d.max_age, delta(value.as_deref())),
                "s-maxage" => merge_delta(&mut d.s_maxage, delta(value.as_deref())),
                "stale-while-revalidate" => {
                    if let Delta::Secs(s) = delta(value.as_deref()) {
                        d.stale_while_revalidate = Some(s);
                    }
                }
                "stale-if-error" => {
                    if let Delta::Secs(s) = delta(value.as_deref()) {
                        d.stale_if_error = Some(s);
                    }
                }
                _ => {}
            }
        }
        d.apply_surrogate_control(headers);
        d
    }

    /// `Surrogate-Control` directives without a target or targeted at
    /// [`SURROGATE_TOKEN`] override `Cache-Control` for this cache: `no-store`
    /// (and `no-store-remote`) forbid storing, `max-age=N[+M]` sets the freshness
    /// whatever `Cache-Control` says.
    fn apply_surrogate_control(&mut self, headers: &HeaderMap) {
        let mut no_store = false;
        let mut max_age = None;
        for (name, value) in directives(headers.get_all("surrogate-control").iter()) {
            // The target follows `;`, on the name (`no-store;x`) or the value (`max-age=5;x`).
            let (name, name_target) = match name.split_once(';') {
                Some((n, t)) => (n.to_owned(), Some(t.trim().to_owned())),
                None => (name, None),
            };
            let (value, value_target) = match value.as_deref().map(|v| v.split_once(';')) {
                Some(Some((v, t))) => (Some(v.to_owned()), Some(t.trim().to_owned())),
                Some(None) => (value, None),
                None => (None, None),
            };
            let target = name_target.or(value_target);
            if target.is_some_and(|t| !t.eq_ignore_ascii_case(SURROGATE_TOKEN)) {
                continue;
            }
            match name.as_str() {
                "no-store" | "no-store-remote" => no_store = true,
                "max-age" => {
                    // `N+M`: M is a revalidation window we do not use.
                    let n = value.as_deref().map(|v| v.split('+').next().unwrap_or(""));
                    max_age = Some(delta(n));
                }
                _ => {}
            }
        }
        if no_store {
            self.no_store = true;
            self.must_understand = false;
        } else if let Some(m) = max_age {
            self.no_store = false;
            self.private = false;
            self.no_cache = false;
            self.must_understand = false;
            self.surrogate_max_age = Some(m);
        }
    }

    /// Whether stale use is forbidden once the response is stale (§5.2.2.2, .8, .10:
    /// `must-revalidate`, `proxy-revalidate`, and `s-maxage` for a shared cache).
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some()
    }
}

impl RequestDirectives {
    /// Reads the `Cache-Control` fields of a request; `Pragma: no-cache` counts as
    /// `no-cache` only when there is no `Cache-Control` (§5.4).
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut d = RequestDirectives::default();
        let cc = headers.get_all(http::header::CACHE_CONTROL);
        let has_cc = cc.iter().next().is_some();
        for (name, value) in directives(cc.iter()) {
            match name.as_str() {
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache = true,
                "only-if-cached" => d.only_if_cached = true,
                // An invalid value makes the directive mean the strictest thing.
                "max-age" => d.max_age = Some(delta(value.as_deref()).secs()),
                "min-fresh" => {
                    d.min_fresh = Some(match delta(value.as_deref()) {
                        Delta::Secs(s) => s,
                        Delta::Invalid => u64::MAX,
                    })
                }
                "max-stale" => d.max_stale = Some(value.map(|v| delta(Some(&v)).secs())),
                _ => {}
            }
        }
        if !has_cc {
            d.no_cache = headers.get_all(http::header::PRAGMA).iter().any(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .to_ascii_lowercase()
                    .contains("no-cache")
            });
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(v: &[&str]) -> ResponseDirectives {
        let mut h = HeaderMap::new();
        for v in v {
            h.append("cache-control", v.parse().unwrap());
        }
        ResponseDirectives::parse(&h)
    }

    #[test]
    fn parses_common_forms() {
        let d = res(&["public, max-age=60", "S-MAXAGE=\"120\""]);
        assert!(d.public);
        assert_eq!(d.max_age, Some(Delta::Secs(60)));
        assert_eq!(d.s_maxage, Some(Delta::Secs(120)));
        let d = res(&["no-cache=\"set-cookie, X-A\", must-revalidate"]);
        assert!(!d.no_cache && d.must_revalidate && !d.public);
        assert_eq!(d.no_cache_fields, ["set-cookie", "x-a"]);
        let d = res(&["private=\"x-user\", no-cache"]);
        assert!(!d.private && d.no_cache);
        assert_eq!(d.private_fields, ["x-user"]);
        let d = res(&["max-age=10, stale-while-revalidate=30, stale-if-error=300"]);
        assert_eq!(d.stale_while_revalidate, Some(30));
        assert_eq!(d.stale_if_error, Some(300));
    }

    #[test]
    fn whitespace_around_equals_and_quoted_lookalikes() {
        assert_eq!(res(&["max-age =100"]).max_age, Some(Delta::Invalid));
        assert_eq!(res(&["max-age= 100"]).max_age, Some(Delta::Invalid));
        assert_eq!(res(&["max-age='3600'"]).max_age, Some(Delta::Invalid));
        assert_eq!(
            res(&["extension=\"max-age=100\", max-age=1"]).max_age,
            Some(Delta::Secs(1))
        );
        assert_eq!(
            res(&["max-age=1, extension=\"max-age=100\""]).max_age,
            Some(Delta::Secs(1))
        );
        assert_eq!(
            res(&["max-age=\"1\", extension=\"max-age=100\""]).max_age,
            Some(Delta::Secs(1))
        );
        assert_eq!(res(&["max-age=5 , public"]).max_age, Some(Delta::Secs(5)));
    }

    #[test]
    fn bad_or_conflicting_freshness_counts_as_zero() {
        assert_eq!(res(&["max-age=abc"]).max_age, Some(Delta::Invalid));
        assert_eq!(res(&["max-age=-5"]).max_age, Some(Delta::Invalid));
        assert_eq!(res(&["max-age=1.5"]).max_age, Some(Delta::Invalid));
        assert_eq!(
            res(&["max-age=5, max-age=10"]).max_age,
            Some(Delta::Invalid)
        );
        assert_eq!(
            res(&["max-age=5", "max-age=5"]).max_age,
            Some(Delta::Secs(5))
        );
        assert_eq!(
            res(&["max-age=99999999999999999999"]).max_age,
            Some(Delta::Secs(1 << 31))
        );
    }

    #[test]
    fn surrogate_control_targeted_at_us_overrides_cache_control() {
        let mut h = HeaderMap::new();
        h.insert("cache-control", "no-store".parse().unwrap());
        h.insert("surrogate-control", "max-age=60;strata".parse().unwrap());
        let d = ResponseDirectives::parse(&h);
        assert!(!d.no_store);
        assert_eq!(d.surrogate_max_age, Some(Delta::Secs(60)));
        h.insert("surrogate-control", "max-age=60;other-cdn".parse().unwrap());
        assert!(ResponseDirectives::parse(&h).no_store);
        h.insert("cache-control", "max-age=600".parse().unwrap());
        h.insert("surrogate-control", "no-store".parse().unwrap());
        assert!(ResponseDirectives::parse(&h).no_store);
        h.insert("surrogate-control", "max-age=30+600".parse().unwrap());
        assert_eq!(
            ResponseDirectives::parse(&h).surrogate_max_age,
            Some(Delta::Secs(30))
        );
    }

    #[test]
    fn garbage_never_panics() {
        for s in [
            "",
            ",,,",
            "=",
            "\"",
            "a=\"unterminated",
            "a=\"\\",
            "ü=1,max-age=3",
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                "cache-control",
                http::HeaderValue::from_bytes(s.as_bytes()).unwrap(),
            );
            let _ = ResponseDirectives::parse(&h);
            let _ = RequestDirectives::parse(&h);
        }
        assert_eq!(res(&["ü=1,max-age=3"]).max_age, Some(Delta::Secs(3)));
    }

    #[test]
    fn pragma_only_without_cache_control() {
        let mut h = HeaderMap::new();
        h.insert("pragma", "no-cache".parse().unwrap());
        assert!(RequestDirectives::parse(&h).no_cache);
        h.insert("cache-control", "max-age=100".parse().unwrap());
        let d = RequestDirectives::parse(&h);
        assert!(!d.no_cache);
        assert_eq!(d.max_age, Some(100));
    }

    #[test]
    fn request_max_stale_forms() {
        let mut h = HeaderMap::new();
        h.insert("cache-control", "max-stale".parse().unwrap());
        assert_eq!(RequestDirectives::parse(&h).max_stale, Some(None));
        h.insert(
            "cache-control",
            "max-stale=30, only-if-cached".parse().unwrap(),
        );
        let d = RequestDirectives::parse(&h);
        assert_eq!(d.max_stale, Some(Some(30)));
        assert!(d.only_if_cached);
    }
}
