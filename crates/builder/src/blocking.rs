//! Filesystem work off the async executor.
//!
//! A build runs inside a request handler, and much of it is filesystem work that takes as long
//! as the project is large: hashing and copying its tree, walking what uv installed to seal it,
//! removing a work directory with a whole environment in it. On an executor thread that would
//! stall every other request the thread serves (on a two-core machine, half the server), so each
//! such piece runs on tokio's blocking pool, as one closure per step rather than one per call.

use std::io;

/// Runs `work` on the blocking pool and returns what it returned. A panic in `work` goes on in
/// the caller, as it would have had `work` run there.
pub(crate) async fn unblock<T: Send + 'static>(work: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(io::Error::other("the server is shutting down")),
    }
}
