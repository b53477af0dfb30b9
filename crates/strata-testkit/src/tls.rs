//! Certificates for TLS tests, made with the `openssl` command (which
//! `scripts/deps.sh` installs).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Paths of a test CA and a server certificate it signed.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    /// The CA certificate (PEM): what a client trusts.
    pub ca: PathBuf,
    /// The server certificate (PEM), for `IP:127.0.0.1`.
    pub cert: PathBuf,
    /// The server certificate's private key (PEM).
    pub key: PathBuf,
}

/// Makes a CA and a server certificate for 127.0.0.1 in `dir`, valid for a day.
///
/// ```no_run
/// let dir = tempfile::tempdir().unwrap();
/// let c = strata_testkit::test_certificates(dir.path()).unwrap();
/// assert!(c.ca.exists() && c.cert.exists() && c.key.exists());
/// ```
pub fn test_certificates(dir: &Path) -> Result<TestCertificates, String> {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").map_err(|e| e.to_string())?;
    let steps = [
        format!(
            "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout {} -out {}",
            p("ca.key"),
            p("ca.pem")
        ),
        format!(
            "req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout {} -out {}",
            p("key.pem"),
            p("req.csr")
        ),
        format!(
            "x509 -req -days 1 -CAcreateserial -in {} -CA {} -CAkey {} -out {} -extfile {}",
            p("req.csr"),
            p("ca.pem"),
            p("ca.key"),
            p("cert.pem"),
            p("ext.cnf")
        ),
    ];
    for step in steps {
        let out = Command::new("openssl")
            .args(step.split(' '))
            .output()
            .map_err(|e| format!("openssl (scripts/deps.sh installs it): {e}"))?;
        if !out.status.success() {
            return Err(format!("{step}: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    Ok(TestCertificates {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    })
}
