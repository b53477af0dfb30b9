//! Loading: file, then environment, then flags; errors that point at file:line:col.

use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::{Spanned, Table, Value};

use super::Config;

/// Where the configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// (name shown in errors, TOML text) of the configuration file, if any.
    pub text: Option<(String, String)>,
    /// Environment variables; those named `STRATA__SECTION__KEY` apply.
    pub env: Vec<(String, String)>,
    /// Flag overrides: (dotted field path, TOML value).
    pub flags: Vec<(String, Value)>,
}

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `environment`/`flags` for overrides.
    pub origin: String,
    /// 1-based line and column in the file, when the problem is in the file.
    pub position: Option<(usize, usize)>,
    /// Dotted path of the field, when known (`namespaces.user.ttl`).
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some((l, c)) = self.position {
            write!(f, ":{l}:{c}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Loads and validates a configuration. All problems are returned at once, each
/// pointing at where it was written. A configuration that returns `Ok` is complete:
/// nothing is checked later.
///
/// ```
/// use strata::config::{load, Sources};
/// let src = Sources {
///     text: Some(("strata.toml".into(), "[memory]\nmax_bytes = \"lots\"\n".into())),
///     ..Sources::default()
/// };
/// let errs = load(&src).unwrap_err();
/// assert_eq!(errs[0].position, Some((2, 13)));
/// assert_eq!(errs[0].field.as_deref(), Some("memory.max_bytes"));
/// ```
pub fn load(src: &Sources) -> Result<Config, Vec<ConfigError>> {
    let (origin, text) = match &src.text {
        Some((o, t)) => (o.as_str(), t.as_str()),
        None => ("<defaults>", ""),
    };
    let in_file = |span: Option<Range<usize>>, message: String| {
        let position = span.as_ref().map(|s| line_col(text, s.start));
        let field = span.and_then(|s| field_at(text, s));
        ConfigError {
            origin: origin.to_owned(),
            position,
            field,
            message,
        }
    };
    // 1. The file on its own, so that its mistakes point into it.
    if let Err(e) = toml::from_str::<Config>(text) {
        return Err(vec![in_file(e.span(), e.message().trim().to_owned())]);
    }
    let mut table: Table =
        toml::from_str(text).map_err(|e| vec![in_file(e.span(), e.message().to_owned())])?;
    // 2. Overrides.
    let mut overridden = Vec::new();
    for (name, value) in &src.env {
        let Some(rest) = name.strip_prefix("STRATA__") else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let at = format!("environment variable {name}");
        set_path(&mut table, &path, env_value(value)).map_err(|m| vec![plain(&at, None, m)])?;
        overridden.push((path.join("."), at));
    }
    for (path, value) in &src.flags {
        let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
        let at = format!("flag for {path}");
        set_path(&mut table, &parts, value.clone()).map_err(|m| vec![plain(&at, None, m)])?;
        overridden.push((path.clone(), at));
    }
    let config = match Config::deserialize(table) {
        Ok(c) => c,
        Err(e) => {
            let origin = match overridden.len() {
                1 => overridden[0].1.clone(),
                _ => "environment or flags".to_owned(),
            };
            return Err(vec![plain(&origin, None, e.message().trim().to_owned())]);
        }
    };
    // 3. What types cannot check, attributed to whoever set the field last.
    let errs: Vec<ConfigError> = config
        .validate()
        .into_iter()
        .map(|(field, message)| {
            if let Some((_, at)) = overridden
                .iter()
                .rev()
                .find(|(p, _)| field == *p || field.starts_with(&format!("{p}.")))
            {
                return plain(at, Some(field), message);
            }
            match span_of(text, &field) {
                Some(span) => ConfigError {
                    origin: origin.to_owned(),
                    position: Some(line_col(text, span.start)),
                    field: Some(field),
                    message,
                },
                None => plain(origin, Some(field), message),
            }
        })
        .collect();
    if errs.is_empty() {
        Ok(config)
    } else {
        Err(errs)
    }
}

fn plain(origin: &str, field: Option<String>, message: String) -> ConfigError {
    ConfigError {
        origin: origin.to_owned(),
        position: None,
        field,
        message,
    }
}

/// An environment value as TOML when it parses as a scalar or array (`8`, `true`,
/// `["a"]`), else as a string (`redis://…`, `127.0.0.1:7070`, `30s`).
fn env_value(raw: &str) -> Value {
    match toml::from_str::<Table>(&format!("v = {raw}")) {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Array(_)),
            ) => v,
            _ => Value::String(raw.to_owned()),
        },
        Err(_) => Value::String(raw.to_owned()),
    }
}

fn set_path(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty setting name")?;
    if last.is_empty() || parents.iter().any(String::is_empty) {
        return Err("empty part in setting name".into());
    }
    let mut t = table;
    for p in parents {
        let next = t
            .entry(p.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        t = match next {
            Value::Table(t) => t,
            _ => return Err(format!("`{p}` is not a section")),
        };
    }
    t.insert(last.clone(), value);
    Ok(())
}

/// 1-based (line, column) of a byte offset, columns counted in characters.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Dotted path of the key or value whose span contains `span`. Tables opened by a
/// `[header]` have spans that do not cover their body, so every branch is searched.
fn field_at(text: &str, span: Range<usize>) -> Option<String> {
    let root = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find_in_table(root.get_ref(), &span, &mut path).then(|| path.join("."))
}

fn covers(s: &Range<usize>, span: &Range<usize>) -> bool {
    s.start <= span.start && span.end <= s.end.max(s.start + 1)
}

fn find_in_table(table: &DeTable<'_>, span: &Range<usize>, path: &mut Vec<String>) -> bool {
    for (k, v) in table {
        path.push(k.get_ref().to_string());
        if find_in_value(v, span, path) || covers(&k.span(), span) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_value(v: &Spanned<DeValue<'_>>, span: &Range<usize>, path: &mut Vec<String>) -> bool {
    match v.get_ref() {
        DeValue::Table(t) => find_in_table(t, span, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                if find_in_value(item, span, path) {
                    return true;
                }
                path.pop();
            }
            covers(&v.span(), span)
        }
        _ => covers(&v.span(), span),
    }
}

/// Span of the value at a dotted path (or of the deepest part of it present).
fn span_of(text: &str, field: &str) -> Option<Range<usize>> {
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut found = None;
    let parts: Vec<&str> = field.split('.').collect();
    let mut i = 0;
    while i < parts.len() {
        let (k, v) = table.iter().find(|(k, _)| k.get_ref() == parts[i])?;
        found = Some(k.span());
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            DeValue::Array(items) => {
                let idx: usize = parts.get(i + 1)?.parse().ok()?;
                let item = items.get(idx)?;
                found = Some(item.span());
                i += 1;
                match item.get_ref() {
                    DeValue::Table(t) => table = t,
                    _ => return found,
                }
            }
            _ => return Some(v.span()).or(found),
        }
        i += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<ConfigError> {
        load(&Sources {
            text: Some(("strata.toml".into(), text.into())),
            ..Sources::default()
        })
        .unwrap_err()
    }

    #[test]
    fn unknown_field_points_at_its_key() {
        let e = &errs("[namespaces.user]\nttl = \"1h\"\nttll = \"2h\"\n")[0];
        assert_eq!(e.position, Some((3, 1)));
        assert_eq!(e.field.as_deref(), Some("namespaces.user.ttll"));
        assert!(e.message.contains("unknown field `ttll`"), "{e}");
    }

    #[test]
    fn bad_duration_names_field_and_position() {
        let e = &errs("[namespaces.user]\nttl = \"soon\"\n")[0];
        assert_eq!(e.to_string().split(": ").next(), Some("strata.toml:2:7"));
        assert_eq!(e.field.as_deref(), Some("namespaces.user.ttl"));
        assert!(e.message.contains("invalid duration"), "{e}");
    }

    #[test]
    fn syntax_error_has_a_position() {
        let e = &errs("[server\nlisten = 1\n")[0];
        assert_eq!(e.position.map(|p| p.0), Some(1));
    }

    #[test]
    fn semantic_errors_point_into_the_file() {
        let e = errs("[server]\nlisten = \"0.0.0.0:7070\"\n");
        assert_eq!(e[0].field.as_deref(), Some("server.listen"));
        assert_eq!(e[0].position, Some((2, 10)));
        assert!(e[0].message.contains("not a loopback"), "{}", e[0]);
        let e = errs("[[auth.tokens]]\ntoken = \"short\"\nrights = [\"read\"]\n");
        assert_eq!(e[0].field.as_deref(), Some("auth.tokens.0.token"));
        assert_eq!(e[0].position, Some((2, 9)));
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let src = Sources {
            text: Some((
                "f".into(),
                "[server]\nlisten = \"127.0.0.1:1\"\n[memory]\nmax_bytes = \"1MiB\"\n".into(),
            )),
            env: vec![
                ("STRATA__SERVER__LISTEN".into(), "127.0.0.1:2".into()),
                ("STRATA__MEMORY__MAX_BYTES".into(), "2MiB".into()),
                ("STRATA__SERVER__MAX_CONNECTIONS".into(), "7".into()),
                ("UNRELATED".into(), "x".into()),
            ],
            flags: vec![("server.listen".into(), Value::String("127.0.0.1:3".into()))],
        };
        let c = load(&src).unwrap();
        assert_eq!(c.listen().port(), 3);
        assert_eq!(c.max_memory(), 2 << 20);
        assert_eq!(c.max_connections(), 7);
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let src = Sources {
            env: vec![("STRATA__MEMORY__MAX_BYTES".into(), "lots".into())],
            ..Sources::default()
        };
        let e = &load(&src).unwrap_err()[0];
        assert!(e.origin.contains("STRATA__MEMORY__MAX_BYTES"), "{e}");
    }

    #[test]
    fn profile_defaults_yield_to_explicit_settings() {
        let c = Config::from_toml_str("profile = \"staging\"\n").unwrap();
        assert_eq!(c.log_format(), super::super::LogFormat::Json);
        let c =
            Config::from_toml_str("profile = \"staging\"\n[log]\nformat = \"pretty\"\n").unwrap();
        assert_eq!(c.log_format(), super::super::LogFormat::Pretty);
    }

    #[test]
    fn the_example_is_valid() {
        let c = Config::from_toml_str(super::super::EXAMPLE).unwrap_or_else(|e| {
            panic!(
                "{}",
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert!(c.namespaces.contains_key("user"));
        // The effective configuration is itself a valid configuration.
        let printed = toml::to_string(&c.effective()).unwrap();
        let again = Config::from_toml_str(&printed).unwrap();
        assert_eq!(again.listen(), c.listen());
        assert_eq!(again.namespaces.len(), c.namespaces.len());
    }

    #[test]
    fn printed_tokens_are_redacted() {
        let c = Config::from_toml_str(
            "[[auth.tokens]]\ntoken = \"0123456789abcdef-secret\"\nrights = [\"read\"]\n",
        )
        .unwrap();
        let printed = toml::to_string(&c.effective()).unwrap();
        assert!(!printed.contains("secret"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }
}
