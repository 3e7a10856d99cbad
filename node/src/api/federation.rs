//! Federation routes: status, this node's member card, founding and changing the roster,
//! leaving, publishing datasets to the federation, and searching the replicated catalog.
//!
//! Rosters travel as the hex of their signed wire form (`"roster": "a2677061…"`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiJson, ApiQuery};
use super::{ApiError, AppState};
use allmende_p2p::P2pError;

use crate::federation::{
    Federation, FederationError, MemberCard, MembershipError, PublishError, SearchQuery,
};
use allmende_protocol::roster::SignedRoster;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/federation", get(status).post(create))
        .route("/api/v1/federation/card", get(card))
        .route("/api/v1/federation/sign", post(sign))
        .route("/api/v1/federation/apply", post(apply))
        .route("/api/v1/federation/proposals", post(propose))
        .route("/api/v1/federation/leave", post(leave))
        .route("/api/v1/datasets/{id}/publish", post(publish))
        .route("/api/v1/datasets/{id}/withdraw", post(withdraw))
        .route("/api/v1/catalog", get(search))
}

impl From<FederationError> for ApiError {
    fn from(e: FederationError) -> Self {
        let unprocessable = |kind| Self::new(StatusCode::UNPROCESSABLE_ENTITY, kind, e.to_string());
        match &e {
            FederationError::Membership(MembershipError::UnknownMember(_)) => {
                Self::new(StatusCode::NOT_FOUND, "not-found", e.to_string())
            }
            FederationError::Membership(_)
            | FederationError::Roster(_)
            | FederationError::InvalidCard(_) => unprocessable("federation"),
            FederationError::NotPublished(_) => unprocessable("not-published"),
            FederationError::Publish(PublishError::Sign(_)) => unprocessable("not-publishable"),
            FederationError::NotMember(_) => unprocessable("not-a-member"),
            FederationError::NoAnswer { .. }
            | FederationError::P2p(P2pError::Unreachable(_) | P2pError::Request(_)) => {
                Self::new(StatusCode::BAD_GATEWAY, "unreachable", e.to_string())
            }
            _ => Self::internal(e),
        }
    }
}

/// A roster or proposal as the API shows it; `required` is how many signatures installing it
/// needs: all members for a founding roster, else the current roster's threshold.
fn view(state: &AppState, roster: &SignedRoster) -> Value {
    let r = roster.roster();
    json!({
        "hash": hex::encode(roster.hash()),
        "federation": r.federation,
        "version": r.version,
        "members": r.members.iter().map(MemberCard::from).collect::<Vec<_>>(),
        "required": state.federation.signatures_needed(roster),
        "signers": roster.signers().map(|s| s.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap_or_default(),
        "roster": hex::encode(roster.to_bytes().unwrap_or_default()),
    })
}

fn roster_bytes(hex_text: &str) -> Result<Vec<u8>, ApiError> {
    hex::decode(hex_text.trim())
        .map_err(|e| ApiError::bad_request("invalid-roster", format!("`roster` must be hex: {e}")))
}

async fn status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(view_status(&state.federation)?))
}

async fn card(State(state): State<AppState>) -> Json<MemberCard> {
    Json(state.federation.card())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    federation: String,
    #[serde(default)]
    members: Vec<MemberCard>,
    threshold: Option<u32>,
    valid_until: Option<u64>,
}

async fn create(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let proposal = state
        .federation
        .create(req.federation, req.members, req.threshold, req.valid_until)
        .await?;
    Ok((StatusCode::CREATED, Json(view(&state, &proposal))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterRequest {
    roster: String,
}

async fn sign(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RosterRequest>,
) -> Result<Json<Value>, ApiError> {
    let signed = state.federation.sign(&roster_bytes(&req.roster)?).await?;
    let mut v = view(&state, &signed);
    v["installed_version"] = json!(state.federation.roster_version());
    Ok(Json(v))
}

async fn apply(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RosterRequest>,
) -> Result<Json<Value>, ApiError> {
    state.federation.apply(&roster_bytes(&req.roster)?).await?;
    Ok(Json(view_status(&state.federation)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposalRequest {
    #[serde(default)]
    add: Vec<MemberCard>,
    #[serde(default)]
    remove: Vec<String>,
}

async fn propose(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ProposalRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if req.add.is_empty() && req.remove.is_empty() {
        return Err(ApiError::bad_request(
            "invalid-proposal",
            "a proposal adds or removes at least one member",
        ));
    }
    let proposal = state.federation.propose_change(req.add, req.remove).await?;
    let mut v = view(&state, &proposal);
    v["installed_version"] = json!(state.federation.roster_version());
    Ok((StatusCode::CREATED, Json(v)))
}

async fn leave(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let proposal = state.federation.leave().await?;
    Ok(Json(view(&state, &proposal)))
}

async fn publish(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let dataset = super::datasets::find(&state, id).await?;
    let missing = dataset.record.missing_mandatory();
    if !missing.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "incomplete-metadata",
            format!(
                "before publishing, set the mandatory DCAT-AP.de fields: {}",
                missing.join(", ")
            ),
        ));
    }
    let entry = state
        .federation
        .publish(&dataset, policy_ref(&state, &dataset.record.id)?, false)
        .await?;
    Ok(Json(entry_view(&entry)))
}

async fn withdraw(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let dataset = super::datasets::find(&state, id).await?;
    let entry = state.federation.publish(&dataset, None, true).await?;
    Ok(Json(entry_view(&entry)))
}

/// Re-publishes a dataset after a change if it is published; a deleted dataset (`withdraw`) is
/// withdrawn. Returns what the federation has now, for the response: `{"published": false}`,
/// `{"published": true, "seq": N}`, or the reason it still has the previous version.
pub(super) async fn republish(
    state: &AppState,
    dataset: &allmende_store::StoredDataset,
    withdraw: bool,
) -> serde_json::Value {
    let failed = |reason: String| {
        tracing::error!(id = %dataset.record.id, %reason, "re-publishing failed");
        json!({
            "published": true,
            "republished": false,
            "error": format!("{reason}; the federation still has the previous version"),
        })
    };
    match state.federation.is_published(&dataset.record.id) {
        Ok(true) => {}
        Ok(false) => return json!({ "published": false }),
        Err(e) => return failed(format!("cannot tell whether the dataset is published: {e}")),
    }
    let missing = dataset.record.missing_mandatory();
    if !withdraw && !missing.is_empty() {
        return failed(format!(
            "mandatory DCAT-AP.de fields are missing: {}",
            missing.join(", ")
        ));
    }
    let policy = match policy_ref(state, &dataset.record.id) {
        Ok(p) => p,
        Err(e) => return failed(e.detail),
    };
    match state.federation.publish(dataset, policy, withdraw).await {
        Ok(entry) => json!({ "published": !withdraw, "seq": entry.payload().seq }),
        Err(e) => failed(e.to_string()),
    }
}

/// Checks, before a change of a published dataset is stored, that the changed dataset can be
/// re-published: its mandatory fields are there and its signed entry fits the limits.
pub(super) fn check_republishable(
    state: &AppState,
    dataset: &allmende_store::StoredDataset,
) -> Result<(), allmende_data::datasets::DatasetError> {
    use allmende_data::datasets::DatasetError;
    let published = state
        .federation
        .is_published(&dataset.record.id)
        .map_err(|e| DatasetError::InvalidMetadata(e.to_string()))?;
    if !published {
        return Ok(());
    }
    let missing = dataset.record.missing_mandatory();
    if !missing.is_empty() {
        return Err(DatasetError::InvalidMetadata(format!(
            "the dataset is published, and the change would leave mandatory DCAT-AP.de fields \
             missing: {}; withdraw it first",
            missing.join(", ")
        )));
    }
    let policy = policy_ref(state, &dataset.record.id)
        .map_err(|e| DatasetError::InvalidMetadata(e.detail))?;
    state
        .federation
        .check_publishable(dataset, policy)
        .map_err(|e| {
            DatasetError::InvalidMetadata(format!(
                "the dataset is published, and the changed dataset cannot be re-published: {e}"
            ))
        })
}

/// The reference to a dataset's signed policy, for its catalog entry.
pub(super) fn policy_ref(
    state: &AppState,
    dataset: &str,
) -> Result<Option<allmende_protocol::PolicyRef>, ApiError> {
    let policy = state.policies.get(dataset).map_err(ApiError::from)?;
    Ok(policy.map(|p| allmende_protocol::PolicyRef {
        id: p.hash(),
        uri: Some(format!(
            "{}/api/v1/datasets/{dataset}/policy",
            state.config.public_url()
        )),
    }))
}

/// A published entry as the API shows it.
pub(super) fn entry_view(entry: &allmende_protocol::SignedCatalogEntry) -> Value {
    let e = entry.payload();
    json!({
        "publisher": e.publisher.to_string(),
        "seq": e.seq,
        "op": e.op,
        "dataset": e.dataset.id,
        "hash": hex::encode(entry.hash()),
        "issued": e.issued,
    })
}

async fn search(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Json<Value>, ApiError> {
    let result = state.federation.search(&query)?;
    Ok(Json(json!(result)))
}

/// The status shown by `GET /api/v1/federation`: roster, pending proposals, connected peers,
/// the catalog digest and each publisher's head.
fn view_status(fed: &Federation) -> Result<Value, FederationError> {
    let signed = fed.signed_roster();
    let roster = signed.as_ref().map(|s| s.roster());
    let digest = fed.log().digest(fed.roster_version())?;
    let peers = fed.peers();
    let mut publishers = Vec::new();
    for h in &digest.heads {
        publishers.push(json!({
            "peer_id": h.publisher.to_string(),
            "organisation": roster.and_then(|r| r.member(&h.publisher)).map(|m| m.organisation.clone()),
            "seq": h.seq,
            "head": hex::encode(h.hash),
            "flagged": fed.log().flagged(&h.publisher)?,
        }));
    }
    let pending: Vec<Value> = fed
        .pending()
        .iter()
        .map(|p| {
            json!({
                "hash": hex::encode(p.hash()),
                "version": p.roster().version,
                "members": p.roster().members.iter().map(MemberCard::from).collect::<Vec<_>>(),
                "signers": p.signers().map(|s| s.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap_or_default(),
                "roster": hex::encode(p.to_bytes().unwrap_or_default()),
            })
        })
        .collect();
    Ok(json!({
        "peer_id": fed.peer_id().to_string(),
        "card": fed.card(),
        "member": fed.roster().is_some(),
        "left": fed.has_left(),
        "roster": roster.map(|r| json!({
            "federation": r.federation,
            "version": r.version,
            "hash": signed.as_ref().map(|s| hex::encode(s.hash())),
            "threshold": r.required(),
            "valid_from": r.valid_from,
            "valid_until": r.valid_until,
            "members": r.members.iter().map(MemberCard::from).collect::<Vec<_>>(),
        })),
        "pending": pending,
        "connected": peers,
        "digest": hex::encode(digest.hash()),
        "publishers": publishers,
        "catalog_size": fed.catalog_size(),
        "evidence": fed.log().evidence_count()?,
    }))
}
