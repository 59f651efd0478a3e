//! Permissions and the built-in roles that grant them.
//!
//! The permission strings are the ones the wire contract names (`Tool:CreateTool`, …) plus a few
//! for the operations it leaves open (reading tools, reading invocations, testing, pushing,
//! attaching an invocation source), so a read-only user can be told apart from one who may change
//! things, and an agent runtime from a person calling a tool.

use std::fmt;

/// One thing a user may be allowed to do within an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// List tools and their versions.
    GetTool,
    /// Create a tool.
    CreateTool,
    /// Modify a tool, its env vars, publish and deprecate its versions.
    ModifyTool,
    /// Deprecate a tool.
    DeleteTool,
    /// Invoke a published version.
    InvokeTool,
    /// Build and run an unpublished commit through the test endpoint.
    TestTool,
    /// Read the organization's tool repository (clone, fetch, browse).
    AccessRepo,
    /// Push to the organization's tool repository (together with `AccessRepo`).
    PushRepo,
    /// Read invocation records that came from regular conversations.
    GetInteractionInsights,
    /// Read invocation records that came from simulations.
    GetSimulationUnitTestSetRun,
    /// Read invocation records of direct API calls (toolsmith's own source type).
    GetToolInvocation,
    /// Grant and revoke other users' repository access.
    UpdateUserInfo,
    /// Say, when invoking, which conversation or simulation the invocation belongs to. Records
    /// of those sources are read by whoever may read that conversation or simulation, so only
    /// the runtimes that really run them may attach one.
    AttachInvocationSource,
}

impl Permission {
    /// Every permission, for roles that grant all of them.
    pub const ALL: [Permission; 13] = [
        Permission::GetTool,
        Permission::CreateTool,
        Permission::ModifyTool,
        Permission::DeleteTool,
        Permission::InvokeTool,
        Permission::TestTool,
        Permission::AccessRepo,
        Permission::PushRepo,
        Permission::GetInteractionInsights,
        Permission::GetSimulationUnitTestSetRun,
        Permission::GetToolInvocation,
        Permission::UpdateUserInfo,
        Permission::AttachInvocationSource,
    ];

    /// The permission's name as the wire contract and documentation spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::GetTool => "Tool:GetTool",
            Permission::CreateTool => "Tool:CreateTool",
            Permission::ModifyTool => "Tool:ModifyTool",
            Permission::DeleteTool => "Tool:DeleteTool",
            Permission::InvokeTool => "Tool:InvokeTool",
            Permission::TestTool => "Tool:TestTool",
            Permission::AccessRepo => "Tool:AccessRepo",
            Permission::PushRepo => "Tool:PushRepo",
            Permission::GetInteractionInsights => "Conversation:GetInteractionInsights",
            Permission::GetSimulationUnitTestSetRun => "Simulation:GetSimulationUnitTestSetRun",
            Permission::GetToolInvocation => "Tool:GetToolInvocation",
            Permission::UpdateUserInfo => "User:UpdateUserInfo",
            Permission::AttachInvocationSource => "Tool:AttachInvocationSource",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A built-in role: a named set of permissions granted to a user within an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything, including managing other users' access.
    Admin,
    /// Writes tools and their code: everything but user management and attaching invocation
    /// sources.
    Developer,
    /// Calls published tools.
    Invoker,
    /// Reads tools, versions and invocation records.
    Viewer,
    /// Reads the repository; what `POST /user/{id}/tool-repo-access` grants.
    RepoReader,
    /// An agent runtime's service account: calls published tools on behalf of conversations and
    /// simulations, and says which one each call belongs to.
    AgentRuntime,
}

impl Role {
    /// Every built-in role.
    pub const ALL: [Role; 6] =
        [Role::Admin, Role::Developer, Role::Invoker, Role::Viewer, Role::RepoReader, Role::AgentRuntime];

    /// The role's name as stored and as typed on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Invoker => "invoker",
            Role::Viewer => "viewer",
            Role::RepoReader => "repo-reader",
            Role::AgentRuntime => "agent-runtime",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The permissions this role grants.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Admin => &Permission::ALL,
            Role::Developer => &[
                GetTool,
                CreateTool,
                ModifyTool,
                DeleteTool,
                InvokeTool,
                TestTool,
                AccessRepo,
                PushRepo,
                GetInteractionInsights,
                GetSimulationUnitTestSetRun,
                GetToolInvocation,
            ],
            Role::Invoker => &[GetTool, InvokeTool],
            Role::Viewer => &[GetTool, GetInteractionInsights, GetSimulationUnitTestSetRun, GetToolInvocation],
            Role::RepoReader => &[AccessRepo],
            Role::AgentRuntime => &[GetTool, InvokeTool, AttachInvocationSource],
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The union of the permissions of a set of roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionSet(u32);

impl PermissionSet {
    /// The permissions granted by these roles together.
    pub fn from_roles(roles: impl IntoIterator<Item = Role>) -> Self {
        let mut set = PermissionSet::default();
        for role in roles {
            for p in role.permissions() {
                set.0 |= 1 << (*p as u32);
            }
        }
        set
    }

    /// Whether the set contains a permission.
    pub fn contains(&self, p: Permission) -> bool {
        self.0 & (1 << (p as u32)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_grant_what_they_say() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        let admin = PermissionSet::from_roles([Role::Admin]);
        assert!(Permission::ALL.iter().all(|p| admin.contains(*p)));
        let invoker = PermissionSet::from_roles([Role::Invoker]);
        assert!(invoker.contains(Permission::InvokeTool));
        assert!(!invoker.contains(Permission::CreateTool));
        let both = PermissionSet::from_roles([Role::Invoker, Role::RepoReader]);
        assert!(both.contains(Permission::AccessRepo) && both.contains(Permission::InvokeTool));
        assert!(!PermissionSet::default().contains(Permission::GetTool));
    }

    #[test]
    fn only_admins_and_agent_runtimes_attach_invocation_sources() {
        let attaching: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| PermissionSet::from_roles([*r]).contains(Permission::AttachInvocationSource))
            .collect();
        assert_eq!(attaching, [Role::Admin, Role::AgentRuntime]);
        let runtime = PermissionSet::from_roles([Role::AgentRuntime]);
        assert!(runtime.contains(Permission::InvokeTool) && runtime.contains(Permission::GetTool));
        assert!(!runtime.contains(Permission::GetToolInvocation) && !runtime.contains(Permission::TestTool));
    }
}
