//! `strata db stats | slow | advise`: a database's sizes and usage, its slowest
//! statements, and index advice, from a direct connection (and optionally from a
//! running strata's PostgreSQL proxy).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use strata_bench::driver::{HttpTemplate, Target};
use strata_pg::advisor::{advise, Advice, AdviseOptions, QueryInput};
use strata_pg::catalog::{database_info, top_statements, Statement};
use tokio_postgres::{Client, NoTls};

#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Table and index sizes, row estimates, sequential vs index scans, cache hit
    /// ratio, dead tuples, last vacuum and analyze.
    #[command(after_help = "Examples:\n  \
        strata db stats --url postgres://app@127.0.0.1:5432/shop\n  \
        strata db stats --url postgres://127.0.0.1/shop --json | jq '.tables[0]'")]
    Stats(DbArgs),
    /// The slowest statements: from pg_stat_statements, or from a running strata's
    /// PostgreSQL proxy with --from.
    #[command(after_help = "Examples:\n  \
        strata db slow --url postgres://127.0.0.1:5432/shop --limit 10\n  \
        strata db slow --from http://127.0.0.1:7070 --json")]
    Slow(SlowArgs),
    /// Index and query advice for the top statements, checked with hypothetical
    /// indexes (hypopg) when the extension is installed. Runs no DDL unless --apply.
    #[command(after_help = "Examples:\n  \
        strata db advise --url postgres://127.0.0.1:5432/shop\n  \
        strata db advise --url postgres://127.0.0.1:5432/shop --from http://127.0.0.1:7070\n  \
        strata db advise --url postgres://127.0.0.1:5432/shop --sql > indexes.sql\n  \
        strata db advise --url postgres://127.0.0.1:5432/shop --apply\n\n\
        Exit codes: 0 done, 1 the database or strata could not be reached.")]
    Advise(AdviseArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DbArgs {
    /// Connection URL or libpq key=value string.
    #[arg(long, env = "DATABASE_URL")]
    url: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SlowArgs {
    /// Connection URL (reads pg_stat_statements).
    #[arg(long, env = "DATABASE_URL", required_unless_present = "from")]
    url: Option<String>,
    /// A running strata (its PostgreSQL proxy's statistics) instead of the database.
    #[arg(long)]
    from: Option<String>,
    /// Admin token for --from.
    #[arg(long, env = "STRATA_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Statements to show.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AdviseArgs {
    /// Connection URL of the database to advise on.
    #[arg(long, env = "DATABASE_URL")]
    url: String,
    /// Take the top statements (and N+1 findings) from a running strata's
    /// PostgreSQL proxy instead of pg_stat_statements.
    #[arg(long)]
    from: Option<String>,
    /// Admin token for --from.
    #[arg(long, env = "STRATA_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Statements to examine, by total time.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Smallest table (estimated rows) worth an index.
    #[arg(long, default_value_t = 10_000.0)]
    min_rows: f64,
    /// Print JSON.
    #[arg(long, conflicts_with = "sql")]
    json: bool,
    /// Print only the CREATE INDEX CONCURRENTLY statements.
    #[arg(long)]
    sql: bool,
    /// Run the CREATE INDEX CONCURRENTLY statements (one at a time).
    #[arg(long)]
    apply: bool,
}

pub(crate) fn main(cmd: DbCommand) -> ExitCode {
    let rt = match crate::cli::runtime(false) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let res = rt.block_on(async move {
        match cmd {
            DbCommand::Stats(a) => stats(a).await,
            DbCommand::Slow(a) => slow(a).await,
            DbCommand::Advise(a) => advise_cmd(a).await,
        }
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(url: &str) -> Result<Client, String> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("cannot connect to the database: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("warning: database connection: {e}");
        }
    });
    Ok(client)
}

fn db_err(e: tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string())
}

async fn stats(a: DbArgs) -> Result<(), String> {
    let c = connect(&a.url).await?;
    let info = database_info(&c).await.map_err(db_err)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&info).unwrap_or_default()
        );
        return Ok(());
    }
    let pct = |r: Option<f64>| r.map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
    println!(
        "{} (PostgreSQL {}): {}, cache hit {}",
        info.database,
        info.server_version,
        bytes(info.bytes),
        pct(info.cache_hit_ratio)
    );
    println!(
        "\n{:<32} {:>11} {:>9} {:>9} {:>10} {:>10} {:>7} {:>9}  last analyze",
        "table", "rows", "heap", "indexes", "seq scans", "idx scans", "hit", "dead"
    );
    for t in &info.tables {
        println!(
            "{:<32} {:>11.0} {:>9} {:>9} {:>10} {:>10} {:>7} {:>9}  {}",
            t.table,
            t.rows_estimate.max(0.0),
            bytes(t.table_bytes),
            bytes(t.index_bytes),
            t.seq_scans,
            t.index_scans,
            pct(t.cache_hit_ratio),
            t.dead_tuples,
            t.last_analyze.as_deref().unwrap_or("never")
        );
    }
    println!(
        "\n{:<32} {:<32} {:>9} {:>10}",
        "table", "index", "size", "scans"
    );
    for i in &info.indexes {
        println!(
            "{:<32} {:<32} {:>9} {:>10}",
            i.table,
            i.index,
            bytes(i.bytes),
            i.scans
        );
    }
    Ok(())
}

fn bytes(b: i64) -> String {
    let b = b as f64;
    match b {
        b if b >= (1u64 << 30) as f64 => format!("{:.1} GiB", b / (1u64 << 30) as f64),
        b if b >= (1u64 << 20) as f64 => format!("{:.1} MiB", b / (1u64 << 20) as f64),
        b if b >= 1024.0 => format!("{:.0} KiB", b / 1024.0),
        b => format!("{b:.0} B"),
    }
}

/// GETs a strata admin endpoint as JSON.
async fn strata_get(base: &str, path: &str, token: Option<&str>) -> Result<Value, String> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let template = HttpTemplate {
        method: hyper::Method::GET,
        url: url.clone(),
        headers: vec![],
        body: None,
    };
    let mut session = Target::Http(std::sync::Arc::new(template)).session(Duration::from_secs(10));
    let headers: Vec<(String, String)> = token
        .map(|t| vec![("Authorization".to_string(), format!("Bearer {t}"))])
        .unwrap_or_default();
    let text = session.get_text_with(&url, &headers).await?;
    serde_json::from_str(&text).map_err(|e| format!("{url}: not JSON: {e}"))
}

async fn from_strata(
    base: &str,
    token: Option<&str>,
    limit: usize,
) -> Result<Vec<Statement>, String> {
    let v = strata_get(
        base,
        &format!(
            "/v1/db/queries?sort=total_time&limit={}",
            limit.clamp(1, 5000)
        ),
        token,
    )
    .await?;
    Ok(v["queries"]
        .as_array()
        .map(|qs| {
            qs.iter()
                .filter(|q| q["fingerprint"] != "0000000000000000")
                .map(|q| Statement {
                    query: q["query"].as_str().unwrap_or_default().to_string(),
                    calls: q["calls"].as_i64().unwrap_or(0),
                    total_ms: q["total_ms"].as_f64().unwrap_or(0.0),
                    mean_ms: q["mean_ms"].as_f64().unwrap_or(0.0),
                    rows: q["rows"].as_i64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default())
}

async fn statements(
    url: Option<&str>,
    from: Option<&str>,
    token: Option<&str>,
    limit: usize,
) -> Result<(Vec<Statement>, &'static str), String> {
    if let Some(base) = from {
        return Ok((from_strata(base, token, limit).await?, "strata"));
    }
    let c = connect(url.unwrap_or_default()).await?;
    match top_statements(&c, limit as i64).await.map_err(db_err)? {
        Some(s) => Ok((s, "pg_stat_statements")),
        None => Err("pg_stat_statements is not installed in this database \
                     (CREATE EXTENSION pg_stat_statements, with it in shared_preload_libraries), \
                     or use --from http://<strata>:7070 to read strata's own statistics"
            .into()),
    }
}

async fn slow(a: SlowArgs) -> Result<(), String> {
    let (list, source) = statements(
        a.url.as_deref(),
        a.from.as_deref(),
        a.token.as_deref(),
        a.limit,
    )
    .await?;
    if a.json {
        let v = json!({"source": source, "statements": list});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!(
        "top {} statements by total time (from {source})",
        list.len()
    );
    println!(
        "{:>12} {:>10} {:>10} {:>10}  query",
        "total ms", "calls", "mean ms", "rows"
    );
    for s in &list {
        println!(
            "{:>12.1} {:>10} {:>10.3} {:>10}  {}",
            s.total_ms,
            s.calls,
            s.mean_ms,
            s.rows,
            one_line(&s.query, 100)
        );
    }
    Ok(())
}

fn one_line(q: &str, max: usize) -> String {
    let flat: String = q.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

async fn advise_cmd(a: AdviseArgs) -> Result<(), String> {
    let (list, source) =
        statements(Some(&a.url), a.from.as_deref(), a.token.as_deref(), a.top).await?;
    let inputs: Vec<QueryInput> = list
        .iter()
        .map(|s| QueryInput {
            query: s.query.clone(),
            calls: s.calls.max(0) as u64,
            total_ms: s.total_ms,
        })
        .collect();
    let c = connect(&a.url).await?;
    let opts = AdviseOptions {
        min_rows: a.min_rows,
        ..AdviseOptions::default()
    };
    let mut advice = advise(&c, &inputs, &opts).await.map_err(db_err)?;
    if let Some(base) = &a.from {
        add_n_plus_one(&mut advice, base, a.token.as_deref()).await?;
    }
    if a.sql {
        for s in advice.sql() {
            println!("{s}");
        }
    } else if a.json {
        let v = json!({"source": source, "advice": advice});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print_advice(&advice, source);
    }
    if a.apply {
        for s in advice.sql() {
            eprintln!("applying: {s}");
            c.batch_execute(&s).await.map_err(db_err)?;
        }
    }
    Ok(())
}

async fn add_n_plus_one(
    advice: &mut Advice,
    base: &str,
    token: Option<&str>,
) -> Result<(), String> {
    let v = strata_get(base, "/v1/db/n-plus-one", token).await?;
    for f in v["findings"].as_array().into_iter().flatten() {
        advice.hints.push(strata_pg::advisor::Hint {
            kind: "n_plus_one".into(),
            query: f["query"].as_str().unwrap_or_default().to_string(),
            advice: format!(
                "run up to {} times per transaction, one row each: {}",
                f["max_count"],
                f["suggestion"].as_str().unwrap_or_default()
            ),
        });
    }
    Ok(())
}

fn print_advice(a: &Advice, source: &str) {
    println!(
        "examined {} statements (from {source}); hypothetical-index check: {}",
        a.queries_examined,
        if a.hypopg {
            "hypopg"
        } else {
            "unavailable (CREATE EXTENSION hypopg to validate)"
        }
    );
    if a.indexes.is_empty() {
        println!("\nno new index would help the examined statements");
    }
    for i in &a.indexes {
        let cut = i
            .cost_after
            .map(|after| format!(", estimated cost {:.0} -> {:.0}", i.cost_before, after))
            .unwrap_or_default();
        println!("\n{}\n  {}{cut}", i.sql, i.reason);
        for q in &i.queries {
            println!("  for: {}", one_line(q, 100));
        }
    }
    for f in &a.unindexed_foreign_keys {
        println!(
            "\n{}\n  foreign key {} has no index on its columns: deletes and joins on the parent scan {}",
            f.sql, f.constraint, f.table
        );
    }
    for d in &a.duplicate_indexes {
        println!(
            "\nDROP INDEX CONCURRENTLY {};  -- {} ({}): {}",
            d.index,
            d.table,
            bytes(d.bytes),
            d.reason
        );
    }
    for d in &a.unused_indexes {
        println!(
            "\n-- unused: {} on {} ({}): {}",
            d.index,
            d.table,
            bytes(d.bytes),
            d.reason
        );
    }
    for h in &a.hints {
        println!(
            "\nhint ({}): {}\n  {}",
            h.kind,
            one_line(&h.query, 100),
            h.advice
        );
    }
    for (q, why) in &a.skipped {
        println!("\nskipped (could not plan): {}\n  {why}", one_line(q, 100));
    }
}
