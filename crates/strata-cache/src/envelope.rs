//! The envelope: how an entry is laid out in Redis.
//!
//! ```text
//! 0      1        2      3      4       5            13        21        29
//! +------+--------+------+------+-------+------------+---------+---------+-------------+
//! | 0xA7 | ver=1  | flags| codec| key id| created ms | ttl ms  | version | body        |
//! +------+--------+------+------+-------+------------+---------+---------+-------------+
//! flags: bits 0-1 compression (0 none, 1 zstd, 2 lz4), bit 2 encrypted
//! body:  payload, compressed if flagged, then sealed (nonce || ciphertext) if encrypted;
//!        the 29 header bytes and the Redis key are the AEAD's associated data, so an
//!        entry cannot be replayed under another key or with an edited header.
//! ```
//!
//! Decoding never panics: anything unexpected is [`CacheError::Corrupt`], which the
//! read path turns into a miss, a deletion and a counter increment.

use std::sync::Arc;

use bytes::Bytes;

use crate::crypto::Keyring;
use crate::error::{CacheError, Result};

const MAGIC: u8 = 0xA7;
const VERSION: u8 = 1;
pub(crate) const HEADER_LEN: usize = 29;
const FLAG_ENCRYPTED: u8 = 0b100;
const COMPRESSION_MASK: u8 = 0b011;

/// Codec id of values stored as raw bytes (the REST API and `*_bytes` calls).
pub const CODEC_RAW: u8 = 0;

/// Compression of entries at or above a namespace's threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Store as is.
    #[default]
    None,
    /// zstd at the given level (1-22; 3 is a good default).
    Zstd(i32),
    /// lz4 (lz4_flex, pure Rust): less saving than zstd, much faster.
    Lz4,
}

impl Compression {
    fn flag(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd(_) => 1,
            Compression::Lz4 => 2,
        }
    }
}

/// A decoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Codec id of the payload ([`CODEC_RAW`] or a [`crate::Format`] id).
    pub codec: u8,
    /// When the entry was written, Unix milliseconds.
    pub created_ms: u64,
    /// TTL the entry was written with, milliseconds (0: none).
    pub ttl_ms: u64,
    /// Writer-supplied version (0: none), for conditional invalidation.
    pub version: u64,
    /// The plain payload.
    pub payload: Bytes,
}

/// Encodes and decodes envelopes for one namespace.
#[derive(Debug, Clone)]
pub struct EnvelopeCodec {
    /// Compression used for payloads of at least `compress_min` bytes.
    pub compression: Compression,
    /// Smallest payload that is compressed.
    pub compress_min: usize,
    /// Encrypts bodies with the active key when set.
    pub keyring: Option<Arc<Keyring>>,
    /// Largest plain payload accepted when decoding (guards against decompression bombs).
    pub max_payload: usize,
}

impl EnvelopeCodec {
    /// Serializes `env` for the Redis key `aad`.
    pub fn encode(&self, env: &Envelope, aad: &[u8]) -> Result<Vec<u8>> {
        let compression = if env.payload.len() >= self.compress_min {
            self.compression
        } else {
            Compression::None
        };
        let mut body: Vec<u8>;
        let body_ref: &[u8] = match compression {
            Compression::None => &env.payload,
            Compression::Zstd(level) => {
                body = zstd::bulk::compress(&env.payload, level)
                    .map_err(|e| CacheError::Codec(format!("zstd: {e}")))?;
                &body
            }
            Compression::Lz4 => {
                body = lz4_flex::compress_prepend_size(&env.payload);
                &body
            }
        };
        let mut flags = compression.flag();
        let mut header = [0u8; HEADER_LEN];
        header[0] = MAGIC;
        header[1] = VERSION;
        header[3] = env.codec;
        header[5..13].copy_from_slice(&env.created_ms.to_le_bytes());
        header[13..21].copy_from_slice(&env.ttl_ms.to_le_bytes());
        header[21..29].copy_from_slice(&env.version.to_le_bytes());
        if let Some(ring) = &self.keyring {
            flags |= FLAG_ENCRYPTED;
            header[2] = flags;
            header[4] = ring.active_id();
            let aad_full = [&header[..], aad].concat();
            let (_, sealed) = ring.seal(body_ref, &aad_full)?;
            body = sealed;
            return Ok([&header[..], &body].concat());
        }
        header[2] = flags;
        let mut out = Vec::with_capacity(HEADER_LEN + body_ref.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(body_ref);
        Ok(out)
    }

    /// Parses bytes read from the Redis key `aad`.
    pub fn decode(&self, raw: &[u8], aad: &[u8]) -> Result<Envelope> {
        if raw.len() < HEADER_LEN {
            return Err(CacheError::Corrupt(format!(
                "{} bytes is shorter than a header",
                raw.len()
            )));
        }
        let (header, body) = raw.split_at(HEADER_LEN);
        if header[0] != MAGIC {
            return Err(CacheError::Corrupt("not a strata entry (bad magic)".into()));
        }
        if header[1] != VERSION {
            return Err(CacheError::Corrupt(format!(
                "unknown envelope version {}",
                header[1]
            )));
        }
        let flags = header[2];
        if flags & !(FLAG_ENCRYPTED | COMPRESSION_MASK) != 0 {
            return Err(CacheError::Corrupt(format!("unknown flags {flags:#04x}")));
        }
        let codec = header[3];
        let created_ms = u64::from_le_bytes(header[5..13].try_into().expect("8 bytes"));
        let ttl_ms = u64::from_le_bytes(header[13..21].try_into().expect("8 bytes"));
        let version = u64::from_le_bytes(header[21..29].try_into().expect("8 bytes"));
        let opened;
        let body = if flags & FLAG_ENCRYPTED != 0 {
            let ring = self.keyring.as_ref().ok_or_else(|| {
                CacheError::Corrupt("entry is encrypted but no keyring is configured".into())
            })?;
            let aad_full = [header, aad].concat();
            opened = ring.open(header[4], body, &aad_full)?;
            &opened[..]
        } else {
            if self.keyring.is_some() {
                // A namespace that encrypts must not trust plaintext planted in Redis.
                return Err(CacheError::Corrupt(
                    "plaintext entry in an encrypted namespace".into(),
                ));
            }
            body
        };
        let payload = match flags & COMPRESSION_MASK {
            0 => Bytes::copy_from_slice(body),
            1 => Bytes::from(
                zstd::bulk::decompress(body, self.max_payload)
                    .map_err(|e| CacheError::Corrupt(format!("zstd: {e}")))?,
            ),
            2 => {
                let size = body
                    .get(..4)
                    .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
                    .ok_or_else(|| CacheError::Corrupt("lz4 body too short".into()))?;
                if size > self.max_payload {
                    return Err(CacheError::Corrupt(format!("lz4 size {size} over limit")));
                }
                Bytes::from(
                    lz4_flex::decompress_size_prepended(body)
                        .map_err(|e| CacheError::Corrupt(format!("lz4: {e}")))?,
                )
            }
            other => return Err(CacheError::Corrupt(format!("unknown compression {other}"))),
        };
        Ok(Envelope {
            codec,
            created_ms,
            ttl_ms,
            version,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(c: Compression, ring: Option<Keyring>) -> EnvelopeCodec {
        EnvelopeCodec {
            compression: c,
            compress_min: 16,
            keyring: ring.map(Arc::new),
            max_payload: 1 << 20,
        }
    }

    fn env(payload: &[u8]) -> Envelope {
        Envelope {
            codec: 1,
            created_ms: 1_700_000_000_000,
            ttl_ms: 60_000,
            version: 9,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn round_trips_every_combination() {
        let ring = Keyring::new(3, &[7u8; 32]).unwrap();
        for c in [Compression::None, Compression::Zstd(3), Compression::Lz4] {
            for r in [None, Some(ring.clone())] {
                let codec = codec(c, r);
                for p in [&b""[..], b"short", &[b'x'; 5000][..]] {
                    let e = env(p);
                    let raw = codec.encode(&e, b"k").unwrap();
                    assert_eq!(codec.decode(&raw, b"k").unwrap(), e);
                }
            }
        }
    }

    #[test]
    fn compression_applies_above_threshold_only() {
        let c = codec(Compression::Zstd(3), None);
        let big = c.encode(&env(&[b'a'; 4096]), b"k").unwrap();
        assert!(
            big.len() < 200,
            "4 KiB of one byte should compress, got {}",
            big.len()
        );
        let small = c.encode(&env(b"tiny"), b"k").unwrap();
        assert_eq!(small[2] & COMPRESSION_MASK, 0);
    }

    #[test]
    fn ciphertext_is_bound_to_key_and_header() {
        let c = codec(
            Compression::None,
            Some(Keyring::new(1, &[1u8; 32]).unwrap()),
        );
        let mut raw = c.encode(&env(b"secret value"), b"key-a").unwrap();
        assert!(!raw.windows(6).any(|w| w == b"secret"));
        assert!(matches!(
            c.decode(&raw, b"key-b"),
            Err(CacheError::Corrupt(_))
        ));
        raw[13] ^= 1; // edit the TTL
        assert!(matches!(
            c.decode(&raw, b"key-a"),
            Err(CacheError::Corrupt(_))
        ));
    }

    #[test]
    fn rotation_reads_old_key() {
        let old = codec(
            Compression::None,
            Some(Keyring::new(1, &[1u8; 32]).unwrap()),
        );
        let raw = old.encode(&env(b"v"), b"k").unwrap();
        let ring = Keyring::new(2, &[2u8; 32])
            .unwrap()
            .with_read_key(1, &[1u8; 32])
            .unwrap();
        let new = codec(Compression::None, Some(ring));
        assert_eq!(
            new.decode(&raw, b"k").unwrap().payload,
            Bytes::from_static(b"v")
        );
        assert_eq!(new.encode(&env(b"v"), b"k").unwrap()[4], 2);
        let wrong = codec(
            Compression::None,
            Some(Keyring::new(9, &[9u8; 32]).unwrap()),
        );
        assert!(matches!(
            wrong.decode(&raw, b"k"),
            Err(CacheError::Corrupt(_))
        ));
    }

    #[test]
    fn decompression_bombs_are_refused() {
        let c = codec(Compression::Zstd(3), None);
        let raw = c.encode(&env(&vec![0u8; 1 << 20]), b"k").unwrap();
        let small = EnvelopeCodec {
            max_payload: 1024,
            ..c
        };
        assert!(matches!(
            small.decode(&raw, b"k"),
            Err(CacheError::Corrupt(_))
        ));
    }
}
