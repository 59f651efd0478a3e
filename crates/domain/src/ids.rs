//! Identifiers: 24-hex object ids, one type per kind of record (tools, versions, invocations,
//! users, API keys, builds), and organization slugs.
//!
//! Every kind wraps the same [`ObjectId`], yet the kinds are distinct types, so that a tool id
//! cannot be passed where a user id is expected, however similar the two strings look:
//!
//! ```
//! use toolsmith_domain::ids::{ToolId, UserId};
//! fn owner(_user: &UserId) {}
//! owner(&UserId::generate());
//! ```
//!
//! ```compile_fail
//! use toolsmith_domain::ids::{ToolId, UserId};
//! fn owner(_user: &UserId) {}
//! owner(&ToolId::generate());
//! ```

use std::fmt;
use std::str::FromStr;
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

/// The conversions every identifier type has: from text through its `parse` (so serde, `FromStr`
/// and `TryFrom<String>` check the same rule), to text, and a `Debug` that names the type, so
/// that a log line or a failed assertion shows which kind of id it is.
macro_rules! text_id_conversions {
    ($name:ident) => {
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                $name::parse(&s)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $name::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.as_str().to_owned()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.as_str())
            }
        }
    };
}

/// A 12-byte identifier rendered as 24 lowercase hex characters, shaped like a MongoDB ObjectId
/// because the wire contract's id patterns (`^[a-f0-9]{24}$`) expect exactly that.
///
/// The layout (4 bytes of seconds, 5 random bytes, a 3-byte counter) makes ids created later
/// sort later, which keeps "newest first" cheap and index-friendly. Records are identified by
/// the typed kinds below; a bare `ObjectId` names what is no record of its own (a lock holder, a
/// scratch schema).
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

text_id_conversions!(ObjectId);

/// Declares the id type of one kind of record: an [`ObjectId`] that only that kind's ids are.
macro_rules! object_id_kind {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(ObjectId);

        impl $name {
            /// Creates a new, unique id.
            pub fn generate() -> Self {
                $name(ObjectId::generate())
            }

            /// Parses a 24-hex id.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                ObjectId::parse(s).map($name)
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The id without its kind.
            pub fn as_object_id(&self) -> &ObjectId {
                &self.0
            }
        }

        text_id_conversions!($name);
    };
}

object_id_kind!(
    /// The id of a tool.
    ToolId
);
object_id_kind!(
    /// The id of a published version of a tool (not its `X.Y.Z` number).
    VersionId
);
object_id_kind!(
    /// The id of a recorded invocation.
    InvocationId
);
object_id_kind!(
    /// The id of a user, unique within the user's organization.
    UserId
);
object_id_kind!(
    /// The id of an API key, sent as `x-api-key-id`.
    ApiKeyId
);
object_id_kind!(
    /// The id of a build (of a publish or a test).
    BuildId
);

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

text_id_conversions!(OrgId);

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
    fn kinds_share_the_object_id_rule_and_name_themselves() {
        let text = "0123456789abcdef01234567";
        let tool = ToolId::parse(text).unwrap();
        assert_eq!(tool.as_str(), text);
        assert_eq!(tool.to_string(), text);
        assert_eq!(format!("{tool:?}"), format!("ToolId({text})"));
        assert_eq!(format!("{:?}", UserId::parse(text).unwrap()), format!("UserId({text})"));
        assert_eq!(format!("{:?}", BuildId::parse(text).unwrap()), format!("BuildId({text})"));
        assert_eq!(tool.as_object_id(), &ObjectId::parse(text).unwrap());
        assert_eq!(text.parse::<VersionId>().unwrap().as_str(), text);
        assert_eq!(String::from(InvocationId::parse(text).unwrap()), text);
        for bad in ["", "acme", "0123456789ABCDEF01234567", "0123456789abcdef012345678"] {
            assert_eq!(ToolId::parse(bad), Err(IdError::NotObjectId), "{bad}");
            assert_eq!(bad.parse::<ApiKeyId>(), Err(IdError::NotObjectId), "{bad}");
        }
        let a = InvocationId::generate();
        let b = InvocationId::generate();
        assert_ne!(a, b);
        assert!(InvocationId::parse(a.as_str()).is_ok());
    }

    #[test]
    fn kinds_are_plain_strings_on_the_wire() {
        let id = ToolId::parse("0123456789abcdef01234567").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"0123456789abcdef01234567\"");
        assert_eq!(serde_json::from_str::<ToolId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ToolId>("\"acme\"").is_err());
        assert!(serde_json::from_str::<ToolId>("12").is_err());
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
