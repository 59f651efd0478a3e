//! Per-user, per-endpoint rate limits over fixed one-minute windows.
//!
//! On SQLite (one process) the counters live in memory. On PostgreSQL, where several server
//! processes share the load, they live in the database so that a limit holds however requests
//! are spread. A database failure lets the request through rather than failing it: the limit is
//! protection, not correctness.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use toolsmith_domain::time::Timestamp;
use toolsmith_store::Store;

const WINDOW_SECS: i64 = 60;

/// Where the counters live.
pub enum RateLimiter {
    /// Limits are switched off (benchmarks, trusted deployments).
    Off,
    /// In this process's memory.
    Memory(Mutex<HashMap<String, (i64, u32)>>),
    /// In the shared database.
    Database(Store),
}

/// The outcome of counting one request.
#[derive(Debug, Clone, Copy)]
pub struct RateStatus {
    /// Requests allowed per window.
    pub limit: u32,
    /// Requests left in this window after this one.
    pub remaining: u32,
    /// When the window ends, seconds since the epoch.
    pub reset_at: i64,
    /// Whether this request is over the limit.
    pub exceeded: bool,
}

impl RateStatus {
    /// The `X-RateLimit-*` headers (and `Retry-After` when exceeded) describing this status.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: i64| {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        };
        put("x-ratelimit-limit", i64::from(self.limit));
        put("x-ratelimit-remaining", i64::from(self.remaining));
        put("x-ratelimit-reset", self.reset_at);
        if self.exceeded {
            put("retry-after", (self.reset_at - Timestamp::now().as_secs()).max(1));
        }
        headers
    }
}

impl RateLimiter {
    /// Counts one request of `bucket` against `limit` per minute; `None` when limits are off.
    pub async fn hit(&self, bucket: &str, limit: u32) -> Option<RateStatus> {
        let now = Timestamp::now().as_secs();
        let window = now - now.rem_euclid(WINDOW_SECS);
        let count = match self {
            RateLimiter::Off => return None,
            RateLimiter::Memory(counters) => {
                let mut counters = counters.lock().unwrap_or_else(|p| p.into_inner());
                if counters.len() > 100_000 {
                    counters.retain(|_, (w, _)| *w == window);
                }
                let entry = counters.entry(bucket.to_owned()).or_insert((window, 0));
                if entry.0 != window {
                    *entry = (window, 0);
                }
                entry.1 = entry.1.saturating_add(1);
                i64::from(entry.1)
            }
            RateLimiter::Database(store) => match store.rate_limit_hit(bucket, window).await {
                Ok(count) => {
                    // Roughly once a minute per process, drop counters of finished windows.
                    if count == 1 && rand::random::<u8>() < 8 {
                        let store = store.clone();
                        tokio::spawn(async move { store.prune_rate_limits(window - WINDOW_SECS).await });
                    }
                    count
                }
                Err(err) => {
                    tracing::warn!(error = %err, "rate limit counter unavailable; letting the request through");
                    return None;
                }
            },
        };
        Some(RateStatus {
            limit,
            remaining: (i64::from(limit) - count).max(0) as u32,
            reset_at: window + WINDOW_SECS,
            exceeded: count > i64::from(limit),
        })
    }
}
