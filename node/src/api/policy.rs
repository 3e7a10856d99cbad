//! Policy routes: a dataset's signed usage policy, agreements (negotiated over libp2p),
//! revocations, and the audit log.

use allmende_policy::sign::SignedPolicy;
use allmende_protocol::negotiate::{NegotiateRequest, NegotiateResponse};
use allmende_protocol::{MAX_ENVELOPE_BYTES, PeerId};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiJson;
use super::{ApiError, AppState};
use crate::policies::PolicyError;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/datasets/{id}/policy", get(show).put(attach))
        .route("/api/v1/agreements", get(agreements).post(negotiate))
        .route("/api/v1/agreements/{id}/revoke", post(revoke))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/audit/entries", get(audit_entries))
        .route("/api/v1/audit/verify", get(verify))
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::Invalid(_)
            | PolicyError::Parse(_)
            | PolicyError::Signature(_)
            | PolicyError::Agreement(_)
            | PolicyError::Envelope(_)
            | PolicyError::Cosign(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-policy",
                e.to_string(),
            ),
            PolicyError::NotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "not-found", e.to_string())
            }
            PolicyError::Store(_)
            | PolicyError::Audit(_)
            | PolicyError::Encode(_)
            | PolicyError::Sign(_)
            | PolicyError::Record(_) => Self::internal(e),
        }
    }
}

fn view(signed: &SignedPolicy) -> Value {
    json!({
        "id": hex::encode(signed.hash()),
        "version": signed.payload().version,
        "signer": signed.signer().to_string(),
        "policy": allmende_policy::parse::emit::to_value(signed.payload()),
        "signed": hex::encode(signed.as_bytes()),
    })
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let dataset = super::datasets::find(&state, id).await?;
    let policy = state.policies.get(&dataset.record.id)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("dataset `{}` has no policy", dataset.record.slug),
        )
    })?;
    Ok(Json(view(&policy)))
}

async fn attach(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let dataset = super::datasets::find(&state, id).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid-policy", "the policy must be UTF-8 JSON-LD"))?;
    let signed = state.policies.attach(&dataset.record.id, text)?;
    let mut shown = view(&signed);
    shown["federation"] = super::federation::republish(&state, &dataset, false).await;
    Ok(Json(shown))
}

async fn agreements(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let list: Vec<Value> = state
        .policies
        .agreements()?
        .into_iter()
        .map(|(id, r)| {
            json!({ "id": id, "role": r.role, "dataset": r.dataset, "counterpart": r.counterpart, "concluded": r.concluded })
        })
        .collect();
    Ok(Json(json!({ "agreements": list })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NegotiateBody {
    provider: String,
    dataset: String,
}

fn refused(reason: String) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "refused",
        format!("the provider refused: {reason}"),
    )
}

#[tracing::instrument(skip_all, fields(provider = %body.provider, dataset = %body.dataset))]
async fn negotiate(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NegotiateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let provider: PeerId = body.provider.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid-peer",
            format!("`{}` is not a PeerId", body.provider),
        )
    })?;
    let verified = conclude(&state, provider, &body.dataset).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": hex::encode(verified.agreement.hash()),
            "provider": provider.to_string(),
            "dataset": body.dataset,
            "policy": allmende_policy::parse::emit::to_value(&verified.agreement.payload().policy),
        })),
    ))
}

/// Negotiates an agreement for `dataset` with `provider` over libp2p: fetches its signed offer,
/// signs a request, and keeps the countersigned agreement.
pub(super) async fn conclude(
    state: &AppState,
    provider: PeerId,
    dataset: &str,
) -> Result<allmende_policy::agreement::VerifiedAgreement, ApiError> {
    let offer = match state
        .federation
        .negotiate(
            provider,
            NegotiateRequest::Offer {
                dataset: dataset.to_owned(),
            },
        )
        .await?
    {
        NegotiateResponse::Offer(bytes) => {
            allmende_policy::sign::open_policy(&bytes, MAX_ENVELOPE_BYTES).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "bad-offer",
                    format!("the provider's offer is invalid: {e}"),
                )
            })?
        }
        NegotiateResponse::Refused(reason) => return Err(refused(reason)),
        NegotiateResponse::Agreement(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "bad-offer",
                "unexpected answer",
            ));
        }
    };
    if offer.signer() != provider {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "bad-offer",
            "the offer is not signed by the provider",
        ));
    }
    let request = state.policies.request_for(&offer)?;
    let agreement = match state
        .federation
        .negotiate(
            provider,
            NegotiateRequest::Agree {
                dataset: dataset.to_owned(),
                request: serde_bytes::ByteBuf::from(request.to_bytes()),
            },
        )
        .await?
    {
        NegotiateResponse::Agreement(bytes) => bytes,
        NegotiateResponse::Refused(reason) => return Err(refused(reason)),
        NegotiateResponse::Offer(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "bad-agreement",
                "unexpected answer",
            ));
        }
    };
    Ok(state
        .policies
        .accept(provider, dataset, &offer, &agreement)?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    #[serde(default)]
    reason: String,
}

async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RevokeBody>,
) -> Result<Json<Value>, ApiError> {
    let statement = state.policies.revoke(&id, &body.reason)?;
    state
        .federation
        .announce_revocation(statement.to_bytes())
        .await?;
    Ok(Json(
        json!({ "revoked": id, "statement": hex::encode(statement.as_bytes()) }),
    ))
}

async fn audit(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (size, root) = state.policies.audit_head();
    let cosignatures = state.policies.cosignature_count()?;
    Ok(Json(
        json!({ "size": size, "root": root, "cosignatures": cosignatures }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesQuery {
    #[serde(default)]
    from: u64,
    #[serde(default)]
    limit: Option<usize>,
}

async fn audit_entries(
    State(state): State<AppState>,
    super::error::ApiQuery(q): super::error::ApiQuery<EntriesQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state.policies.audit_entries(q.from, limit)?;
    Ok(Json(json!({
        "entries": entries
            .into_iter()
            .map(|(index, r)| {
                let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                v["index"] = json!(index);
                v
            })
            .collect::<Vec<_>>(),
    })))
}

async fn verify(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let policies = state.policies.clone();
    let report = tokio::task::spawn_blocking(move || policies.verify())
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(json!({
        "intact": report.is_intact(),
        "entries": report.entries,
        "checkpoints": report.checkpoints,
        "tampering": report.tampering.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>(),
    })))
}
