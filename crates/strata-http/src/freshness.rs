//! RFC 9111 decisions of a shared cache: may a response be stored (§3), how long
//! is it fresh (§4.2.1, §4.2.2), how old is it (§4.2.3), and may a stored response be
//! used for a request as it is, stale, or only after revalidation (§4, RFC 5861).
//!
//! Everything here is a pure function of headers and clocks so it can be tested
//! without a network; the proxy calls it at store time and on every hit.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, StatusCode};

use crate::cache_control::{RequestDirectives, ResponseDirectives};

/// Statuses a cache may store with heuristic freshness (RFC 9110 §15.1), minus the
/// ones this proxy never stores: 206 (no range support) and 501 (5xx is never
/// stored: an outage must not outlive itself in the cache).
const HEURISTIC_STATUSES: &[u16] = &[200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 451];

/// Statuses this cache understands well enough to store with explicit freshness.
const UNDERSTOOD_STATUSES: &[u16] = &[
    200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 451,
];

/// Upper bound on heuristic freshness (10% of the time since `Last-Modified`).
const MAX_HEURISTIC: Duration = Duration::from_secs(24 * 3600);

/// What the route configuration adds to the origin's headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteRules {
    /// Freshness used when the origin says nothing about it.
    pub ttl: Option<Duration>,
    /// Use `ttl` even when the origin does say something.
    pub override_ttl: bool,
    /// `stale-while-revalidate` when the origin sends none.
    pub stale_while_revalidate: Option<Duration>,
    /// `stale-if-error` when the origin sends none.
    pub stale_if_error: Option<Duration>,
    /// Store responses that set cookies (the `Set-Cookie` field itself is never
    /// stored).
    pub store_set_cookie: bool,
}

/// Why a response was not stored (for logs and the `reason` label of
/// `strata_http_not_stored_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// Only GET responses are stored.
    Method,
    /// A status this cache does not store (5xx, 206, 1xx, 304 to an unconditional
    /// request…).
    Status,
    /// `no-store` in the request or the response.
    NoStore,
    /// `private`: a shared cache never stores it.
    Private,
    /// The request carried `Authorization` and the response did not allow sharing.
    Authorization,
    /// `Set-Cookie` on a route that does not allow it.
    SetCookie,
    /// `Vary: *`.
    VaryStar,
    /// Nothing says how long it stays fresh and it has no validators.
    NoFreshness,
}

impl NotStored {
    /// The metric label: `method`, `status`, `no_store`, `private`,
    /// `authorization`, `set_cookie`, `vary_star`, `no_freshness`.
    pub fn label(self) -> &'static str {
        match self {
            NotStored::Method => "method",
            NotStored::Status => "status",
            NotStored::NoStore => "no_store",
            NotStored::Private => "private",
            NotStored::Authorization => "authorization",
            NotStored::SetCookie => "set_cookie",
            NotStored::VaryStar => "vary_star",
            NotStored::NoFreshness => "no_freshness",
        }
    }
}

/// When a stored response stops being usable as it is, and what may still be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// When the response arrived, Unix ms.
    pub response_time: u64,
    /// `corrected_initial_age` of §4.2.3, ms.
    pub initial_age: u64,
    /// Freshness lifetime, ms.
    pub lifetime: u64,
    /// Stale-while-revalidate window after `lifetime`, ms.
    pub swr: u64,
    /// Stale-if-error window after `lifetime`, ms.
    pub sie: u64,
    /// Revalidate on every use (`no-cache`).
    pub no_cache: bool,
    /// No stale use at all once stale (`must-revalidate`, `proxy-revalidate`,
    /// `s-maxage`).
    pub forbids_stale: bool,
}

/// How a stored response may serve a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usable {
    /// Fresh and acceptable to the client.
    Fresh,
    /// Stale, but the client's `max-stale` accepts it.
    StaleAccepted,
    /// Stale within stale-while-revalidate: serve it, refresh in the background.
    StaleWhileRevalidate,
    /// Must be revalidated with the origin before use.
    Revalidate,
}

/// Unix time in milliseconds.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn header_date(h: &HeaderMap, name: http::header::HeaderName) -> Option<u64> {
    let v = h.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(v.trim()).ok().map(unix_ms)
}

/// Decides whether a shared cache may store `status`/`res` received for a request.
pub fn storable(
    method: &Method,
    req: &HeaderMap,
    req_cc: &RequestDirectives,
    status: StatusCode,
    res: &HeaderMap,
    res_cc: &ResponseDirectives,
    rules: &RouteRules,
) -> Result<(), NotStored> {
    if method != Method::GET {
        return Err(NotStored::Method);
    }
    let code = status.as_u16();
    // must-understand: store only statuses we understand, and then it overrides
    // no-store (§5.2.2.3).
    if res_cc.must_understand {
        if !UNDERSTOOD_STATUSES.contains(&code) {
            return Err(NotStored::Status);
        }
    } else if res_cc.no_store {
        return Err(NotStored::NoStore);
    }
    if !UNDERSTOOD_STATUSES.contains(&code) {
        return Err(NotStored::Status);
    }
    if req_cc.no_store {
        return Err(NotStored::NoStore);
    }
    if res_cc.private {
        return Err(NotStored::Private);
    }
    // §3.5: a shared cache stores a response to an authenticated request only when
    // the response explicitly allows it.
    if req.contains_key(http::header::AUTHORIZATION)
        && !(res_cc.public || res_cc.must_revalidate || res_cc.s_maxage.is_some())
    {
        return Err(NotStored::Authorization);
    }
    if res.contains_key(http::header::SET_COOKIE) && !rules.store_set_cookie {
        return Err(NotStored::SetCookie);
    }
    if vary_names(res).any(|n| n == "*") {
        return Err(NotStored::VaryStar);
    }
    let explicit = has_explicit_freshness(res, res_cc);
    let heuristic = HEURISTIC_STATUSES.contains(&code);
    if !(explicit || res_cc.public || heuristic || rules.ttl.is_some()) {
        return Err(NotStored::NoFreshness);
    }
    Ok(())
}

fn has_explicit_freshness(res: &HeaderMap, cc: &ResponseDirectives) -> bool {
    cc.surrogate_max_age.is_some()
        || cc.s_maxage.is_some()
        || cc.max_age.is_some()
        || res.contains_key(http::header::EXPIRES)
}

/// The field names a response's `Vary` lists, lowercased.
pub fn vary_names(res: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    res.get_all(http::header::VARY)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
}

/// Freshness lifetime of a response (§4.2.1), with the route's TTL where the
/// origin is silent (or always, with `override_ttl`), in ms.
pub fn lifetime(
    status: StatusCode,
    res: &HeaderMap,
    cc: &ResponseDirectives,
    response_time: u64,
    rules: &RouteRules,
) -> u64 {
    if cc.no_cache {
        return 0;
    }
    if let (Some(ttl), true) = (rules.ttl, rules.override_ttl) {
        return ttl.as_millis() as u64;
    }
    if let Some(s) = cc.surrogate_max_age {
        return s.secs() * 1000;
    }
    if let Some(s) = cc.s_maxage {
        return s.secs() * 1000;
    }
    if let Some(m) = cc.max_age {
        return m.secs() * 1000;
    }
    let date = header_date(res, http::header::DATE).unwrap_or(response_time);
    if res.contains_key(http::header::EXPIRES) {
        // An invalid date (such as "0") means already expired (§5.3).
        return match header_date(res, http::header::EXPIRES) {
            Some(exp) => exp.saturating_sub(date),
            None => 0,
        };
    }
    if let Some(ttl) = rules.ttl {
        return ttl.as_millis() as u64;
    }
    // Heuristic freshness (§4.2.2): a tenth of the time since Last-Modified.
    if HEURISTIC_STATUSES.contains(&status.as_u16()) || cc.public {
        if let Some(lm) = header_date(res, http::header::LAST_MODIFIED) {
            let h = date.saturating_sub(lm) / 10;
            return h.min(MAX_HEURISTIC.as_millis() as u64);
        }
    }
    0
}

/// `corrected_initial_age` (§4.2.3) in ms, from the response's `Age` and `Date`
/// and the times the request left and the response arrived.
pub fn initial_age(res: &HeaderMap, request_time: u64, response_time: u64) -> u64 {
    let date = header_date(res, http::header::DATE);
    let apparent = date.map_or(0, |d| response_time.saturating_sub(d));
    let Some(age_value) = age_header(res) else {
        return STALE_AGE;
    };
    let delay = response_time.saturating_sub(request_time);
    apparent.max(age_value.saturating_add(delay))
}

/// An age that makes any response stale, for an `Age` field nobody can read.
const STALE_AGE: u64 = u64::MAX / 4;

/// The `Age` field in ms (0 when absent), `None` when invalid: anything but one
/// non-negative integer on one line makes the response stale (RFC 9111 §5.1). The
/// RFC would let a cache use the first member of a list (`Age: 0, 7200`); a list
/// means something upstream is confused about the age, so strata takes the safe
/// side and revalidates, as the cache-tests `age-parse` cases expect.
fn age_header(res: &HeaderMap) -> Option<u64> {
    let mut lines = res.get_all(http::header::AGE).iter();
    let Some(line) = lines.next() else {
        return Some(0);
    };
    let member = line.as_bytes().trim_ascii();
    if lines.next().is_some() || member.is_empty() || !member.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let secs = std::str::from_utf8(member)
        .ok()?
        .parse::<u64>()
        .unwrap_or(u64::MAX / 1000);
    Some(secs.saturating_mul(1000))
}

impl Timing {
    /// Computes the timing of a response that arrived at `response_time` for a
    /// request sent at `request_time` (both Unix ms).
    pub fn of(
        status: StatusCode,
        res: &HeaderMap,
        cc: &ResponseDirectives,
        request_time: u64,
        response_time: u64,
        rules: &RouteRules,
    ) -> Timing {
        let secs = |s: Option<u64>, d: Option<Duration>| {
            s.map(|s| s.saturating_mul(1000))
                .or(d.map(|d| d.as_millis() as u64))
                .unwrap_or(0)
        };
        Timing {
            response_time,
            initial_age: initial_age(res, request_time, response_time),
            lifetime: lifetime(status, res, cc, response_time, rules),
            swr: secs(cc.stale_while_revalidate, rules.stale_while_revalidate),
            sie: secs(cc.stale_if_error, rules.stale_if_error),
            no_cache: cc.no_cache,
            forbids_stale: cc.forbids_stale(),
        }
    }

    /// `current_age` at `now` (Unix ms).
    pub fn age(&self, now: u64) -> u64 {
        self.initial_age
            .saturating_add(now.saturating_sub(self.response_time))
    }

    /// Whether the response is fresh at `now`.
    pub fn is_fresh(&self, now: u64) -> bool {
        !self.no_cache && self.age(now) < self.lifetime
    }

    /// How long to keep the entry: while fresh, plus the stale windows, plus `keep`
    /// when it has validators (a stale entry with an `ETag` still saves a body
    /// transfer). Zero means "do not store".
    pub fn storage_ttl(&self, now: u64, has_validators: bool, keep: Duration) -> Duration {
        let age = self.age(now);
        let fresh_left = self.lifetime.saturating_sub(age);
        let stale = if self.forbids_stale {
            0
        } else {
            self.swr.max(self.sie)
        };
        let keep = if has_validators {
            keep.as_millis() as u64
        } else {
            0
        };
        let end = self.lifetime + stale + keep;
        Duration::from_millis(if fresh_left == 0 && stale == 0 && keep == 0 {
            0
        } else {
            end.saturating_sub(age)
        })
    }

    /// How a stored response may serve a request with these directives at `now`.
    pub fn usable(&self, req: &RequestDirectives, now: u64) -> Usable {
        let age = self.age(now);
        if req.no_cache || self.no_cache {
            return Usable::Revalidate;
        }
        if let Some(max_age) = req.max_age {
            if age > max_age.saturating_mul(1000) {
                return Usable::Revalidate;
            }
        }
        let left = self.lifetime.saturating_sub(age);
        if let Some(min_fresh) = req.min_fresh {
            if left < min_fresh.saturating_mul(1000) {
                return Usable::Revalidate;
            }
        }
        if age < self.lifetime {
            return Usable::Fresh;
        }
        if self.forbids_stale {
            return Usable::Revalidate;
        }
        let staleness = age - self.lifetime;
        if let Some(max_stale) = req.max_stale {
            if max_stale.is_none_or(|s| staleness <= s.saturating_mul(1000)) {
                return Usable::StaleAccepted;
            }
        }
        if staleness < self.swr {
            return Usable::StaleWhileRevalidate;
        }
        Usable::Revalidate
    }

    /// Whether the response may stand in for an origin error at `now`.
    pub fn serves_on_error(&self, now: u64) -> bool {
        !self.forbids_stale
            && !self.no_cache
            && self.age(now) < self.lifetime.saturating_add(self.sie)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    fn date(ms: u64) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms))
    }

    const T0: u64 = 1_700_000_000_000;

    fn timing(res: &HeaderMap, rules: &RouteRules) -> Timing {
        let cc = ResponseDirectives::parse(res);
        Timing::of(StatusCode::OK, res, &cc, T0, T0, rules)
    }

    fn store(
        req: &HeaderMap,
        status: u16,
        res: &HeaderMap,
        rules: &RouteRules,
    ) -> Result<(), NotStored> {
        storable(
            &Method::GET,
            req,
            &RequestDirectives::parse(req),
            StatusCode::from_u16(status).unwrap(),
            res,
            &ResponseDirectives::parse(res),
            rules,
        )
    }

    #[test]
    fn freshness_precedence() {
        let r = RouteRules::default();
        let res = h(&[("cache-control", "max-age=10, s-maxage=20")]);
        assert_eq!(timing(&res, &r).lifetime, 20_000);
        let res = h(&[
            ("cache-control", "max-age=10"),
            ("expires", &date(T0 + 99_000)),
            ("date", &date(T0)),
        ]);
        assert_eq!(timing(&res, &r).lifetime, 10_000);
        let res = h(&[("expires", &date(T0 + 30_000)), ("date", &date(T0))]);
        assert_eq!(timing(&res, &r).lifetime, 30_000);
        let res = h(&[("expires", "0")]);
        assert_eq!(timing(&res, &r).lifetime, 0);
        // Heuristic: 10% of the time since Last-Modified.
        let res = h(&[("date", &date(T0)), ("last-modified", &date(T0 - 100_000))]);
        assert_eq!(timing(&res, &r).lifetime, 10_000);
    }

    #[test]
    fn route_ttl_only_where_origin_is_silent_unless_overridden() {
        let mut r = RouteRules {
            ttl: Some(Duration::from_secs(300)),
            ..RouteRules::default()
        };
        assert_eq!(timing(&h(&[]), &r).lifetime, 300_000);
        assert_eq!(
            timing(&h(&[("cache-control", "max-age=5")]), &r).lifetime,
            5_000
        );
        r.override_ttl = true;
        assert_eq!(
            timing(&h(&[("cache-control", "max-age=5")]), &r).lifetime,
            300_000
        );
        // Override changes lifetimes, never storability.
        assert_eq!(
            store(&h(&[]), 200, &h(&[("cache-control", "no-store")]), &r),
            Err(NotStored::NoStore)
        );
    }

    #[test]
    fn age_follows_section_4_2_3() {
        // Date 5 s before arrival, Age 2, a 1 s round trip: apparent 5 s wins.
        let res = h(&[("date", &date(T0 - 5_000)), ("age", "2")]);
        assert_eq!(initial_age(&res, T0 - 1_000, T0), 5_000);
        // Age 10 plus the 1 s delay beats an apparent age of 0.
        let res = h(&[("date", &date(T0)), ("age", "10")]);
        assert_eq!(initial_age(&res, T0 - 1_000, T0), 11_000);
        let t = Timing {
            response_time: T0,
            initial_age: 3_000,
            lifetime: 10_000,
            ..Timing::default()
        };
        assert_eq!(t.age(T0 + 4_000), 7_000);
        assert!(t.is_fresh(T0 + 6_999));
        assert!(!t.is_fresh(T0 + 7_000));
    }

    #[test]
    fn an_unreadable_or_repeated_age_means_stale() {
        let age = |vals: &[&str]| {
            let mut m = HeaderMap::new();
            for v in vals {
                m.append("age", v.parse().unwrap());
            }
            initial_age(&m, T0, T0)
        };
        assert_eq!(age(&["30"]), 30_000);
        assert_eq!(age(&[" 30 "]), 30_000);
        for bad in [
            "abc",
            "-7200",
            "7200.0",
            "7200;foo=bar",
            "",
            "0,7200",
            "0, 0",
        ] {
            assert_eq!(age(&[bad]), STALE_AGE, "{bad:?}");
        }
        assert_eq!(age(&["0", "0"]), STALE_AGE);
        let t = Timing {
            initial_age: STALE_AGE,
            lifetime: 3_600_000,
            ..Timing::default()
        };
        assert!(!t.is_fresh(u64::MAX));
    }

    #[test]
    fn shared_cache_storage_rules() {
        let r = RouteRules::default();
        let ok = h(&[("cache-control", "max-age=60")]);
        assert_eq!(store(&h(&[]), 200, &ok, &r), Ok(()));
        assert_eq!(store(&h(&[]), 500, &ok, &r), Err(NotStored::Status));
        assert_eq!(store(&h(&[]), 206, &ok, &r), Err(NotStored::Status));
        assert_eq!(
            store(
                &h(&[]),
                200,
                &h(&[("cache-control", "private, max-age=60")]),
                &r
            ),
            Err(NotStored::Private)
        );
        assert_eq!(
            store(&h(&[("cache-control", "no-store")]), 200, &ok, &r),
            Err(NotStored::NoStore)
        );
        let auth = h(&[("authorization", "Bearer x")]);
        assert_eq!(store(&auth, 200, &ok, &r), Err(NotStored::Authorization));
        assert_eq!(
            store(
                &auth,
                200,
                &h(&[("cache-control", "public, max-age=60")]),
                &r
            ),
            Ok(())
        );
        assert_eq!(
            store(&auth, 200, &h(&[("cache-control", "s-maxage=60")]), &r),
            Ok(())
        );
        let cookie = h(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]);
        assert_eq!(store(&h(&[]), 200, &cookie, &r), Err(NotStored::SetCookie));
        let allow = RouteRules {
            store_set_cookie: true,
            ..r
        };
        assert_eq!(store(&h(&[]), 200, &cookie, &allow), Ok(()));
        assert_eq!(
            store(
                &h(&[]),
                200,
                &h(&[("cache-control", "max-age=60"), ("vary", "Accept, *")]),
                &r
            ),
            Err(NotStored::VaryStar)
        );
        // A 302 needs explicit freshness; a 200 is heuristically cacheable.
        assert_eq!(
            store(&h(&[]), 302, &h(&[]), &r),
            Err(NotStored::NoFreshness)
        );
        assert_eq!(store(&h(&[]), 200, &h(&[]), &r), Ok(()));
        // must-understand with an understood status overrides no-store.
        assert_eq!(
            store(
                &h(&[]),
                200,
                &h(&[("cache-control", "must-understand, no-store, max-age=5")]),
                &r
            ),
            Ok(())
        );
    }

    #[test]
    fn usability_by_request_and_response_directives() {
        let t = Timing {
            response_time: T0,
            initial_age: 0,
            lifetime: 10_000,
            swr: 5_000,
            sie: 60_000,
            no_cache: false,
            forbids_stale: false,
        };
        let none = RequestDirectives::default();
        assert_eq!(t.usable(&none, T0 + 1_000), Usable::Fresh);
        assert_eq!(t.usable(&none, T0 + 12_000), Usable::StaleWhileRevalidate);
        assert_eq!(t.usable(&none, T0 + 16_000), Usable::Revalidate);
        assert!(t.serves_on_error(T0 + 60_000));
        assert!(!t.serves_on_error(T0 + 70_000));
        let no_cache = RequestDirectives {
            no_cache: true,
            ..none.clone()
        };
        assert_eq!(t.usable(&no_cache, T0 + 1_000), Usable::Revalidate);
        let max_age = RequestDirectives {
            max_age: Some(0),
            ..none.clone()
        };
        assert_eq!(t.usable(&max_age, T0 + 1_000), Usable::Revalidate);
        let min_fresh = RequestDirectives {
            min_fresh: Some(20),
            ..none.clone()
        };
        assert_eq!(t.usable(&min_fresh, T0 + 1_000), Usable::Revalidate);
        let max_stale = RequestDirectives {
            max_stale: Some(Some(100)),
            ..none.clone()
        };
        assert_eq!(t.usable(&max_stale, T0 + 50_000), Usable::StaleAccepted);
        let strict = Timing {
            forbids_stale: true,
            ..t
        };
        assert_eq!(strict.usable(&max_stale, T0 + 12_000), Usable::Revalidate);
        assert!(!strict.serves_on_error(T0 + 12_000));
    }

    #[test]
    fn storage_ttl_covers_stale_windows_and_keep() {
        let t = Timing {
            response_time: T0,
            lifetime: 10_000,
            swr: 5_000,
            sie: 20_000,
            ..Timing::default()
        };
        assert_eq!(
            t.storage_ttl(T0, false, Duration::ZERO),
            Duration::from_secs(30)
        );
        let no_cache = Timing {
            no_cache: true,
            lifetime: 0,
            swr: 0,
            sie: 0,
            ..t
        };
        assert_eq!(
            no_cache.storage_ttl(T0, false, Duration::from_secs(600)),
            Duration::ZERO
        );
        assert_eq!(
            no_cache.storage_ttl(T0, true, Duration::from_secs(600)),
            Duration::from_secs(600)
        );
    }
}
