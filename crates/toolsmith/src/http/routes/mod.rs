//! Request handlers, one file per resource.

pub mod docs;
pub mod envvars;
pub mod signin;
pub mod tools;
