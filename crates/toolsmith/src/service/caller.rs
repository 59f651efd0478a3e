//! Who is asking: the authenticated principal every use case receives.

use toolsmith_domain::{OrgId, Permission, PermissionSet};
use toolsmith_store::UserRef;

use super::Error;

/// The authenticated caller of a use case, addressing one organization.
///
/// `org` is the organization whose resources are addressed; `user.org_id` is the one that issued
/// the caller's token. They differ when a user of one organization holds a role in another.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The organization addressed (the `{organization}` of the path).
    pub org: OrgId,
    /// Who is calling: the user and the organization that issued their token.
    pub user: UserRef,
    permissions: PermissionSet,
}

impl Caller {
    /// A caller with the permissions its roles in `org_id` give.
    pub fn new(org: OrgId, user: UserRef, permissions: PermissionSet) -> Caller {
        Caller { org, user, permissions }
    }

    /// Whether the caller holds a permission in the addressed organization.
    pub fn can(&self, permission: Permission) -> bool {
        self.permissions.contains(permission)
    }

    /// [`Error::Forbidden`] unless the caller holds the permission.
    pub fn require(&self, permission: Permission) -> Result<(), Error> {
        if self.can(permission) {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }
}
