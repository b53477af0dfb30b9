//! Whatever bytes sit in Redis, decoding an entry returns an envelope or an error,
//! never panics; and what encodes decodes back to itself.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strata_cache::{Compression, Envelope, EnvelopeCodec, Keyring};

fn codecs() -> Vec<EnvelopeCodec> {
    let ring = Arc::new(Keyring::new(1, &[7u8; 32]).unwrap());
    let mut v = Vec::new();
    for compression in [Compression::None, Compression::Zstd(3), Compression::Lz4] {
        for keyring in [None, Some(ring.clone())] {
            v.push(EnvelopeCodec { compression, compress_min: 0, keyring, max_payload: 1 << 20 });
        }
    }
    v
}

fuzz_target!(|data: &[u8]| {
    for c in codecs() {
        let _ = c.decode(data, b"strata:ns:k:key");
        let env = Envelope { codec: 1, created_ms: 1, ttl_ms: 2, version: 3, payload: Bytes::copy_from_slice(data) };
        let raw = c.encode(&env, b"k").unwrap();
        assert_eq!(c.decode(&raw, b"k").unwrap(), env);
    }
});
