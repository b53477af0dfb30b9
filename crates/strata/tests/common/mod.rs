//! A real `strata serve` process for end-to-end tests.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The binary cargo built for these tests.
pub fn strata_bin() -> &'static str {
    env!("CARGO_BIN_EXE_strata")
}

/// A running `strata serve`, killed when dropped.
pub struct Strata {
    child: Option<Child>,
    pub port: u16,
    pub dir: TempDir,
    log: PathBuf,
}

/// How to start one.
#[derive(Default)]
pub struct Opts<'a> {
    pub config: &'a str,
    pub env: Vec<(&'a str, String)>,
    pub args: Vec<String>,
}

/// Whether `GET /health` on the port answers 200.
fn health_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 12];
    c.write_all(b"GET /health HTTP/1.0\r\nhost: localhost\r\n\r\n")
        .and_then(|_| c.read_exact(&mut head))
        .is_ok()
        && head.starts_with(b"HTTP/1.")
        && head.ends_with(b"200")
}

impl Strata {
    /// Starts with a config file body, waits until `/health` answers.
    pub fn start(config: &str) -> Strata {
        Self::start_with(Opts {
            config,
            ..Opts::default()
        })
    }

    pub fn start_with(o: Opts<'_>) -> Strata {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("strata.toml");
        std::fs::write(&cfg, o.config).unwrap();
        let log = dir.path().join("strata.log");
        let port = strata_testkit::free_loopback_port();
        let mut cmd = Command::new(strata_bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(&cfg)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(&o.args)
            .env_remove("RUST_LOG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in &o.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn strata");
        let mut s = Strata {
            child: Some(child),
            port,
            dir,
            log,
        };
        s.wait_healthy();
        s
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("strata exited with {st}: {}", self.log());
            }
            // An HTTP answer, not just a connect: a connect can reach another
            // process that took the port, or (ephemeral range) connect to itself.
            if health_answers(self.port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "strata did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.as_ref().unwrap().id();
        let ok = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Waits for exit (at most `limit`).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "strata did not exit: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `strata` with arguments to completion: (status, stdout, stderr).
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(strata_bin());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A blocking HTTP client with a short timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The error code of a JSON error body.
pub async fn error_code(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await.expect("JSON error body");
    (
        status,
        body["error"]["code"]
            .as_str()
            .expect("error.code")
            .to_owned(),
    )
}

/// GETs a URL and returns its JSON body.
pub async fn get_json(c: &reqwest::Client, url: &str) -> serde_json::Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

/// GETs a URL and returns its body as text.
pub async fn get_text(c: &reqwest::Client, url: &str) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

/// POSTs JSON and returns the JSON answer.
pub async fn post_json(
    c: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> serde_json::Value {
    c.post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A tool from a Debian package: None (the caller skips) only when services are not
/// required; under `STRATA_REQUIRE_SERVICES` (scripts/test.sh) a missing one fails.
pub fn required_binary(name: &str, package: &str) -> Option<std::path::PathBuf> {
    match strata_testkit::find_binary(name) {
        Ok(p) => Some(p),
        Err(_) => {
            assert!(
                std::env::var_os("STRATA_REQUIRE_SERVICES").is_none(),
                "{name} is required (apt-get install {package})"
            );
            None
        }
    }
}

/// `promtool check metrics` finds nothing to say about `text`. Requires promtool
/// when `STRATA_REQUIRE_SERVICES` is set (scripts/test.sh installs it).
pub fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let Some(promtool) = required_binary("promtool", "prometheus") else {
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}
