//! The proxy against a real origin over loopback sockets, one test per behaviour.

mod common;

use std::io::Read;
use std::sync::atomic::Ordering;

use common::{eventually, get, Origin, Proxy};

#[tokio::test]
async fn miss_then_hit_with_age_and_timing_headers() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let (x1, s1, h1, b1) = get(&proxy.url("/fresh"), &[]).await;
    assert_eq!((x1.as_str(), s1), ("MISS", 200));
    assert!(h1.contains_key("x-process-time"));
    assert!(h1
        .get("server-timing")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("origin;dur="));
    let (x2, _, h2, b2) = get(&proxy.url("/fresh"), &[]).await;
    assert_eq!(x2, "HIT");
    assert_eq!(b1, b2);
    assert!(h2.get("age").is_some());
    assert!(!h2
        .get("server-timing")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("origin"));
    assert_eq!(origin.state.hits("/fresh"), 1);
}

#[tokio::test]
async fn head_is_served_from_the_get_entry() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    get(&proxy.url("/fresh"), &[]).await;
    let r = common::client()
        .head(proxy.url("/fresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(common::x_cache(&r), "HIT");
    assert_eq!(r.headers()["content-length"], "7");
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(origin.state.hits("/fresh"), 1);
}

#[tokio::test]
async fn route_ttl_applies_only_where_the_origin_is_silent_unless_overridden() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(
        &origin,
        r#"
        [[routes]]
        match = "/silent"
        ttl = "5m"
        [[routes]]
        match = "/short"
        ttl = "5m"
        [[routes]]
        match = "/fresh"
        ttl = "0s"
        override = true
        "#,
    )
    .await;
    for path in ["/silent", "/silent-unrouted", "/short", "/fresh"] {
        get(&proxy.url(path), &[]).await;
        get(&proxy.url(path), &[]).await;
    }
    assert_eq!(
        origin.state.hits("/silent"),
        1,
        "silent origin: route TTL stores it"
    );
    assert_eq!(
        origin.state.hits("/silent-unrouted"),
        2,
        "no freshness anywhere: not stored"
    );
    assert_eq!(
        origin.state.hits("/short"),
        2,
        "origin's max-age=0 wins over the route"
    );
    assert_eq!(
        origin.state.hits("/fresh"),
        2,
        "override: the route's 0s wins over max-age=60"
    );
}

#[tokio::test]
async fn no_store_and_private_are_never_stored() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    for _ in 0..2 {
        let (x, ..) = get(&proxy.url("/nostore"), &[]).await;
        assert_eq!(x, "MISS");
    }
    assert_eq!(origin.state.hits("/nostore"), 2);
}

#[tokio::test]
async fn a_private_response_is_never_served_to_another_user() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let (_, _, _, alice) = get(&proxy.url("/private"), &[("x-user", "alice")]).await;
    assert_eq!(&alice[..], b"account of alice");
    let (x, _, _, bob) = get(&proxy.url("/private"), &[("x-user", "bob")]).await;
    assert_eq!(&bob[..], b"account of bob");
    assert_eq!(x, "MISS");
    // Not even a request without the header gets alice's page.
    let (_, _, _, anon) = get(&proxy.url("/private"), &[]).await;
    assert_eq!(&anon[..], b"account of nobody");
}

#[tokio::test]
async fn authorized_requests_are_stored_only_when_the_response_allows_sharing() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let auth = [("authorization", "Bearer secret")];
    get(&proxy.url("/auth"), &auth).await;
    get(&proxy.url("/auth"), &auth).await;
    assert_eq!(origin.state.hits("/auth"), 2);
    get(&proxy.url("/auth-public"), &auth).await;
    let (x, ..) = get(&proxy.url("/auth-public"), &[]).await;
    assert_eq!(x, "HIT");
    assert_eq!(origin.state.hits("/auth-public"), 1);
}

#[tokio::test]
async fn set_cookie_responses_are_stored_only_on_routes_that_say_so_and_never_with_the_cookie() {
    let origin = Origin::start().await;
    let plain = Proxy::start(&origin, "").await;
    get(&plain.url("/cookie"), &[]).await;
    get(&plain.url("/cookie"), &[]).await;
    assert_eq!(origin.state.hits("/cookie"), 2);

    let origin2 = Origin::start().await;
    let allowing = Proxy::start(
        &origin2,
        r#"
        [[routes]]
        match = "/cookie"
        cache_set_cookie = true
        "#,
    )
    .await;
    let (x1, _, h1, _) = get(&allowing.url("/cookie"), &[]).await;
    assert_eq!(x1, "MISS");
    assert_eq!(
        h1["set-cookie"], "session=s1",
        "the fetching client gets its cookie"
    );
    let (x2, _, h2, _) = get(&allowing.url("/cookie"), &[]).await;
    assert_eq!(x2, "HIT");
    assert!(h2.get("set-cookie").is_none(), "nobody else gets it");
}

#[tokio::test]
async fn vary_selects_and_vary_star_is_never_stored() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let de = [("accept-language", "de")];
    let en = [("accept-language", "en")];
    get(&proxy.url("/vary"), &de).await;
    let (x, _, _, b) = get(&proxy.url("/vary"), &de).await;
    assert_eq!(x, "HIT");
    assert!(b.starts_with(b"lang=de"));
    let (x, _, _, b) = get(&proxy.url("/vary"), &en).await;
    assert_eq!(x, "MISS");
    assert!(b.starts_with(b"lang=en"));
    // Each variant is kept: de is still there beside en, and a request without
    // the field is a variant of its own.
    for (h, want) in [(&de[..], "lang=de n=1"), (&en[..], "lang=en n=2")] {
        let (x, _, _, b) = get(&proxy.url("/vary"), h).await;
        assert_eq!((x.as_str(), &b[..]), ("HIT", want.as_bytes()));
    }
    assert_eq!(get(&proxy.url("/vary"), &[]).await.0, "MISS");
    assert_eq!(get(&proxy.url("/vary"), &[]).await.0, "HIT");
    assert_eq!(origin.state.hits("/vary"), 3);
    // A purge of the URL on this host drops every variant.
    let url = format!("http://{}/vary", proxy.addr);
    let purge = strata_http::Purge {
        urls: vec![url],
        ..Default::default()
    };
    assert!(proxy.http.purge(&purge).await.unwrap() >= 3);
    for h in [&de[..], &en[..], &[]] {
        assert_eq!(get(&proxy.url("/vary"), h).await.0, "MISS");
    }
    // So does an unsafe request to it (every variant carries the URL's tag).
    common::client()
        .post(proxy.url("/vary"))
        .send()
        .await
        .unwrap();
    for h in [&de[..], &en[..], &[]] {
        assert_eq!(get(&proxy.url("/vary"), h).await.0, "MISS");
    }
    get(&proxy.url("/vary-star"), &[]).await;
    let (x, ..) = get(&proxy.url("/vary-star"), &[]).await;
    assert_eq!(x, "MISS");
}

#[tokio::test]
async fn a_short_lived_variant_leaves_longer_lived_ones_reachable() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let de = [("accept-language", "de"), ("x-max-age", "60")];
    let en = [("accept-language", "en"), ("x-max-age", "1")];
    assert_eq!(get(&proxy.url("/vary"), &de).await.0, "MISS");
    assert_eq!(get(&proxy.url("/vary"), &en).await.0, "MISS");
    assert_eq!(get(&proxy.url("/vary"), &de).await.0, "HIT");
    // Once the en variant has expired, the key's record of which fields select
    // a variant must still be there for de, stored first with a longer life.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (x, _, _, b) = get(&proxy.url("/vary"), &de).await;
    assert_eq!((x.as_str(), &b[..]), ("HIT", &b"lang=de n=1"[..]));
    assert_eq!(get(&proxy.url("/vary"), &en).await.0, "MISS");
    assert_eq!(origin.state.hits("/vary"), 3);
}

#[tokio::test]
async fn revalidation_with_validators_and_client_conditionals() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let (x, _, h, b) = get(&proxy.url("/etag"), &[]).await;
    assert_eq!(x, "MISS");
    assert_eq!(h["etag"], "\"v0\"");
    // no-cache: every use is revalidated; the origin answers 304, the client the body.
    let (x, s, _, b2) = get(&proxy.url("/etag"), &[]).await;
    assert_eq!((x.as_str(), s), ("REVALIDATED", 200));
    assert_eq!(b, b2);
    assert_eq!(origin.state.not_modified.load(Ordering::SeqCst), 1);
    // A client with the validator gets a 304 from the proxy.
    let (x, s, h, body) = get(&proxy.url("/etag"), &[("if-none-match", "\"v0\"")]).await;
    assert_eq!((x.as_str(), s), ("REVALIDATED", 304));
    assert_eq!(h["etag"], "\"v0\"");
    assert!(body.is_empty());
    // The data changes: the origin's 200 replaces the entry.
    origin.state.version.fetch_add(1, Ordering::SeqCst);
    let (x, _, h, _) = get(&proxy.url("/etag"), &[]).await;
    assert_eq!(x, "MISS");
    assert_eq!(h["etag"], "\"v1\"");
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once_in_the_background() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    // The origin's Age makes every response arrive already stale, inside the window.
    get(&proxy.url("/swr"), &[]).await;
    let (x, s, _, b) = get(&proxy.url("/swr"), &[]).await;
    assert_eq!((x.as_str(), s), ("STALE", 200));
    assert_eq!(&b[..], b"n=1");
    let st = origin.state.clone();
    assert!(
        eventually(|| st.hits("/swr") == 2).await,
        "one background refresh"
    );
}

#[tokio::test]
async fn stale_if_error_serves_when_the_origin_fails_or_is_gone() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    get(&proxy.url("/sie"), &[]).await;
    get(&proxy.url("/no-sie"), &[]).await;
    origin.state.failing.store(true, Ordering::SeqCst);
    let (x, s, _, b) = get(&proxy.url("/sie"), &[]).await;
    assert_eq!((x.as_str(), s, &b[..]), ("STALE", 200, &b"n=1"[..]));
    origin.kill().await;
    let (x, s, _, b) = get(&proxy.url("/sie"), &[]).await;
    assert_eq!((x.as_str(), s, &b[..]), ("STALE", 200, &b"n=1"[..]));
    // Without stale-if-error a dead origin is a 502.
    let (x, s, ..) = get(&proxy.url("/no-sie"), &[]).await;
    assert_eq!((x.as_str(), s), ("MISS", 502));
}

#[tokio::test]
async fn stale_if_error_can_come_from_the_route() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(
        &origin,
        r#"
        [[routes]]
        match = "/no-sie"
        stale_if_error = "1h"
        "#,
    )
    .await;
    get(&proxy.url("/no-sie"), &[]).await;
    origin.kill().await;
    let (x, s, ..) = get(&proxy.url("/no-sie"), &[]).await;
    assert_eq!((x.as_str(), s), ("STALE", 200));
}

#[tokio::test]
async fn a_hundred_concurrent_misses_make_one_origin_request() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let url = proxy.url("/slow");
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move { get(&url, &[]).await }));
    }
    let mut statuses = std::collections::HashMap::new();
    for t in tasks {
        let (x, s, _, b) = t.await.unwrap();
        assert_eq!((s, &b[..]), (200, &b"n=1"[..]));
        *statuses.entry(x).or_insert(0) += 1;
    }
    assert_eq!(origin.state.hits("/slow"), 1);
    assert_eq!(statuses.get("MISS"), Some(&1));
}

#[tokio::test]
async fn unsafe_methods_invalidate_target_location_and_configured_tags() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(
        &origin,
        r#"
        [[routes]]
        match = "/api/risks"
        key = { query = ["page"] }
        tags = ["risk:list"]
        [[routes]]
        match = "/api/risks/{id}"
        tags = ["risk:{id}"]
        [[invalidate]]
        on = "POST /api/risks"
        tags = ["risk:list"]
        [[invalidate]]
        on = "PUT /api/risks/{id}"
        tags = ["risk:list"]
        "#,
    )
    .await;
    let c = common::client();
    for pq in [
        "/api/risks?page=1",
        "/api/risks/1",
        "/api/risks/2",
        "/api/risks/99",
    ] {
        get(&proxy.url(pq), &[]).await;
        assert_eq!(get(&proxy.url(pq), &[]).await.0, "HIT", "{pq}");
    }
    // Only keyed query parameters select an entry.
    assert_eq!(
        get(&proxy.url("/api/risks?utm=x&page=1"), &[]).await.0,
        "HIT"
    );

    let r = c
        .put(proxy.url("/api/risks/1"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(common::x_cache(&r), "BYPASS");
    assert_eq!(
        get(&proxy.url("/api/risks/1"), &[]).await.0,
        "MISS",
        "target URI"
    );
    assert_eq!(
        get(&proxy.url("/api/risks?page=1"), &[]).await.0,
        "MISS",
        "configured tag"
    );
    assert_eq!(
        get(&proxy.url("/api/risks/2"), &[]).await.0,
        "HIT",
        "untouched"
    );

    // POST answers Location: /api/risks/99.
    c.post(proxy.url("/api/risks"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        get(&proxy.url("/api/risks/99"), &[]).await.0,
        "MISS",
        "Location"
    );
    assert_eq!(get(&proxy.url("/api/risks/2"), &[]).await.0, "HIT");
}

#[tokio::test]
async fn purge_by_url_prefix_and_tag_including_origin_tags() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    for pq in ["/fresh", "/api/risks/1", "/api/risks/2", "/tagged", "/json"] {
        get(&proxy.url(pq), &[]).await;
    }
    let purge = |urls: &[&str], prefixes: &[&str], tags: &[&str]| strata_http::Purge {
        urls: urls.iter().map(|s| s.to_string()).collect(),
        prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
        tags: tags.iter().map(|s| s.to_string()).collect(),
    };
    assert_eq!(
        proxy
            .http
            .purge(&purge(&["/fresh"], &[], &[]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(get(&proxy.url("/fresh"), &[]).await.0, "MISS");
    assert_eq!(
        proxy
            .http
            .purge(&purge(&[], &["/api/risks/"], &[]))
            .await
            .unwrap(),
        2
    );
    assert_eq!(get(&proxy.url("/api/risks/1"), &[]).await.0, "MISS");
    assert_eq!(
        proxy
            .http
            .purge(&purge(&[], &[], &["gamma"]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(get(&proxy.url("/tagged"), &[]).await.0, "MISS");
    // Tag matching is exact.
    assert_eq!(
        proxy.http.purge(&purge(&[], &[], &["alph"])).await.unwrap(),
        0
    );
    assert_eq!(get(&proxy.url("/json"), &[]).await.0, "HIT");
    // Cache-Tag / Surrogate-Key are for the cache, not the client.
    let (_, _, h, _) = get(&proxy.url("/tagged"), &[]).await;
    assert!(h.get("cache-tag").is_none() && h.get("surrogate-key").is_none());
}

#[tokio::test]
async fn passed_through_responses_lose_the_cache_only_fields() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "[[routes]]\nmatch = \"/tagged\"\ncache = false\n").await;
    // GET and HEAD go through strata's own HTTP/1.1, which leaves the fields out
    // as it reads the head; OPTIONS and POST through hyper's client.
    for method in ["GET", "HEAD", "OPTIONS", "POST"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        // The origin does send them.
        let direct = common::client()
            .request(method.clone(), format!("{}/tagged", origin.url()))
            .send()
            .await
            .unwrap();
        assert!(direct.headers().get("cache-tag").is_some(), "{method}");
        assert!(direct.headers().get("surrogate-key").is_some(), "{method}");
        let r = common::client()
            .request(method.clone(), proxy.url("/tagged"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{method}");
        assert_eq!(r.headers()["x-cache"], "BYPASS", "{method}");
        let h = r.headers();
        for gone in ["cache-tag", "surrogate-key", "connection", "keep-alive"] {
            assert!(h.get(gone).is_none(), "{method}: {gone} reached the client");
        }
    }
}

#[tokio::test]
async fn ranges_are_cut_from_the_stored_response() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let url = proxy.url("/json");
    let (_, _, _, whole) = get(&url, &[]).await;
    let len = whole.len();
    // Asked for gzip, a part still comes from the identity body, which the
    // Content-Range counts.
    let (x, status, h, part) =
        get(&url, &[("range", "bytes=0-9"), ("accept-encoding", "gzip")]).await;
    assert_eq!((x.as_str(), status), ("HIT", 206));
    assert_eq!(h["content-range"], format!("bytes 0-9/{len}"));
    assert_eq!(h["content-length"], "10");
    assert!(h.get("content-encoding").is_none());
    assert_eq!(h["etag"], "\"j1\"");
    assert_eq!(h["vary"], "accept-encoding");
    assert!(h.contains_key("age"));
    assert_eq!(part, whole.slice(..10));
    let (_, status, h, part) = get(&url, &[("range", "bytes=-5")]).await;
    assert_eq!(status, 206);
    assert_eq!(
        h["content-range"],
        format!("bytes {}-{}/{len}", len - 5, len - 1)
    );
    assert_eq!(part, whole.slice(len - 5..));
    let (_, status, _, part) = get(&url, &[("range", &format!("bytes=10-{}", len * 2))]).await;
    assert_eq!(status, 206);
    assert_eq!(part, whole.slice(10..));
    // Past the end: 416 with the length; several ranges: the whole response.
    let (x, status, h, _) = get(&url, &[("range", &format!("bytes={len}-"))]).await;
    assert_eq!((x.as_str(), status), ("HIT", 416));
    assert_eq!(h["content-range"], format!("bytes */{len}"));
    let (_, status, _, body) = get(&url, &[("range", "bytes=0-1,4-5")]).await;
    assert_eq!((status, body.len()), (200, len));
    // If-Range: the part only while the client's validator is still current.
    let (_, status, _, _) = get(&url, &[("range", "bytes=0-9"), ("if-range", "\"j1\"")]).await;
    assert_eq!(status, 206);
    let (_, status, _, body) = get(&url, &[("range", "bytes=0-9"), ("if-range", "\"old\"")]).await;
    assert_eq!((status, body), (200, whole.clone()));
    // Only GET has ranges.
    let r = common::client()
        .head(&url)
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], len.to_string());
    assert_eq!(origin.state.hits("/json"), 1);
}

#[tokio::test]
async fn a_range_miss_stores_the_whole_response_and_cuts_the_range_from_it() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let url = proxy.url("/seq");
    let whole = common::seq(10_000);
    let (x, status, h, part) = get(&url, &[("range", "bytes=26-51")]).await;
    assert_eq!((x.as_str(), status), ("MISS", 206));
    assert_eq!(h["content-range"], "bytes 26-51/10000");
    assert_eq!(&part[..], &whole.as_bytes()[26..52]);
    // The origin was asked for all of it, not for the range...
    assert_eq!(*origin.state.seq_ranges.lock().unwrap(), vec![None]);
    // ...and what it sent now answers plain GETs and other ranges.
    let (x, status, _, body) = get(&url, &[]).await;
    assert_eq!(
        (x.as_str(), status, &body[..]),
        ("HIT", 200, whole.as_bytes())
    );
    let (x, status, _, part) = get(&url, &[("range", "bytes=-3")]).await;
    assert_eq!(
        (x.as_str(), status, &part[..]),
        ("HIT", 206, &whole.as_bytes()[9_997..])
    );
    assert_eq!(origin.state.hits("/seq"), 1);
}

#[tokio::test]
async fn requests_for_what_could_not_be_stored_do_not_queue_behind_each_other() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let url = proxy.url("/slow-nostore");
    let burst = || futures::future::join_all((0..8).map(|_| get(&url, &[])));
    // Cold: one request fetches, seven wait for it, find nothing they may use, and
    // then go to the origin together.
    for (x, status, ..) in burst().await {
        assert_eq!((x.as_str(), status), ("MISS", 200));
    }
    assert_eq!(origin.state.max_in_flight.swap(0, Ordering::SeqCst), 7);
    // Known uncacheable since: all eight go at once, none waits.
    burst().await;
    assert_eq!(origin.state.max_in_flight.load(Ordering::SeqCst), 8);
    assert_eq!(origin.state.hits("/slow-nostore"), 16);
}

#[tokio::test]
async fn a_key_found_uncacheable_is_stored_again_once_the_origin_allows_it() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let url = proxy.url("/flip");
    let key = format!("http://{}/flip", proxy.addr);
    let ns = proxy.cache.raw("http").unwrap();
    origin.state.flip.store(true, Ordering::SeqCst);
    assert_eq!(get(&url, &[]).await.0, "MISS");
    assert!(ns.get(&key).await.unwrap().is_none());
    origin.state.flip.store(false, Ordering::SeqCst);
    // Remembered as uncacheable, it is still fetched in a way that may store.
    assert_eq!(get(&url, &[]).await.0, "MISS");
    assert!(ns.get(&key).await.unwrap().is_some());
}

#[tokio::test]
async fn concurrent_range_misses_make_one_origin_request() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let url = proxy.url("/seq-chunked");
    let whole = common::seq(10_000);
    let parts = futures::future::join_all((0..20).map(|i| {
        let (url, range) = (url.clone(), format!("bytes={}-{}", i * 100, i * 100 + 49));
        async move { get(&url, &[("range", &range)]).await }
    }))
    .await;
    for (i, (_, status, _, part)) in parts.into_iter().enumerate() {
        assert_eq!(status, 206);
        assert_eq!(&part[..], &whole.as_bytes()[i * 100..i * 100 + 50]);
    }
    assert_eq!(origin.state.hits("/seq-chunked"), 1);
}

#[tokio::test]
async fn a_range_of_what_cannot_be_stored_goes_to_the_origin_as_asked() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "max_object_size = \"1MiB\"").await;
    // Not storable, over max_object_size by its Content-Length, and over it with
    // no Content-Length (found out while reading): each time the whole response
    // is dropped and the client's range is asked for, which the client gets.
    for (path, len) in [
        ("/seq-nostore", 10_000),
        ("/seq-big", 2 << 20),
        ("/seq-big-chunked", 2 << 20),
    ] {
        origin.state.seq_ranges.lock().unwrap().clear();
        let (x, status, h, part) = get(&proxy.url(path), &[("range", "bytes=1-3")]).await;
        assert_eq!(
            (x.as_str(), status, &part[..]),
            ("MISS", 206, &b"bcd"[..]),
            "{path}"
        );
        assert_eq!(h["content-range"], format!("bytes 1-3/{len}"));
        assert_eq!(
            *origin.state.seq_ranges.lock().unwrap(),
            vec![None, Some("bytes=1-3".to_owned())],
            "{path}"
        );
    }
    // Known uncacheable now: the next range goes to the origin as asked, with no
    // whole representation fetched first.
    origin.state.seq_ranges.lock().unwrap().clear();
    let (_, status, _, part) = get(&proxy.url("/seq-nostore"), &[("range", "bytes=1-3")]).await;
    assert_eq!((status, &part[..]), (206, &b"bcd"[..]));
    assert_eq!(
        *origin.state.seq_ranges.lock().unwrap(),
        vec![Some("bytes=1-3".to_owned())]
    );
    // A plain GET of the same is streamed through once, as before.
    let (x, status, _, body) = get(&proxy.url("/seq-big"), &[]).await;
    assert_eq!((x.as_str(), status, body.len()), ("MISS", 200, 2 << 20));
    // Only a 200 has ranges to ask for: anything else is relayed as it came.
    let (x, status, ..) = get(&proxy.url("/error"), &[("range", "bytes=1-3")]).await;
    assert_eq!((x.as_str(), status), ("MISS", 503));
    assert_eq!(origin.state.hits("/error"), 1);
}

#[tokio::test]
async fn compression_is_negotiated_and_each_encoding_computed_once() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let (_, _, plain_h, plain) = get(&proxy.url("/json"), &[]).await;
    assert!(plain_h.get("content-encoding").is_none());
    assert_eq!(plain_h["vary"], "accept-encoding");
    assert_eq!(
        origin.state.last_accept_encoding.lock().unwrap().as_deref(),
        None,
        "the origin is asked for identity"
    );
    for enc in ["gzip", "br", "zstd"] {
        let (x, _, h, body) = get(&proxy.url("/json"), &[("accept-encoding", enc)]).await;
        assert_eq!(x, "HIT");
        assert_eq!(h["content-encoding"], enc);
        assert_eq!(h["etag"], "W/\"j1\"", "a compressed body's ETag is weak");
        assert_eq!(h["content-length"], body.len().to_string());
        let mut out = Vec::new();
        match enc {
            "gzip" => {
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut out)
                    .unwrap();
            }
            "br" => {
                brotli::Decompressor::new(&body[..], 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            _ => out = zstd::stream::decode_all(&body[..]).unwrap(),
        }
        assert_eq!(out, plain.to_vec(), "{enc}");
        assert!(body.len() * 3 < plain.len(), "{enc} actually compresses");
    }
    // Preference by q-value, and small bodies stay as they are.
    let (_, _, h, _) = get(
        &proxy.url("/json"),
        &[("accept-encoding", "br;q=0.1, gzip")],
    )
    .await;
    assert_eq!(h["content-encoding"], "gzip");
    let (_, _, h, _) = get(&proxy.url("/fresh"), &[("accept-encoding", "gzip")]).await;
    assert!(h.get("content-encoding").is_none());
    assert_eq!(origin.state.hits("/json"), 1);
    // The encodings were stored with the entry.
    let stored = proxy
        .cache
        .raw("http")
        .unwrap()
        .get(&format!("http://{}/json", proxy.addr))
        .await
        .unwrap()
        .unwrap();
    let entry = strata_http::entry::Entry::decode(stored.value).unwrap();
    assert_eq!(entry.bodies.len(), 4);
}

#[tokio::test]
async fn large_bodies_stream_through_uncached() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "max_object_size = \"1MiB\"").await;
    for _ in 0..2 {
        let (x, s, _, b) = get(&proxy.url("/big"), &[]).await;
        assert_eq!((x.as_str(), s, b.len()), ("MISS", 200, 2 << 20));
    }
    assert_eq!(origin.state.hits("/big"), 2);
    let mut reg = prometheus_client::registry::Registry::default();
    proxy.http.register_metrics(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    let line = "strata_http_not_stored_total{route=\"default\",reason=\"too_large\"} 2";
    assert!(text.contains(line), "{text}");
}

#[tokio::test]
async fn server_errors_are_never_stored() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    for _ in 0..2 {
        let (x, s, ..) = get(&proxy.url("/error"), &[]).await;
        assert_eq!((x.as_str(), s), ("MISS", 503));
    }
    assert_eq!(origin.state.hits("/error"), 2);
}

#[tokio::test]
async fn unkeyed_headers_cannot_poison_the_cache() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let host = proxy.addr.to_string();
    let (_, _, _, attacker) = get(
        &proxy.url("/echo-host"),
        &[
            ("x-forwarded-host", "evil.example"),
            ("x-http-method-override", "DELETE"),
            ("forwarded", "host=evil.example"),
        ],
    )
    .await;
    let attacker = String::from_utf8(attacker.to_vec()).unwrap();
    assert!(!attacker.contains("evil"), "{attacker}");
    assert!(attacker.contains("override=none"));
    let (x, _, _, victim) = get(&proxy.url("/echo-host"), &[]).await;
    assert_eq!(x, "HIT");
    assert_eq!(
        String::from_utf8(victim.to_vec()).unwrap(),
        format!("<a href=\"http://{host}/\"> override=none")
    );
}

#[tokio::test]
async fn hop_by_hop_and_connection_listed_request_fields_stay_with_the_proxy() {
    let origin = Origin::start().await;
    let passing = "[[routes]]\nmatch = \"/echo-fields\"\ncache = false\n";
    for extra in ["", passing] {
        let proxy = Proxy::start(&origin, extra).await;
        let (x, status, _, body) = get(
            &proxy.url("/echo-fields"),
            &[
                ("connection", "x-secret, host, x-forwarded-for"),
                ("x-secret", "1"),
                ("keep-alive", "timeout=5"),
                ("x-forwarded-for", "9.9.9.9"),
                ("x-kept", "yes"),
            ],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(x, if extra.is_empty() { "MISS" } else { "BYPASS" });
        let body = String::from_utf8(body.to_vec()).unwrap();
        let names: Vec<&str> = body.lines().map(|l| l.split(':').next().unwrap()).collect();
        for gone in ["connection", "x-secret", "keep-alive"] {
            assert!(!names.contains(&gone), "{gone} reached the origin:\n{body}");
        }
        assert!(body.contains("x-kept: yes"), "{body}");
        // The proxy's own `Host` and `X-Forwarded-For` stay, whatever the client
        // listed; the client's `X-Forwarded-For` goes with the listing.
        assert!(body.contains(&format!("host: {}", origin.addr)), "{body}");
        assert!(body.contains("x-forwarded-for: 127.0.0.1"), "{body}");
        assert!(!body.contains("9.9.9.9"), "{body}");
    }
}

/// Shutdown: no new connections, the request in flight answered in full, idle
/// keep-alive connections closed.
#[tokio::test]
async fn shutdown_drains_the_request_in_flight_and_closes_idle_connections() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(&origin, "").await;
    // An idle keep-alive connection: one request answered, then nothing.
    let mut idle = TcpStream::connect(proxy.addr).await.unwrap();
    idle.write_all(b"GET /json HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // A request in flight: the origin takes 300 ms over /slow.
    let mut busy = TcpStream::connect(proxy.addr).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // At the origin, so accepted and being served.
    assert!(eventually(|| origin.state.hits("/slow") == 1).await);
    proxy.stop();
    let within = Duration::from_secs(5);
    let mut answer = Vec::new();
    tokio::time::timeout(within, busy.read_to_end(&mut answer))
        .await
        .expect("the connection with the request in flight was not closed after it")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("n=1"),
        "the answer was cut short: {answer}"
    );
    // The idle connection is closed (it may first drain what is left of /json).
    let closed = tokio::time::timeout(within, async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection was left open");
    assert!(
        TcpStream::connect(proxy.addr).await.is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn client_forwarded_for_is_replaced_on_fetches_for_the_cache() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    get(&proxy.url("/fresh"), &[("x-forwarded-for", "6.6.6.6")]).await;
    assert_eq!(
        origin.state.last_xff.lock().unwrap().as_deref(),
        Some("127.0.0.1")
    );
    common::client()
        .post(proxy.url("/api/x"))
        .header("x-forwarded-for", "10.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        origin.state.last_xff.lock().unwrap().as_deref(),
        Some("10.0.0.1, 127.0.0.1")
    );
}

#[tokio::test]
async fn only_if_cached_and_request_no_cache() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let (_, s, ..) = get(&proxy.url("/fresh"), &[("cache-control", "only-if-cached")]).await;
    assert_eq!(s, 504);
    get(&proxy.url("/fresh"), &[]).await;
    let (x, ..) = get(&proxy.url("/fresh"), &[("cache-control", "only-if-cached")]).await;
    assert_eq!(x, "HIT");
    let (x, ..) = get(&proxy.url("/fresh"), &[("cache-control", "no-cache")]).await;
    assert_eq!(x, "MISS", "no-cache from the client goes to the origin");
    assert_eq!(origin.state.hits("/fresh"), 2);
}

#[tokio::test]
async fn routes_can_bypass_and_metrics_use_route_names() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(
        &origin,
        r#"
        [[routes]]
        match = "/fresh"
        name = "fresh"
        [[routes]]
        match = "/users/*"
        name = "users"
        cache = false
        "#,
    )
    .await;
    get(&proxy.url("/fresh"), &[]).await;
    get(&proxy.url("/fresh"), &[]).await;
    let (x, ..) = get(&proxy.url("/users/1"), &[]).await;
    assert_eq!(x, "BYPASS");
    for pq in ["/nostore", "/nostore", "/private", "/cookie"] {
        get(&proxy.url(pq), &[]).await;
    }
    let mut reg = prometheus_client::registry::Registry::default();
    proxy.http.register_metrics(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.contains("strata_http_requests_total{route=\"fresh\",cache=\"hit\"} 1"),
        "{text}"
    );
    assert!(text.contains("strata_http_requests_total{route=\"users\",cache=\"bypass\"} 1"));
    // Why misses were not stored, counted by reason.
    for (reason, n) in [("no_store", 2), ("private", 1), ("set_cookie", 1)] {
        let line =
            format!("strata_http_not_stored_total{{route=\"default\",reason=\"{reason}\"}} {n}");
        assert!(text.contains(&line), "{line}\n{text}");
    }
    assert!(!text.contains("/users/1"), "labels never carry URLs");
}

#[tokio::test]
async fn bad_requests_get_errors_and_the_proxy_keeps_serving() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "max_request_body = \"1KiB\"").await;
    let c = common::client();
    let r = c
        .post(proxy.url("/api/x"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // A raw request with a bad Host.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /fresh HTTP/1.1\r\nhost: a b\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 400"));
    let (_, st, ..) = get(&proxy.url("/fresh"), &[]).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn methods_of_unknown_safety_invalidate_and_relative_locations_resolve() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    for pq in ["/api/lcl", "/api/target", "/api/other?x=1"] {
        get(&proxy.url(pq), &[]).await;
        assert_eq!(get(&proxy.url(pq), &[]).await.0, "HIT", "{pq}");
    }
    let m = reqwest::Method::from_bytes(b"M-SEARCH").unwrap();
    let r = common::client()
        .request(m, proxy.url("/api/lcl"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for pq in ["/api/lcl", "/api/target", "/api/other?x=1"] {
        assert_eq!(get(&proxy.url(pq), &[]).await.0, "MISS", "{pq}");
    }
}

#[tokio::test]
async fn qualified_no_cache_and_private_drop_only_their_fields() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let (_, _, first, _) = get(&proxy.url("/qualified"), &[]).await;
    assert_eq!(
        (&first["x-a"], &first["x-b"]),
        (&"1".parse().unwrap(), &"2".parse().unwrap()),
        "the fetching client gets every field"
    );
    let (x, _, h, _) = get(&proxy.url("/qualified"), &[]).await;
    assert_eq!(x, "HIT");
    assert!(h.get("x-a").is_none() && h.get("x-b").is_none());
    assert_eq!(h["x-c"], "3");
}

#[tokio::test]
async fn malformed_freshness_is_no_freshness() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    get(&proxy.url("/spaced"), &[]).await;
    assert_eq!(get(&proxy.url("/spaced"), &[]).await.0, "MISS");
}

#[tokio::test]
async fn only_if_cached_never_goes_to_the_origin_even_for_a_stale_entry() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    get(&proxy.url("/etag"), &[]).await; // stored, revalidated on every use
    let (_, s, ..) = get(&proxy.url("/etag"), &[("cache-control", "only-if-cached")]).await;
    assert_eq!(s, 504);
    assert_eq!(origin.state.hits("/etag"), 1);
}

#[tokio::test]
async fn a_revalidation_that_turns_private_drops_the_shared_copy() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    get(&proxy.url("/flip"), &[]).await;
    let key = format!("http://{}/flip", proxy.addr);
    let ns = proxy.cache.raw("http").unwrap();
    assert!(ns.get(&key).await.unwrap().is_some());
    origin.state.flip.store(true, Ordering::SeqCst);
    let (x, _, _, b) = get(&proxy.url("/flip"), &[]).await;
    assert_eq!((x.as_str(), &b[..]), ("MISS", &b"mine n=2"[..]));
    assert!(ns.get(&key).await.unwrap().is_none());
}

#[tokio::test]
async fn surrogate_control_targeted_at_strata_overrides_cache_control_and_stays_private() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let (x, _, h, _) = get(&proxy.url("/surrogate"), &[]).await;
    assert_eq!(x, "MISS");
    assert!(h.get("surrogate-control").is_none());
    let (x, _, h, _) = get(&proxy.url("/surrogate"), &[]).await;
    assert_eq!(
        x, "HIT",
        "Surrogate-Control: max-age=60;strata beats Cache-Control: no-store"
    );
    assert!(h.get("surrogate-control").is_none());
}

#[tokio::test]
async fn an_origin_slower_than_the_response_timeout_is_a_504() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "response_timeout = \"100ms\"").await;
    let (x, s, ..) = get(&proxy.url("/slow"), &[]).await;
    assert_eq!((x.as_str(), s), ("MISS", 504));
}

#[tokio::test]
async fn a_waiter_past_the_coalesce_timeout_goes_to_the_origin_itself() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "coalesce_timeout = \"50ms\"").await;
    let url = proxy.url("/slow");
    let (a, b) = tokio::join!(get(&url, &[]), async {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        get(&url, &[]).await
    });
    assert_eq!((a.1, b.1), (200, 200));
    assert_eq!(origin.state.hits("/slow"), 2);
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "header_timeout = \"200ms\"").await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /fresh HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the proxy kept a stalled client past its header timeout"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(origin.state.hits("/fresh"), 0);
}

#[tokio::test]
async fn a_request_with_more_than_100_header_fields_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    let send = |fields: usize| async move {
        let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let mut req = String::from("GET /fresh HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
        for i in 2..fields {
            req.push_str(&format!("x-f{i}: {i}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    };
    // At the limit the request reaches the proxy's handler (which answers with
    // X-Cache, whatever the origin, with its own limit of 100, makes of the
    // forwarding fields added); one more and hyper refuses it before that.
    let at_limit = send(100).await.to_ascii_lowercase();
    assert!(at_limit.contains("\r\nx-cache: "), "{at_limit}");
    let over = send(101).await.to_ascii_lowercase();
    assert!(over.starts_with("http/1.1 431"), "{over}");
    assert!(!over.contains("\r\nx-cache: "), "{over}");
}

#[tokio::test]
async fn an_age_from_one_304_is_not_counted_again_by_the_next() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&origin, "").await;
    get(&proxy.url("/age304"), &[]).await;
    let (x, _, h, _) = get(&proxy.url("/age304"), &[]).await;
    assert_eq!(x, "REVALIDATED");
    let age: u64 = h["age"].to_str().unwrap().parse().unwrap();
    assert!(age >= 100, "{age}");
    let (x, _, h, _) = get(&proxy.url("/age304"), &[]).await;
    assert_eq!(x, "REVALIDATED");
    let age: u64 = h["age"].to_str().unwrap().parse().unwrap();
    assert!(
        age < 100,
        "the second 304 carried no Age, yet the response is {age} s old"
    );
}
