//! `POST /api/v1/sql`: local SQL over the node's datasets.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;

use super::error::{ApiJson, ApiQuery};
use super::{ApiError, AppState};
use allmende_data::output::OutputFormat;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/sql", post(run_sql))
}

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    #[serde(default)]
    format: Option<OutputFormat>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FormatQuery {
    pub(super) format: Option<String>,
}

/// The format from `?format=`, the body, or the `Accept` header, in that order; JSON otherwise.
pub(super) fn pick_format(
    query: Option<&str>,
    body: Option<OutputFormat>,
    headers: &HeaderMap,
) -> Result<OutputFormat, ApiError> {
    if let Some(name) = query {
        return OutputFormat::from_name(name).ok_or_else(|| {
            ApiError::bad_request(
                "invalid-format",
                format!("unknown format `{name}`; use json, csv or arrow"),
            )
        });
    }
    Ok(body
        .or_else(|| {
            headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .and_then(OutputFormat::from_accept)
        })
        .unwrap_or(OutputFormat::Json))
}

#[tracing::instrument(skip_all, fields(len = body.sql.len()))]
async fn run_sql(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<FormatQuery>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SqlRequest>,
) -> Result<Response, ApiError> {
    let format = pick_format(query.format.as_deref(), body.format, &headers)?;
    super::answer::local_query(&state, body.sql, format).await
}
