//! `strata db advise`: index and query advice from real statistics and plans.
//!
//! For each of the top statements (by total time) it asks the server for a generic
//! plan (PG 16+ `EXPLAIN (GENERIC_PLAN)`, else `PREPARE` with
//! `plan_cache_mode = force_generic_plan`), finds sequential scans of large tables
//! with a filter, and proposes a B-tree index on the filter's columns: equality
//! columns first, then one range column (or the sort keys above the scan). With the
//! `hypopg` extension each proposal is checked by planning again with a hypothetical
//! index and kept only if it cuts the estimated cost by at least half. It also reports
//! duplicate, unused and missing foreign-key indexes, and query-shape hints. It never
//! runs DDL itself; the caller applies [`Advice::sql`] if asked to.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{Client, SimpleQueryMessage};

/// A statement to examine.
#[derive(Debug, Clone, Serialize)]
pub struct QueryInput {
    /// SQL, constants as `$n` (pg_stat_statements' or strata's normalised text).
    pub query: String,
    /// Executions.
    pub calls: u64,
    /// Total time, ms.
    pub total_ms: f64,
}

/// Advisor settings.
#[derive(Debug, Clone)]
pub struct AdviseOptions {
    /// Tables with fewer estimated rows are never worth an index proposal.
    pub min_rows: f64,
    /// A hypothetical index must cut the plan's estimated cost by this share.
    pub min_cost_cut: f64,
    /// Tables this wide make `SELECT *` worth a hint.
    pub wide_table_columns: i64,
    /// `OFFSET` at or past this is deep.
    pub deep_offset: i64,
    /// Plans returning at least this many rows without `LIMIT` get a hint.
    pub unbounded_rows: f64,
}

impl Default for AdviseOptions {
    fn default() -> Self {
        AdviseOptions {
            min_rows: 10_000.0,
            min_cost_cut: 0.5,
            wide_table_columns: 15,
            deep_offset: 1000,
            unbounded_rows: 10_000.0,
        }
    }
}

/// A proposed index.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IndexAdvice {
    /// `schema.table`.
    pub table: String,
    /// Columns, in index order.
    pub columns: Vec<String>,
    /// `CREATE INDEX CONCURRENTLY …`.
    pub sql: String,
    /// The statements that would use it.
    pub queries: Vec<String>,
    /// Estimated plan cost now (sum over `queries`).
    pub cost_before: f64,
    /// Estimated plan cost with the index (hypopg), when validated.
    pub cost_after: Option<f64>,
    /// Whether hypopg confirmed the cut.
    pub validated: bool,
    /// Why.
    pub reason: String,
}

/// An index that could go.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DropAdvice {
    /// `schema.table`.
    pub table: String,
    /// The index.
    pub index: String,
    /// Its size in bytes.
    pub bytes: i64,
    /// Why.
    pub reason: String,
}

/// A foreign key whose referencing columns lead no index.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ForeignKeyAdvice {
    /// `schema.table`.
    pub table: String,
    /// Constraint name.
    pub constraint: String,
    /// Its columns.
    pub columns: Vec<String>,
    /// `CREATE INDEX CONCURRENTLY …`.
    pub sql: String,
}

/// A query-shape hint.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hint {
    /// `deep_offset`, `unbounded`, `select_star`, `n_plus_one`.
    pub kind: String,
    /// The statement.
    pub query: String,
    /// What to do.
    pub advice: String,
}

/// Everything the advisor found.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Advice {
    /// Indexes to create.
    pub indexes: Vec<IndexAdvice>,
    /// Indexes whose columns lead another index.
    pub duplicate_indexes: Vec<DropAdvice>,
    /// Indexes never scanned since statistics were reset.
    pub unused_indexes: Vec<DropAdvice>,
    /// Foreign keys without a supporting index.
    pub unindexed_foreign_keys: Vec<ForeignKeyAdvice>,
    /// Query-shape hints.
    pub hints: Vec<Hint>,
    /// Statements examined.
    pub queries_examined: usize,
    /// Statements that could not be planned, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Whether hypopg was there to validate proposals.
    pub hypopg: bool,
}

impl Advice {
    /// The DDL for every proposal: new indexes (validated ones when hypopg was
    /// there), then foreign-key indexes.
    pub fn sql(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .indexes
            .iter()
            .filter(|i| i.validated || !self.hypopg)
            .map(|i| i.sql.clone())
            .collect();
        for f in &self.unindexed_foreign_keys {
            if !out.contains(&f.sql) {
                out.push(f.sql.clone());
            }
        }
        out
    }
}

/// An existing index's shape.
#[derive(Debug, Clone)]
struct ExistingIndex {
    table: String,
    name: String,
    columns: Vec<String>,
    unique: bool,
    plain_btree: bool,
    bytes: i64,
    scans: i64,
}

/// Runs the advisor against the connected database.
pub async fn advise(
    c: &Client,
    queries: &[QueryInput],
    opts: &AdviseOptions,
) -> Result<Advice, tokio_postgres::Error> {
    let mut advice = Advice {
        hypopg: c
            .query_opt("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'", &[])
            .await?
            .is_some(),
        ..Advice::default()
    };
    let version: i32 = c
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?
        .get(0);
    let existing = existing_indexes(c).await?;
    let tables = table_shapes(c).await?;
    // (table, columns) → proposal.
    let mut proposals: BTreeMap<(String, Vec<String>), IndexAdvice> = BTreeMap::new();
    for q in queries {
        let text = q.query.trim().trim_end_matches(';').trim();
        if !is_plannable(text) {
            continue;
        }
        advice.queries_examined += 1;
        let plan = match generic_plan(c, text, version).await {
            Ok(p) => p,
            Err(e) => {
                advice.skipped.push((text.to_string(), e));
                continue;
            }
        };
        hints_for(text, &plan, &tables, opts, &mut advice.hints);
        let mut scans = Vec::new();
        seq_scans(&plan, None, &mut scans);
        let cost = total_cost(&plan);
        for scan in scans {
            let Some(shape) = tables.get(&scan.relation) else {
                continue;
            };
            if shape.rows < opts.min_rows {
                continue;
            }
            let Some(columns) = index_columns(&scan, &shape.columns) else {
                continue;
            };
            let covered = existing.iter().any(|e| {
                e.table == shape.table && e.plain_btree && e.columns.starts_with(&columns)
            });
            if covered {
                continue;
            }
            let p = proposals
                .entry((shape.table.clone(), columns.clone()))
                .or_insert_with(|| IndexAdvice {
                    sql: format!(
                        "CREATE INDEX CONCURRENTLY ON {} ({});",
                        shape.table,
                        columns
                            .iter()
                            .map(|c| quote_ident(c))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    table: shape.table.clone(),
                    columns: columns.clone(),
                    queries: Vec::new(),
                    cost_before: 0.0,
                    cost_after: None,
                    validated: false,
                    reason: format!(
                        "sequential scan of {} (~{:.0} rows) filtered on {}",
                        shape.table,
                        shape.rows,
                        columns.join(", ")
                    ),
                });
            if !p.queries.iter().any(|x| x == text) {
                p.queries.push(text.to_string());
                p.cost_before += cost;
            }
        }
    }
    for (_, mut p) in proposals {
        if advice.hypopg {
            let after = with_hypothetical_index(c, &p, version).await;
            match after {
                Ok(after) => {
                    p.cost_after = Some(after);
                    p.validated = p.cost_before > 0.0
                        && (p.cost_before - after) / p.cost_before >= opts.min_cost_cut;
                }
                Err(e) => p.reason.push_str(&format!(" (hypopg check failed: {e})")),
            }
            if !p.validated {
                continue;
            }
        }
        advice.indexes.push(p);
    }
    housekeeping(&existing, c, &mut advice).await?;
    Ok(advice)
}

async fn housekeeping(
    existing: &[ExistingIndex],
    c: &Client,
    advice: &mut Advice,
) -> Result<(), tokio_postgres::Error> {
    for a in existing {
        if !a.plain_btree || a.unique {
            continue;
        }
        let covered_by = existing.iter().find(|b| {
            b.name != a.name
                && b.table == a.table
                && b.plain_btree
                && b.columns.len() >= a.columns.len()
                && b.columns.starts_with(&a.columns)
                // Two identical ones: keep the first by name.
                && (b.columns.len() > a.columns.len() || b.name < a.name)
        });
        if let Some(b) = covered_by {
            advice.duplicate_indexes.push(DropAdvice {
                table: a.table.clone(),
                index: a.name.clone(),
                bytes: a.bytes,
                reason: format!(
                    "its columns ({}) lead {} ({})",
                    a.columns.join(", "),
                    b.name,
                    b.columns.join(", ")
                ),
            });
        } else if a.scans == 0 {
            advice.unused_indexes.push(DropAdvice {
                table: a.table.clone(),
                index: a.name.clone(),
                bytes: a.bytes,
                reason: "never scanned since statistics were last reset (check replicas too)"
                    .into(),
            });
        }
    }
    let fks = c
        .query(
            "SELECT n.nspname || '.' || t.relname, c.conname,
                    array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
                          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
                          ORDER BY k.ord)
               FROM pg_constraint c
               JOIN pg_class t ON t.oid = c.conrelid
               JOIN pg_namespace n ON n.oid = t.relnamespace
              WHERE c.contype = 'f' ORDER BY 1, 2",
            &[],
        )
        .await?;
    for r in fks {
        let table: String = r.get(0);
        let columns: Vec<String> = r.get(2);
        let indexed = existing.iter().any(|e| {
            e.table == table && e.columns.len() >= columns.len() && {
                // Any order of the key columns leading the index serves the lookup.
                let lead = &e.columns[..columns.len()];
                columns.iter().all(|c| lead.contains(c))
            }
        });
        if !indexed {
            advice.unindexed_foreign_keys.push(ForeignKeyAdvice {
                sql: format!(
                    "CREATE INDEX CONCURRENTLY ON {table} ({});",
                    columns
                        .iter()
                        .map(|c| quote_ident(c))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                table,
                constraint: r.get(1),
                columns,
            });
        }
    }
    Ok(())
}

/// Statements worth planning: reads and writes with a WHERE or a join, not
/// utility commands or the advisor's own catalog reads.
fn is_plannable(q: &str) -> bool {
    let lower = q.trim_start().to_ascii_lowercase();
    let kind_ok = ["select", "with", "update", "delete"]
        .iter()
        .any(|k| lower.starts_with(k));
    kind_ok && !lower.contains("pg_catalog") && !lower.contains("pg_stat")
}

/// The highest `$n` in a statement.
fn param_count(q: &str) -> usize {
    let b = q.as_bytes();
    let mut max = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j > start {
                max = max.max(q[start..j].parse().unwrap_or(0));
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    max
}

async fn simple_text(c: &Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    for m in c.simple_query(sql).await? {
        if let SimpleQueryMessage::Row(r) = m {
            return Ok(r.get(0).unwrap_or_default().to_string());
        }
    }
    Ok(String::new())
}

/// The generic plan of `q` as EXPLAIN's JSON root plan node.
async fn generic_plan(c: &Client, q: &str, version: i32) -> Result<Value, String> {
    let text = if version >= 160_000 {
        simple_text(c, &format!("EXPLAIN (GENERIC_PLAN, FORMAT JSON) {q}"))
            .await
            .map_err(|e| db_error(&e))?
    } else {
        let n = param_count(q);
        let args = if n == 0 {
            String::new()
        } else {
            format!("({})", vec!["NULL"; n].join(", "))
        };
        c.batch_execute("DEALLOCATE ALL; SET plan_cache_mode = force_generic_plan")
            .await
            .map_err(|e| db_error(&e))?;
        let res = async {
            c.batch_execute(&format!("PREPARE strata_advise AS {q}"))
                .await?;
            simple_text(
                c,
                &format!("EXPLAIN (FORMAT JSON) EXECUTE strata_advise{args}"),
            )
            .await
        }
        .await;
        let _ = c
            .batch_execute("DEALLOCATE ALL; RESET plan_cache_mode")
            .await;
        res.map_err(|e| db_error(&e))?
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    v.get(0)
        .and_then(|p| p.get("Plan"))
        .cloned()
        .ok_or_else(|| "EXPLAIN returned no plan".to_string())
}

fn db_error(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string())
}

fn total_cost(plan: &Value) -> f64 {
    plan.get("Total Cost")
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

/// A sequential scan with a filter, and the sort keys directly above it.
#[derive(Debug)]
struct SeqScan {
    relation: String,
    filter: String,
    sort_keys: Vec<String>,
}

fn seq_scans(node: &Value, parent: Option<&Value>, out: &mut Vec<SeqScan>) {
    if node.get("Node Type").and_then(Value::as_str) == Some("Seq Scan") {
        if let (Some(rel), Some(filter)) = (
            node.get("Relation Name").and_then(Value::as_str),
            node.get("Filter").and_then(Value::as_str),
        ) {
            let sort_keys = parent
                .filter(|p| {
                    matches!(
                        p.get("Node Type").and_then(Value::as_str),
                        Some("Sort" | "Incremental Sort")
                    )
                })
                .and_then(|p| p.get("Sort Key"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            out.push(SeqScan {
                relation: rel.to_string(),
                filter: filter.to_string(),
                sort_keys,
            });
        }
    }
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for ch in children {
            seq_scans(ch, Some(node), out);
        }
    }
}

/// Index columns for a filtered scan: equality columns, then one range column or,
/// without one, the sort keys. None when the filter has an OR or nothing indexable.
fn index_columns(scan: &SeqScan, table_columns: &[String]) -> Option<Vec<String>> {
    if scan.filter.contains(" OR ") {
        return None;
    }
    let mut eq: Vec<String> = Vec::new();
    let mut range: Option<String> = None;
    for conj in scan.filter.split(" AND ") {
        let c = conj.trim().trim_start_matches('(').trim_end_matches(')');
        let (col, is_eq) = if let Some((l, _)) = c.split_once(" = ANY ") {
            (l, true)
        } else if let Some(l) = c.strip_suffix(" IS NULL") {
            (l, true)
        } else if let Some((l, _)) = c.split_once(" = ") {
            (l, true)
        } else if let Some((l, _)) = [" >= ", " <= ", " > ", " < "]
            .iter()
            .find_map(|op| c.split_once(op))
        {
            (l, false)
        } else {
            continue;
        };
        let Some(col) = column_name(col, table_columns) else {
            continue;
        };
        if is_eq {
            if !eq.contains(&col) {
                eq.push(col);
            }
        } else if range.is_none() {
            range = Some(col);
        }
    }
    let mut cols = eq;
    match range {
        Some(r) if !cols.contains(&r) => cols.push(r),
        Some(_) => {}
        None => {
            for k in &scan.sort_keys {
                let k = k.trim_end_matches(" DESC").trim_end_matches(" NULLS FIRST");
                if let Some(col) = column_name(k, table_columns) {
                    if !cols.contains(&col) {
                        cols.push(col);
                    }
                }
            }
        }
    }
    (!cols.is_empty()).then_some(cols)
}

/// A plain column reference (`col`, `t.col`, `"Col"`) naming a column of the table.
fn column_name(expr: &str, table_columns: &[String]) -> Option<String> {
    let e = expr.trim().trim_start_matches('(');
    let last = e.rsplit('.').next()?;
    let name = match last.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(q) => q.to_string(),
        None => last.to_string(),
    };
    table_columns.contains(&name).then_some(name)
}

fn quote_ident(s: &str) -> String {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

struct TableShape {
    table: String,
    rows: f64,
    columns: Vec<String>,
}

/// User tables by bare name (as EXPLAIN names them) with estimates and columns.
async fn table_shapes(c: &Client) -> Result<BTreeMap<String, TableShape>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT t.relname::text, n.nspname || '.' || t.relname, t.reltuples::float8,
                    array(SELECT a.attname::text FROM pg_attribute a
                           WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
                           ORDER BY a.attnum)
               FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
              WHERE t.relkind IN ('r', 'p')
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg_toast%'",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                TableShape {
                    table: r.get(1),
                    rows: r.get(2),
                    columns: r.get(3),
                },
            )
        })
        .collect())
}

async fn existing_indexes(c: &Client) -> Result<Vec<ExistingIndex>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT n.nspname || '.' || t.relname, i.relname::text,
                    array(SELECT COALESCE(a.attname::text, '')
                            FROM unnest(x.indkey) WITH ORDINALITY k(attnum, ord)
                            LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                           ORDER BY k.ord),
                    x.indisunique OR x.indisprimary,
                    am.amname = 'btree' AND x.indpred IS NULL AND x.indexprs IS NULL,
                    pg_relation_size(x.indexrelid), COALESCE(s.idx_scan, 0)
               FROM pg_index x
               JOIN pg_class i ON i.oid = x.indexrelid
               JOIN pg_class t ON t.oid = x.indrelid
               JOIN pg_namespace n ON n.oid = t.relnamespace
               JOIN pg_am am ON am.oid = i.relam
               LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = x.indexrelid
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg_toast%'
              ORDER BY 1, 2",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ExistingIndex {
            table: r.get(0),
            name: r.get(1),
            columns: r.get(2),
            unique: r.get(3),
            plain_btree: r.get(4),
            bytes: r.get(5),
            scans: r.get(6),
        })
        .collect())
}

/// Plans the proposal's statements again with a hypothetical index; the summed cost.
async fn with_hypothetical_index(c: &Client, p: &IndexAdvice, version: i32) -> Result<f64, String> {
    let ddl = p.sql.replace("CREATE INDEX CONCURRENTLY", "CREATE INDEX");
    let ddl = ddl.trim_end_matches(';');
    c.query("SELECT * FROM hypopg_create_index($1)", &[&ddl])
        .await
        .map_err(|e| db_error(&e))?;
    let mut total = 0.0;
    let mut err = None;
    for q in &p.queries {
        match generic_plan(c, q, version).await {
            Ok(plan) => total += total_cost(&plan),
            Err(e) => err = Some(e),
        }
    }
    let _ = c.batch_execute("SELECT hypopg_reset()").await;
    match err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

fn hints_for(
    q: &str,
    plan: &Value,
    tables: &BTreeMap<String, TableShape>,
    opts: &AdviseOptions,
    out: &mut Vec<Hint>,
) {
    let lower = q.to_ascii_lowercase();
    let mut push = |kind: &str, advice: String| {
        if !out.iter().any(|h| h.kind == kind && h.query == q) {
            out.push(Hint {
                kind: kind.into(),
                query: q.to_string(),
                advice,
            });
        }
    };
    if let Some(rest) = lower.split(" offset ").nth(1) {
        let n = rest.split_whitespace().next().unwrap_or("");
        let deep = n.starts_with('$') || n.parse::<i64>().is_ok_and(|v| v >= opts.deep_offset);
        if deep {
            push(
                "deep_offset",
                "OFFSET reads and discards every skipped row: page by the last key seen \
                 instead (WHERE (sort_key, id) > ($1, $2) ORDER BY sort_key, id LIMIT n)"
                    .into(),
            );
        }
    }
    let rows = plan.get("Plan Rows").and_then(Value::as_f64).unwrap_or(0.0);
    if lower.starts_with("select") && !lower.contains(" limit ") && rows >= opts.unbounded_rows {
        push(
            "unbounded",
            format!("returns ~{rows:.0} rows with no LIMIT: paginate or aggregate in SQL"),
        );
    }
    if lower.starts_with("select *") || lower.contains("select * ") {
        let mut scans = Vec::new();
        relations(plan, &mut scans);
        for rel in scans {
            if let Some(t) = tables.get(&rel) {
                if t.columns.len() as i64 >= opts.wide_table_columns {
                    push(
                        "select_star",
                        format!(
                            "SELECT * reads all {} columns of {}: name the columns used",
                            t.columns.len(),
                            t.table
                        ),
                    );
                }
            }
        }
    }
}

fn relations(node: &Value, out: &mut Vec<String>) {
    if let Some(r) = node.get("Relation Name").and_then(Value::as_str) {
        out.push(r.to_string());
    }
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for ch in children {
            relations(ch, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn filters_become_columns_equality_first() {
        let table = cols(&["id", "customer_id", "status", "created_at", "Mixed"]);
        let scan = |f: &str, sort: &[&str]| SeqScan {
            relation: "orders".into(),
            filter: f.into(),
            sort_keys: cols(sort),
        };
        assert_eq!(
            index_columns(
                &scan("((created_at > $2) AND (customer_id = $1))", &[]),
                &table
            ),
            Some(cols(&["customer_id", "created_at"]))
        );
        assert_eq!(
            index_columns(
                &scan("(status = 'open'::text)", &["created_at DESC"]),
                &table
            ),
            Some(cols(&["status", "created_at"]))
        );
        assert_eq!(
            index_columns(&scan("(customer_id = ANY ($1))", &[]), &table),
            Some(cols(&["customer_id"]))
        );
        assert_eq!(
            index_columns(&scan("((a = 1) OR (b = 2))", &[]), &table),
            None
        );
        assert_eq!(
            index_columns(&scan("(lower(status) = $1)", &[]), &table),
            None
        );
        assert_eq!(
            index_columns(&scan("(o.\"Mixed\" = $1)", &[]), &table),
            Some(cols(&["Mixed"]))
        );
        assert_eq!(quote_ident("Mixed"), "\"Mixed\"");
        assert_eq!(quote_ident("customer_id"), "customer_id");
    }

    #[test]
    fn params_and_plannable_statements() {
        assert_eq!(param_count("SELECT $1, $12, $3"), 12);
        assert_eq!(param_count("SELECT 1"), 0);
        assert_eq!(param_count("SELECT '$'"), 0);
        assert!(is_plannable("SELECT * FROM t WHERE a = $1"));
        assert!(is_plannable("  update t set a = $1 where id = $2"));
        assert!(!is_plannable("BEGIN"));
        assert!(!is_plannable("SELECT * FROM pg_stat_statements"));
    }
}
