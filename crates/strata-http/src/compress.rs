//! Response compression: `Accept-Encoding` negotiation (RFC 9110 §12.5.3), which
//! responses are worth compressing, and the encoders (flate2, brotli, zstd).

use std::io::Write;

use http::{HeaderMap, HeaderValue};

use crate::config::CompressionConfig;

/// A content coding. The numeric value is its id in stored entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    /// No coding.
    Identity = 0,
    /// gzip.
    Gzip = 1,
    /// Brotli.
    Br = 2,
    /// Zstandard.
    Zstd = 3,
}

impl Encoding {
    /// The `Content-Encoding` token.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
        }
    }

    /// Parses a coding name (case-insensitive); `x-gzip` is gzip.
    pub fn from_name(s: &str) -> Option<Encoding> {
        match s.trim().to_ascii_lowercase().as_str() {
            "identity" => Some(Encoding::Identity),
            "gzip" | "x-gzip" => Some(Encoding::Gzip),
            "br" => Some(Encoding::Br),
            "zstd" => Some(Encoding::Zstd),
            _ => None,
        }
    }

    /// From a stored id.
    pub fn from_id(id: u8) -> Option<Encoding> {
        [
            Encoding::Identity,
            Encoding::Gzip,
            Encoding::Br,
            Encoding::Zstd,
        ]
        .into_iter()
        .find(|e| *e as u8 == id)
    }

    /// Compresses `body`. Levels favour speed a little over ratio: each encoding of
    /// a stored response is computed once, but on the request that first asks.
    pub fn encode(self, body: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Encoding::Identity => Ok(body.to_vec()),
            Encoding::Gzip => {
                let mut e = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 3),
                    flate2::Compression::new(6),
                );
                e.write_all(body)?;
                e.finish()
            }
            Encoding::Br => {
                let mut out = Vec::with_capacity(body.len() / 3);
                {
                    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    w.write_all(body)?;
                }
                Ok(out)
            }
            Encoding::Zstd => zstd::bulk::compress(body, 6),
        }
    }
}

/// What to compress and how.
#[derive(Debug, Clone)]
pub struct Compressor {
    enabled: bool,
    min_size: usize,
    prefs: Vec<Encoding>,
    types: Vec<String>,
}

const DEFAULT_TYPES: &[&str] = &[
    "application/json",
    "application/javascript",
    "application/xml",
    "application/xhtml+xml",
    "application/wasm",
    "image/svg+xml",
    "application/x-ndjson",
];

impl Compressor {
    /// From `[http.compression]` (names were checked by the config).
    pub fn new(cfg: &CompressionConfig) -> Self {
        Compressor {
            enabled: cfg.enabled.unwrap_or(true),
            min_size: cfg.min_size.map_or(1000, |s| s.0 as usize),
            prefs: cfg.encodings.as_ref().map_or_else(
                || vec![Encoding::Br, Encoding::Zstd, Encoding::Gzip],
                |v| {
                    v.iter()
                        .filter_map(|n| Encoding::from_name(n))
                        .filter(|e| *e != Encoding::Identity)
                        .collect()
                },
            ),
            types: cfg
                .types
                .clone()
                .unwrap_or_else(|| DEFAULT_TYPES.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    /// Whether the proxy compresses at all.
    pub fn enabled(&self) -> bool {
        self.enabled && !self.prefs.is_empty()
    }

    /// Whether a response with these headers and body length is worth compressing.
    pub fn worth_it(&self, headers: &HeaderMap, len: usize) -> bool {
        if !self.enabled()
            || len < self.min_size
            || headers.contains_key(http::header::CONTENT_ENCODING)
        {
            return false;
        }
        let Some(ct) = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        mime.starts_with("text/")
            || mime.ends_with("+json")
            || mime.ends_with("+xml")
            || self.types.iter().any(|t| t.eq_ignore_ascii_case(&mime))
    }

    /// The best encoding the client accepts, by its q-values and then our order;
    /// `None` for identity.
    pub fn negotiate(&self, accept: Option<&HeaderValue>) -> Option<Encoding> {
        let accept = accept?.to_str().ok()?;
        let mut best: Option<(u16, usize, Encoding)> = None;
        for (rank, enc) in self.prefs.iter().enumerate() {
            let q = q_for(accept, enc.name());
            if q == 0 {
                continue;
            }
            let better = match best {
                None => true,
                Some((bq, brank, _)) => q > bq || (q == bq && rank < brank),
            };
            if better {
                best = Some((q, rank, *enc));
            }
        }
        best.map(|(_, _, e)| e)
    }

    /// Whether the client accepts `enc` at all (q > 0).
    pub fn accepts(accept: Option<&HeaderValue>, enc: Encoding) -> bool {
        if enc == Encoding::Identity {
            return true;
        }
        accept
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| q_for(a, enc.name()) > 0)
    }
}

/// The q-value (0-1000) `accept` gives `coding`: its own entry, else `*`'s, else 0.
fn q_for(accept: &str, coding: &str) -> u16 {
    let mut star = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim().eq_ignore_ascii_case("q")).then(|| parse_q(v.trim()))
            })
            .unwrap_or(1000);
        if name.eq_ignore_ascii_case(coding)
            || (coding == "gzip" && name.eq_ignore_ascii_case("x-gzip"))
        {
            return q;
        }
        if name == "*" {
            star = Some(q);
        }
    }
    star.unwrap_or(0)
}

/// `qvalue` as thousandths; anything unparsable is 0 (not acceptable).
fn parse_q(v: &str) -> u16 {
    let Ok(f) = v.parse::<f32>() else { return 0 };
    if !(0.0..=1.0).contains(&f) {
        return 0;
    }
    (f * 1000.0).round() as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> Compressor {
        Compressor::new(&CompressionConfig::default())
    }

    fn neg(s: &str) -> Option<Encoding> {
        c().negotiate(Some(&HeaderValue::from_str(s).unwrap()))
    }

    #[test]
    fn negotiation_follows_q_then_our_order() {
        assert_eq!(neg("gzip, deflate, br"), Some(Encoding::Br));
        assert_eq!(neg("gzip;q=1, br;q=0.5"), Some(Encoding::Gzip));
        assert_eq!(neg("br;q=0, gzip"), Some(Encoding::Gzip));
        assert_eq!(neg("identity"), None);
        assert_eq!(neg("*"), Some(Encoding::Br));
        assert_eq!(neg("*;q=0, zstd"), Some(Encoding::Zstd));
        assert_eq!(neg("x-gzip"), Some(Encoding::Gzip));
        assert_eq!(neg("gzip;q=banana"), None);
        assert_eq!(c().negotiate(None), None);
    }

    #[test]
    fn only_sizable_text_like_bodies() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(c().worth_it(&h, 5000));
        assert!(!c().worth_it(&h, 10));
        h.insert("content-type", "image/png".parse().unwrap());
        assert!(!c().worth_it(&h, 5000));
        h.insert("content-type", "application/problem+json".parse().unwrap());
        assert!(c().worth_it(&h, 5000));
        h.insert("content-encoding", "gzip".parse().unwrap());
        assert!(!c().worth_it(&h, 5000));
    }

    #[test]
    fn encodings_round_trip() {
        use std::io::Read;
        let body = br#"{"risks":[1,2,3,4,5,6,7,8,9,10]}"#.repeat(50);
        let gz = Encoding::Gzip.encode(&body).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
        let br = Encoding::Br.encode(&body).unwrap();
        let mut out = Vec::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
        let z = Encoding::Zstd.encode(&body).unwrap();
        assert_eq!(zstd::stream::decode_all(&z[..]).unwrap(), body);
        assert!(gz.len() < body.len() / 4 && br.len() < body.len() / 4 && z.len() < body.len() / 4);
    }
}
