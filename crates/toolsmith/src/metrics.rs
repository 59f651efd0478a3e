//! Prometheus metrics, exposed on a listener of their own (`--metrics-listen`), never with the
//! API.
//!
//! Names follow OpenTelemetry's semantic conventions for FaaS and HTTP, in Prometheus form:
//! `faas_invocations_total`, `faas_errors_total`, `faas_timeouts_total`, `faas_coldstarts_total`,
//! `faas_invoke_duration_seconds`, `faas_init_duration_seconds`,
//! `http_server_request_duration_seconds`; toolsmith's own gauges and histograms are prefixed
//! `toolsmith_`.
//!
//! **Bounded cardinality.** The FaaS series are labelled by organization, tool id and version.
//! At most [`MAX_TOOL_SERIES`] distinct label sets are kept per server process; invocations of any
//! further version are counted under `org="_other", tool="_other", version="_other"`, so a tenant
//! publishing thousands of versions cannot grow the exposition without end. HTTP series are
//! labelled by route template (`/v1/{org}/tool/{tool_id}`, never the concrete path), method and
//! status code, which are bounded by the route list. The registry belongs to the application
//! state: no global recorder.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// How many (organization, tool, version) label sets the FaaS series may have.
pub const MAX_TOOL_SERIES: usize = 1000;

const OTHER: &str = "_other";

/// How an invocation ended, for the FaaS counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationEnd {
    /// The tool returned.
    Succeeded,
    /// The tool raised, crashed or lost its runtime.
    Failed,
    /// The wall-clock limit ran out.
    TimedOut,
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    invocations: IntCounterVec,
    errors: IntCounterVec,
    timeouts: IntCounterVec,
    coldstarts: IntCounterVec,
    invoke_duration: HistogramVec,
    init_duration: HistogramVec,
    http_duration: HistogramVec,
    publish_duration: HistogramVec,
    runtimes: IntGauge,
    in_flight: IntGauge,
    writer_queue: IntGauge,
    series: Mutex<HashSet<(String, String, String)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Buckets for durations from a millisecond to a few minutes.
const SECONDS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

impl Metrics {
    /// A registry with every series of the service registered.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let tool = ["org", "tool", "version"];
        let counter = |name: &str, help: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &tool).expect("a valid counter");
            registry.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(SECONDS.to_vec()), labels)
                .expect("a valid histogram");
            registry.register(Box::new(h.clone())).expect("registered once");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("a valid gauge");
            registry.register(Box::new(g.clone())).expect("registered once");
            g
        };
        Metrics {
            invocations: counter("faas_invocations_total", "Invocations of published tool versions."),
            errors: counter("faas_errors_total", "Invocations that did not succeed (raised, crashed, timed out)."),
            timeouts: counter("faas_timeouts_total", "Invocations stopped by the wall-clock limit."),
            coldstarts: counter("faas_coldstarts_total", "Invocations that had to start their version's runtime."),
            invoke_duration: histogram(
                "faas_invoke_duration_seconds",
                "Time of one invocation, from the runtime's view.",
                &tool,
            ),
            init_duration: histogram(
                "faas_init_duration_seconds",
                "Time to start a version's runtime (sandbox, interpreter, import).",
                &tool,
            ),
            http_duration: histogram(
                "http_server_request_duration_seconds",
                "Duration of HTTP requests, by route template.",
                &["http_route", "http_request_method", "http_response_status_code"],
            ),
            publish_duration: histogram(
                "toolsmith_publish_duration_seconds",
                "Duration of publishes (build, tests, schema), by outcome.",
                &["outcome"],
            ),
            runtimes: gauge("toolsmith_runtimes_running", "Version runtimes (zygotes) running."),
            in_flight: gauge("toolsmith_invocations_in_flight", "Invocations running now."),
            writer_queue: gauge("toolsmith_invocation_writer_queue", "Invocation records waiting to be committed."),
            registry,
            series: Mutex::new(HashSet::new()),
        }
    }

    /// The label values for a version, or the overflow set once [`MAX_TOOL_SERIES`] are in use.
    fn labels(&self, org: &str, tool: &str, version: &str) -> [String; 3] {
        let key = (org.to_owned(), tool.to_owned(), version.to_owned());
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if series.contains(&key) || series.len() < MAX_TOOL_SERIES {
            series.insert(key.clone());
            [key.0, key.1, key.2]
        } else {
            [OTHER.to_owned(), OTHER.to_owned(), OTHER.to_owned()]
        }
    }

    /// Counts one invocation of a version.
    pub fn invocation(&self, org: &str, tool: &str, version: &str, end: InvocationEnd, took: Duration) {
        let labels = self.labels(org, tool, version);
        let labels = [labels[0].as_str(), labels[1].as_str(), labels[2].as_str()];
        self.invocations.with_label_values(&labels).inc();
        self.invoke_duration.with_label_values(&labels).observe(took.as_secs_f64());
        if end != InvocationEnd::Succeeded {
            self.errors.with_label_values(&labels).inc();
        }
        if end == InvocationEnd::TimedOut {
            self.timeouts.with_label_values(&labels).inc();
        }
    }

    /// Counts an invocation that started its version's runtime, and how long the start took.
    pub fn cold_start(&self, org: &str, tool: &str, version: &str, init: Duration) {
        let labels = self.labels(org, tool, version);
        let labels = [labels[0].as_str(), labels[1].as_str(), labels[2].as_str()];
        self.coldstarts.with_label_values(&labels).inc();
        self.init_duration.with_label_values(&labels).observe(init.as_secs_f64());
    }

    /// Records the start of a version's runtime that no invocation waited for (the warm-up after
    /// a publish): an init, not a cold start.
    pub fn runtime_started(&self, org: &str, tool: &str, version: &str, init: Duration) {
        let labels = self.labels(org, tool, version);
        let labels = [labels[0].as_str(), labels[1].as_str(), labels[2].as_str()];
        self.init_duration.with_label_values(&labels).observe(init.as_secs_f64());
    }

    /// Records one HTTP request.
    pub fn http_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.http_duration.with_label_values(&[route, method, &status.to_string()]).observe(took.as_secs_f64());
    }

    /// Records one publish.
    pub fn publish(&self, succeeded: bool, took: Duration) {
        self.publish_duration
            .with_label_values(&[if succeeded { "succeeded" } else { "failed" }])
            .observe(took.as_secs_f64());
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, runtimes: usize, in_flight: usize, writer_queue: usize) -> String {
        self.runtimes.set(runtimes as i64);
        self.in_flight.set(in_flight as i64);
        self.writer_queue.set(writer_queue as i64);
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Serves `GET /metrics` (the text exposition) on `listener` until `shutdown` resolves. Nothing
/// else is served there, and it is off unless `--metrics-listen` names an address.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: crate::app::AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|axum::extract::State(state): axum::extract::State<crate::app::AppState>| async move {
            ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.render_metrics())
        }),
    );
    axum::serve(listener, app.with_state(state)).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_series_are_capped() {
        let m = Metrics::new();
        for n in 0..MAX_TOOL_SERIES + 50 {
            m.invocation("acme", &format!("tool{n}"), "1.0.0", InvocationEnd::Succeeded, Duration::from_millis(1));
        }
        let text = m.render(0, 0, 0);
        let series = text.lines().filter(|l| l.starts_with("faas_invocations_total{")).count();
        assert_eq!(series, MAX_TOOL_SERIES + 1, "the cap plus one overflow series");
        assert!(text.contains(r#"faas_invocations_total{org="_other",tool="_other",version="_other"} 50"#), "{text}");
    }
}
