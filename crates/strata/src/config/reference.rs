//! The configuration reference (docs/configuration.md), generated from the
//! configuration types' JSON Schema: every key, its type and its doc comment. A test
//! fails when the committed file differs from what this prints.

use schemars::schema_for;
use serde_json::{Map, Value};

use super::Config;

/// One key of a table.
struct Row {
    key: String,
    kind: String,
    about: String,
}

/// Markdown for every table of [`Config`], in schema order (alphabetical).
pub fn reference() -> String {
    let schema = schema_for!(Config);
    let root = schema.as_value();
    let empty = Map::new();
    let defs = root
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut sections: Vec<(String, Vec<Row>)> = Vec::new();
    walk(root, "", "top level", defs, &mut sections);
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the configuration types by `strata config reference`; a test fails\n\
         when this file is stale. Durations are written `50ms`, `30s`, `5m`, `1h`; sizes\n\
         `512KiB`, `256MiB` or a number of bytes. Every key can also be set from the\n\
         environment as `STRATA__SECTION__KEY` (see [serve.md](serve.md)), and\n\
         `strata config example` prints a commented file.\n",
    );
    for (title, rows) in sections {
        if rows.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "\n## {title}\n\n| key | type | description |\n|---|---|---|\n"
        ));
        for r in rows {
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                r.key,
                r.kind,
                cell(&r.about)
            ));
        }
    }
    out
}

fn cell(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// A schema with `$ref`s followed and `Option`'s null alternative removed; and the
/// name of the definition it came from.
fn resolve<'a>(v: &'a Value, defs: &'a Map<String, Value>) -> (&'a Value, Option<&'a str>) {
    if let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        if let Some(d) = defs.get(name) {
            let (inner, _) = resolve(d, defs);
            return (inner, Some(name));
        }
    }
    for k in ["anyOf", "oneOf"] {
        if let Some(alts) = v.get(k).and_then(Value::as_array) {
            let non_null: Vec<&Value> = alts
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            if non_null.len() == 1 && alts.len() == 2 {
                return resolve(non_null[0], defs);
            }
        }
    }
    (v, None)
}

fn is_table(v: &Value) -> bool {
    v.get("properties").is_some_and(Value::is_object)
}

fn walk(
    table: &Value,
    path: &str,
    title: &str,
    defs: &Map<String, Value>,
    sections: &mut Vec<(String, Vec<Row>)>,
) {
    let at = sections.len();
    sections.push((title.to_string(), Vec::new()));
    let Some(props) = table.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, prop) in props {
        let full = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let (t, def) = resolve(prop, defs);
        let about = prop
            .get("description")
            .or_else(|| t.get("description"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if is_table(t) {
            walk(t, &full, &format!("[{full}]"), defs, sections);
            continue;
        }
        if let Some(items) = t.get("items") {
            let (it, _) = resolve(items, defs);
            if is_table(it) {
                walk(it, &full, &format!("[[{full}]]"), defs, sections);
                continue;
            }
        }
        if let Some(values) = t.get("additionalProperties") {
            let (vt, _) = resolve(values, defs);
            if is_table(vt) {
                let key = format!("{full}.<name>");
                walk(vt, &key, &format!("[{key}]"), defs, sections);
                continue;
            }
        }
        sections[at].1.push(Row {
            key: name.clone(),
            kind: kind(t, def, defs),
            about,
        });
    }
}

/// A short type: `string`, `integer`, `duration`, `list of string`, one of `a`, `b`.
fn kind(t: &Value, def: Option<&str>, defs: &Map<String, Value>) -> String {
    match def {
        Some("Duration") => return "duration".into(),
        Some("Size") => return "size".into(),
        _ => {}
    }
    let consts: Vec<String> = t
        .get("enum")
        .and_then(Value::as_array)
        .map(|e| {
            e.iter()
                .filter_map(Value::as_str)
                .map(|s| format!("`{s}`"))
                .collect()
        })
        .or_else(|| {
            t.get("oneOf").and_then(Value::as_array).map(|alts| {
                alts.iter()
                    .filter_map(|a| {
                        a.get("const")
                            .or_else(|| a.get("enum").and_then(|e| e.get(0)))
                            .and_then(Value::as_str)
                            .map(|s| format!("`{s}`"))
                    })
                    .collect()
            })
        })
        .unwrap_or_default();
    if !consts.is_empty() {
        return format!("one of {}", consts.join(", "));
    }
    match t.get("type") {
        Some(Value::String(s)) if s == "array" => {
            let item = t
                .get("items")
                .map(|i| {
                    let (it, d) = resolve(i, defs);
                    kind(it, d, defs)
                })
                .unwrap_or_else(|| "value".into());
            format!("list of {item}")
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| *s != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ if t.get("additionalProperties").is_some() => "table".into(),
        _ => "value".into(),
    }
}
