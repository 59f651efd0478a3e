//! Identifiers: 24-hex object ids (tools, users, versions, invocations) and organization slugs.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not 24 lowercase hexadecimal characters.
    #[error("must be 24 lowercase hexadecimal characters")]
    NotObjectId,
    /// Not a valid organization slug.
    #[error("must match ^[a-z0-9][a-z0-9-]{{0,62}}$")]
    NotOrgSlug,
}

/// A 12-byte identifier rendered as 24 lowercase hex characters, shaped like a MongoDB ObjectId
/// because the wire contract's id patterns (`^[a-f0-9]{24}$`) expect exactly that.
///
/// The layout (4 bytes of seconds, 5 random bytes, a 3-byte counter) makes ids created later
/// sort later, which keeps "newest first" cheap and index-friendly.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectId(String);

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl ObjectId {
    /// Creates a new, unique id.
    pub fn generate() -> Self {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0);
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&secs.to_be_bytes());
        rand::thread_rng().fill_bytes(&mut bytes[4..9]);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        bytes[9..].copy_from_slice(&count.to_be_bytes()[1..]);
        ObjectId(hex::encode(bytes))
    }

    /// Parses a 24-hex id.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() == 24 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(ObjectId(s.to_owned()))
        } else {
            Err(IdError::NotObjectId)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ObjectId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        ObjectId::parse(&s)
    }
}

impl From<ObjectId> for String {
    fn from(id: ObjectId) -> String {
        id.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.0)
    }
}

/// An organization id: a lowercase slug without underscores, so that the git Basic-auth user
/// name `{org_id}_{user_id}` splits unambiguously at its first underscore.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrgId(String);

impl OrgId {
    /// Parses an organization slug (`^[a-z0-9][a-z0-9-]{0,62}$`).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bytes = s.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 63
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if valid {
            Ok(OrgId(s.to_owned()))
        } else {
            Err(IdError::NotOrgSlug)
        }
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrgId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        OrgId::parse(&s)
    }
}

impl From<OrgId> for String {
    fn from(id: OrgId) -> String {
        id.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_unique_and_increasing() {
        let a = ObjectId::generate();
        let b = ObjectId::generate();
        assert_ne!(a, b);
        assert!(ObjectId::parse(a.as_str()).is_ok());
        assert!(a.as_str()[..8] <= b.as_str()[..8], "the time prefix never goes backwards");
    }

    #[test]
    fn object_id_rejects_wrong_shapes() {
        for bad in ["", "abc", "ABCDEFABCDEFABCDEFABCDEF", "0123456789abcdef0123456g", "0123456789abcdef012345678"] {
            assert_eq!(ObjectId::parse(bad), Err(IdError::NotObjectId), "{bad}");
        }
    }

    #[test]
    fn org_slugs() {
        for good in ["acme", "a", "acme-corp-2", "0org"] {
            assert!(OrgId::parse(good).is_ok(), "{good}");
        }
        let too_long = "a".repeat(64);
        for bad in ["", "-acme", "Acme", "acme_corp", "acme corp", too_long.as_str()] {
            assert!(OrgId::parse(bad).is_err(), "{bad}");
        }
    }
}
