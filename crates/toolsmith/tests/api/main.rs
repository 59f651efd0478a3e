//! The API suite: drives a real toolsmith server over HTTP, like a client would, once on SQLite
//! and once on PostgreSQL.

mod support;

mod auth;
mod build_isolation;
mod contract;
mod document;
mod drain;
mod edges;
mod envvars;
mod examples;
mod fuzz;
mod invocations;
mod invoke;
mod isolation;
mod locks;
mod mcp;
mod rate_limits;
mod repo;
mod signin;
mod tools;
mod versions;
