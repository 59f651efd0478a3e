//! toolsmith: a self-hostable, wire-compatible implementation of the Amigo Tool service.
//!
//! This crate is the service itself: configuration, the HTTP layer, identity (tokens and API
//! keys), the first-start bootstrap and the `admin` commands. Persistence lives in
//! `toolsmith-store`, pure rules in `toolsmith-domain`.

pub mod admin;
pub mod app;
pub mod backup;
pub mod bootstrap;
pub mod config;
pub mod http;
pub mod identity;
pub mod keys;
pub mod mcp;
pub mod metrics;
pub mod server;
pub mod service;
