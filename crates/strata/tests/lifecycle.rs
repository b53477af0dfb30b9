//! Configuration errors, `strata config`, logs, and graceful shutdown.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{client, run_cli, Opts, Strata};

#[test]
fn config_check_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("strata.toml");
    std::fs::write(
        &cfg,
        "profile = \"staging\"\n[namespaces.user]\nttl = \"1h\"\n",
    )
    .unwrap();
    let (st, out, err) = run_cli(
        &["config", "check", cfg.to_str().unwrap()],
        &[("STRATA__MEMORY__MAX_BYTES", "64MiB")],
    );
    assert!(st.success(), "{err}");
    assert!(err.contains("OK"), "{err}");
    // Defaults written out, the profile's choices, the environment's override.
    assert!(out.contains("listen = \"127.0.0.1:7070\""), "{out}");
    assert!(out.contains("format = \"json\""), "{out}");
    assert!(out.contains("max_bytes = \"64MiB\""), "{out}");
    let (st, out, _) = run_cli(&["config", "check", "--json", cfg.to_str().unwrap()], &[]);
    assert!(st.success());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["namespaces"]["user"]["ttl"], "1h");
}

#[test]
fn config_errors_point_at_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("strata.toml");
    std::fs::write(&cfg, "[namespaces.user]\nttl = \"soon\"\n").unwrap();
    let path = cfg.to_str().unwrap();
    let (st, _, err) = run_cli(&["config", "check", path], &[]);
    assert_eq!(st.code(), Some(2));
    assert!(
        err.contains(&format!(
            "{path}:2:7: namespaces.user.ttl: invalid duration"
        )),
        "{err}"
    );
    // `serve` refuses the same file and binds nothing.
    let port = strata_testkit::free_loopback_port();
    let (st, _, err) = run_cli(
        &[
            "serve",
            "--config",
            path,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        &[],
    );
    assert_eq!(st.code(), Some(2));
    assert!(err.contains("nothing was started"), "{err}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    // A bad environment override names the variable.
    let (st, _, err) = run_cli(
        &[
            "config",
            "check",
            path.replace("strata.toml", "none.toml").as_str(),
        ],
        &[],
    );
    assert_eq!(st.code(), Some(2), "{err}");
    std::fs::write(&cfg, "").unwrap();
    let (st, _, err) = run_cli(
        &["config", "check", path],
        &[("STRATA__SERVER__MAX_CONNECTIONS", "many")],
    );
    assert_eq!(st.code(), Some(2));
    assert!(err.contains("STRATA__SERVER__MAX_CONNECTIONS"), "{err}");
}

#[test]
fn the_printed_example_is_a_valid_configuration() {
    let (st, example, _) = run_cli(&["config", "example"], &[]);
    assert!(st.success());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("strata.toml");
    std::fs::write(&cfg, &example).unwrap();
    let (st, _, err) = run_cli(&["config", "check", cfg.to_str().unwrap()], &[]);
    assert!(st.success(), "{err}");
    // The commented-out proxy section is valid once uncommented.
    let http: String = example
        .lines()
        .skip_while(|l| !l.starts_with("# [http]"))
        .take_while(|l| !l.trim().is_empty())
        .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
        .collect();
    assert!(http.contains("[[http.routes]]"), "{http}");
    std::fs::write(&cfg, format!("{example}\n{http}")).unwrap();
    let (st, out, err) = run_cli(&["config", "check", cfg.to_str().unwrap()], &[]);
    assert!(st.success(), "{err}");
    assert!(out.contains("api/risks/{id}"), "{out}");
    // And so is the PostgreSQL proxy's.
    let pg: String = example
        .lines()
        .skip_while(|l| !l.starts_with("# [postgres]"))
        .take_while(|l| !l.trim().is_empty())
        .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
        .collect();
    assert!(pg.contains("upstream = \"postgres://"), "{pg}");
    std::fs::write(&cfg, format!("{example}\n{pg}")).unwrap();
    let (st, out, err) = run_cli(&["config", "check", cfg.to_str().unwrap()], &[]);
    assert!(st.success(), "{err}");
    assert!(out.contains("slow_query_threshold"), "{out}");
}

#[test]
fn the_configuration_reference_is_generated_and_current() {
    let (st, out, err) = run_cli(&["config", "reference"], &[]);
    assert!(st.success(), "{err}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let doc = std::fs::read_to_string(path).unwrap();
    assert!(
        doc == out,
        "docs/configuration.md is stale: run `cargo run -p strata -- config reference > docs/configuration.md`"
    );
    // It covers every section, down to keys of nested tables.
    for k in [
        "## [server]",
        "## [[http.routes]]",
        "## [namespaces.<name>]",
        "## [postgres]",
        "`upstream_tls`",
    ] {
        assert!(out.contains(k), "{k}");
    }
}

#[test]
fn every_command_has_help_with_an_example() {
    for args in [
        &["serve", "--help"][..],
        &["config", "check", "--help"],
        &["config", "example", "--help"],
        &["config", "reference", "--help"],
        &["db", "stats", "--help"],
        &["db", "slow", "--help"],
        &["db", "advise", "--help"],
    ] {
        let (st, out, _) = run_cli(args, &[]);
        assert!(st.success());
        assert!(out.contains("Example"), "{args:?}: {out}");
    }
}

#[tokio::test]
async fn json_logs_carry_request_ids_and_no_secrets() {
    let s = Strata::start_with(Opts {
        config:
            "[[auth.tokens]]\ntoken = \"log-secret-0123456789\"\nrights = [\"read\", \"write\"]\n",
        args: vec![
            "--log-format".into(),
            "json".into(),
            "--log-level".into(),
            "debug".into(),
        ],
        env: vec![("RUST_LOG", "debug".into())],
    });
    let c = client();
    let r = c
        .put(s.url("/v1/cache/n/k"))
        .bearer_auth("log-secret-0123456789")
        .header("x-request-id", "req-abc-123")
        .body("secret-value")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["x-request-id"], "req-abc-123");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = s.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["span"]["id"] == "req-abc-123"),
        "no line with the request id:\n{log}"
    );
    assert!(!log.contains("log-secret"), "token in log");
    assert!(!log.contains("secret-value"), "value in log");
}

/// SIGTERM while a request is half sent: the request completes, new connections are
/// refused, the process exits 0.
#[test]
fn graceful_shutdown_drains_requests_in_flight() {
    let mut s = Strata::start("");
    let mut sock = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.write_all(
        b"PUT /v1/cache/n/k HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.terminate();
    std::thread::sleep(Duration::from_millis(300));
    // No new connections once shutdown began.
    assert!(TcpStream::connect(("127.0.0.1", s.port)).is_err());
    // The request in flight finishes.
    sock.write_all(b"world").unwrap();
    let mut resp = String::new();
    sock.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 204"), "{resp}");
    let status = s.wait(Duration::from_secs(15));
    assert!(status.success(), "exit {status}: {}", s.log());
    assert!(s.log().contains("stopped"), "{}", s.log());
}

#[test]
fn serve_ignores_sigpipe_so_a_vanished_client_cannot_kill_it() {
    let s = Strata::start("");
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    // Bit n-1 is signal n; SIGPIPE is 13.
    assert_ne!(ignored & (1 << 12), 0, "SigIgn = {ignored:x}");
}
