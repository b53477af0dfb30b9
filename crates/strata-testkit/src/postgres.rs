//! A real PostgreSQL server: `initdb` in a temp dir, `postgres` on a free loopback
//! port, with roles for each password method so proxies can be tested against trust,
//! md5 and SCRAM-SHA-256 authentication.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{err, free_loopback_port, tail, Result};

/// Roles the server is created with: `(name, password, pg_hba method)`. `postgres` is
/// the trust superuser.
pub const MD5_USER: (&str, &str) = ("md5_user", "md5-secret");
/// A role that must authenticate with SCRAM-SHA-256.
pub const SCRAM_USER: (&str, &str) = ("scram_user", "scram-secret");

/// A `postgres` process over a fresh data directory.
///
/// ```no_run
/// let mut pg = strata_testkit::Postgres::start().unwrap();
/// let url = pg.url("postgres");   // postgres://postgres@127.0.0.1:<port>/postgres
/// pg.psql("CREATE TABLE t (id int)").unwrap();
/// pg.kill();                      // SIGKILL to the whole server, as a crash would
/// pg.restart().unwrap();          // same port, same data (after crash recovery)
/// # let _ = url;
/// ```
pub struct Postgres {
    port: u16,
    bin: PathBuf,
    /// Holds the data directory (`data/`) and the socket directory.
    dir: TempDir,
    /// Set when we are root: PostgreSQL refuses to run as root, so it runs as the
    /// `postgres` system user that Debian's package creates.
    run_as: Option<(u32, u32)>,
    child: Option<Child>,
}

impl Postgres {
    /// initdb, start, and create the test roles and the `pg_stat_statements` and
    /// `hypopg` extensions where their packages are installed.
    pub fn start() -> Result<Self> {
        let bin = pg_bin_dir()?;
        let dir = tempfile::tempdir().map_err(|e| err(format!("tempdir: {e}")))?;
        let run_as = if is_root() {
            Some(system_user("postgres").ok_or_else(|| {
                err("running as root and there is no `postgres` user: apt-get install postgresql")
            })?)
        } else {
            None
        };
        if let Some((uid, gid)) = run_as {
            chown(dir.path(), uid, gid)?;
        }
        let mut pg = Postgres {
            port: 0,
            bin,
            dir,
            run_as,
            child: None,
        };
        pg.initdb()?;
        let mut last = String::new();
        // Another test may take the port between our probe and the bind: retry.
        for _ in 0..5 {
            pg.port = free_loopback_port();
            match pg.spawn() {
                Ok(()) => {
                    pg.setup()?;
                    return Ok(pg);
                }
                Err(e) => last = e.0,
            }
        }
        Err(err(format!("postgres did not start: {last}")))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            c.uid(uid).gid(gid);
        }
        c.stdin(Stdio::null());
        c
    }

    fn initdb(&self) -> Result<()> {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C"])
            .output()
            .map_err(|e| err(format!("spawn initdb: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        // Local socket and the default superuser: trust. The two password roles must
        // use their methods over TCP (md5 stored as md5, so no SCRAM fallback).
        let hba = format!(
            "local all all trust\n\
             host all {md5} 127.0.0.1/32 md5\n\
             host all {scram} 127.0.0.1/32 scram-sha-256\n\
             host all all 127.0.0.1/32 trust\n",
            md5 = MD5_USER.0,
            scram = SCRAM_USER.0
        );
        write_as(&self.data().join("pg_hba.conf"), &hba, self.run_as)?;
        let preload = if self.has_extension("pg_stat_statements") {
            "shared_preload_libraries = 'pg_stat_statements'\n"
        } else {
            ""
        };
        let conf = format!(
            "listen_addresses = '127.0.0.1'\n\
             fsync = off\nfull_page_writes = off\n\
             max_connections = 200\nshared_buffers = 32MB\n\
             logging_collector = off\n{preload}"
        );
        let path = self.data().join("postgresql.conf");
        let mut all = std::fs::read_to_string(&path).map_err(|e| err(format!("read conf: {e}")))?;
        all.push_str(&conf);
        write_as(&path, &all, self.run_as)
    }

    fn has_extension(&self, name: &str) -> bool {
        // bin = /usr/lib/postgresql/<v>/bin; extensions in /usr/share/postgresql/<v>.
        let version = self
            .bin
            .parent()
            .and_then(|p| p.file_name())
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        Path::new("/usr/share/postgresql")
            .join(version)
            .join("extension")
            .join(format!("{name}.control"))
            .is_file()
    }

    fn spawn(&mut self) -> Result<()> {
        let log = self.dir.path().join("postgres.log");
        let logf = std::fs::File::create(&log).map_err(|e| err(format!("log: {e}")))?;
        if let Some((uid, gid)) = self.run_as {
            chown(&log, uid, gid)?;
        }
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(logf)
            // Its own process group, so kill() takes the backends with it.
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| err(format!("spawn postgres: {e}")))?;
        let ready = || self.psql_as("postgres", "postgres", "SELECT 1").is_ok();
        let child = crate::wait_ready(
            child,
            "postgres",
            self.port,
            &log,
            Duration::from_secs(30),
            ready,
        )?;
        self.child = Some(child);
        Ok(())
    }

    fn setup(&self) -> Result<()> {
        let mut sql = format!(
            "SET password_encryption = 'md5'; CREATE ROLE {} LOGIN SUPERUSER PASSWORD '{}';\n\
             SET password_encryption = 'scram-sha-256'; CREATE ROLE {} LOGIN SUPERUSER PASSWORD '{}';\n",
            MD5_USER.0, MD5_USER.1, SCRAM_USER.0, SCRAM_USER.1
        );
        for ext in ["pg_stat_statements", "hypopg"] {
            if self.has_extension(ext) {
                sql.push_str(&format!("CREATE EXTENSION IF NOT EXISTS {ext};\n"));
            }
        }
        self.psql(&sql).map(drop)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>` (trust superuser).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Whether an extension's package is installed (`hypopg`, `pg_stat_statements`).
    pub fn extension_available(&self, name: &str) -> bool {
        self.has_extension(name)
    }

    /// Runs SQL with `psql` as the superuser on database `postgres`; returns its
    /// unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_as("postgres", "postgres", sql)
    }

    /// Runs SQL with `psql` as `user` on `database` over TCP.
    pub fn psql_as(&self, user: &str, database: &str, sql: &str) -> Result<String> {
        let psql = crate::find_binary("psql").or_else(|_| Ok(self.bin.join("psql")))?;
        let out = Command::new(psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", user, "-d", database, "-c", sql])
            .env("PGCONNECT_TIMEOUT", "2")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| err(format!("spawn psql: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(err(format!(
                "psql: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Turns TLS on with a PEM certificate and key (copied into the data directory)
    /// and reloads the configuration; plain connections stay allowed.
    pub fn enable_tls(&self, cert: &Path, key: &Path) -> Result<()> {
        let (c, k) = (
            self.data().join("server.crt"),
            self.data().join("server.key"),
        );
        for (from, to) in [(cert, &c), (key, &k)] {
            let body = std::fs::read_to_string(from)
                .map_err(|e| err(format!("read {}: {e}", from.display())))?;
            write_as(to, &body, self.run_as)?;
        }
        // The server refuses a key others can read.
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| err(format!("chmod {}: {e}", k.display())))?;
        self.psql("ALTER SYSTEM SET ssl = on")?;
        self.psql("SELECT pg_reload_conf()")?;
        // The reload is asynchronous: wait until it took.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.psql("SHOW ssl")?.trim() != "on" {
            if Instant::now() > deadline {
                return Err(err(format!(
                    "ssl did not turn on: {}",
                    tail(&self.dir.path().join("postgres.log"))
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Kills the server and its backends with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .stderr(Stdio::null())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port over the same data (crash recovery first).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        // The old socket or shared memory may linger for a moment.
        crate::retry_for(Duration::from_secs(30), Duration::from_millis(200), || {
            self.spawn()
        })
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `/usr/lib/postgresql/<highest version>/bin`, where Debian keeps initdb and postgres.
fn pg_bin_dir() -> Result<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in rd.flatten() {
            let v: Option<u32> = e.file_name().to_string_lossy().parse().ok();
            let bin = e.path().join("bin");
            if let Some(v) = v.filter(|_| bin.join("initdb").is_file()) {
                if best.as_ref().is_none_or(|(b, _)| v > *b) {
                    best = Some((v, bin));
                }
            }
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| {
        err(
            "PostgreSQL server binaries not found under /usr/lib/postgresql. Install them \
             (Debian: apt-get install postgresql) or run scripts/test.sh.",
        )
    })
}

fn is_root() -> bool {
    // /proc/self/status: "Uid:\treal\teffective\t…"
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// uid and gid of a user from /etc/passwd.
fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| err(format!("chown {}: {e}", path.display())))?;
    if path.is_dir() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| err(format!("chmod {}: {e}", path.display())))?;
    }
    Ok(())
}

fn write_as(path: &Path, contents: &str, run_as: Option<(u32, u32)>) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| err(format!("write {}: {e}", path.display())))?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| err(format!("chown {}: {e}", path.display())))?;
    }
    Ok(())
}
