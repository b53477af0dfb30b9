//! What `strata db stats` and `strata db slow` read from a live database: table and
//! index sizes and usage from the statistics views, and the top statements from
//! `pg_stat_statements` when it is installed.

use serde::Serialize;
use tokio_postgres::Client;

/// One table's size and usage.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TableInfo {
    /// `schema.table`.
    pub table: String,
    /// Estimated rows (`pg_class.reltuples`; -1 when never analysed).
    pub rows_estimate: f64,
    /// Heap bytes.
    pub table_bytes: i64,
    /// All indexes' bytes.
    pub index_bytes: i64,
    /// Sequential scans.
    pub seq_scans: i64,
    /// Rows read by sequential scans.
    pub seq_rows_read: i64,
    /// Index scans.
    pub index_scans: i64,
    /// Share of heap block reads served from shared buffers (None before any read).
    pub cache_hit_ratio: Option<f64>,
    /// Dead tuples.
    pub dead_tuples: i64,
    /// Last vacuum (manual or auto), ISO 8601.
    pub last_vacuum: Option<String>,
    /// Last analyze (manual or auto), ISO 8601.
    pub last_analyze: Option<String>,
}

/// One index's size and usage.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IndexInfo {
    /// `schema.table`.
    pub table: String,
    /// Index name.
    pub index: String,
    /// Bytes.
    pub bytes: i64,
    /// Scans since statistics were reset.
    pub scans: i64,
    /// Whether it backs a primary key or unique constraint.
    pub unique: bool,
    /// Its definition.
    pub definition: String,
}

/// Database-wide figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DatabaseInfo {
    /// Database name.
    pub database: String,
    /// Server version (`server_version`).
    pub server_version: String,
    /// Bytes on disk.
    pub bytes: i64,
    /// Share of block reads served from shared buffers.
    pub cache_hit_ratio: Option<f64>,
    /// Tables, largest first.
    pub tables: Vec<TableInfo>,
    /// Indexes, largest first.
    pub indexes: Vec<IndexInfo>,
}

/// Reads [`DatabaseInfo`] for the connected database (user tables only).
pub async fn database_info(c: &Client) -> Result<DatabaseInfo, tokio_postgres::Error> {
    let db = c
        .query_one(
            "SELECT current_database()::text, current_setting('server_version'),
                    pg_database_size(current_database()),
                    (SELECT blks_hit::float8 / NULLIF(blks_hit + blks_read, 0)
                       FROM pg_stat_database WHERE datname = current_database())",
            &[],
        )
        .await?;
    let tables = c
        .query(
            "SELECT s.schemaname || '.' || s.relname, c.reltuples::float8,
                    pg_relation_size(s.relid), pg_indexes_size(s.relid),
                    COALESCE(s.seq_scan, 0), COALESCE(s.seq_tup_read, 0),
                    COALESCE(s.idx_scan, 0),
                    io.heap_blks_hit::float8 / NULLIF(io.heap_blks_hit + io.heap_blks_read, 0),
                    s.n_dead_tup,
                    to_char(GREATEST(s.last_vacuum, s.last_autovacuum), 'YYYY-MM-DD\"T\"HH24:MI:SSOF'),
                    to_char(GREATEST(s.last_analyze, s.last_autoanalyze), 'YYYY-MM-DD\"T\"HH24:MI:SSOF')
               FROM pg_stat_user_tables s
               JOIN pg_class c ON c.oid = s.relid
               JOIN pg_statio_user_tables io ON io.relid = s.relid
              ORDER BY pg_total_relation_size(s.relid) DESC",
            &[],
        )
        .await?
        .iter()
        .map(|r| TableInfo {
            table: r.get(0),
            rows_estimate: r.get(1),
            table_bytes: r.get(2),
            index_bytes: r.get(3),
            seq_scans: r.get(4),
            seq_rows_read: r.get(5),
            index_scans: r.get(6),
            cache_hit_ratio: r.get(7),
            dead_tuples: r.get(8),
            last_vacuum: r.get(9),
            last_analyze: r.get(10),
        })
        .collect();
    let indexes = user_indexes(c).await?;
    Ok(DatabaseInfo {
        database: db.get(0),
        server_version: db.get(1),
        bytes: db.get(2),
        cache_hit_ratio: db.get(3),
        tables,
        indexes,
    })
}

/// User indexes, largest first.
pub async fn user_indexes(c: &Client) -> Result<Vec<IndexInfo>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT s.schemaname || '.' || s.relname, s.indexrelname,
                pg_relation_size(s.indexrelid), COALESCE(s.idx_scan, 0),
                i.indisunique OR i.indisprimary, pg_get_indexdef(s.indexrelid)
           FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
          ORDER BY pg_relation_size(s.indexrelid) DESC",
        &[],
    )
    .await?
    .iter()
    .map(|r| IndexInfo {
        table: r.get(0),
        index: r.get(1),
        bytes: r.get(2),
        scans: r.get(3),
        unique: r.get(4),
        definition: r.get(5),
    })
    .collect())
}

/// A statement from `pg_stat_statements`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Statement {
    /// Normalised text (`$n` for constants).
    pub query: String,
    /// Executions.
    pub calls: i64,
    /// Total execution time, ms.
    pub total_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Rows.
    pub rows: i64,
}

/// The top `limit` statements of the connected database by total time, from
/// `pg_stat_statements`; `Ok(None)` when the extension is not installed in it.
pub async fn top_statements(
    c: &Client,
    limit: i64,
) -> Result<Option<Vec<Statement>>, tokio_postgres::Error> {
    let installed = c
        .query_opt(
            "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'",
            &[],
        )
        .await?
        .is_some();
    if !installed {
        return Ok(None);
    }
    let rows = c
        .query(
            "SELECT query, calls, total_exec_time, mean_exec_time, rows
               FROM pg_stat_statements
              WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND query NOT ILIKE '%pg_stat_statements%'
              ORDER BY total_exec_time DESC LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(Some(
        rows.iter()
            .map(|r| Statement {
                query: r.get(0),
                calls: r.get(1),
                total_ms: r.get(2),
                mean_ms: r.get(3),
                rows: r.get(4),
            })
            .collect(),
    ))
}
