//! The Dataspace Protocol 2025-1, HTTPS binding, beside the libp2p protocols and on the same
//! datasets and policies (issue 18): version discovery and the catalog protocol so far.
//!
//! The routes live outside the management API (`/api/v1`): their errors are DSP's own error
//! messages ([`error::DspError`]), not problem documents, and they need no API token. Messages
//! are read as the compact JSON the DSP schemas define (the form every DSP 2025-1 message is
//! specified in): an object whose `@context` is an array naming the DSP context and whose
//! `@type` is the message's type; a body over `limits.max_body_bytes` is refused with 413.

pub mod catalog;
pub mod error;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use allmende_policy::dsp::DSP_CONTEXT;
use error::{Area, DspError};

use crate::api::AppState;

/// The protocol version the node speaks.
pub const VERSION: &str = "2025-1";
/// Where its endpoints live, relative to the node's root (`<base>` in the specification).
pub const BASE: &str = "/dsp/2025-1";

/// The DSP routes: `/.well-known/dspace-version` and everything under [`BASE`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/dspace-version", get(version))
        .route(&format!("{BASE}/catalog/request"), post(catalog::request))
        .route(
            &format!("{BASE}/catalog/datasets/{{id}}"),
            get(catalog::dataset_request),
        )
}

/// `GET /.well-known/dspace-version` (unauthenticated, as the specification requires).
async fn version(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "protocolVersions": [{
            "version": VERSION,
            "path": BASE,
            "binding": "HTTPS",
            "identifierType": "did:key",
            "serviceId": format!("urn:allmende:dsp:{}", state.federation.peer_id()),
        }]
    }))
}

/// Reads a DSP message of type `expected` from `body` (at most `limit` bytes).
pub async fn message(
    area: Area,
    body: Body,
    limit: usize,
    expected: &str,
) -> Result<Value, DspError> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        DspError::new(
            area,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("the message exceeds the node's limit of {limit} bytes"),
        )
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        DspError::bad_request(area, "invalid-json", format!("the body is not JSON: {e}"))
    })?;
    check_message(area, &value, expected)?;
    Ok(value)
}

/// Checks the parts every DSP message has: an object, its `@context` an array of strings
/// naming the DSP context, its `@type` `expected`.
fn check_message(area: Area, value: &Value, expected: &str) -> Result<(), DspError> {
    let invalid = |reason: String| DspError::bad_request(area, "invalid-message", reason);
    let Some(object) = value.as_object() else {
        return Err(invalid(format!("a {expected} is a JSON object")));
    };
    let context = object.get("@context").and_then(Value::as_array);
    let names_dsp = context
        .is_some_and(|c| c.iter().all(Value::is_string) && c.iter().any(|s| s == DSP_CONTEXT));
    if !names_dsp {
        return Err(invalid(format!(
            "`@context` must be an array of strings that holds {DSP_CONTEXT}"
        )));
    }
    match object.get("@type").and_then(Value::as_str) {
        Some(t) if t == expected => Ok(()),
        Some(t) => Err(invalid(format!("expected a {expected}, got a `{t}`"))),
        None => Err(invalid(format!("a {expected} needs `@type`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_need_the_dsp_context_and_their_type() {
        let ok = json!({"@context": [DSP_CONTEXT], "@type": "CatalogRequestMessage"});
        assert!(check_message(Area::Catalog, &ok, "CatalogRequestMessage").is_ok());
        for bad in [
            json!([1]),
            json!({"@type": "CatalogRequestMessage"}),
            json!({"@context": DSP_CONTEXT, "@type": "CatalogRequestMessage"}),
            json!({"@context": ["https://example.org/other"], "@type": "CatalogRequestMessage"}),
            json!({"@context": [DSP_CONTEXT, 3], "@type": "CatalogRequestMessage"}),
            json!({"@context": [DSP_CONTEXT], "@type": "DatasetRequestMessage"}),
            json!({"@context": [DSP_CONTEXT]}),
        ] {
            let e = check_message(Area::Catalog, &bad, "CatalogRequestMessage").unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
