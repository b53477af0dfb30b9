//! `strata metrics` and `load-test` parse a server's /metrics: any text must parse
//! to samples (possibly none) without panicking, and quantiles stay within bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let samples = strata_bench::promtext::parse(&text);
    for s in &samples {
        let b = strata_bench::promtext::buckets(&samples, &s.name);
        let _ = strata_bench::promtext::quantile(&b, 0.99);
    }
});
