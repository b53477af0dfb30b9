//! Whatever arrives on the invalidation channel, a cache parses and applies it or
//! rejects it with an error; it never panics and never creates namespaces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_cache::{Cache, InvalidationMessage, Policy};

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cache = rt
        .block_on(Cache::builder().max_memory(1 << 16).namespace("user", Policy::default()).build())
        .unwrap();
    let _guard = rt.enter();
    let parsed = InvalidationMessage::parse(data);
    let applied = cache.receive_invalidation(data);
    assert_eq!(parsed.is_ok(), applied.is_ok());
    if let Ok(m) = parsed {
        // Round trip of anything accepted.
        assert_eq!(InvalidationMessage::parse(&m.to_bytes()).unwrap(), m);
    }
    assert_eq!(cache.namespaces(), vec!["user".to_string()]);
});
