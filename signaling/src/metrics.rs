//! Prometheus metrics of the HTTP edge, labelled by method, route template
//! and status class — never by ids, so label sets stay bounded and carry no
//! personal data. The registry is served on a separate listener by the server.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// HTTP request metrics.
#[derive(Clone)]
pub struct HttpMetrics {
    /// `bedside_http_requests_total{method, route, status}`.
    pub requests: IntCounterVec,
    /// `bedside_http_request_duration_seconds{method, route, status}`.
    pub duration: HistogramVec,
}

impl HttpMetrics {
    /// Creates the metrics and registers them in `registry`. Registering the
    /// same names twice in one registry (two apps in one test process with a
    /// shared registry) keeps the first.
    pub fn register(registry: &Registry) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "bedside_http_requests_total",
                "HTTP requests by method, route template and status.",
            ),
            &["method", "route", "status"],
        )
        .expect("static metric definition is valid");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "bedside_http_request_duration_seconds",
                "HTTP request latency by method, route template and status.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route", "status"],
        )
        .expect("static metric definition is valid");
        let _ = registry.register(Box::new(requests.clone()));
        let _ = registry.register(Box::new(duration.clone()));
        Self { requests, duration }
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&registry.gather(), &mut out)
        .expect("encoding gathered metrics into a String cannot fail");
    out
}
