//! Cache keys: scheme, host, path, normalised query and the route's keyed headers.
//!
//! Only what is in the key can select a stored response; everything else the client
//! sends is either irrelevant to the origin's answer or stripped before the origin
//! sees it (see the proxy module), which is what keeps unkeyed headers from
//! poisoning the cache.
//!
//! ```
//! use strata_http::key::{KeyRules, normalize_query};
//! assert_eq!(normalize_query("b=2&a=1&&c", None), "a=1&b=2&c");
//! let only = vec!["page".to_string()];
//! assert_eq!(normalize_query("utm=x&page=2", Some(&only)), "page=2");
//! ```

use std::borrow::Cow;
use std::fmt::Write;

use http::{HeaderMap, HeaderName};

/// Longest key stored; longer URLs pass through uncached.
pub const MAX_KEY_LEN: usize = 4096;

/// Tag every stored response carries: its URL without host, so that a URL purge or
/// an unsafe request reaches every host and keyed-header variant of it.
pub fn url_tag(path_and_query: &str) -> String {
    format!("url:{path_and_query}")
}

/// A route's key settings.
#[derive(Debug, Clone, Default)]
pub struct KeyRules {
    /// Query parameters kept; `None` keeps all.
    pub query: Option<Vec<String>>,
    /// Request headers appended to the key.
    pub headers: Vec<HeaderName>,
}

/// Sorts query parameters by name then value and keeps only `only` when given.
/// Empty parameters (`&&`) go; order of repeated names is by value.
pub fn normalize_query(q: &str, only: Option<&Vec<String>>) -> String {
    let mut pairs: Vec<(&str, &str)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .filter(|(name, _)| only.is_none_or(|o| o.iter().any(|k| k == name)))
        .collect();
    pairs.sort_unstable();
    let mut out = String::with_capacity(q.len());
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        // `a` and `a=` are the same parameter to every framework we know of.
        if !value.is_empty() {
            out.push('=');
            out.push_str(value);
        }
    }
    out
}

/// Lowercases a `Host` value and drops the default port; `None` if it is not a
/// plausible host (the request is then refused rather than keyed on garbage).
///
/// ```
/// use strata_http::key::normalize_host;
/// assert_eq!(normalize_host("API.Example:80").unwrap(), "api.example");
/// assert!(normalize_host("a b").is_none());
/// ```
pub fn normalize_host(host: &str) -> Option<String> {
    normalized_host(host).map(Cow::into_owned)
}

/// [`normalize_host`] without a copy when the host is normal already, as most
/// are.
pub fn normalized_host(host: &str) -> Option<Cow<'_, str>> {
    if host.is_empty() || host.len() > 255 {
        return None;
    }
    // One pass over the bytes: every request's host goes through here.
    let mut upper = false;
    for b in host.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b':' | b'[' | b']' | b'_' => {}
            b'A'..=b'Z' => upper = true,
            _ => return None,
        }
    }
    let bare = host.strip_suffix(":80").unwrap_or(host);
    Some(match upper {
        true => Cow::Owned(bare.to_ascii_lowercase()),
        false => Cow::Borrowed(bare),
    })
}

/// The parts of a request a key is built from.
pub struct KeyParts<'a> {
    /// Normalised host.
    pub host: &'a str,
    /// Path as received.
    pub path: &'a str,
    /// Normalised query (may be empty).
    pub query: &'a str,
}

impl KeyParts<'_> {
    /// `path?query` (no `?` when the query is empty).
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.to_owned()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

/// Builds the key, or `None` when it would be longer than [`MAX_KEY_LEN`].
pub fn cache_key(parts: &KeyParts<'_>, headers: &HeaderMap, rules: &KeyRules) -> Option<String> {
    let mut k = String::with_capacity(16 + parts.host.len() + parts.path.len() + parts.query.len());
    k.push_str("http://");
    k.push_str(parts.host);
    k.push_str(parts.path);
    if !parts.query.is_empty() {
        k.push('?');
        k.push_str(parts.query);
    }
    for name in &rules.headers {
        k.push(' ');
        k.push_str(name.as_str());
        k.push('=');
        // All values of the field, joined; bytes outside visible ASCII escaped so
        // the key stays printable.
        for (i, v) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                k.push(',');
            }
            for &b in v.as_bytes() {
                if (0x21..0x7f).contains(&b) && b != b'%' {
                    k.push(b as char);
                } else {
                    let _ = write!(k, "%{b:02X}");
                }
            }
        }
    }
    (k.len() <= MAX_KEY_LEN).then_some(k)
}

/// Marks where a variant's part of a key starts: a space and a colon, which no
/// path, query or header name holds, so a variant key never equals a primary key.
/// A prefix purge of a URL reaches its variants too.
const VARIANT_MARK: &str = " vary:";

/// The key of one `Vary` variant of the response stored under `key`: after
/// ` vary: `, 128 bits of SHA-256 over the request's values of the
/// selecting fields, in the order given. A digest, not the values: `Vary:
/// Cookie` or `Vary: Authorization` would otherwise write session cookies and
/// tokens into Redis key names in the clear (values, unlike keys, can be
/// encrypted), and a digest keeps every variant key short. `None` past
/// [`MAX_KEY_LEN`].
///
/// ```
/// use http::{HeaderName, HeaderValue};
/// use strata_http::key::variant_key;
///
/// let origin = HeaderName::from_static("origin");
/// let a = HeaderValue::from_static("https://a.example");
/// let b = HeaderValue::from_static("https://b.example");
/// let ka = variant_key("http://api/x", [(&origin, Some(&a))]).unwrap();
/// assert!(ka.starts_with("http://api/x vary: ") && !ka.contains("a.example"));
/// assert_eq!(ka.len(), "http://api/x vary: ".len() + 32);
/// assert_ne!(Some(ka.clone()), variant_key("http://api/x", [(&origin, Some(&b))]));
/// // A field the request did not send differs from one sent empty.
/// let empty = HeaderValue::from_static("");
/// assert_ne!(
///     variant_key("http://api/x", [(&origin, None)]),
///     variant_key("http://api/x", [(&origin, Some(&empty))])
/// );
/// ```
pub fn variant_key<'a>(
    key: &str,
    fields: impl IntoIterator<Item = (&'a HeaderName, Option<&'a http::HeaderValue>)>,
) -> Option<String> {
    // An injective encoding of the fields: name, NUL (names hold none), then a
    // tag byte and, for a value, its length and bytes.
    let mut canonical = Vec::with_capacity(64);
    for (name, value) in fields {
        canonical.extend_from_slice(name.as_str().as_bytes());
        canonical.push(0);
        match value {
            Some(v) => {
                canonical.push(1);
                canonical.extend_from_slice(&(v.len() as u64).to_be_bytes());
                canonical.extend_from_slice(v.as_bytes());
            }
            None => canonical.push(0),
        }
    }
    let mut k = String::with_capacity(key.len() + VARIANT_MARK.len() + 33);
    k.push_str(key);
    k.push_str(VARIANT_MARK);
    k.push(' ');
    push_digest(&mut k, &canonical);
    (k.len() <= MAX_KEY_LEN).then_some(k)
}

/// The tag every variant of the response stored under `key` carries, so that
/// purging one URL on one host drops its variants through the tag index instead
/// of a scan of every key. A digest of `key`, since keys can be longer than a
/// tag may be.
///
/// ```
/// let t = strata_http::key::variants_tag("http://api/x");
/// assert!(t.starts_with("variants:") && t.len() == "variants:".len() + 32);
/// assert_ne!(t, strata_http::key::variants_tag("http://api/y"));
/// ```
pub fn variants_tag(key: &str) -> String {
    let mut t = String::from("variants:");
    push_digest(&mut t, key.as_bytes());
    t
}

/// Appends 128 bits of SHA-256 of `data`, in hex.
fn push_digest(out: &mut String, data: &[u8]) {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    for b in &digest.as_ref()[..16] {
        let _ = write!(out, "{b:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_what_the_route_keys_on_and_nothing_else() {
        let rules = KeyRules {
            query: None,
            headers: vec![HeaderName::from_static("accept-language")],
        };
        let parts = KeyParts {
            host: "api.example",
            path: "/r",
            query: "a=1",
        };
        let mut h = HeaderMap::new();
        h.insert("accept-language", "de de".parse().unwrap());
        h.insert("x-forwarded-host", "evil".parse().unwrap());
        assert_eq!(
            cache_key(&parts, &h, &rules).unwrap(),
            "http://api.example/r?a=1 accept-language=de%20de"
        );
        assert_eq!(
            cache_key(&parts, &HeaderMap::new(), &KeyRules::default()).unwrap(),
            "http://api.example/r?a=1"
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(normalize_host("API.Example:80").unwrap(), "api.example");
        assert_eq!(
            normalize_host("api.example:8080").unwrap(),
            "api.example:8080"
        );
        assert!(normalize_host("a b").is_none());
        assert!(normalize_host("").is_none());
        assert!(matches!(
            normalized_host("api.example:8080"),
            Some(Cow::Borrowed(_))
        ));
        assert!(matches!(
            normalized_host("api.example:80"),
            Some(Cow::Borrowed("api.example"))
        ));
        assert!(
            matches!(normalized_host("API.example"), Some(Cow::Owned(h)) if h == "api.example")
        );
    }

    #[test]
    fn long_urls_have_no_key() {
        let path = format!("/{}", "a".repeat(MAX_KEY_LEN));
        let parts = KeyParts {
            host: "h",
            path: &path,
            query: "",
        };
        assert!(cache_key(&parts, &HeaderMap::new(), &KeyRules::default()).is_none());
    }

    #[test]
    fn query_normalization() {
        assert_eq!(normalize_query("", None), "");
        assert_eq!(normalize_query("z=1&a=2&a=1", None), "a=1&a=2&z=1");
        assert_eq!(normalize_query("a=&b", None), "a&b");
    }
}
