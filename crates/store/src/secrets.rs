//! Encryption of secret environment variable values.
//!
//! XChaCha20-Poly1305 with a random 24-byte nonce per value. The associated data binds each
//! ciphertext to its organization, tool and variable name, so a ciphertext copied into another
//! row (by a bug or by someone with database access) fails to decrypt instead of leaking into the
//! wrong tool. Each ciphertext records the id of the key that sealed it, so keys can rotate: the
//! keyring's first key seals, every key in it opens.
//!
//! Architecture invariant: besides the runtime's launch path, `seal` and `open` are the only
//! places where secret values exist in plaintext.

use std::fmt;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use toolsmith_domain::{OrgId, ToolId};

use crate::StoreError;

const NONCE_LEN: usize = 24;

/// One 256-bit key and its id (a prefix of the key's SHA-256, safe to store and log).
#[derive(Clone)]
pub struct SecretKey {
    id: String,
    key: [u8; 32],
}

impl SecretKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        let id = hex::encode(&Sha256::digest(key)[..8]);
        SecretKey { id, key }
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        SecretKey::from_bytes(key)
    }

    /// Parses a key written as 64 hex characters.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text.trim()).ok()?;
        let key: [u8; 32] = bytes.try_into().ok()?;
        Some(SecretKey::from_bytes(key))
    }

    /// The key as 64 hex characters, for writing the key file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.key)
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

/// The keys secrets are sealed and opened with: the first seals, all open.
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Arc<Vec<SecretKey>>,
}

/// A sealed secret: the id of the key that sealed it and `nonce || ciphertext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Which key sealed it.
    pub key_id: String,
    /// Nonce followed by ciphertext and tag.
    pub bytes: Vec<u8>,
}

impl Keyring {
    /// A keyring whose first key is the current one; `None` when `keys` is empty.
    pub fn new(keys: Vec<SecretKey>) -> Option<Self> {
        if keys.is_empty() {
            None
        } else {
            Some(Keyring { keys: Arc::new(keys) })
        }
    }

    /// The key new secrets are sealed with.
    pub fn current(&self) -> &SecretKey {
        &self.keys[0]
    }

    /// Seals `plaintext` for the variable `name` of tool `tool_id` in `org_id`.
    pub fn seal(&self, org_id: &OrgId, tool_id: &ToolId, name: &str, plaintext: &[u8]) -> Result<Sealed, StoreError> {
        let key = self.current();
        let cipher = XChaCha20Poly1305::new((&key.key).into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(org_id, tool_id, name);
        let ciphertext = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad })
            .map_err(|_| StoreError::Secret("encryption failed".into()))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Ok(Sealed { key_id: key.id.clone(), bytes })
    }

    /// Opens a sealed secret; fails if the key is unknown or the data was tampered with or moved.
    pub fn open(&self, org_id: &OrgId, tool_id: &ToolId, name: &str, sealed: &Sealed) -> Result<Vec<u8>, StoreError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| StoreError::Secret(format!("no key with id {} in the keyring", sealed.key_id)))?;
        if sealed.bytes.len() < NONCE_LEN {
            return Err(StoreError::Secret("sealed value too short".into()));
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new((&key.key).into());
        let aad = associated_data(org_id, tool_id, name);
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| StoreError::Secret("decryption failed: wrong key or tampered value".into()))
    }
}

/// The bytes each ciphertext is bound to. Values sealed before must keep opening: these bytes
/// never change for a given organization, tool and name.
fn associated_data(org_id: &OrgId, tool_id: &ToolId, name: &str) -> Vec<u8> {
    format!("toolsmith/envvar/v1\0{org_id}\0{tool_id}\0{name}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(slug: &str) -> OrgId {
        OrgId::parse(slug).unwrap()
    }

    fn tool(n: u8) -> ToolId {
        ToolId::parse(&format!("{n:024x}")).unwrap()
    }

    #[test]
    fn round_trip_keeps_every_byte() {
        let ring = Keyring::new(vec![SecretKey::generate()]).unwrap();
        let value = "nul\0byte, émoji 🔑, quote \" and newline\n".as_bytes();
        let sealed = ring.seal(&org("acme"), &tool(1), "API_KEY", value).unwrap();
        assert!(!sealed.bytes.windows(5).any(|w| w == b"emoji"));
        assert_eq!(ring.open(&org("acme"), &tool(1), "API_KEY", &sealed).unwrap(), value);
    }

    #[test]
    fn a_ciphertext_moved_to_another_tool_or_name_does_not_open() {
        let ring = Keyring::new(vec![SecretKey::generate()]).unwrap();
        let sealed = ring.seal(&org("acme"), &tool(1), "API_KEY", b"s3cret").unwrap();
        assert!(ring.open(&org("acme"), &tool(2), "API_KEY", &sealed).is_err());
        assert!(ring.open(&org("other"), &tool(1), "API_KEY", &sealed).is_err());
        assert!(ring.open(&org("acme"), &tool(1), "OTHER", &sealed).is_err());
    }

    #[test]
    fn rotated_keyring_opens_old_values_and_seals_with_the_new_key() {
        let old = SecretKey::generate();
        let old_ring = Keyring::new(vec![old.clone()]).unwrap();
        let sealed = old_ring.seal(&org("acme"), &tool(1), "K", b"v").unwrap();
        let new = SecretKey::generate();
        let ring = Keyring::new(vec![new.clone(), old]).unwrap();
        assert_eq!(ring.open(&org("acme"), &tool(1), "K", &sealed).unwrap(), b"v");
        assert_eq!(ring.seal(&org("acme"), &tool(1), "K", b"v").unwrap().key_id, new.id());
        let unknown = Keyring::new(vec![SecretKey::generate()]).unwrap();
        assert!(unknown.open(&org("acme"), &tool(1), "K", &sealed).is_err());
    }

    #[test]
    fn the_bound_bytes_are_those_values_were_sealed_with_so_far() {
        // Values already stored were sealed with exactly these bytes; were they to change, no
        // stored secret would open again.
        assert_eq!(
            associated_data(&org("acme"), &tool(1), "API_KEY"),
            [b"toolsmith/envvar/v1\0acme\0".as_slice(), b"000000000000000000000001", b"\0API_KEY"].concat()
        );
    }

    #[test]
    fn hex_round_trip() {
        let k = SecretKey::generate();
        let back = SecretKey::from_hex(&k.to_hex()).unwrap();
        assert_eq!(back.id(), k.id());
        assert!(SecretKey::from_hex("abc").is_none());
    }
}
