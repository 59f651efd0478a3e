//! toolsmith's own identity contract: API keys that sign in as a user, and the signed tokens
//! (JWTs) every other request carries.

pub mod api_key;
pub mod token;
