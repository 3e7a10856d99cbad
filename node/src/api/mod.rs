//! The HTTP API (axum): routes, shared state and the problem-document error type.

mod answer;
pub mod datasets;
pub mod error;
mod federation;
mod node;
mod policy;
mod query;
mod sql;
mod transfers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use tower_http::trace::{DefaultOnResponse, OnResponse, TraceLayer};

use crate::auth::Auth;
use crate::config::Config;
use crate::federation::Federation;
use crate::identity::Identity;
use crate::policies::Policies;
use crate::query::provider::ProviderContext;
use allmende_data::datasets::Datasets;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// The node's identity.
    pub identity: Arc<Identity>,
    /// The node's datasets.
    pub datasets: Arc<Datasets>,
    /// The node's federation state.
    pub federation: Arc<Federation>,
    /// The node's usage policies, agreements and audit log.
    pub policies: Arc<Policies>,
    /// The query engine and its threads.
    pub engine: allmende_data::sql::Engine,
    /// What answering federated queries needs.
    pub provider: Arc<ProviderContext>,
    /// Whole-dataset transfers, as consumer and provider.
    pub transfers: Arc<crate::transfer::Transfers>,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// When the node started.
    pub started: Instant,
    /// Authentication and access control.
    pub auth: Arc<Auth>,
}

impl axum::extract::FromRef<AppState> for Arc<Auth> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

/// The API's router. Every route needs the role `crate::auth::ROUTES` declares for it,
/// checked by one `route_layer`. Every request body is bounded (`limits.max_body_bytes`, uploads
/// by `limits.max_upload_bytes` while they stream to disk), every error response is a problem
/// document, and a handler that panics is answered with a 500 problem document.
pub fn router(state: AppState) -> Router {
    let auth = state.auth.clone();
    let body_limit = usize::try_from(state.config.limits.max_body_bytes).unwrap_or(usize::MAX);
    let api = Router::new()
        .merge(node::routes())
        .merge(sql::routes())
        .merge(federation::routes())
        .merge(policy::routes())
        .merge(query::routes())
        .merge(transfers::routes())
        .merge(datasets::routes())
        .merge(crate::auth::routes())
        .layer(DefaultBodyLimit::max(body_limit))
        .route_layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            crate::auth::middleware,
        ))
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not-found",
                "no such route; the API lives under /api/v1",
            )
        })
        .layer(axum::middleware::map_response(error::as_problem));
    // The Dataspace Protocol answers with its own error messages and its own authentication.
    Router::new()
        .merge(crate::dsp::routes())
        .merge(api)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panicked,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(request_done),
        )
        .layer(auth.cors())
        .with_state(state)
}

/// The span of one request, with OpenTelemetry's HTTP attribute names (`otel.*` fields name and
/// mark the exported span). It holds the path only: a query string may hold a sign-in code. At
/// debug level, so the log shows it only when asked to; `telemetry.filter` exports it by default.
fn request_span(req: &axum::extract::Request) -> tracing::Span {
    let method = req.method().as_str();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    tracing::debug_span!(
        "request",
        otel.name = route.map_or_else(|| method.to_owned(), |r| format!("{method} {r}")),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = route,
        url.path = req.uri().path(),
        http.response.status_code = tracing::field::Empty,
    )
}

/// Records the status on the request's span; a 5xx marks the exported span as failed.
fn request_done(res: &axum::response::Response, latency: Duration, span: &tracing::Span) {
    span.record("http.response.status_code", res.status().as_u16());
    if res.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    DefaultOnResponse::new().on_response(res, latency, span);
}
