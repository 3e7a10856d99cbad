//! One problem type for every error response of the node: an RFC 9457 problem document
//! (`application/problem+json`) with a `type` of `urn:allmende:problem:<kind>`. Details of
//! server-side failures are logged, not sent.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error response: a status, a problem type and a human-readable detail.
#[derive(Debug)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// Short problem name; the `type` URI is `urn:allmende:problem:<kind>`.
    pub kind: &'static str,
    /// What went wrong, for the client.
    pub detail: String,
}

impl Problem {
    /// A new error.
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
        }
    }

    /// 400 with the given problem kind.
    pub fn bad_request(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, detail)
    }

    /// 500; the detail is logged and replaced in the response.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            detail.to_string(),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let detail = if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(kind = self.kind, detail = %self.detail, "request failed");
            "the node failed to handle the request; its log has the details".to_owned()
        } else {
            tracing::debug!(kind = self.kind, detail = %self.detail, "request rejected");
            shortened(self.detail)
        };
        let body = json!({
            "type": format!("urn:allmende:problem:{}", self.kind),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": detail,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, PROBLEM)],
            body.to_string(),
        )
            .into_response()
    }
}

/// Most characters of a problem's detail; longer details (an error that quotes a long query)
/// are cut there.
const MAX_DETAIL_CHARS: usize = 2000;

fn shortened(detail: String) -> String {
    match detail.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((end, _)) => format!("{}…", &detail[..end]),
        None => detail,
    }
}

/// The media type of problem documents.
pub(crate) const PROBLEM: &str = "application/problem+json";
