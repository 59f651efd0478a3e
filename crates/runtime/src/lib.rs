//! Running tool code.
//!
//! Architecture invariant: this crate is the only place that starts tool code — a tool's
//! tests and schema extraction at build time as much as its invocations. Everything it starts
//! runs inside a [`sandbox`]: a bubblewrap container that sees the tool's own files read-only,
//! a private `/tmp`, and nothing of the server (no data directory, no other tools, no server
//! environment), under resource limits and a wall-clock timeout.

pub mod introspect;
pub mod sandbox;

pub use sandbox::{Limits, Mount, Outcome, Sandbox, SandboxError};
