//! The proxy between real clients (tokio-postgres, psql, pgbench) and a real
//! PostgreSQL started by strata-testkit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strata_pg::{PgProxy, PgProxyConfig, SortBy, Upstream, UpstreamTls};
use strata_testkit::{Postgres, MD5_USER, SCRAM_USER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::{Client, NoTls};

struct Setup {
    pg: Postgres,
    proxy: Arc<PgProxy>,
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn setup_with(f: impl FnOnce(&mut PgProxyConfig)) -> Setup {
    let pg = Postgres::start().expect("postgresql must be installed (scripts/test.sh)");
    let (proxy, addr, stop) = proxy_for(&pg, f).await;
    Setup {
        pg,
        proxy,
        addr,
        _stop: stop,
    }
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

fn conn_str(addr: SocketAddr, user: &str, password: Option<&str>) -> String {
    let mut s = format!(
        "host=127.0.0.1 port={} user={user} dbname=postgres connect_timeout=5",
        addr.port()
    );
    if let Some(p) = password {
        s.push_str(&format!(" password={p}"));
    }
    s
}

async fn connect_as(
    addr: SocketAddr,
    user: &str,
    password: Option<&str>,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) =
        tokio_postgres::connect(&conn_str(addr, user, password), NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn connect(addr: SocketAddr) -> Client {
    connect_as(addr, "postgres", None)
        .await
        .expect("connect through the proxy")
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| format!("no db error: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_extended_prepared_and_pipelined_queries_are_relayed_and_measured() {
    let s = setup().await;
    let c = connect(s.addr).await;
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text);
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g;",
    )
    .await
    .unwrap();
    // Simple protocol.
    let rows = c
        .simple_query("SELECT name FROM items WHERE id = 7")
        .await
        .unwrap();
    assert!(rows.iter().any(
        |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("item 7"))
    ));
    // Extended, unnamed statement each time.
    for id in 1..=5 {
        let r = c
            .query_one("SELECT name FROM items WHERE id = $1", &[&id])
            .await
            .unwrap();
        assert_eq!(r.get::<_, String>(0), format!("item {id}"));
    }
    // Prepared once, executed many times.
    let st = c
        .prepare("SELECT count(*) FROM items WHERE id <= $1")
        .await
        .unwrap();
    for n in [10, 20, 30] {
        let r = c.query_one(&st, &[&n]).await.unwrap();
        assert_eq!(r.get::<_, i64>(0), n as i64);
    }
    // Pipelined: tokio-postgres sends these without waiting for each answer.
    let futs: Vec<_> = (1..=20)
        .map(|id: i32| {
            let c = &c;
            async move {
                c.query_one("SELECT id FROM items WHERE id = $1", &[&id])
                    .await
            }
        })
        .collect();
    let got = futures::future::join_all(futs).await;
    for (i, r) in got.into_iter().enumerate() {
        assert_eq!(r.unwrap().get::<_, i32>(0), i as i32 + 1);
    }
    // An error mid-stream leaves the session usable.
    let e = c.query("SELECT 1/0", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "22012");
    assert_eq!(
        c.query_one("SELECT 1::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );

    s.proxy.insight().flushed().await;
    let q = s.proxy.insight().queries(SortBy::Calls, 100);
    let find = |text: &str| {
        q.iter().find(|r| r.query.query == text).unwrap_or_else(|| {
            panic!(
                "no `{text}` in {:#?}",
                q.iter().map(|r| &r.query.query).collect::<Vec<_>>()
            )
        })
    };
    let by_id = find("SELECT name FROM items WHERE id = $1");
    // The simple query with a literal and the 5 extended ones share a fingerprint.
    assert_eq!(by_id.query.calls, 6);
    assert_eq!(by_id.query.rows, 6);
    assert_eq!(
        find("SELECT count(*) FROM items WHERE id <= $1")
            .query
            .calls,
        3
    );
    let piped = find("SELECT id FROM items WHERE id = $1");
    assert_eq!((piped.query.calls, piped.query.rows), (20, 20));
    assert_eq!(find("SELECT $1/$2").query.errors, 1);
    let tables = s.proxy.insight().tables();
    let items = tables.iter().find(|(t, _)| t == "items").unwrap();
    assert!(items.1.reads >= 29 && items.1.writes >= 1, "{items:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_md5_and_scram_authentication_pass_through() {
    let s = setup().await;
    let c = connect(s.addr).await;
    assert_eq!(
        c.query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "postgres"
    );
    for (user, password) in [MD5_USER, SCRAM_USER] {
        let c = connect_as(s.addr, user, Some(password))
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let who: String = c
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, user);
        // A wrong password gets the server's own error.
        let e = connect_as(s.addr, user, Some("wrong"))
            .await
            .expect_err("wrong password refused");
        assert_eq!(sqlstate(&e), "28P01", "{user}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out() {
    use futures::{SinkExt, StreamExt};
    let s = setup().await;
    let c = connect(s.addr).await;
    c.batch_execute("CREATE TABLE c (a int, b text)")
        .await
        .unwrap();
    let sink = c.copy_in("COPY c FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..5000 {
        data.push_str(&format!("{i}\trow {i}\n"));
    }
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 5000);
    let stream = c.copy_out("COPY c TO STDOUT").await.unwrap();
    futures::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 5000);
    s.proxy.insight().flushed().await;
    let q = s.proxy.insight().queries(SortBy::Calls, 100);
    let copy_in = q
        .iter()
        .find(|r| r.query.query == "COPY c FROM STDIN")
        .unwrap();
    assert_eq!(copy_in.query.rows, 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_requests_reach_the_right_backend() {
    let s = setup().await;
    let c = connect(s.addr).await;
    let other = connect(s.addr).await;
    let token = c.cancel_token();
    let slow = tokio::spawn(async move { c.query("SELECT pg_sleep(30)", &[]).await.map(drop) });
    // Cancel only once the query runs: a cancel that arrives before it is a no-op.
    let mut running = false;
    for _ in 0..200 {
        let n: i64 = other
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running, "the slow query never started");
    token
        .cancel_query(NoTls)
        .await
        .expect("cancel through the proxy");
    let e = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the query ended")
        .unwrap()
        .unwrap_err();
    assert_eq!(
        sqlstate(&e),
        "57014",
        "canceling statement due to user request"
    );
    // The other session was not touched.
    assert_eq!(
        other
            .query_one("SELECT 2::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_with_tls_preferred_gets_n_and_continues() {
    let s = setup().await;
    let out = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-c", "SELECT 40 + 2"])
        .arg(format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=prefer gssencmode=prefer",
            s.addr.port()
        ))
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    // sslmode=require must fail: the proxy has no TLS configured.
    let out = std::process::Command::new("psql")
        .args(["-X", "-c", "SELECT 1"])
        .arg(format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=require",
            s.addr.port()
        ))
        .output()
        .expect("psql");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SSL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_an_error_and_other_clients_are_unaffected() {
    let s = setup().await;
    let good = connect(s.addr).await;
    let cases: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0, 0, 0, 2, 0, 0, 0, 0],
        vec![0x7f, 0xff, 0xff, 0xff],
        {
            let mut v = vec![0, 0, 0, 8];
            v.extend_from_slice(&(2u32 << 16).to_be_bytes());
            v
        },
    ];
    for case in cases {
        let mut sock = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        sock.write_all(&case).await.unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut reply)).await;
        assert_eq!(reply.first(), Some(&b'E'), "{case:?} → {reply:?}");
    }
    // A bad length after a good startup: that session ends with 08P01.
    let mut sock = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut startup = vec![0, 0, 0, 0];
    startup.extend_from_slice(&196608u32.to_be_bytes());
    startup.extend_from_slice(b"user\0postgres\0database\0postgres\0\0");
    let n = startup.len() as u32;
    startup[..4].copy_from_slice(&n.to_be_bytes());
    sock.write_all(&startup).await.unwrap();
    // Wait for ReadyForQuery ('Z' … 'I') before the garbage.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"Z\0\0\0\x05I") {
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    sock.write_all(&[b'Q', 0, 0, 0, 1]).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut reply)).await;
    let text = String::from_utf8_lossy(&reply);
    assert!(
        reply.first() == Some(&b'E') && text.contains("08P01"),
        "{text}"
    );
    assert_eq!(
        good.query_one("SELECT 3::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        3
    );
    assert!(s.proxy.metrics().protocol_errors.get() >= 4);
    assert_eq!(s.proxy.metrics().clients.get(), 1, "only `good` is open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_cleanly() {
    let s = setup_with(|c| c.max_client_connections = 2).await;
    let a = connect(s.addr).await;
    let _b = connect(s.addr).await;
    let e = connect_as(s.addr, "postgres", None)
        .await
        .expect_err("third refused");
    assert_eq!(sqlstate(&e), "53300");
    drop(a);
    // The slot frees when a session ends.
    let mut ok = false;
    for _ in 0..50 {
        if connect_as(s.addr, "postgres", None).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_are_disconnected_with_a_reason() {
    let s = setup_with(|c| c.client_idle_timeout = Some(Duration::from_millis(300))).await;
    let c = connect(s.addr).await;
    // A query longer than the idle timeout is not idleness.
    c.query("SELECT pg_sleep(0.6)", &[]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let e = c.query("SELECT 1", &[]).await.unwrap_err();
    assert!(c.is_closed(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_under_load_clients_get_errors_and_the_proxy_keeps_accepting() {
    let mut s = setup().await;
    let c = connect(s.addr).await;
    c.batch_execute("CREATE TABLE k (v int)").await.unwrap();
    let load = {
        let addr = s.addr;
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            for _ in 0..200 {
                match connect_as(addr, "postgres", None).await {
                    Ok(c) => match c.query("SELECT count(*) FROM k", &[]).await {
                        Ok(_) => ok += 1,
                        Err(_) => failed += 1,
                    },
                    Err(_) => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.pg.kill();
    // An open session learns its server is gone.
    let e = c.query("SELECT 1", &[]).await.unwrap_err();
    assert!(c.is_closed() || e.as_db_error().is_some(), "{e}");
    // A new one is told the server cannot be reached.
    let e = connect_as(s.addr, "postgres", None)
        .await
        .expect_err("refused while down");
    assert_eq!(sqlstate(&e), "08006", "{e}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.pg.restart().unwrap();
    let c2 = connect(s.addr).await;
    assert_eq!(
        c2.query_one("SELECT count(*) FROM k", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );
    let (ok, failed) = load.await.unwrap();
    assert!(ok > 0 && failed > 0, "ok {ok} failed {failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_plus_one_and_slow_queries_are_reported_without_literals() {
    let s = setup().await;
    let c = connect(s.addr).await;
    c.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY);
         CREATE TABLE lines (id int PRIMARY KEY, order_id int, sku text);
         INSERT INTO orders SELECT generate_series(1, 30);
         INSERT INTO lines SELECT g, g, 'sku' || g FROM generate_series(1, 30) g;",
    )
    .await
    .unwrap();
    // The classic loop: one query per parent row, inside a transaction.
    c.batch_execute("BEGIN").await.unwrap();
    let orders = c.query("SELECT id FROM orders", &[]).await.unwrap();
    for o in &orders {
        let id: i32 = o.get(0);
        c.query("SELECT sku FROM lines WHERE order_id = $1", &[&id])
            .await
            .unwrap();
    }
    c.batch_execute("COMMIT").await.unwrap();
    // The same done right: one query.
    c.query(
        "SELECT sku FROM lines WHERE order_id = ANY($1)",
        &[&vec![1i32, 2, 3]],
    )
    .await
    .unwrap();
    // A slow query with a literal that must not appear.
    c.simple_query("SELECT pg_sleep(0.08), 'secret-literal'")
        .await
        .unwrap();

    s.proxy.insight().flushed().await;
    let found = s.proxy.insight().n_plus_one();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].query, "SELECT sku FROM lines WHERE order_id = $1");
    assert_eq!(found[0].max_count, 30);
    assert!(found[0].suggestion.contains("order_id = ANY($1)"));
    let slow = s.proxy.insight().slow();
    assert_eq!(slow.len(), 1, "{slow:#?}");
    assert!(slow[0].duration_ms >= 80.0);
    assert_eq!(slow[0].query, "SELECT pg_sleep($1), $2");
    assert!(slow[0].raw_query.is_none() && slow[0].parameters.is_none());
    let json = serde_json::to_string(&slow).unwrap();
    assert!(!json.contains("secret-literal"), "{json}");
    assert_eq!(slow[0].user, "postgres");
    assert_eq!(slow[0].client, "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_reports_change() {
    let s = setup().await;
    let c = connect(s.addr).await;
    for _ in 0..5 {
        c.query("SELECT 1", &[]).await.unwrap();
    }
    s.proxy.insight().flushed().await;
    assert_eq!(s.proxy.insight().take_baseline(), 1);
    for _ in 0..3 {
        c.query("SELECT 1", &[]).await.unwrap();
    }
    c.query("SELECT 2 + 2", &[]).await.unwrap();
    s.proxy.insight().flushed().await;
    let q = s.proxy.insight().queries(SortBy::Calls, 10);
    let one = q.iter().find(|r| r.query.query == "SELECT $1").unwrap();
    let b = one.baseline.as_ref().unwrap();
    assert_eq!((b.new, b.calls), (false, 3));
    assert!(b.mean_ratio.is_some());
    let new = q
        .iter()
        .find(|r| r.query.query == "SELECT $1 + $2")
        .unwrap();
    assert!(new.baseline.as_ref().unwrap().new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_in_all_three_query_modes() {
    let s = setup().await;
    let port = s.addr.port().to_string();
    let pgbench = move |args: &[&str]| {
        let out = std::process::Command::new("pgbench")
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
            .args(args)
            .arg("postgres")
            .output()
            .expect("pgbench (Debian: postgresql-contrib)");
        assert!(
            out.status.success(),
            "pgbench {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    tokio::task::spawn_blocking(move || {
        pgbench(&["-i", "-s", "1", "-q"]);
        for mode in ["simple", "extended", "prepared"] {
            let out = pgbench(&["-M", mode, "-c", "4", "-j", "2", "-t", "50"]);
            assert!(
                out.contains("number of failed transactions: 0"),
                "{mode}: {out}"
            );
        }
    })
    .await
    .unwrap();
    s.proxy.insight().flushed().await;
    let q = s.proxy.insight().queries(SortBy::Calls, 100);
    let update = q
        .iter()
        .find(|r| {
            r.query
                .query
                .starts_with("UPDATE pgbench_accounts SET abalance")
        })
        .expect("pgbench's account update");
    // 3 modes x 4 clients x 50 transactions.
    assert_eq!(update.query.calls, 600);
    let _ = &s.pg;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_parameters_shows_sql_as_sent_and_bind_values() {
    let s = setup_with(|c| {
        c.insight.log_parameters = true;
        c.insight.slow_threshold = Duration::ZERO;
    })
    .await;
    let c = connect(s.addr).await;
    c.simple_query("SELECT 'literal-kept'").await.unwrap();
    c.query("SELECT $1::text", &[&"bound-value"]).await.unwrap();
    s.proxy.insight().flushed().await;
    let slow = s.proxy.insight().slow();
    let simple = slow.iter().find(|q| q.query == "SELECT $1").unwrap();
    assert_eq!(simple.raw_query.as_deref(), Some("SELECT 'literal-kept'"));
    let bound = slow.iter().find(|q| q.query == "SELECT $1::text").unwrap();
    // tokio-postgres sends parameters in binary format: shown as hex.
    let hex: String = b"bound-value".iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        bound.parameters.as_deref(),
        Some(&[format!("\\x{hex}")][..])
    );
}

/// A CA and a server certificate it signed for 127.0.0.1 (`(ca, cert, key)`).
fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let c = strata_testkit::test_certificates(dir).unwrap();
    (c.ca, c.cert, c.key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_terminated_when_a_certificate_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = certificates(dir.path());
    let tls = strata_pg::load_tls(&cert, &key).unwrap();
    let s = setup_with(|c| c.tls = Some(tls)).await;
    let psql = |sslmode: &str, sql: &str| {
        std::process::Command::new("psql")
            .args(["-X", "-A", "-t", "-c", sql])
            .arg(format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode={sslmode}",
                s.addr.port()
            ))
            .output()
            .expect("psql")
    };
    let out = psql("require", "\\conninfo");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("SSL connection"), "{said}");
    let out = psql("require", "SELECT 40 + 2");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    // Plain text is still accepted from clients that do not ask for TLS.
    let c = connect(s.addr).await;
    assert_eq!(
        c.query_one("SELECT 7::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        7
    );
    // And queries over TLS are measured like the rest.
    s.proxy.insight().flushed().await;
    let q = s.proxy.insight().queries(SortBy::Calls, 10);
    assert!(q.iter().any(|r| r.query.query == "SELECT $1 + $2"), "{q:?}");
}

/// A proxy in front of `pg`, serving until the returned sender is dropped.
async fn proxy_for(
    pg: &Postgres,
    f: impl FnOnce(&mut PgProxyConfig),
) -> (Arc<PgProxy>, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut cfg = PgProxyConfig::new(Upstream::parse(&pg.url("postgres")).unwrap());
    f(&mut cfg);
    let proxy = PgProxy::new(cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(proxy.clone().serve(listener, async {
        let _ = stopped.await;
    }));
    (proxy, addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_server_by_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = certificates(other.path());
    let pg = Postgres::start().expect("postgresql");
    let ssl_of = |addr| async move {
        let c = connect(addr).await;
        c.query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get::<_, bool>(0)
    };
    // Before the server has TLS: prefer falls back, require refuses.
    let (_, prefer, _p) = proxy_for(&pg, |c| {
        c.upstream_tls = UpstreamTls::new("prefer", None).unwrap()
    })
    .await;
    assert!(!ssl_of(prefer).await);
    let (_, require, _r) = proxy_for(&pg, |c| {
        c.upstream_tls = UpstreamTls::new("require", None).unwrap()
    })
    .await;
    let e = connect_as(require, "postgres", None)
        .await
        .expect_err("no TLS at the server");
    assert_eq!(sqlstate(&e), "08006");
    assert!(db_message(&e).contains("does not accept TLS"), "{e:?}");

    pg.enable_tls(&cert, &key).unwrap();
    assert!(ssl_of(prefer).await);
    assert!(ssl_of(require).await);
    let (_, verified, _v) = proxy_for(&pg, |c| {
        c.upstream_tls = UpstreamTls::new("verify-full", Some(&ca)).unwrap()
    })
    .await;
    assert!(ssl_of(verified).await);
    // A server whose certificate the configured roots do not sign is refused.
    let (_, wrong, _w) = proxy_for(&pg, |c| {
        c.upstream_tls = UpstreamTls::new("verify-full", Some(&other_ca)).unwrap()
    })
    .await;
    let e = connect_as(wrong, "postgres", None)
        .await
        .expect_err("unknown issuer");
    assert!(db_message(&e).contains("TLS handshake"), "{e:?}");
    assert!(UpstreamTls::new("verify-full", None).is_err());
    assert!(UpstreamTls::new("sometimes", None).is_err());
}
