//! The catalog protocol, provider side: `POST <base>/catalog/request` (paged through `Link`
//! headers) and `GET <base>/catalog/datasets/:id`.
//!
//! The catalog lists the node's own published datasets that have a signed policy (a DSP
//! dataset must offer at least one), each with its policy as an `Offer` and one distribution
//! per transfer type through the node's `DataService`. On the first page it also lists every
//! other member of the federation as a catalog of its own: its participant id (its `did:key`)
//! and its DSP endpoint, taken from its own signed catalog entries, so that a crawler learns the
//! whole region from any one member and asks each member for its datasets and offers.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use allmende_data::datasets::DatasetError;
use allmende_policy::dsp::{DSP_CONTEXT, offer};
use allmende_protocol::{EntryOp, PeerId, verifying_key_of};
use allmende_store::StoredDataset;

use super::error::{Area, DspError};
use super::{BASE, message};
use crate::api::AppState;

/// Datasets on one page unless the request asks for fewer (`limit`).
const PAGE: usize = 100;
/// Most datasets on one page.
const MAX_PAGE: usize = 1000;
/// The transfer types a dataset's distributions name.
const FORMATS: [&str; 1] = ["HttpData-PULL"];

fn internal(e: impl std::fmt::Display) -> DspError {
    DspError::internal(Area::Catalog, &e)
}

/// `offset` and `limit` of a catalog request's URL (the `Link` headers' own parameters).
fn page(query: Option<&str>) -> Result<(usize, usize), DspError> {
    let (mut offset, mut limit) = (0, PAGE);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let n: usize = value.parse().map_err(|_| {
            DspError::bad_request(
                Area::Catalog,
                "invalid-page",
                format!("`{key}` takes a number"),
            )
        })?;
        match key {
            "offset" => offset = n,
            "limit" if (1..=MAX_PAGE).contains(&n) => limit = n,
            "limit" => {
                return Err(DspError::bad_request(
                    Area::Catalog,
                    "invalid-page",
                    format!("`limit` is 1 to {MAX_PAGE}"),
                ));
            }
            other => {
                return Err(DspError::bad_request(
                    Area::Catalog,
                    "invalid-page",
                    format!(
                        "unknown parameter `{other}`: a catalog request takes `offset` and `limit`"
                    ),
                ));
            }
        }
    }
    Ok((offset, limit))
}

/// `POST <base>/catalog/request`: a `CatalogRequestMessage` answered with the `Catalog`.
pub(super) async fn request(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: axum::body::Body,
) -> Result<Response, DspError> {
    let (offset, limit) = page(query.as_deref())?;
    let limit_bytes = usize::try_from(state.config.limits.max_body_bytes).unwrap_or(usize::MAX);
    let msg = message(Area::Catalog, body, limit_bytes, "CatalogRequestMessage").await?;
    match msg.get("filter") {
        None => {}
        Some(Value::Array(f)) if f.is_empty() => {}
        Some(Value::Array(_)) => {
            return Err(DspError::bad_request(
                Area::Catalog,
                "unsupported-filter",
                "this node does not support catalog filters; send the request without `filter`",
            ));
        }
        Some(_) => {
            return Err(DspError::bad_request(
                Area::Catalog,
                "invalid-message",
                "`filter` must be an array",
            ));
        }
    }
    let all = offered(&state)?;
    let total = all.len();
    let datasets: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(d, p)| dataset(&state, d, p))
        .collect();
    let mut catalog = json!({
        "@context": [DSP_CONTEXT],
        "@id": catalog_id(&state.federation.peer_id()),
        "@type": "Catalog",
        "participantId": state.identity.did(),
        "dct:title": state.federation.organisation(),
        "service": [service(&state.federation.peer_id(), &state.config.public_url())],
    });
    if !datasets.is_empty() {
        catalog["dataset"] = json!(datasets);
    }
    if offset == 0 {
        let members = member_catalogs(&state)?;
        if !members.is_empty() {
            catalog["catalog"] = json!(members);
        }
    }
    let mut links = Vec::new();
    let url = |o: usize| format!("<{BASE}/catalog/request?offset={o}&limit={limit}>");
    if offset + limit < total {
        links.push(format!("{}; rel=\"next\"", url(offset + limit)));
    }
    if offset > 0 {
        links.push(format!(
            "{}; rel=\"previous\"",
            url(offset.saturating_sub(limit))
        ));
    }
    let mut response = Json(catalog).into_response();
    if !links.is_empty() {
        let value = HeaderValue::from_str(&links.join(", ")).map_err(internal)?;
        response.headers_mut().insert(header::LINK, value);
    }
    Ok(response)
}

/// `GET <base>/catalog/datasets/:id`: one offered dataset (`urn:uuid:…` or the bare id).
pub(super) async fn dataset_request(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, DspError> {
    let bare = id.strip_prefix("urn:uuid:").unwrap_or(&id);
    let not_found =
        || DspError::not_found(Area::Catalog, format!("no dataset `{id}` is offered here"));
    let found = match state.datasets.get(bare) {
        // `get` also finds a dataset by its slug, which is no DSP id.
        Ok(d) if d.record.id == bare => d,
        Ok(_) | Err(DatasetError::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(internal(e)),
    };
    let policy = offer_of(&state, &found)?.ok_or_else(not_found)?;
    let mut body = dataset(&state, &found, &policy);
    body["@context"] = json!([DSP_CONTEXT]);
    Ok(Json(body).into_response())
}

/// The node's own published datasets with a signed policy, by id.
fn offered(
    state: &AppState,
) -> Result<Vec<(StoredDataset, allmende_policy::sign::SignedPolicy)>, DspError> {
    let mut out = Vec::new();
    for d in state.datasets.list().map_err(internal)? {
        if let Some(policy) = offer_of(state, &d)? {
            out.push((d, policy));
        }
    }
    out.sort_by(|a, b| a.0.record.id.cmp(&b.0.record.id));
    Ok(out)
}

/// The signed policy a dataset is offered under, if it is published and has one.
fn offer_of(
    state: &AppState,
    d: &StoredDataset,
) -> Result<Option<allmende_policy::sign::SignedPolicy>, DspError> {
    if !state
        .federation
        .is_published(&d.record.id)
        .map_err(internal)?
    {
        return Ok(None);
    }
    state.policies.get(&d.record.id).map_err(internal)
}

/// The id of a dataset in DSP messages.
pub fn dataset_id(id: &str) -> String {
    format!("urn:uuid:{id}")
}

/// The id of the offer a signed policy makes (its envelope's hash, as the catalog entry names
/// it).
pub fn offer_id(policy: &allmende_policy::sign::SignedPolicy) -> String {
    format!("urn:allmende:offer:{}", hex::encode(policy.hash()))
}

fn catalog_id(peer: &PeerId) -> String {
    format!("urn:allmende:catalog:{peer}")
}

fn service_id(peer: &PeerId) -> String {
    format!("urn:allmende:dsp:{peer}")
}

fn service(peer: &PeerId, public_url: &str) -> Value {
    json!({
        "@id": service_id(peer),
        "@type": "DataService",
        "endpointURL": format!("{public_url}{BASE}"),
    })
}

fn dataset(
    state: &AppState,
    d: &StoredDataset,
    policy: &allmende_policy::sign::SignedPolicy,
) -> Value {
    let r = &d.record;
    let service = service_id(&state.federation.peer_id());
    let mut v = json!({
        "@id": dataset_id(&r.id),
        "@type": "Dataset",
        "dct:title": r.title,
        "dct:description": r.description,
        "hasPolicy": [offer(policy.payload(), &offer_id(policy))],
        "distribution": FORMATS.iter().map(|f| json!({
            "@type": "Distribution",
            "format": f,
            "accessService": service,
        })).collect::<Vec<_>>(),
    });
    if !r.keywords.is_empty() {
        v["dcat:keyword"] = json!(r.keywords);
    }
    if let Some(c) = &r.conforms_to {
        v["dct:conformsTo"] = json!({"@id": c});
    }
    v
}

/// Every other member of the federation with a known endpoint, as a catalog without datasets.
fn member_catalogs(state: &AppState) -> Result<Vec<Value>, DspError> {
    let fed = &state.federation;
    let Some(roster) = fed.roster() else {
        return Ok(Vec::new());
    };
    // Each member's own signed entries name its public URL in their distributions.
    let latest = fed.log().latest_entries().map_err(internal)?;
    let mut bases: HashMap<PeerId, String> = HashMap::new();
    for (entry, _) in latest.iter() {
        let e = entry.payload();
        if e.op == EntryOp::Withdraw || bases.contains_key(&e.publisher) {
            continue;
        }
        let base = e.dataset.distributions.iter().find_map(|d| {
            d.access_url
                .split_once("/api/v1/datasets/")
                .map(|(b, _)| b.to_owned())
        });
        if let Some(base) = base {
            bases.insert(e.publisher, base);
        }
    }
    let mut out = Vec::new();
    for m in &roster.members {
        if m.peer_id == fed.peer_id() || fed.log().flagged(&m.peer_id).map_err(internal)?.is_some()
        {
            continue;
        }
        let base = bases.get(&m.peer_id);
        let (Some(base), Some(key)) = (base, verifying_key_of(&m.peer_id)) else {
            continue;
        };
        out.push(json!({
            "@id": catalog_id(&m.peer_id),
            "@type": "Catalog",
            "participantId": allmende_protocol::did_key_of(&key),
            "dct:title": m.organisation,
            "service": [service(&m.peer_id, base)],
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_read_from_the_link_parameters() {
        assert_eq!(page(None).unwrap(), (0, PAGE));
        assert_eq!(page(Some("offset=200&limit=50")).unwrap(), (200, 50));
        for bad in [
            "limit=0",
            "limit=1001",
            "offset=-1",
            "offset=x",
            "sort=title",
        ] {
            let e = page(Some(bad)).unwrap_err();
            assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
