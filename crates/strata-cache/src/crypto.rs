//! Encryption of what goes to Redis: XChaCha20-Poly1305 with rotating key ids.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::error::{CacheError, Result};

/// Length of a nonce in the envelope. XChaCha's 192-bit nonces are safe to draw at
/// random for every write, so no nonce state has to be shared between instances.
pub(crate) const NONCE_LEN: usize = 24;

/// A set of 256-bit keys, each with a one-byte id; one of them encrypts new entries.
///
/// Every encrypted entry records the id of its key, so keys can rotate: add the new
/// key as active, keep the old one for reading until its entries have expired.
///
/// ```
/// use strata_cache::Keyring;
/// let ring = Keyring::parse("2:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,1:Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=").unwrap();
/// assert_eq!(ring.active_id(), 2);
/// ```
#[derive(Clone)]
pub struct Keyring {
    keys: BTreeMap<u8, XChaCha20Poly1305>,
    active: u8,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

impl Keyring {
    /// A keyring with one key, which is active.
    pub fn new(id: u8, key: &[u8]) -> Result<Self> {
        let mut keys = BTreeMap::new();
        keys.insert(id, cipher(key)?);
        Ok(Keyring { keys, active: id })
    }

    /// Adds a key that can decrypt old entries but does not encrypt new ones.
    pub fn with_read_key(mut self, id: u8, key: &[u8]) -> Result<Self> {
        if self.keys.contains_key(&id) {
            return Err(CacheError::Crypto(format!("key id {id} given twice")));
        }
        self.keys.insert(id, cipher(key)?);
        Ok(self)
    }

    /// Parses `id:base64key[,id:base64key…]`; the first key listed is the active one.
    ///
    /// This is the format of the `STRATA_CACHE_KEYS` environment variable.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut ring: Option<Keyring> = None;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, b64) = part
                .split_once(':')
                .ok_or_else(|| CacheError::Crypto("expected id:base64key".into()))?;
            let id: u8 = id
                .parse()
                .map_err(|_| CacheError::Crypto(format!("key id `{id}` is not 0-255")))?;
            let key = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| CacheError::Crypto(format!("key {id}: bad base64: {e}")))?;
            ring = Some(match ring {
                None => Keyring::new(id, &key)?,
                Some(r) => r.with_read_key(id, &key)?,
            });
        }
        ring.ok_or_else(|| CacheError::Crypto("no keys given".into()))
    }

    /// Reads [`Keyring::parse`]'s format from an environment variable.
    pub fn from_env(var: &str) -> Result<Self> {
        let spec = std::env::var(var)
            .map_err(|_| CacheError::Crypto(format!("environment variable {var} is not set")))?;
        Self::parse(&spec)
    }

    /// Id of the key that encrypts new entries.
    pub fn active_id(&self) -> u8 {
        self.active
    }

    /// Encrypts `plain`, binding it to `aad`. Returns the key id and `nonce || ciphertext`.
    pub(crate) fn seal(&self, plain: &[u8], aad: &[u8]) -> Result<(u8, Vec<u8>)> {
        let cipher = &self.keys[&self.active];
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let ct = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
            .map_err(|_| CacheError::Crypto("encryption failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok((self.active, out))
    }

    /// Decrypts `nonce || ciphertext` written with key `id`.
    pub(crate) fn open(&self, id: u8, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let cipher = self
            .keys
            .get(&id)
            .ok_or_else(|| CacheError::Corrupt(format!("unknown encryption key id {id}")))?;
        if sealed.len() < NONCE_LEN {
            return Err(CacheError::Corrupt("encrypted body too short".into()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| CacheError::Corrupt("authentication failed".into()))
    }
}

fn cipher(key: &[u8]) -> Result<XChaCha20Poly1305> {
    XChaCha20Poly1305::new_from_slice(key)
        .map_err(|_| CacheError::Crypto(format!("key must be 32 bytes, got {}", key.len())))
}
