//! Property tests of the codecs: round trips, and no panic on arbitrary input.

use bytes::Bytes;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use strata_cache::{Compression, Envelope, EnvelopeCodec, Format, Keyring};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Value {
    id: u64,
    name: String,
    tags: Vec<String>,
    score: Option<i32>,
    blob: Vec<u8>,
}

fn value() -> impl Strategy<Value = Value> {
    (
        any::<u64>(),
        ".*",
        prop::collection::vec(".{0,8}", 0..4),
        any::<Option<i32>>(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(id, name, tags, score, blob)| Value {
            id,
            name,
            tags,
            score,
            blob,
        })
}

fn codec() -> impl Strategy<Value = EnvelopeCodec> {
    let compression = prop_oneof![
        Just(Compression::None),
        (1..6i32).prop_map(Compression::Zstd),
        Just(Compression::Lz4)
    ];
    (compression, 0..2048usize, any::<bool>()).prop_map(|(compression, compress_min, encrypt)| {
        EnvelopeCodec {
            compression,
            compress_min,
            keyring: encrypt.then(|| std::sync::Arc::new(Keyring::new(5, &[9u8; 32]).unwrap())),
            max_payload: 1 << 20,
        }
    })
}

proptest! {
    #[test]
    fn formats_round_trip(v in value()) {
        for f in [Format::Json, Format::MessagePack, Format::Binary] {
            let bytes = f.encode(&v).unwrap();
            prop_assert_eq!(f.decode::<Value>(&bytes).unwrap(), v.clone());
        }
    }

    #[test]
    fn envelopes_round_trip(c in codec(), payload in prop::collection::vec(any::<u8>(), 0..4096), codec_id in 0..4u8,
                            created in any::<u64>(), ttl in any::<u64>(), key in ".{1,40}") {
        let env = Envelope { codec: codec_id, created_ms: created, ttl_ms: ttl, version: created ^ ttl, payload: Bytes::from(payload) };
        let raw = c.encode(&env, key.as_bytes()).unwrap();
        prop_assert_eq!(c.decode(&raw, key.as_bytes()).unwrap(), env);
    }

    #[test]
    fn decoding_garbage_never_panics(c in codec(), raw in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = c.decode(&raw, b"k");
    }

    #[test]
    fn flipped_bytes_never_panic(c in codec(), payload in prop::collection::vec(any::<u8>(), 0..512), flip in any::<prop::sample::Index>(), bit in 0..8u8) {
        let env = Envelope { codec: 1, created_ms: 1, ttl_ms: 2, version: 3, payload: Bytes::from(payload) };
        let mut raw = c.encode(&env, b"k").unwrap();
        let i = flip.index(raw.len());
        raw[i] ^= 1 << bit;
        // Either an error or (for unauthenticated bytes) some envelope; never a panic.
        let _ = c.decode(&raw, b"k");
    }
}
