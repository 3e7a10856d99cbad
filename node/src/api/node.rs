//! `GET /healthz` and `GET /api/v1/node`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
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
        .route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let s = state.clone();
    let snapshot = tokio::task::spawn_blocking(move || crate::metrics::Snapshot {
        catalog_entries: s.federation.catalog_size() as i64,
        peers: s.federation.connected_count() as i64,
        datasets: s.datasets.list().map_or(0, |l| l.len() as i64),
        decisions: s.policies.audit_head().0 as i64,
        rocksdb_keys: s
            .datasets
            .store()
            .property("rocksdb.estimate-num-keys")
            .unwrap_or(0) as i64,
        rocksdb_sst_bytes: s
            .datasets
            .store()
            .property("rocksdb.total-sst-files-size")
            .unwrap_or(0) as i64,
    })
    .await
    .map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(snapshot),
    )
        .into_response())
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
