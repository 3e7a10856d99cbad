//! `GET /healthz` and `GET /api/v1/node`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{ApiError, AppState};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/api/v1/node", get(node_info))
}

async fn node_info(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let datasets = state.datasets.list().map_err(ApiError::from)?.len();
    Ok(Json(json!({
        "name": state.config.name,
        "district_key": state.config.district_key,
        "peer_id": state.identity.peer_id().to_string(),
        "did": state.identity.did(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "datasets": datasets,
    })))
}
