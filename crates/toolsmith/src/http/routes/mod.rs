//! Request handlers, one file per resource.

pub mod docs;
pub mod envvars;
pub mod git;
pub mod health;
pub mod invocations;
pub mod invoke;
pub mod repo;
pub mod repo_access;
pub mod signin;
pub mod test_tool;
pub mod tools;
pub mod versions;
