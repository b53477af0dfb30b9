//! The advisor on a seeded schema in a real PostgreSQL (with hypopg and
//! pg_stat_statements, as scripts/test.sh installs them).

use strata_pg::advisor::{advise, AdviseOptions, QueryInput};
use strata_pg::catalog::{database_info, top_statements};
use strata_testkit::Postgres;
use tokio_postgres::NoTls;

async fn connect(pg: &Postgres) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            pg.port()
        ),
        NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    c
}

const SCHEMA: &str = "
    CREATE TABLE countries (code text PRIMARY KEY, name text);
    INSERT INTO countries SELECT 'c' || g, 'country ' || g FROM generate_series(1, 50) g;
    CREATE TABLE customers (id int PRIMARY KEY, country text REFERENCES countries, name text);
    INSERT INTO customers SELECT g, 'c' || (g % 50 + 1), 'name ' || g FROM generate_series(1, 20000) g;
    CREATE TABLE orders (
        id int PRIMARY KEY,
        customer_id int REFERENCES customers,
        status text,
        created_at timestamptz,
        total numeric
    );
    INSERT INTO orders
        SELECT g, g % 20000 + 1, (ARRAY['open', 'paid', 'shipped'])[g % 3 + 1],
               now() - (g || ' minutes')::interval, g % 1000
          FROM generate_series(1, 100000) g;
    CREATE INDEX orders_status_idx ON orders (status);
    CREATE INDEX orders_status_created_idx ON orders (status, created_at);
    CREATE INDEX orders_total_idx ON orders (total);
    ANALYZE;
";

/// The planted slow query: a customer's latest orders, with no index to find them.
const PLANTED: &str =
    "SELECT * FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT $2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planted_slow_query_gets_its_index_and_nothing_else_does() {
    let pg = Postgres::start().expect("postgresql (scripts/test.sh installs it)");
    assert!(
        pg.extension_available("hypopg"),
        "hypopg must be installed (scripts/deps.sh installs postgresql-NN-hypopg)"
    );
    let c = connect(&pg).await;
    c.batch_execute(SCHEMA).await.unwrap();
    c.batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();
    // Traffic: the planted query, plus queries that are fine as they are.
    for id in 1..=20i32 {
        c.query(PLANTED, &[&id, &10i64]).await.unwrap();
        c.query("SELECT name FROM customers WHERE id = $1", &[&id])
            .await
            .unwrap();
        c.query("SELECT name FROM countries WHERE code = $1", &[&"c1"])
            .await
            .unwrap();
        c.query("SELECT count(*) FROM orders WHERE status = $1", &[&"open"])
            .await
            .unwrap();
    }
    c.query("SELECT * FROM orders ORDER BY id OFFSET 5000 LIMIT 10", &[])
        .await
        .unwrap();

    let top = top_statements(&c, 20)
        .await
        .unwrap()
        .expect("pg_stat_statements");
    assert!(
        top.iter().any(|s| s.query == PLANTED && s.calls == 20),
        "{top:#?}"
    );
    let inputs: Vec<QueryInput> = top
        .iter()
        .map(|s| QueryInput {
            query: s.query.clone(),
            calls: s.calls as u64,
            total_ms: s.total_ms,
        })
        .collect();
    let advice = advise(&c, &inputs, &AdviseOptions::default())
        .await
        .unwrap();
    assert!(advice.hypopg);
    assert_eq!(advice.indexes.len(), 1, "{:#?}", advice.indexes);
    let ix = &advice.indexes[0];
    assert_eq!(ix.table, "public.orders");
    assert_eq!(ix.columns, ["customer_id", "created_at"]);
    assert!(ix.validated);
    let (before, after) = (ix.cost_before, ix.cost_after.unwrap());
    assert!(after <= before * 0.5, "{before} -> {after}");
    assert_eq!(
        ix.sql,
        "CREATE INDEX CONCURRENTLY ON public.orders (customer_id, created_at);"
    );
    // Housekeeping on the same schema.
    let dups: Vec<&str> = advice
        .duplicate_indexes
        .iter()
        .map(|d| d.index.as_str())
        .collect();
    assert_eq!(dups, ["orders_status_idx"]);
    let fks: Vec<(&str, &str)> = advice
        .unindexed_foreign_keys
        .iter()
        .map(|f| (f.table.as_str(), f.columns[0].as_str()))
        .collect();
    assert_eq!(
        fks,
        [
            ("public.customers", "country"),
            ("public.orders", "customer_id")
        ]
    );
    assert!(advice
        .unused_indexes
        .iter()
        .any(|u| u.index == "orders_total_idx"));
    assert!(
        advice.hints.iter().any(|h| h.kind == "deep_offset"),
        "{:#?}",
        advice.hints
    );
    // The DDL never ran by itself.
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'orders'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);

    // Applied, the advice is taken: asked again, it proposes nothing new.
    for stmt in advice.sql() {
        c.batch_execute(&stmt).await.unwrap();
    }
    let again = advise(&c, &inputs, &AdviseOptions::default())
        .await
        .unwrap();
    assert!(again.indexes.is_empty(), "{:#?}", again.indexes);
    assert!(again.unindexed_foreign_keys.is_empty());

    let info = database_info(&c).await.unwrap();
    let orders = info
        .tables
        .iter()
        .find(|t| t.table == "public.orders")
        .unwrap();
    assert!(orders.rows_estimate >= 99_000.0);
    // Scan counters lag (backends flush statistics about once a second): sizes only.
    assert!(
        orders.table_bytes > 0 && orders.index_bytes > 0,
        "{orders:?}"
    );
    assert!(info
        .indexes
        .iter()
        .any(|i| i.index == "orders_pkey" && i.unique));
}
