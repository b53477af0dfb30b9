//! Value serialization formats.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{CacheError, Result};

/// How values are turned into bytes.
///
/// | format | use it for |
/// |---|---|
/// | `Json` | values other languages read through Redis or the REST API |
/// | `MessagePack` | compact, self-describing, cross-language |
/// | `Binary` | Rust-only, smallest and fastest (postcard); not self-describing, so changing the type's fields invalidates old entries (they decode as corrupt and count as misses) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Format {
    /// serde_json.
    #[default]
    Json,
    /// rmp-serde with named fields.
    MessagePack,
    /// postcard.
    Binary,
}

impl Format {
    /// The codec id written into the envelope and reported as [`crate::Hit::codec`].
    pub fn id(self) -> u8 {
        match self {
            Format::Json => 1,
            Format::MessagePack => 2,
            Format::Binary => 3,
        }
    }

    /// The format with codec id `id`, if any.
    ///
    /// ```
    /// use strata_cache::Format;
    /// assert_eq!(Format::from_id(Format::MessagePack.id()), Some(Format::MessagePack));
    /// assert_eq!(Format::from_id(0), None);
    /// ```
    pub fn from_id(id: u8) -> Option<Format> {
        match id {
            1 => Some(Format::Json),
            2 => Some(Format::MessagePack),
            3 => Some(Format::Binary),
            _ => None,
        }
    }

    /// Serializes a value.
    ///
    /// ```
    /// use strata_cache::Format;
    /// let bytes = Format::MessagePack.encode(&("a", 1u32)).unwrap();
    /// let back: (String, u32) = Format::MessagePack.decode(&bytes).unwrap();
    /// assert_eq!(back, ("a".to_string(), 1));
    /// ```
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>> {
        let r = match self {
            Format::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
            Format::MessagePack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
            Format::Binary => postcard::to_stdvec(value).map_err(|e| e.to_string()),
        };
        r.map_err(CacheError::Codec)
    }

    /// Deserializes a value.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T> {
        let r = match self {
            Format::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Format::MessagePack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
            Format::Binary => postcard::from_bytes(bytes).map_err(|e| e.to_string()),
        };
        r.map_err(CacheError::Codec)
    }
}

impl std::str::FromStr for Format {
    type Err = CacheError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "json" => Ok(Format::Json),
            "msgpack" | "messagepack" => Ok(Format::MessagePack),
            "binary" | "postcard" => Ok(Format::Binary),
            other => Err(CacheError::Config(format!(
                "unknown serialization `{other}` (expected json, msgpack or binary)"
            ))),
        }
    }
}
