//! Tokens, rights and the refusal to run open off loopback.

mod common;

use common::{client, error_code, run_cli, Opts, Strata};
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "reader-token-0123456789";
const WRITER: &str = "writer-token-0123456789";

const CONFIG: &str = r#"
[[auth.tokens]]
name = "admin"
token = "admin-token-0123456789"
rights = ["read", "write", "admin"]

[[auth.tokens]]
name = "reader"
token_env = "TEST_READER_TOKEN"
namespaces = ["user"]
rights = ["read"]

[[auth.tokens]]
name = "writer"
token = "writer-token-0123456789"
namespaces = ["user*"]
rights = ["read", "write"]
"#;

fn start() -> Strata {
    Strata::start_with(Opts {
        config: CONFIG,
        env: vec![("TEST_READER_TOKEN", READER.to_owned())],
        ..Opts::default()
    })
}

#[tokio::test]
async fn the_auth_matrix() {
    let s = start();
    let c = client();
    let as_ = |req: reqwest::RequestBuilder, token: Option<&str>| match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    // (method, path, body, token, expected status)
    type Case<'a> = (&'a str, &'a str, Option<Value>, Option<&'a str>, u16);
    let matrix: Vec<Case> = vec![
        // Probes and scrapes stay open.
        ("GET", "/health", None, None, 200),
        ("GET", "/ready", None, None, 200),
        ("GET", "/metrics", None, None, 200),
        // No or unknown token.
        ("GET", "/v1/cache/user/k", None, None, 401),
        (
            "GET",
            "/v1/cache/user/k",
            None,
            Some("not-a-token-000000"),
            401,
        ),
        ("GET", "/v1/stats", None, None, 401),
        // Admin does everything.
        ("PUT", "/v1/cache/user/k", None, Some(ADMIN), 204),
        ("GET", "/v1/cache/user/k", None, Some(ADMIN), 200),
        ("DELETE", "/v1/cache/price", None, Some(ADMIN), 200),
        ("GET", "/v1/stats", None, Some(ADMIN), 200),
        // Reader: read on `user` only.
        ("GET", "/v1/cache/user/k", None, Some(READER), 200),
        (
            "POST",
            "/v1/cache/user/_mget",
            Some(json!({"keys": ["k"]})),
            Some(READER),
            200,
        ),
        ("PUT", "/v1/cache/user/k", None, Some(READER), 403),
        ("GET", "/v1/cache/price/k", None, Some(READER), 403),
        ("GET", "/v1/cache/user_eu/k", None, Some(READER), 403),
        ("DELETE", "/v1/cache/user", None, Some(READER), 403),
        (
            "POST",
            "/v1/invalidate",
            Some(json!({"namespace": "user", "keys": ["k"]})),
            Some(READER),
            403,
        ),
        // Writer: read and write on user*, no admin.
        ("PUT", "/v1/cache/user_eu/k", None, Some(WRITER), 204),
        ("DELETE", "/v1/cache/user_eu/k", None, Some(WRITER), 200),
        (
            "POST",
            "/v1/cache/user/_mset",
            Some(json!({"entries": [{"key": "m", "value": 1}]})),
            Some(WRITER),
            200,
        ),
        (
            "POST",
            "/v1/invalidate",
            Some(json!({"namespace": "user", "keys": ["m"]})),
            Some(WRITER),
            200,
        ),
        (
            "POST",
            "/v1/invalidate",
            Some(json!({"namespace": "price", "keys": ["m"]})),
            Some(WRITER),
            403,
        ),
        ("PUT", "/v1/cache/price/k", None, Some(WRITER), 403),
        ("DELETE", "/v1/cache/user", None, Some(WRITER), 403),
    ];
    for (i, (method, path, body, token, want)) in matrix.into_iter().enumerate() {
        let mut req = c.request(method.parse().unwrap(), s.url(path));
        req = match (&body, method) {
            (Some(b), _) => req.json(b),
            (None, "PUT") => req.body("v"),
            _ => req,
        };
        let r = as_(req, token).send().await.unwrap();
        let got = r.status().as_u16();
        if got >= 400 {
            let (status, code) = error_code(r).await;
            let want_code = if want == 401 {
                "unauthorized"
            } else {
                "forbidden"
            };
            assert_eq!(
                (status, code.as_str()),
                (want, want_code),
                "case {i}: {method} {path}"
            );
        } else {
            assert_eq!(got, want, "case {i}: {method} {path}");
        }
    }
    // Stats show only what the caller administers.
    let st: Value = c
        .get(s.url("/v1/stats"))
        .bearer_auth(WRITER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["namespaces"], json!({}));
    // No secret in the logs.
    let log = s.log();
    for secret in [ADMIN, READER, WRITER] {
        assert!(!log.contains(secret), "a token leaked into the log");
    }
}

#[test]
fn non_loopback_without_tokens_refuses_to_start() {
    let (st, _, err) = run_cli(
        &["serve", "--listen", "0.0.0.0:0"],
        &[("STRATA_CONFIG", "/nonexistent/none")],
    );
    // The explicit config path does not exist: that is reported first.
    assert_eq!(st.code(), Some(2), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("strata.toml");
    std::fs::write(&cfg, "").unwrap();
    let (st, _, err) = run_cli(
        &[
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ],
        &[],
    );
    assert_eq!(st.code(), Some(2));
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("nothing was started"), "{err}");
}

#[test]
fn production_requires_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("strata.toml");
    std::fs::write(&cfg, "profile = \"production\"\n").unwrap();
    let (st, _, err) = run_cli(&["serve", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(st.code(), Some(2));
    assert!(err.contains("production requires tokens"), "{err}");
}

#[tokio::test]
async fn production_asks_every_cache_request_for_a_token() {
    let s = Strata::start_with(Opts {
        config: "profile = \"production\"\n[[auth.tokens]]\ntoken = \"prod-token-0123456789\"\nrights = [\"read\", \"write\"]\n",
        ..Opts::default()
    });
    let c = client();
    let r = c
        .put(s.url("/v1/cache/a/b"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = c
        .put(s.url("/v1/cache/a/b"))
        .bearer_auth("prod-token-0123456789")
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// A caller without a token is answered before its body is read: the server does
/// not buffer megabytes for someone it will refuse.
#[test]
fn unauthenticated_bodies_are_not_read() {
    use std::io::{Read, Write};
    let s = start();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    // Announces 5 MB and sends none of it.
    sock.write_all(b"PUT /v1/cache/user/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.read(&mut buf).expect("an answer without the body");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
}
