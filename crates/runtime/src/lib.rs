//! Running tool code.
//!
//! Architecture invariant: this crate is the only place that starts tool code — a tool's
//! tests and schema extraction at build time as much as its invocations. Everything it starts
//! runs inside a [`sandbox`]: a bubblewrap container that sees the tool's own files read-only,
//! a private `/tmp`, and nothing of the server (no data directory, no other tools, no server
//! environment), under resource limits and a wall-clock timeout.
//!
//! Invocations run in a [`zygote`] per version, kept by the [`pool`]: a sandboxed Python process
//! that imported the tool once and forks a fresh child for every call.

pub mod cgroup;
pub mod egress;
pub mod introspect;
pub mod pool;
pub mod sandbox;
pub mod seccomp;
pub mod secret;
pub mod testnet;
pub mod zygote;

pub use egress::EgressPolicy;
pub use pool::{Busy, Pool, PoolConfig, VersionRuntime};
pub use sandbox::{Identity, Limits, Mount, Network, Outcome, Purpose, Sandbox, SandboxError, Spawned};
pub use secret::Secret;
pub use zygote::{mask, InvocationLimits, RunOutcome, StartError, Zygote};
