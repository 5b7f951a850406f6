//! Cross-cutting layers: request ids, tracing, metrics, per-client rate
//! limit, security headers and error rendering.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::error::{self, ApiError};

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Content security policy the web client is built to satisfy: only our own
/// scripts, styles and connections; QR codes arrive as data: images.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; media-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Per-client-address limiter.
pub(crate) type ClientLimiter = Arc<DefaultKeyedRateLimiter<IpAddr>>;

pub(crate) fn client_limiter(per_second: u32, burst: u32) -> ClientLimiter {
    let quota = Quota::per_second(
        NonZeroU32::new(per_second).expect("rate limit per second must be positive"),
    )
    .allow_burst(NonZeroU32::new(burst).expect("rate limit burst must be positive"));
    Arc::new(RateLimiter::keyed(quota))
}

/// Wraps the application in the layers, outermost last.
pub(crate) fn apply(app: Router<AppState>, state: AppState) -> Router<AppState> {
    let tls = state.settings().tls;
    let mut app = app
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        // Outside everything that can refuse a request, so every refusal is rendered.
        .layer(middleware::from_fn(error::render))
        .layer(middleware::from_fn_with_state(state, record_metrics))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(self), microphone=(self), geolocation=()"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ));
    if tls {
        app = app.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        ));
    }
    app.layer(
        TraceLayer::new_for_http().make_span_with(|request: &Request| {
            // The route template and request id only: paths hold ids, queries may hold names.
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            let request_id = request
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            tracing::info_span!("http", method = %request.method(), route, request_id)
        }),
    )
    .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
    .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
    // Request ids go into audit rows: the server makes every one, and a
    // client cannot choose, forge or repeat it.
    .layer(middleware::map_request(|mut request: Request| async move {
        request.headers_mut().remove(&REQUEST_ID);
        request
    }))
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = state.metrics();
    let status = response.status();
    let labels = [method.as_str(), route.as_str(), status.as_str()];
    metrics
        .duration
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    metrics.requests.with_label_values(&labels).inc();
    let mut response = response;
    if route.starts_with("/api/") {
        response
            .headers_mut()
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    response
}

async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let limiter = state.limiter();
    if limiter.len() > 100_000 {
        // Forget idle clients so the table stays bounded under address churn.
        limiter.retain_recent();
    }
    if let Some(ip) = ip
        && let Err(not_until) = limiter.check_key(&ip)
    {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests; slow down",
        );
        error.retry_after = Some(wait.as_secs().max(1));
        return error.into_response();
    }
    next.run(request).await
}
