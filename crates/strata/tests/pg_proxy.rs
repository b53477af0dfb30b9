//! `strata serve` with `[postgres]`: the real binary between tokio-postgres and a real
//! PostgreSQL, its findings read back through `/v1/db/*` and `/metrics`.

mod common;

use common::{client, error_code, get_json, Strata};
use strata_testkit::{free_loopback_port, Postgres};
use tokio_postgres::NoTls;

const TOKEN: &str = "0123456789abcdef0123";

fn config(pg: &Postgres, port: u16) -> String {
    format!(
        r#"
        [[auth.tokens]]
        name = "ops"
        token = "{TOKEN}"
        namespaces = ["*"]
        rights = ["read", "write", "admin"]
        [[auth.tokens]]
        name = "app"
        token = "abcdef0123456789abcd"
        namespaces = ["user"]
        rights = ["read", "write", "admin"]
        [postgres]
        listen = "127.0.0.1:{port}"
        upstream = "{}"
        slow_query_threshold = "40ms"
        "#,
        pg.url("postgres")
    )
}

async fn db(port: u16) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        NoTls,
    )
    .await
    .expect("connect through strata");
    tokio::spawn(conn);
    c
}

async fn get(s: &Strata, path: &str) -> serde_json::Value {
    let r = client()
        .get(s.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_slow_log_n_plus_one_tables_and_metrics_through_the_binary() {
    let pg = Postgres::start().expect("postgresql (scripts/test.sh installs it)");
    let port = free_loopback_port();
    let s = Strata::start(&config(&pg, port));
    let c = db(port).await;
    c.batch_execute(
        "CREATE TABLE authors (id int PRIMARY KEY, name text);
         CREATE TABLE books (id int PRIMARY KEY, author_id int, title text);
         INSERT INTO authors SELECT g, 'a' || g FROM generate_series(1, 12) g;
         INSERT INTO books SELECT g, g, 'b' || g FROM generate_series(1, 12) g;",
    )
    .await
    .unwrap();
    let authors = c.query("SELECT id FROM authors", &[]).await.unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    for a in &authors {
        let id: i32 = a.get(0);
        c.query("SELECT title FROM books WHERE author_id = $1", &[&id])
            .await
            .unwrap();
    }
    c.batch_execute("COMMIT").await.unwrap();
    c.simple_query("SELECT pg_sleep(0.05)").await.unwrap();

    // The API answers once the insight thread has caught up: poll, bounded, on the
    // last query's effect (the slow log); events are applied in order, so everything
    // before it is in too. (Polling on the N+1 finding raced: the thread can apply
    // the loop's queries in one batch and pg_sleep in the next.)
    for _ in 0..100 {
        let slow = get(&s, "/v1/db/slow").await;
        if slow["queries"].as_array().is_some_and(|q| !q.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let findings = get(&s, "/v1/db/n-plus-one").await;
    let f = &findings["findings"][0];
    assert_eq!(
        f["query"], "SELECT title FROM books WHERE author_id = $1",
        "{findings}"
    );
    assert_eq!(f["max_count"], 12);

    let q = get(&s, "/v1/db/queries?sort=calls&limit=5").await;
    let top = &q["queries"][0];
    assert_eq!(
        top["query"], "SELECT title FROM books WHERE author_id = $1",
        "{q}"
    );
    assert_eq!(top["calls"], 12);
    assert!(top["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(q["queries"].as_array().unwrap().len() <= 5);

    let slow = get(&s, "/v1/db/slow").await;
    assert_eq!(slow["threshold_ms"], 40.0);
    assert_eq!(slow["queries"][0]["query"], "SELECT pg_sleep($1)", "{slow}");

    let tables = get(&s, "/v1/db/tables").await;
    let books = tables["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "books")
        .unwrap();
    assert!(books["reads"].as_u64().unwrap() >= 12, "{tables}");

    // Baseline: later calls are reported against it.
    let b = client()
        .post(s.url("/v1/db/baseline"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(b.status(), 200);
    c.query("SELECT title FROM books WHERE author_id = $1", &[&1i32])
        .await
        .unwrap();
    let mut calls = serde_json::Value::Null;
    for _ in 0..100 {
        let q = get(&s, "/v1/db/queries?sort=calls").await;
        calls = q["queries"][0]["baseline"]["calls"].clone();
        if calls == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(calls, 1);

    let text = common::get_text(&client(), &s.url("/metrics")).await;
    assert!(
        text.contains("strata_pg_queries_total{command=\"select\"}"),
        "{text}"
    );
    assert!(text.contains("strata_pg_query_duration_seconds_bucket{"));
    assert!(text.contains("strata_pg_client_connections 1"));
    assert!(text.contains("strata_pg_n_plus_one_findings 1"));
    assert!(text.contains("strata_pg_max_client_connections 1000"));
    assert!(!text.contains("author_id"), "no SQL in labels");
    common::promtool_check_metrics(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_endpoints_need_admin_on_postgres_and_check_their_parameters() {
    let pg = Postgres::start().expect("postgresql");
    let port = free_loopback_port();
    let s = Strata::start(&config(&pg, port));
    let c = client();
    let r = c.get(s.url("/v1/db/queries")).send().await.unwrap();
    assert_eq!(error_code(r).await, (401, "unauthorized".into()));
    let r = c
        .get(s.url("/v1/db/slow"))
        .bearer_auth("abcdef0123456789abcd")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (403, "forbidden".into()));
    let r = c
        .get(s.url("/v1/db/queries?sort=bogus"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "invalid_sort".into()));
    let r = c
        .get(s.url("/v1/db/queries?limit=0"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "invalid_limit".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_turn_the_proxy_on_and_without_it_db_endpoints_say_so() {
    let pg = Postgres::start().expect("postgresql");
    let port = free_loopback_port();
    let s = Strata::start_with(common::Opts {
        config: "",
        args: vec![
            "--pg-upstream".into(),
            pg.url("postgres"),
            "--pg-listen".into(),
            format!("127.0.0.1:{port}"),
        ],
        ..Default::default()
    });
    let c = db(port).await;
    assert_eq!(
        c.query_one("SELECT 6 * 7", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        42
    );
    let v = get_json(&client(), &s.url("/v1/db/queries")).await;
    assert!(v["queries"].is_array(), "{v}");

    let plain = Strata::start("");
    let r = client()
        .get(plain.url("/v1/db/queries"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (404, "no_postgres_proxy".into()));
}

#[test]
fn bad_postgres_config_points_at_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("strata.toml");
    std::fs::write(
        &f,
        "[postgres]\nlisten = \"127.0.0.1:6433\"\nupstream = \"mysql://db:3306\"\n",
    )
    .unwrap();
    let (st, _, err) = common::run_cli(&["config", "check", f.to_str().unwrap()], &[]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("strata.toml:3:"), "{err}");
    assert!(err.contains("postgres.upstream"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_db_stats_slow_and_advise_on_a_seeded_database() {
    let pg = Postgres::start().expect("postgresql");
    let port = free_loopback_port();
    let s = Strata::start(&config(&pg, port));
    let c = db(port).await;
    c.batch_execute(
        "CREATE TABLE users (id int PRIMARY KEY, email text);
         INSERT INTO users SELECT g, 'u' || g || '@x' FROM generate_series(1, 30000) g;
         CREATE TABLE posts (id int PRIMARY KEY, user_id int REFERENCES users, body text);
         INSERT INTO posts SELECT g, g, 'p' FROM generate_series(1, 30000) g;
         ANALYZE;
         SELECT pg_stat_statements_reset();",
    )
    .await
    .unwrap();
    // A loop per user (one post each), through the proxy: no index on posts.user_id,
    // and N+1.
    c.batch_execute("BEGIN").await.unwrap();
    for id in 1..=12i32 {
        c.query("SELECT body FROM posts WHERE user_id = $1", &[&id])
            .await
            .unwrap();
    }
    c.batch_execute("COMMIT").await.unwrap();
    let url = pg.url("postgres");
    let api = s.url("");
    let cli = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let (st, out, err) = common::run_cli(&a, &[("STRATA_ADMIN_TOKEN", TOKEN)]);
            assert!(st.success(), "{args:?}: {err}");
            out
        })
        .await
        .unwrap()
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let stats: serde_json::Value =
        serde_json::from_str(&cli(args(&["db", "stats", "--url", &url, "--json"])).await).unwrap();
    assert!(stats["tables"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["table"] == "public.posts"));
    let text = cli(args(&["db", "stats", "--url", &url])).await;
    assert!(
        text.contains("public.users") && text.contains("users_pkey"),
        "{text}"
    );

    let slow = cli(args(&["db", "slow", "--url", &url])).await;
    assert!(
        slow.contains("SELECT body FROM posts WHERE user_id = $1"),
        "{slow}"
    );
    let slow = cli(args(&["db", "slow", "--from", &api])).await;
    assert!(slow.contains("from strata"), "{slow}");

    let sql = cli(args(&["db", "advise", "--url", &url, "--sql"])).await;
    assert_eq!(
        sql.trim(),
        "CREATE INDEX CONCURRENTLY ON public.posts (user_id);",
        "the proposal and the foreign key's index are the same statement, printed once"
    );
    let advice: serde_json::Value = serde_json::from_str(
        &cli(args(&[
            "db", "advise", "--url", &url, "--from", &api, "--json",
        ]))
        .await,
    )
    .unwrap();
    assert_eq!(advice["source"], "strata");
    assert_eq!(
        advice["advice"]["indexes"][0]["columns"][0], "user_id",
        "{advice}"
    );
    assert!(advice["advice"]["hints"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["kind"] == "n_plus_one"));
    // Nothing ran until --apply.
    let count = "SELECT count(*) FROM pg_indexes WHERE tablename = 'posts'";
    assert_eq!(c.query_one(count, &[]).await.unwrap().get::<_, i64>(0), 1);
    cli(args(&["db", "advise", "--url", &url, "--apply"])).await;
    assert_eq!(c.query_one(count, &[]).await.unwrap().get::<_, i64>(0), 2);
    let sql = cli(args(&["db", "advise", "--url", &url, "--sql"])).await;
    assert_eq!(sql.trim(), "", "nothing left to propose");
}

#[test]
fn strata_db_without_a_database_is_a_clear_error() {
    let port = free_loopback_port();
    let (st, _, err) = common::run_cli(
        &[
            "db",
            "stats",
            "--url",
            &format!("postgres://postgres@127.0.0.1:{port}/x"),
        ],
        &[],
    );
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("cannot connect to the database"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_open_sessions_after_the_drain_and_exits_cleanly() {
    let pg = Postgres::start().expect("postgresql");
    let port = free_loopback_port();
    let cfg = format!("[server]\nshutdown_timeout = \"1s\"\n{}", config(&pg, port));
    let mut s = Strata::start(&cfg);
    let c = db(port).await;
    c.query_one("SELECT 1", &[]).await.unwrap();
    s.terminate();
    let status = s.wait(std::time::Duration::from_secs(15));
    assert!(status.success(), "{status}: {}", s.log());
    assert!(
        c.query_one("SELECT 1", &[]).await.is_err(),
        "session closed"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn the_configuration_in_docs_postgres_md_is_valid() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/postgres.md"
    ))
    .unwrap();
    let block = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block in docs/postgres.md");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("strata.toml");
    std::fs::write(&f, block).unwrap();
    let (st, out, err) = common::run_cli(&["config", "check", f.to_str().unwrap()], &[]);
    assert!(st.success(), "{err}");
    assert!(out.contains("n_plus_one_window"), "{out}");
}
