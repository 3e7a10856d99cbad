//! DSP's own error bodies: every refused DSP request is answered with the protocol's error
//! message of its area (`CatalogError`, later `ContractNegotiationError`, `TransferError`), never
//! with the management API's problem documents.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use allmende_policy::dsp::DSP_CONTEXT;

/// The area of the protocol an error belongs to, which names its message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    /// The catalog protocol: `CatalogError`.
    Catalog,
}

impl Area {
    fn message_type(self) -> &'static str {
        match self {
            Area::Catalog => "CatalogError",
        }
    }
}

/// A refused DSP request: its status, a short machine-readable code and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{status} {code}: {reason}")]
pub struct DspError {
    area: Area,
    status: StatusCode,
    code: &'static str,
    reason: String,
}

impl DspError {
    /// An error of `area` with `status`, `code` and `reason`.
    pub fn new(
        area: Area,
        status: StatusCode,
        code: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            area,
            status,
            code,
            reason: reason.into(),
        }
    }

    /// 400: the message is not one the protocol defines or the node accepts.
    pub fn bad_request(area: Area, code: &'static str, reason: impl Into<String>) -> Self {
        Self::new(area, StatusCode::BAD_REQUEST, code, reason)
    }

    /// 404: nothing with that id (or nothing the caller may see).
    pub fn not_found(area: Area, reason: impl Into<String>) -> Self {
        Self::new(area, StatusCode::NOT_FOUND, "not-found", reason)
    }

    /// 500: the node failed; the detail goes to the log, not to the caller.
    pub fn internal(area: Area, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "a DSP request failed");
        Self::new(
            area,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the node failed to answer; see its log",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for DspError {
    fn into_response(self) -> Response {
        let body = json!({
            "@context": [DSP_CONTEXT],
            "@type": self.area.message_type(),
            "code": self.code,
            "reason": [self.reason],
        });
        (self.status, axum::Json(body)).into_response()
    }
}
