//! Test support: real services on free loopback ports, in temporary directories,
//! that a test can kill and restart to exercise faults.
//!
//! A missing service binary is an error, never a silent skip: a test that cannot
//! start its service fails and says how to install it (`scripts/test.sh` does).
//!
//! ```no_run
//! let mut redis = strata_testkit::RedisServer::start().unwrap();
//! let url = redis.url();           // redis://127.0.0.1:<port>
//! redis.kill();                    // SIGKILL, as a crash would
//! redis.restart().unwrap();        // same port, empty data
//! # let _ = url;
//! ```

#![warn(missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

mod postgres;
pub use postgres::{Postgres, MD5_USER, SCRAM_USER};
mod tls;
pub use tls::{test_certificates, TestCertificates};

/// Resident set size of a process, in bytes, from `/proc/{pid}/status` (Linux).
/// For tests that check what a process really holds in memory.
///
/// ```
/// let rss = strata_testkit::resident_bytes(std::process::id());
/// assert!(rss > 0);
/// ```
pub fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// Why a service could not be started.
#[derive(Debug)]
pub struct TestkitError(pub String);

impl std::fmt::Display for TestkitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestkitError {}

type Result<T> = std::result::Result<T, TestkitError>;

fn err(msg: impl Into<String>) -> TestkitError {
    TestkitError(msg.into())
}

/// Finds an executable on PATH or in the usual Debian locations.
pub fn find_binary(name: &str) -> Result<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([
        "/usr/bin".into(),
        "/usr/local/bin".into(),
        "/usr/sbin".into(),
    ]);
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(err(format!(
        "`{name}` not found on PATH. Install it (Debian: apt-get install redis-server redis-tools) \
         or run scripts/test.sh, which installs what the tests need."
    )))
}

/// A loopback port that was free a moment ago, for a server a test starts.
pub fn free_loopback_port() -> u16 {
    free_port(None)
}

/// A loopback port that was free a moment ago (and so was `port + offset` when asked).
fn free_port(also_free_offset: Option<u16>) -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local addr").port();
        match also_free_offset {
            None => return port,
            Some(off) => {
                if port.checked_add(off).is_some()
                    && TcpListener::bind(("127.0.0.1", port + off)).is_ok()
                {
                    return port;
                }
            }
        }
    }
}

/// Sends one inline command over RESP and returns the raw reply.
pub fn redis_command(port: u16, command: &str) -> std::io::Result<String> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_millis(1000)))?;
    s.write_all(format!("{command}\r\n").as_bytes())?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// A `redis-server` process.
pub struct RedisServer {
    port: u16,
    dir: TempDir,
    extra: Vec<String>,
    /// Config file contents written before each start and passed first (Sentinel
    /// rewrites its config file, so it needs one).
    config: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with no persistence on a free port.
    pub fn start() -> Result<Self> {
        Self::start_with(&[], None)
    }

    fn start_with(extra: &[&str], port_offset: Option<u16>) -> Result<Self> {
        Self::start_full(extra, port_offset, None)
    }

    /// Starts a replica of `master`.
    pub fn start_replica_of(master: &RedisServer) -> Result<Self> {
        let m = master.port().to_string();
        Self::start_with(&["--replicaof", "127.0.0.1", &m], None)
    }

    fn start_full(
        extra: &[&str],
        port_offset: Option<u16>,
        config: Option<&dyn Fn(u16) -> String>,
    ) -> Result<Self> {
        find_binary("redis-server")?;
        let mut last = String::new();
        // Another test may grab the port between our probe and the bind: retry.
        for _ in 0..5 {
            let port = free_port(port_offset);
            let mut s = RedisServer {
                port,
                dir: tempfile::tempdir().map_err(|e| err(format!("tempdir: {e}")))?,
                extra: extra.iter().map(|s| s.to_string()).collect(),
                config: config.map(|c| c(port)),
                child: None,
            };
            match s.spawn() {
                Ok(()) => return Ok(s),
                Err(e) => last = e.0,
            }
        }
        Err(err(format!("redis-server did not start: {last}")))
    }

    fn spawn(&mut self) -> Result<()> {
        let bin = find_binary("redis-server")?;
        let log = self.dir.path().join("redis.log");
        let mut cmd = Command::new(bin);
        if let Some(conf) = &self.config {
            let path = self.dir.path().join("redis.conf");
            std::fs::write(&path, conf).map_err(|e| err(format!("write config: {e}")))?;
            cmd.arg(path);
        }
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| err(format!("spawn redis-server: {e}")))?;
        let port = self.port;
        self.child = Some(wait_ready(
            child,
            "redis-server",
            port,
            &log,
            Duration::from_secs(10),
            || redis_command(port, "PING").is_ok_and(|r| r.starts_with("+PONG")),
        )?);
        Ok(())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the process with SIGKILL and waits for it, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        // The old socket may linger for a moment.
        retry_for(Duration::from_secs(10), Duration::from_millis(100), || {
            self.spawn()
        })
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Runs an inline command against it (for test setup and assertions).
    pub fn command(&self, command: &str) -> Result<String> {
        redis_command(self.port, command).map_err(|e| err(e.to_string()))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until a freshly spawned server answers (`ready`), or fails with the tail of
/// its log when it exits or stays silent past `limit` (then it is killed).
fn wait_ready(
    mut child: Child,
    name: &str,
    port: u16,
    log: &Path,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<Child> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(err(format!("{name} exited with {status}: {}", tail(log))));
        }
        if ready() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(format!(
                "{name} on {port} not answering: {}",
                tail(log)
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Calls `f` until it succeeds, pausing between tries, for at most `limit`; the
/// last error otherwise.
fn retry_for(limit: Duration, pause: Duration, mut f: impl FnMut() -> Result<()>) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(()) => return Ok(()),
            Err(_) if Instant::now() < deadline => std::thread::sleep(pause),
            Err(e) => return Err(e),
        }
    }
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// A master, one replica, and one Sentinel monitoring them as `mymaster`, with short
/// timeouts (down after 1 s) so failover tests finish in seconds.
pub struct RedisSentinel {
    /// The initial master.
    pub master: RedisServer,
    /// Its replica, promoted by the sentinel when the master dies.
    pub replica: RedisServer,
    /// The sentinel.
    pub sentinel: RedisServer,
}

impl RedisSentinel {
    /// Starts master, replica and sentinel, and waits until the sentinel knows both.
    pub fn start() -> Result<Self> {
        let master = RedisServer::start()?;
        let replica = RedisServer::start_replica_of(&master)?;
        let mport = master.port();
        let conf = move |port: u16| {
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {mport} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 3000\n\
                 sentinel parallel-syncs mymaster 1\n"
            )
        };
        let sentinel = RedisServer::start_full(&["--sentinel"], None, Some(&conf))?;
        let s = RedisSentinel {
            master,
            replica,
            sentinel,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = s
                .sentinel
                .command("SENTINEL replicas mymaster")
                .unwrap_or_default();
            if r.contains(&s.replica.port().to_string())
                && s.replica
                    .command("INFO replication")
                    .is_ok_and(|i| i.contains("master_link_status:up"))
            {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(err(format!("sentinel never saw the replica: {r}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis+sentinel://127.0.0.1:<port>/mymaster` (the URL format strata reads).
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/mymaster",
            self.sentinel.port()
        )
    }

    /// The port of the master the sentinel currently names.
    pub fn current_master_port(&self) -> Option<u16> {
        let r = self
            .sentinel
            .command("SENTINEL get-master-addr-by-name mymaster")
            .ok()?;
        // *2 $9 127.0.0.1 $5 6379
        r.lines()
            .filter(|l| !l.starts_with(['*', '$']))
            .nth(1)?
            .trim()
            .parse()
            .ok()
    }
}

/// A Redis Cluster of masters without replicas, made with `redis-cli --cluster create`.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` nodes (at least 3) and joins them into a cluster.
    pub fn start(masters: usize) -> Result<Self> {
        if masters < 3 {
            return Err(err("a Redis Cluster needs at least 3 masters"));
        }
        let cli = find_binary("redis-cli")?;
        let mut nodes = Vec::new();
        for _ in 0..masters {
            // The cluster bus listens on port + 10000.
            nodes.push(RedisServer::start_with(
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ],
                Some(10000),
            )?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new(cli)
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| err(format!("redis-cli --cluster create: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_ok(Duration::from_secs(20))?;
        Ok(cluster)
    }

    fn wait_ok(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let ok = self.nodes.iter().all(|n| {
                n.command("CLUSTER INFO")
                    .is_ok_and(|r| r.contains("cluster_state:ok"))
            });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(err("cluster did not reach cluster_state:ok"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…` (the URL format strata reads).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The nodes, for killing one or running commands on it.
    pub fn nodes(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_starts_kills_and_restarts() {
        let mut r = RedisServer::start().expect("redis-server must be installed");
        assert!(r.command("SET a 1").unwrap().starts_with("+OK"));
        r.kill();
        assert!(r.command("PING").is_err());
        r.restart().unwrap();
        assert!(r.command("PING").unwrap().starts_with("+PONG"));
        assert!(
            r.command("GET a").unwrap().starts_with("$-1"),
            "restart is empty"
        );
    }

    #[test]
    fn sentinel_knows_master_and_replica() {
        let s = RedisSentinel::start().expect("sentinel");
        assert_eq!(s.current_master_port(), Some(s.master.port()));
        assert!(s.url().ends_with("/mymaster"));
    }

    #[test]
    fn postgres_starts_with_password_roles_kills_and_restarts() {
        let mut pg = Postgres::start().expect("postgresql must be installed");
        pg.psql("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)")
            .unwrap();
        assert_eq!(pg.psql("SELECT v FROM kept").unwrap().trim(), "7");
        let methods = pg
            .psql("SELECT rolname, left(rolpassword, 3) FROM pg_authid WHERE rolname LIKE '%_user' ORDER BY 1")
            .unwrap();
        assert_eq!(methods.trim(), "md5_user|md5\nscram_user|SCR");
        pg.kill();
        assert!(pg.psql("SELECT 1").is_err());
        pg.restart().unwrap();
        assert_eq!(
            pg.psql("SELECT v FROM kept").unwrap().trim(),
            "7",
            "data kept"
        );
    }

    #[test]
    fn cluster_forms() {
        let mut c = RedisCluster::start(3).expect("cluster");
        assert!(c.url().starts_with("redis+cluster://127.0.0.1:"));
        let info = c.nodes()[0].command("CLUSTER INFO").unwrap();
        assert!(info.contains("cluster_known_nodes:3"), "{info}");
    }
}
