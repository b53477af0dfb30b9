//! An `https://` origin: reached over TLS with its certificate checked, against a
//! configured CA file or Mozilla's roots.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{get, Proxy};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use strata_cache::Cache;
use strata_http::{HttpCache, HttpConfig};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// What a TLS origin counts.
#[derive(Default)]
struct Counts {
    /// TLS sessions established.
    sessions: AtomicU64,
    /// Requests answered.
    requests: AtomicU64,
}

/// An origin serving HTTP/1.1 over TLS with `certs` on a loopback port. Returns
/// its `https://` URL.
async fn tls_origin(certs: &strata_testkit::TestCertificates) -> (String, Arc<Counts>) {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&certs.key).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(Counts::default());
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let count = count.clone();
            tokio::spawn(async move {
                // A handshake the client refuses ends here, before any request.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                count.sessions.fetch_add(1, Ordering::SeqCst);
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let n = count.requests.fetch_add(1, Ordering::SeqCst) + 1;
                    let body = format!("secure {} n={n}", req.uri().path());
                    async move {
                        http::Response::builder()
                            .header("cache-control", "max-age=60")
                            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (format!("https://127.0.0.1:{port}"), served)
}

#[tokio::test]
async fn an_https_origin_is_proxied_and_cached_with_its_certificate_checked() {
    let dir = tempfile::tempdir().unwrap();
    let certs = strata_testkit::test_certificates(dir.path()).unwrap();
    let (url, served) = tls_origin(&certs).await;
    let cache = Cache::builder().build().await.unwrap();
    let extra = format!("upstream_ca = {:?}", certs.ca.to_str().unwrap());
    let proxy = Proxy::start_for(&url, &extra, cache).await;
    let (x, status, _, body) = get(&proxy.url("/a"), &[]).await;
    assert_eq!(
        (x.as_str(), status, &body[..]),
        ("MISS", 200, &b"secure /a n=1"[..])
    );
    let (x, _, _, body) = get(&proxy.url("/a"), &[]).await;
    assert_eq!((x.as_str(), &body[..]), ("HIT", &b"secure /a n=1"[..]));
    // Requests that go to the origin one after another reuse the pooled TLS
    // session rather than shaking hands again.
    for _ in 0..5 {
        let (_, status, _, _) = get(&proxy.url("/b"), &[("cache-control", "no-cache")]).await;
        assert_eq!(status, 200);
    }
    assert_eq!(served.requests.load(Ordering::SeqCst), 6);
    assert_eq!(served.sessions.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_origin_certificate_nobody_trusts_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = strata_testkit::test_certificates(dir.path()).unwrap();
    let (url, served) = tls_origin(&certs).await;
    // Mozilla's roots (the default) do not include the test CA, nor does another
    // test CA.
    let other = tempfile::tempdir().unwrap();
    let other_ca = strata_testkit::test_certificates(other.path()).unwrap().ca;
    for extra in [
        String::new(),
        format!("upstream_ca = {:?}", other_ca.to_str().unwrap()),
    ] {
        let cache = Cache::builder().build().await.unwrap();
        let proxy = Proxy::start_for(&url, &extra, cache).await;
        let (_, status, _, body) = get(&proxy.url("/a"), &[]).await;
        assert_eq!(status, 502, "{extra}");
        // The client hears only that; the certificate error goes to the log.
        assert_eq!(&body[..], b"the origin is unreachable\n", "{extra}");
    }
    assert_eq!(served.sessions.load(Ordering::SeqCst), 0);
    assert_eq!(served.requests.load(Ordering::SeqCst), 0);
}

#[test]
fn upstream_ca_is_checked_with_the_configuration() {
    let check = |toml: &str| {
        let cfg: HttpConfig = toml::from_str(toml).unwrap();
        cfg.check()
    };
    let errs = check("upstream = \"http://127.0.0.1:1\"\nupstream_ca = \"/nonexistent.pem\"");
    assert!(
        errs.iter()
            .any(|(f, m)| f == "upstream_ca" && m.contains("https://")),
        "{errs:?}"
    );
    let errs = check("upstream = \"https://127.0.0.1:1\"\nupstream_ca = \"/nonexistent.pem\"");
    assert!(
        errs.iter()
            .any(|(f, m)| f == "upstream_ca" && m.contains("/nonexistent.pem")),
        "{errs:?}"
    );
    // The scheme is case-insensitive (RFC 3986 §3.1).
    let errs = check("upstream = \"HTTPS://127.0.0.1:1\"\nupstream_ca = \"/nonexistent.pem\"");
    assert!(
        errs.iter()
            .any(|(f, m)| f == "upstream_ca" && m.contains("/nonexistent.pem")),
        "{errs:?}"
    );
    assert!(check("upstream = \"https://127.0.0.1:1\"").is_empty());
    assert!(check("upstream = \"ftp://127.0.0.1:1\"")
        .iter()
        .any(|(f, _)| f == "upstream"));
}

#[tokio::test]
async fn a_proxy_with_a_bad_ca_file_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let cfg: HttpConfig = toml::from_str(&format!(
        "upstream = \"https://127.0.0.1:1\"\nupstream_ca = {:?}",
        empty.to_str().unwrap()
    ))
    .unwrap();
    let cache = Cache::builder().build().await.unwrap();
    let Err(e) = HttpCache::new(cfg, &cache) else {
        panic!("a CA file without certificates was accepted");
    };
    assert!(e.to_string().contains("no certificate"), "{e}");
}
