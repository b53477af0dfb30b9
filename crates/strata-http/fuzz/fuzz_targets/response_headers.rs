//! Origin and client headers are untrusted text: Cache-Control parsing, freshness
//! and storability, Accept-Encoding negotiation, query normalisation and route
//! patterns, Range and If-Range must never panic, whatever the bytes; Vary
//! variant keys must never collide.
#![no_main]

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use strata_http::cache_control::{RequestDirectives, ResponseDirectives};
use strata_http::compress::Compressor;
use strata_http::freshness::{storable, RouteRules, Timing};

fuzz_target!(|data: &[u8]| {
    // Split the input into a few header values.
    let mut parts = data.split(|b| *b == b'\n');
    let mut h = HeaderMap::new();
    for name in [
        "cache-control",
        "expires",
        "date",
        "age",
        "last-modified",
        "vary",
        "accept-encoding",
    ] {
        if let Some(v) = parts.next().and_then(|p| HeaderValue::from_bytes(p).ok()) {
            h.append(name, v);
        }
    }
    let res = ResponseDirectives::parse(&h);
    let req = RequestDirectives::parse(&h);
    let rules = RouteRules::default();
    let t = Timing::of(
        StatusCode::OK,
        &h,
        &res,
        1_700_000_000_000,
        1_700_000_000_100,
        &rules,
    );
    let _ = t.usable(&req, 1_700_000_100_000);
    let _ = t.storage_ttl(1_700_000_000_100, true, std::time::Duration::from_secs(600));
    let _ = storable(&Method::GET, &h, &req, StatusCode::OK, &h, &res, &rules);
    let c = Compressor::new(&Default::default());
    let _ = c.negotiate(h.get("accept-encoding"));
    let text = String::from_utf8_lossy(data);
    let _ = strata_http::key::normalize_query(&text, None);
    let _ = strata_http::key::normalize_host(&text);
    if let Ok(p) = strata_http::route::Pattern::parse(&text) {
        let _ = p.matches(&text);
        let _ = p.check_template(&text);
    }
    // A part is always inside the representation, whatever the Range field says.
    let len = data.len() as u64;
    if let strata_http::range::Ranged::Part { start, end } = strata_http::range::parse(&text, len) {
        assert!(start <= end && end < len, "{start}-{end} of {len}");
    }
    let _ = strata_http::range::if_range_holds(&text, &h);
    // A variant key extends its key past the mark, and two values share one only
    // when they are equal (a collision would serve one variant for another).
    let name = http::HeaderName::from_static("origin");
    let mut halves = data.splitn(2, |b| *b == 0);
    let (a, b) = (
        halves.next().unwrap_or_default(),
        halves.next().unwrap_or_default(),
    );
    if let (Ok(va), Ok(vb)) = (HeaderValue::from_bytes(a), HeaderValue::from_bytes(b)) {
        let key =
            |v: Option<&HeaderValue>| strata_http::key::variant_key("http://h/p", [(&name, v)]);
        // None only past the longest key stored.
        if let (Some(ka), Some(kb)) = (key(Some(&va)), key(Some(&vb))) {
            assert!(ka.starts_with("http://h/p vary: "), "{ka}");
            assert_eq!(ka == kb, va == vb, "{ka} / {kb}");
            assert_ne!(Some(ka), key(None));
        }
    }
});
