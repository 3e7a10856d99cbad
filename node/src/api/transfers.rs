//! Whole-dataset transfers from other members: `POST /api/v1/transfers` starts one (under an
//! agreement this node holds), `GET …/{id}` shows its progress, `GET …/{id}/data` downloads the
//! verified file, `POST …/{id}/resume` continues a failed one, `DELETE …/{id}` removes it.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::io::ReaderStream;

use super::error::ApiJson;
use super::{ApiError, AppState};
use crate::transfer::{TransferError, TransferOrder, TransferRecord};
use allmende_protocol::transfer::TransferFormat;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/transfers", get(list).post(start))
        .route("/api/v1/transfers/{id}", get(show).delete(remove))
        .route("/api/v1/transfers/{id}/resume", post(resume))
        .route("/api/v1/transfers/{id}/data", get(data))
}

impl From<TransferError> for ApiError {
    fn from(e: TransferError) -> Self {
        match e {
            TransferError::Invalid(_) => Self::bad_request("invalid-transfer", e.to_string()),
            TransferError::NotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "not-found", e.to_string())
            }
            TransferError::NoAgreement(_) => {
                Self::new(StatusCode::CONFLICT, "no-agreement", e.to_string())
            }
            TransferError::Conflict(_) => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            TransferError::Store(_) | TransferError::Io(_) => Self::internal(e),
        }
    }
}

/// The request body of `POST /api/v1/transfers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// `<member>.<dataset>`.
    dataset: String,
    #[serde(default)]
    format: Option<TransferFormat>,
    #[serde(default)]
    columns: Vec<String>,
    /// A row filter in SQL.
    #[serde(default, rename = "where")]
    filter: Option<String>,
    #[serde(default)]
    agreement: Option<String>,
    #[serde(default)]
    purpose: Option<String>,
    /// Conclude an agreement first if this node holds none (needs the steward role).
    #[serde(default)]
    negotiate: bool,
}

fn view(r: &TransferRecord) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Some(size) = r.size.filter(|s| *s > 0) {
        v["progress"] = json!((r.received as f64 / size as f64 * 1000.0).round() / 1000.0);
    }
    v
}

async fn start(
    State(state): State<AppState>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let order = TransferOrder {
        table: body.dataset,
        format: body.format,
        columns: body.columns,
        filter: body.filter,
        agreement: body.agreement,
        purpose: body.purpose,
        user: principal.as_ref().map(|p| p.subject.clone()),
        organisation: principal
            .as_ref()
            .map_or_else(|| state.config.name.clone(), |p| p.organisation.clone()),
        roles: principal
            .as_ref()
            .map(|p| p.roles.iter().map(|r| r.as_str().to_owned()).collect())
            .unwrap_or_default(),
    };
    let record = match state.transfers.start(order.clone()) {
        Err(TransferError::NoAgreement(reason)) if body.negotiate => {
            if principal
                .as_ref()
                .is_some_and(|p| !p.has(crate::auth::Role::Steward))
            {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("{reason}; concluding an agreement needs the role `steward`"),
                ));
            }
            let provider = state.transfers.resolve(&order.table)?;
            super::policy::conclude(&state, provider.peer, &provider.dataset).await?;
            state.transfers.start(order)?
        }
        other => other?,
    };
    Ok((StatusCode::ACCEPTED, Json(view(&record))))
}

async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all = state.transfers.list()?;
    Ok(Json(json!({
        "transfers": all.iter().map(view).collect::<Vec<_>>(),
    })))
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(view(&state.transfers.get(&id)?)))
}

async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let record = state.transfers.resume(&id)?;
    Ok((StatusCode::ACCEPTED, Json(view(&record))))
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.transfers.remove(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn data(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (record, path) = state.transfers.file(&id)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(ApiError::internal)?;
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    let content_type = match record.format {
        TransferFormat::Parquet => "application/vnd.apache.parquet",
        TransferFormat::Arrow => "application/vnd.apache.arrow.file",
    };
    let name = format!(
        "{}-{}.{}",
        record.member,
        record.dataset,
        record.format.extension()
    );
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, len)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .header("x-allmende-sha256", record.sha256.unwrap_or_default())
        .body(Body::from_stream(ReaderStream::with_capacity(
            file,
            1 << 20,
        )))
        .map_err(ApiError::internal)
}
