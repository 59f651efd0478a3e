//! Pure types and rules of toolsmith, shared by every other crate.
//!
//! Nothing here performs I/O: parsing a value from the outside world into one of these types is
//! the one place its rules are checked ("parse, don't validate"), so code holding an
//! [`ids::ToolId`] or a [`names::ToolName`] never re-checks it.

pub mod ids;
pub mod invocation_source;
pub mod names;
pub mod permissions;
pub mod tags;
pub mod time;
pub mod version;

pub use ids::{ApiKeyId, BuildId, IdError, InvocationId, ObjectId, OrgId, ToolId, UserId, VersionId};
pub use invocation_source::{InvocationSource, SourceType};
pub use names::{EnvVarName, ToolName};
pub use permissions::{Permission, PermissionSet, Role};
pub use tags::{Tag, TagFilter};
pub use version::{BumpType, Specifier, Version};
