//! `POST /api/v1/query`: federated SQL across the members.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiJson;
use super::{ApiError, AppState};
use crate::metrics::Status;
use crate::query::{self, QueryError, QueryOptions};
use allmende_data::output::OutputFormat;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/query", post(run))
}

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    sql: String,
    #[serde(default)]
    format: Option<OutputFormat>,
    /// Per-provider deadline in milliseconds (default 3000, at most 60000).
    #[serde(default)]
    deadline_ms: Option<u64>,
    #[serde(default)]
    require_all: bool,
    #[serde(default)]
    purpose: Option<String>,
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::NoProviders(_) => {
                Self::new(StatusCode::NOT_FOUND, "no-providers", e.to_string())
            }
            QueryError::Incomplete(_) => {
                Self::new(StatusCode::FAILED_DEPENDENCY, "incomplete", e.to_string())
            }
            QueryError::Sql(inner) => inner.into(),
            QueryError::Federation(inner) => inner.into(),
        }
    }
}

#[tracing::instrument(skip_all, fields(len = body.sql.len()))]
async fn run(
    State(state): State<AppState>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<QueryBody>,
) -> Result<Response, ApiError> {
    let format = super::sql::pick_format(None, body.format, &headers)?;
    let deadline = Duration::from_millis(body.deadline_ms.unwrap_or(3000).clamp(1, 60_000));
    let options = QueryOptions {
        deadline,
        require_all: body.require_all,
        purpose: body.purpose,
        roles: principal
            .as_ref()
            .map(|p| p.roles.iter().map(|r| r.as_str().to_owned()).collect())
            .unwrap_or_default(),
        user: principal.as_ref().map(|p| p.subject.clone()),
        organisation: principal
            .as_ref()
            .map_or_else(|| state.config.name.clone(), |p| p.organisation.clone()),
    };
    let started = std::time::Instant::now();
    // Planned and merged on the query threads, like a local query.
    let (federation, provider, identity) = (
        state.federation.clone(),
        state.provider.clone(),
        state.identity.clone(),
    );
    let (sql_text, memory) = (body.sql.clone(), state.config.limits.sql_memory_bytes);
    let limit = Duration::from_secs(state.config.limits.sql_timeout_secs);
    let result = state
        .engine
        .pool()
        .spawn(tokio::time::Instant::now() + limit, limit, async move {
            Ok(query::run(
                federation,
                provider,
                identity.signing_key().clone(),
                &sql_text,
                &options,
                memory,
            )
            .await)
        })
        .await
        .unwrap_or_else(|e| Err(QueryError::Sql(e)));
    state
        .metrics
        .query_seconds
        .observe(started.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok(_) => "ok",
        Err(QueryError::Sql(allmende_data::sql::SqlError::Invalid(_))) => "invalid",
        Err(QueryError::NoProviders(_)) => "no_providers",
        Err(QueryError::Incomplete(_)) => "incomplete",
        Err(_) => "error",
    };
    state
        .metrics
        .queries
        .get_or_create(&Status {
            status: outcome.into(),
        })
        .inc();
    let answer = result?;
    for m in &answer.members {
        state
            .metrics
            .member_answers
            .get_or_create(&Status {
                status: m.status.to_string(),
            })
            .inc();
    }
    let receipt = hex::encode(answer.receipt.as_bytes());
    let members = serde_json::to_string(&answer.members).map_err(ApiError::internal)?;
    let stream = Box::pin(
        datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            answer.schema.clone(),
            futures::stream::iter(answer.batches.clone().into_iter().map(Ok)),
        ),
    );
    if format == OutputFormat::Json {
        let body_bytes: Vec<u8> = {
            use futures::StreamExt;
            let chunks: Vec<_> = allmende_data::output::encode(stream, OutputFormat::Json)
                .collect()
                .await;
            let mut out = Vec::new();
            for c in chunks {
                out.extend_from_slice(&c.map_err(ApiError::internal)?);
            }
            out
        };
        let rows: serde_json::Value =
            serde_json::from_slice(&body_bytes).map_err(ApiError::internal)?;
        let doc = json!({
            "columns": answer.schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>(),
            "rows": rows,
            "members": answer.members,
            "receipt": receipt,
        });
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(doc.to_string()))
            .map_err(ApiError::internal);
    }
    Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .header("x-allmende-members", members)
        .header("x-allmende-receipt", receipt)
        .body(Body::from_stream(allmende_data::output::encode(
            stream, format,
        )))
        .map_err(ApiError::internal)
}
