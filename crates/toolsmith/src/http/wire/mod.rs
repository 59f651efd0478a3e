//! The JSON shapes of the API, exactly as the wire contract names their fields: a module per
//! resource, and the shapes several of them share here.
//!
//! Architecture invariant: only the HTTP layer knows these shapes; the use cases, the store and
//! the domain speak their own types, and conversion happens here. `tests/architecture.rs` checks
//! that no route builds a response body with `json!`.

pub mod invocations;
pub mod invoke;
pub mod repo;
pub mod tools;
pub mod users;
pub mod versions;

use serde::Serialize;
use toolsmith_domain::Version;
use toolsmith_domain::{OrgId, UserId};
use toolsmith_store::UserRef;

/// `UserInfo` of tools: `{org_id, user_id}`.
#[derive(Debug, Serialize)]
pub struct ToolUserInfo {
    /// The user's organization.
    pub org_id: OrgId,
    /// The user's id.
    pub user_id: UserId,
}

impl From<&UserRef> for ToolUserInfo {
    fn from(u: &UserRef) -> Self {
        ToolUserInfo { org_id: u.org_id.clone(), user_id: u.user_id.clone() }
    }
}

/// `Version`.
#[derive(Debug, Serialize)]
pub struct VersionOut {
    /// Major.
    pub major: u64,
    /// Minor.
    pub minor: u64,
    /// Patch.
    pub patch: u64,
}

impl From<Version> for VersionOut {
    fn from(v: Version) -> Self {
        VersionOut { major: v.major, minor: v.minor, patch: v.patch }
    }
}
