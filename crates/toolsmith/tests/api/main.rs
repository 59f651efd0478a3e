//! The API suite: drives a real toolsmith server over HTTP, like a client would, once on SQLite
//! and once on PostgreSQL.

mod support;

mod auth;
mod build_isolation;
mod contract;
mod envvars;
mod examples;
mod invocations;
mod invoke;
mod isolation;
mod locks;
mod rate_limits;
mod repo;
mod signin;
mod tools;
mod versions;
