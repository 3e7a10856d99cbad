//! The HTTP API (axum): routes, shared state and the problem-document error type.

pub mod datasets;
pub mod error;
mod federation;
mod node;
mod sql;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::datasets::Datasets;
use crate::federation::Federation;
use crate::identity::Identity;

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
    /// When the node started.
    pub started: Instant,
}

/// Bodies other than uploads are small JSON documents.
const JSON_BODY_LIMIT: usize = 1 << 20;

/// The API's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(node::routes())
        .merge(sql::routes())
        .merge(federation::routes())
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        // Uploads are bounded by `limits.max_upload_bytes` while they stream to disk.
        .merge(datasets::routes().layer(DefaultBodyLimit::disable()))
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not-found",
                "no such route; the API lives under /api/v1",
            )
        })
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
