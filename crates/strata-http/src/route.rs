//! Path patterns of routes and invalidation rules: `/exact`, `/prefix/*` and
//! templates such as `/api/risks/{id}`, and the table that finds the most specific
//! one for a path.
//!
//! ```
//! use strata_http::route::Pattern;
//! let p = Pattern::parse("/api/risks/{id}").unwrap();
//! assert_eq!(p.matches("/api/risks/7"), Some(vec![("id".to_string(), "7".to_string())]));
//! assert_eq!(p.fill("risk:{id}", &[("id".into(), "7".into())]), "risk:7");
//! assert!(p.matches("/api/risks/7/x").is_none());
//! ```

use std::collections::HashMap;

use http::Method;

/// Template parameters matched in a path, in pattern order.
pub type Params = Vec<(String, String)>;

/// A path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// The path itself.
    Exact(String),
    /// Every path starting with this (the pattern without its trailing `*`).
    Prefix(String),
    /// Segments, each literal or a `{name}` that matches one non-empty segment.
    Template(Vec<Segment>),
}

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Must equal this.
    Literal(String),
    /// Matches any one segment and names it.
    Param(String),
}

impl Pattern {
    /// Parses a pattern; paths start with `/`, `*` may only end one, and parameter
    /// names are `[A-Za-z0-9_]+`.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        if !s.starts_with('/') {
            return Err(format!("`{s}`: patterns start with /"));
        }
        if let Some(prefix) = s.strip_suffix('*') {
            if prefix.contains(['*', '{', '}']) {
                return Err(format!("`{s}`: a prefix pattern has no other * or {{}}"));
            }
            return Ok(Pattern::Prefix(prefix.to_owned()));
        }
        if s.contains('*') {
            return Err(format!("`{s}`: * may only end a pattern"));
        }
        if !s.contains(['{', '}']) {
            return Ok(Pattern::Exact(s.to_owned()));
        }
        let mut segs = Vec::new();
        let mut names = Vec::new();
        for seg in s[1..].split('/') {
            if let Some(name) = seg.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(format!("`{s}`: `{{{name}}}` is not a parameter name"));
                }
                if names.contains(&name) {
                    return Err(format!("`{s}`: parameter `{name}` appears twice"));
                }
                names.push(name);
                segs.push(Segment::Param(name.to_owned()));
            } else if seg.contains(['{', '}']) {
                return Err(format!(
                    "`{s}`: a parameter must be a whole segment, like /{{id}}"
                ));
            } else {
                segs.push(Segment::Literal(seg.to_owned()));
            }
        }
        Ok(Pattern::Template(segs))
    }

    /// The parameters if `path` matches.
    pub fn matches(&self, path: &str) -> Option<Params> {
        match self {
            Pattern::Exact(p) => (p == path).then(Vec::new),
            Pattern::Prefix(p) => path.starts_with(p.as_str()).then(Vec::new),
            Pattern::Template(segs) => {
                let rest = path.strip_prefix('/')?;
                let mut params = Vec::new();
                let mut parts = rest.split('/');
                for seg in segs {
                    let part = parts.next()?;
                    match seg {
                        Segment::Literal(l) if l == part => {}
                        Segment::Literal(_) => return None,
                        Segment::Param(_) if part.is_empty() => return None,
                        Segment::Param(name) => params.push((name.clone(), part.to_owned())),
                    }
                }
                parts.next().is_none().then_some(params)
            }
        }
    }

    fn params(&self) -> Vec<&str> {
        match self {
            Pattern::Template(segs) => segs
                .iter()
                .filter_map(|s| match s {
                    Segment::Param(n) => Some(n.as_str()),
                    Segment::Literal(_) => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Checks that every `{name}` in `template` is a parameter of this pattern.
    pub fn check_template(&self, template: &str) -> Result<(), String> {
        let params = self.params();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("`{template}`: unclosed {{"));
            };
            let name = &rest[open + 1..open + close];
            if !params.contains(&name) {
                return Err(format!(
                    "`{template}`: `{{{name}}}` is not a parameter of the pattern"
                ));
            }
            rest = &rest[open + close + 1..];
        }
        Ok(())
    }

    /// `template` with each `{name}` replaced by its matched value.
    pub fn fill(&self, template: &str, params: &[(String, String)]) -> String {
        let mut out = template.to_owned();
        for (name, value) in params {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }

    /// Rank for "most specific first": exact, then templates with more literal
    /// segments, then longer prefixes.
    fn rank(&self) -> (u8, usize) {
        match self {
            Pattern::Exact(_) => (0, 0),
            Pattern::Template(segs) => (
                1,
                usize::MAX
                    - segs
                        .iter()
                        .filter(|s| matches!(s, Segment::Literal(_)))
                        .count(),
            ),
            Pattern::Prefix(p) => (2, usize::MAX - p.len()),
        }
    }
}

/// Patterns searched most specific first; values are indexes into the caller's list.
#[derive(Debug, Default, Clone)]
pub struct PatternTable {
    exact: HashMap<String, usize>,
    others: Vec<(Pattern, usize)>,
}

impl PatternTable {
    /// Builds a table from patterns in configuration order (ties keep that order).
    pub fn new(patterns: impl IntoIterator<Item = Pattern>) -> Self {
        let mut t = PatternTable::default();
        for (i, p) in patterns.into_iter().enumerate() {
            match p {
                Pattern::Exact(path) => {
                    t.exact.entry(path).or_insert(i);
                }
                other => t.others.push((other, i)),
            }
        }
        t.others.sort_by_key(|(p, i)| (p.rank(), *i));
        t
    }

    /// The most specific pattern matching `path`.
    pub fn find(&self, path: &str) -> Option<(usize, Params)> {
        if let Some(&i) = self.exact.get(path) {
            return Some((i, Vec::new()));
        }
        self.others
            .iter()
            .find_map(|(p, i)| p.matches(path).map(|params| (*i, params)))
    }

    /// Every pattern matching `path` (for invalidation rules, which all apply).
    pub fn find_all(&self, path: &str) -> Vec<(usize, Params)> {
        let mut out: Vec<_> = self
            .exact
            .get(path)
            .map(|&i| (i, Vec::new()))
            .into_iter()
            .collect();
        out.extend(
            self.others
                .iter()
                .filter_map(|(p, i)| p.matches(path).map(|params| (*i, params))),
        );
        out
    }
}

/// `METHOD /pattern` of an invalidation rule.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// None for any unsafe method (`*`).
    pub method: Option<Method>,
    /// The path pattern.
    pub pattern: Pattern,
}

impl Trigger {
    /// Parses `POST /api/risks`, `DELETE /api/risks/{id}` or `* /api/*`.
    pub fn parse(s: &str) -> Result<Trigger, String> {
        let (m, p) = s
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("`{s}`: write METHOD /path, e.g. POST /api/risks"))?;
        let method = match m {
            "*" => None,
            "POST" | "PUT" | "PATCH" | "DELETE" => {
                Some(m.parse::<Method>().map_err(|e| e.to_string())?)
            }
            _ => {
                return Err(format!(
                    "`{m}`: only unsafe methods invalidate (POST, PUT, PATCH, DELETE or *)"
                ))
            }
        };
        Ok(Trigger {
            method,
            pattern: Pattern::parse(p.trim())?,
        })
    }

    /// Whether a request with this method fires the rule (paths are matched by the
    /// table).
    pub fn fires_on(&self, method: &Method) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_and_reject() {
        assert_eq!(Pattern::parse("/a").unwrap(), Pattern::Exact("/a".into()));
        assert_eq!(
            Pattern::parse("/a/*").unwrap(),
            Pattern::Prefix("/a/".into())
        );
        assert!(Pattern::parse("a").is_err());
        assert!(Pattern::parse("/a/*/b").is_err());
        assert!(Pattern::parse("/a/x{id}").is_err());
        assert!(Pattern::parse("/a/{id}/{id}").is_err());
        assert!(Pattern::parse("/a/{}").is_err());
        let p = Pattern::parse("/a/{id}").unwrap();
        assert!(p.check_template("t:{id}").is_ok());
        assert!(p.check_template("t:{nope}").is_err());
        assert!(p.check_template("t:{id").is_err());
    }

    #[test]
    fn most_specific_wins() {
        let t = PatternTable::new(
            [
                "/api/*",
                "/api/risks/{id}",
                "/api/risks/summary",
                "/api/{kind}/{id}",
                "/*",
            ]
            .map(|p| Pattern::parse(p).unwrap()),
        );
        assert_eq!(t.find("/api/risks/summary").unwrap().0, 2);
        assert_eq!(
            t.find("/api/risks/9").unwrap(),
            (1, vec![("id".into(), "9".into())])
        );
        assert_eq!(t.find("/api/users/9").unwrap().0, 3);
        assert_eq!(t.find("/api/risks").unwrap().0, 0);
        assert_eq!(t.find("/other").unwrap().0, 4);
        assert_eq!(t.find_all("/api/risks/9").len(), 4);
    }

    #[test]
    fn triggers() {
        let t = Trigger::parse("POST /api/risks").unwrap();
        assert!(t.fires_on(&Method::POST) && !t.fires_on(&Method::DELETE));
        assert!(Trigger::parse("* /api/*").unwrap().fires_on(&Method::PATCH));
        assert!(Trigger::parse("GET /a").is_err());
        assert!(Trigger::parse("/a").is_err());
    }
}
