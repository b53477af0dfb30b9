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

    // The API answers once the insight thread has caught up: poll, bounded.
    let mut findings = serde_json::Value::Null;
    for _ in 0..100 {
        findings = get(&s, "/v1/db/n-plus-one").await;
        if findings["findings"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
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

    let text = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
