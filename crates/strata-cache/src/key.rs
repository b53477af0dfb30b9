//! Keys: validation, the typed-key trait, and the Redis key layout.

use std::borrow::Cow;

use crate::error::{CacheError, Result};

/// Turns a typed key into the string the cache stores it under.
///
/// Implemented for strings and integers; implement it for your own key types so that
/// each type names its entries the same way everywhere:
///
/// ```
/// use std::borrow::Cow;
/// use strata_cache::CacheKey;
///
/// struct UserSession(u64);
///
/// impl CacheKey for UserSession {
///     fn cache_key(&self) -> Cow<'_, str> {
///         Cow::Owned(format!("session:{}", self.0))
///     }
/// }
/// assert_eq!(UserSession(7).cache_key(), "session:7");
/// ```
pub trait CacheKey {
    /// The key as stored. Must be stable across processes and versions.
    fn cache_key(&self) -> Cow<'_, str>;
}

impl CacheKey for str {
    fn cache_key(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl CacheKey for String {
    fn cache_key(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl<T: CacheKey + ?Sized> CacheKey for &T {
    fn cache_key(&self) -> Cow<'_, str> {
        (**self).cache_key()
    }
}

macro_rules! int_keys {
    ($($t:ty),*) => {$(
        impl CacheKey for $t {
            fn cache_key(&self) -> Cow<'_, str> {
                Cow::Owned(self.to_string())
            }
        }
    )*};
}
int_keys!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

/// Checks a namespace name: 1-64 characters of `[A-Za-z0-9_.-]`.
///
/// The restriction keeps namespace names safe inside Redis keys, URLs, pub/sub
/// messages and Prometheus label values.
pub fn validate_namespace(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CacheError::InvalidNamespace(name.to_owned()))
    }
}

/// Checks a key against a namespace's maximum length.
///
/// Keys may hold any printable text; control characters are refused because they
/// break logs and line-based tooling (redis-cli, SCAN output).
#[inline]
pub fn validate_key(namespace: &str, key: &str, max_len: usize) -> Result<()> {
    if key.is_empty() {
        return Err(CacheError::InvalidKey("key is empty"));
    }
    if key.len() > max_len {
        return Err(CacheError::KeyTooLong {
            namespace: namespace.to_owned(),
            len: key.len(),
            max: max_len,
        });
    }
    // Branch-free over the bytes so it vectorizes (an early-exit loop does not).
    if key
        .bytes()
        .fold(false, |bad, b| bad | (b < 0x20) | (b == 0x7f))
    {
        return Err(CacheError::InvalidKey("key contains a control character"));
    }
    Ok(())
}

/// Where a namespace's entries live in Redis.
///
/// Layout: `{prefix}:{ns}:k:{key}` for entries and `{prefix}:{ns}:t:{tag}` for tag
/// sets. With `colocate`, the namespace is wrapped in a Redis Cluster hash tag
/// (`{prefix}:{{ns}}:k:{key}`) so all of a namespace's keys and tag sets share one
/// slot; that allows multi-key atomic operations at the price of putting the whole
/// namespace on one shard.
#[derive(Debug, Clone)]
pub struct RedisKeys {
    entry_prefix: String,
    tag_prefix: String,
}

impl RedisKeys {
    /// Key layout for one namespace.
    pub fn new(prefix: &str, namespace: &str, colocate: bool) -> Self {
        let ns = if colocate {
            format!("{{{namespace}}}")
        } else {
            namespace.to_owned()
        };
        RedisKeys {
            entry_prefix: format!("{prefix}:{ns}:k:"),
            tag_prefix: format!("{prefix}:{ns}:t:"),
        }
    }

    /// Redis key of an entry.
    pub fn entry(&self, key: &str) -> String {
        let mut s = String::with_capacity(self.entry_prefix.len() + key.len());
        s.push_str(&self.entry_prefix);
        s.push_str(key);
        s
    }

    /// Redis key of a tag set.
    pub fn tag(&self, tag: &str) -> String {
        format!("{}{}", self.tag_prefix, tag)
    }

    /// The prefix shared by all entry keys of the namespace.
    pub fn entry_prefix(&self) -> &str {
        &self.entry_prefix
    }

    /// The cache key of a Redis entry key, if it belongs to this namespace.
    pub fn strip_entry<'a>(&self, redis_key: &'a str) -> Option<&'a str> {
        redis_key.strip_prefix(self.entry_prefix.as_str())
    }

    /// A SCAN MATCH pattern for entries whose cache key matches a glob `pattern`.
    ///
    /// The namespace part is escaped so that glob characters in it are literal.
    pub fn scan_pattern(&self, pattern: &str) -> String {
        let mut s = escape_glob(&self.entry_prefix);
        s.push_str(pattern);
        s
    }
}

/// Escapes Redis glob metacharacters so the text matches literally.
pub fn escape_glob(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// Matches `text` against a Redis-style glob (`*`, `?`, `[abc]`, `[a-z]`, `[^a]`, `\x`).
///
/// Used on L1 so that pattern invalidation means the same thing in both tiers.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    glob_bytes(pattern.as_bytes(), text.as_bytes())
}

fn glob_bytes(p: &[u8], t: &[u8]) -> bool {
    // Iterative matcher with single-star backtracking: linear in practice, no recursion.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(&p[pi..], t[ti]) {
                        if matched {
                            pi += next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == b'[' {
                        // Unterminated class: treat '[' literally.
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                b'\\' if pi + 1 < p.len() => {
                    if p[pi + 1] == t[ti] {
                        pi += 2;
                        ti += 1;
                        continue;
                    }
                }
                c => {
                    if c == t[ti] {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Matches one byte against a `[...]` class at the start of `p`.
/// Returns (matched, length of the class in the pattern), or None if unterminated.
fn class_match(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = p.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        let b = p[i];
        if b == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let (lo, step) = if b == b'\\' && i + 1 < p.len() {
            (p[i + 1], 2)
        } else {
            (b, 1)
        };
        if i + step + 1 < p.len() && p[i + step] == b'-' && p[i + step + 1] != b']' {
            let hi = p[i + step + 1];
            let (a, z) = if lo <= hi { (lo, hi) } else { (hi, lo) };
            if (a..=z).contains(&c) {
                matched = true;
            }
            i += step + 2;
        } else {
            if lo == c {
                matched = true;
            }
            i += step;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_behave_like_redis() {
        assert!(glob_match("user:*", "user:42"));
        assert!(glob_match("*", ""));
        assert!(glob_match("u?er:*:x", "user:1:x"));
        assert!(!glob_match("user:*", "users:1"));
        assert!(glob_match("h[ae]llo", "hallo"));
        assert!(!glob_match("h[^e]llo", "hello"));
        assert!(glob_match("h[a-c]llo", "hbllo"));
        assert!(glob_match("a\\*b", "a*b"));
        assert!(!glob_match("a\\*b", "axb"));
        assert!(glob_match("*a*b*c*", "xxaxxbxxcxx"));
        assert!(glob_match("[", "["));
    }

    #[test]
    fn key_limits_are_typed_errors() {
        assert!(validate_key("ns", "ok", 250).is_ok());
        assert!(matches!(
            validate_key("ns", &"x".repeat(251), 250),
            Err(CacheError::KeyTooLong {
                len: 251,
                max: 250,
                ..
            })
        ));
        assert!(matches!(
            validate_key("ns", "", 250),
            Err(CacheError::InvalidKey(_))
        ));
        assert!(matches!(
            validate_key("ns", "a\nb", 250),
            Err(CacheError::InvalidKey(_))
        ));
        assert!(validate_namespace("user.v2-x_y").is_ok());
        assert!(validate_namespace("bad ns").is_err());
        assert!(validate_namespace("").is_err());
    }

    #[test]
    fn redis_layout_and_colocation() {
        let k = RedisKeys::new("strata", "user", false);
        assert_eq!(k.entry("42"), "strata:user:k:42");
        assert_eq!(k.tag("team"), "strata:user:t:team");
        assert_eq!(k.strip_entry("strata:user:k:42"), Some("42"));
        let c = RedisKeys::new("strata", "user", true);
        assert_eq!(c.entry("42"), "strata:{user}:k:42");
        assert_eq!(c.scan_pattern("a*"), "strata:{user}:k:a*");
        assert_eq!(k.scan_pattern("[x]*"), "strata:user:k:[x]*");
        assert_eq!(escape_glob("a*b"), "a\\*b");
    }
}
