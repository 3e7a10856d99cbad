//! How the API's errors become problem documents ([`crate::problem::Problem`]): the errors of
//! each layer mapped to a status and kind, extractors whose rejections are problems, and the
//! layers that turn other error responses and panics into problems.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::problem::PROBLEM;
pub use crate::problem::Problem as ApiError;

use allmende_data::datasets::DatasetError;
use allmende_data::import::ImportError;
use allmende_data::sql::SqlError;

/// Most bytes of another layer's error text kept as a problem's detail.
const MAX_DETAIL_BYTES: usize = 1024;

/// Turns an error response that is not a problem document (axum's own rejections: a path
/// that does not decode, a body over the limit, a method the route does not have) into one,
/// keeping its status and its text as the detail.
pub(super) async fn as_problem(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(MAX_DETAIL_BYTES)]).into_owned())
        .unwrap_or_default();
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        s if s.is_server_error() => "internal",
        _ => "invalid-request",
    };
    let detail = match (status, text.trim()) {
        (StatusCode::PAYLOAD_TOO_LARGE, _) => {
            "the request body exceeds the node's limit (limits.max_body_bytes)".to_owned()
        }
        (_, "") => status.canonical_reason().unwrap_or("error").to_owned(),
        (_, t) => t.to_owned(),
    };
    let mut problem = ApiError::new(status, kind, detail).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().append(name.clone(), value.clone());
        }
    }
    problem
}

/// The answer to a request whose handler panicked: a 500 problem document (the panic is in the
/// log).
pub(super) fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    ApiError::internal(format!("a handler panicked: {message}")).into_response()
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::UnknownFormat(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unknown-format",
                e.to_string(),
            ),
            ImportError::Invalid { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-data",
                e.to_string(),
            ),
            ImportError::Empty(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "empty-data",
                e.to_string(),
            ),
            ImportError::TooWide { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too-many-columns",
                e.to_string(),
            ),
            ImportError::Io(_) => Self::internal(e),
        }
    }
}

impl From<DatasetError> for ApiError {
    fn from(e: DatasetError) -> Self {
        match e {
            DatasetError::NotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "not-found", e.to_string())
            }
            DatasetError::InvalidMetadata(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-metadata",
                e.to_string(),
            ),
            DatasetError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            DatasetError::Import(inner) => inner.into(),
            DatasetError::Store(_) | DatasetError::Io(_) => Self::internal(e),
        }
    }
}

impl From<SqlError> for ApiError {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::Invalid(_) => Self::bad_request("invalid-query", e.to_string()),
            SqlError::NotAllowed(_) => {
                Self::new(StatusCode::FORBIDDEN, "not-allowed", e.to_string())
            }
            SqlError::TooComplex(_) => Self::bad_request("too-complex", e.to_string()),
            SqlError::ResourcesExhausted(_) | SqlError::Timeout(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "query-limit",
                e.to_string(),
            ),
            SqlError::Evaluation(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "query-failed",
                e.to_string(),
            ),
            SqlError::Cancelled => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting-down",
                e.to_string(),
            ),
            SqlError::Internal(_) => Self::internal(e),
        }
    }
}

/// A JSON body extractor whose rejections are problem documents too.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    "the request body exceeds the node's limit (limits.max_body_bytes)",
                ))
            }
            Err(rejection) => Err(ApiError::new(
                rejection.status(),
                "invalid-body",
                rejection.body_text(),
            )),
        }
    }
}

/// A query-string extractor whose rejections are problem documents too.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad_request(
                "invalid-query-string",
                rejection.body_text(),
            )),
        }
    }
}
