//! The Model Context Protocol (MCP): what the organization's MCP server (`http::mcp`) and the
//! stdio bridge (`toolsmith mcp`, [`bridge`]) share: the protocol revisions served, the header
//! names and the `_meta` keys toolsmith reads.

pub mod bridge;

/// The current protocol revision: stateless, every request carries its protocol version and the
/// client's capabilities in `_meta`; there is no `initialize` handshake.
pub const CURRENT_REVISION: &str = "2026-07-28";

/// The revision before it: an `initialize` handshake, then requests carrying the negotiated
/// version in the `MCP-Protocol-Version` header. The server answers `initialize` with it.
pub const PREVIOUS_REVISION: &str = "2025-11-25";

/// Every revision served, newest first (the order `server/discover` lists them in).
pub const REVISIONS: [&str; 2] = [CURRENT_REVISION, PREVIOUS_REVISION];

/// The header naming the protocol revision of a request.
pub const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";

/// The header of a session id; the server issues none, but a client keeps one when it does.
pub const SESSION_ID_HEADER: &str = "mcp-session-id";

/// The header repeating a request's method (required from 2026-07-28).
pub const METHOD_HEADER: &str = "mcp-method";

/// The header repeating the tool a `tools/call` names (required from 2026-07-28).
pub const NAME_HEADER: &str = "mcp-name";

/// The `_meta` keys of a request that toolsmith reads.
pub mod meta {
    /// The request's protocol revision (2026-07-28 and later).
    pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
    /// The client's capabilities for this request (2026-07-28 and later).
    pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
    /// The server's name and version, on every result of 2026-07-28.
    pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
    /// A `tools/call`'s user variables passed to the tool and stored with the record (an object
    /// of strings), as the invoke endpoint's `nonsensitive_user_variables`.
    pub const NONSENSITIVE_USER_VARIABLES: &str = "toolsmith/nonsensitive_user_variables";
    /// A `tools/call`'s secret user variables (an object of strings): passed to the tool, masked
    /// in everything that comes back, never stored.
    pub const SENSITIVE_USER_VARIABLES: &str = "toolsmith/sensitive_user_variables";
    /// A `tools/call`'s invocation mode: `regular` (the default) or `conversation-simulation`.
    pub const INVOCATION_MODE: &str = "toolsmith/invocation_mode";
    /// On a `tools/call` result: the id of the invocation record.
    pub const INVOCATION_ID: &str = "toolsmith/invocation_id";
    /// On a `tools/call` result: the version that ran.
    pub const TOOL_VERSION: &str = "toolsmith/tool_version";
}
