//! The stable JSON interface of `allmende policy evaluate` and `allmende policy check`.
//!
//! Shapes (documented in the crate README, and kept stable for scripts):
//!
//! - policy: a JSON-LD policy object, an array of them, or a policy with an `eddsa-jcs-2022`
//!   `proof` (verified first);
//! - request: `{"principal": {"peer", "org", "claims", "roles"}, "action", "target", "purpose",
//!   "time", "location", "query_shape", "group_size", "columns"}` (only `action`, `target` and
//!   `time` are required; unknown members are refused);
//! - state: `{"use_count", "first_use", "policies": {"<uid or hex id>": {"use_count",
//!   "first_use"}}}`, all optional;
//! - output: `{"decision": "permit"|"deny"|"not_applicable"|"indeterminate", "rules": [...],
//!   "obligations": [...]}`, obligations as JSON-LD duty nodes.
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::ast::{Policy, PolicyId};
use crate::compile::{CompileError, PolicyEntry, compile};
use crate::decide::decide;
use crate::decision::Decision;
use crate::parse::{ParseError, emit, jsonld};
use crate::request::{MemoryState, Principal, QueryShape, Request, TermsKind, Usage};
use crate::sign::{PolicySignatureError, verify_jsonld};
use crate::values::XsdDateTime;
use crate::vocab::Action;

/// Why `evaluate` could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvaluateError {
    /// The policy document is not acceptable.
    #[error("policy: {0}")]
    Policy(#[from] CheckError),
    /// The request document is malformed.
    #[error("request: {0}")]
    Request(String),
    /// The state document is malformed.
    #[error("state: {0}")]
    State(String),
    /// The policies could not be compiled.
    #[error(transparent)]
    Compile(#[from] CompileError),
}

/// Why a policy document is not acceptable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// Not JSON, or not a policy of the profile.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A proof that does not verify.
    #[error(transparent)]
    Signature(#[from] PolicySignatureError),
}

/// What `check` reports about a valid policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSummary {
    /// The policy's uid.
    pub uid: String,
    /// Its id (hex SHA-256 of the CBOR form).
    pub id: String,
    /// `Set`, `Offer` or `Agreement`.
    pub kind: String,
    /// Number of permissions, prohibitions and obligations.
    pub rules: (usize, usize, usize),
    /// Whether a Data Integrity proof was present and verified.
    pub signed: bool,
}

impl CheckSummary {
    /// `{"valid": true, "uid", "id", "type", "permissions", "prohibitions", "obligations", "signed"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "valid": true,
            "uid": self.uid,
            "id": self.id,
            "type": self.kind,
            "permissions": self.rules.0,
            "prohibitions": self.rules.1,
            "obligations": self.rules.2,
            "signed": self.signed,
        })
    }
}

/// Parses one policy document: plain JSON-LD, or with a proof that must verify.
fn parse_one(v: &Value) -> Result<(Policy, bool), CheckError> {
    if v.get("proof").is_some() {
        let (p, _) = verify_jsonld(v)?;
        return Ok((p, true));
    }
    Ok((jsonld::from_value(v)?, false))
}

/// Parses a policy document (an object or an array of objects).
pub fn parse_policies(text: &str) -> Result<Vec<(Policy, bool)>, CheckError> {
    let v: Value = serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
    match &v {
        Value::Array(items) => items.iter().map(parse_one).collect(),
        other => Ok(vec![parse_one(other)?]),
    }
}

/// `allmende policy check`: parses and checks a single policy against the profile.
pub fn check(policy_json: &str) -> Result<CheckSummary, CheckError> {
    let v: Value =
        serde_json::from_str(policy_json).map_err(|e| ParseError::Json(e.to_string()))?;
    let (p, signed) = parse_one(&v)?;
    let id = PolicyId::of(&p).map_err(|e| ParseError::invalid("policy", e.to_string()))?;
    Ok(CheckSummary {
        uid: p.uid.clone(),
        id: id.to_hex(),
        kind: p.kind.term().to_owned(),
        rules: (
            p.permissions.len(),
            p.prohibitions.len(),
            p.obligations.len(),
        ),
        signed,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalJson {
    peer: Option<String>,
    org: Option<String>,
    #[serde(default)]
    claims: BTreeMap<String, String>,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestJson {
    principal: Option<PrincipalJson>,
    action: String,
    target: String,
    purpose: Option<String>,
    time: String,
    location: Option<String>,
    query_shape: Option<String>,
    group_size: Option<u64>,
    columns: Option<Vec<String>>,
    terms: Option<String>,
}

/// Parses the request document.
pub fn parse_request(text: &str) -> Result<Request, EvaluateError> {
    let bad = |m: String| EvaluateError::Request(m);
    let r: RequestJson = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let action = Action::from_term(&r.action)
        .ok_or_else(|| bad(format!("unsupported action `{}`", r.action)))?;
    let time: XsdDateTime = r.time.parse().map_err(|e| bad(format!("{e}")))?;
    let query_shape = match r.query_shape.as_deref() {
        None => None,
        Some("row") => Some(QueryShape::Row),
        Some("aggregate") => Some(QueryShape::Aggregate),
        Some(other) => return Err(bad(format!("unsupported query_shape `{other}`"))),
    };
    let terms = match r.terms.as_deref() {
        None => None,
        Some("offer") => Some(TermsKind::Offer),
        Some("agreement") => Some(TermsKind::Agreement),
        Some(other) => return Err(bad(format!("unsupported terms `{other}`"))),
    };
    let principal = match r.principal {
        None => Principal::default(),
        Some(p) => Principal {
            peer: p
                .peer
                .map(|s| {
                    s.parse()
                        .map_err(|_| bad(format!("`{s}` is not a peer id")))
                })
                .transpose()?,
            org: p.org,
            claims: p.claims,
            roles: p.roles,
        },
    };
    Ok(Request {
        principal,
        action,
        target: r.target,
        purpose: r.purpose,
        time: time.instant(),
        location: r.location,
        query_shape,
        group_size: r.group_size,
        columns: r.columns,
        terms,
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UsageJson {
    #[serde(default)]
    use_count: u64,
    first_use: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StateJson {
    #[serde(default)]
    use_count: u64,
    first_use: Option<String>,
    #[serde(default)]
    policies: BTreeMap<String, UsageJson>,
}

fn usage(count: u64, first: Option<String>) -> Result<Usage, EvaluateError> {
    let first_use = first
        .map(|s| s.parse::<XsdDateTime>().map(|t| t.instant()))
        .transpose()
        .map_err(|e| EvaluateError::State(e.to_string()))?;
    Ok(Usage { count, first_use })
}

/// Parses the state document; keys of `policies` are a policy uid or its hex id.
pub fn parse_state(text: &str) -> Result<MemoryState, EvaluateError> {
    let s: StateJson =
        serde_json::from_str(text).map_err(|e| EvaluateError::State(e.to_string()))?;
    let mut state = MemoryState {
        default: usage(s.use_count, s.first_use)?,
        ..MemoryState::default()
    };
    for (key, u) in s.policies {
        let u = usage(u.use_count, u.first_use)?;
        match PolicyId::from_hex(&key) {
            Some(id) => state.by_id.insert(id, u),
            None => state.by_uid.insert(key, u),
        };
    }
    Ok(state)
}

/// The output object of a decision.
pub fn decision_to_json(d: &Decision) -> Value {
    json!({
        "decision": d.decision.as_str(),
        "rules": d.rules.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        "obligations": d.obligations.iter().map(emit::duty).collect::<Vec<_>>(),
    })
}

/// `allmende policy evaluate --policy P --request R [--state S]`: the decision as JSON.
pub fn evaluate(
    policy_json: &str,
    request_json: &str,
    state_json: Option<&str>,
) -> Result<Value, EvaluateError> {
    let policies = parse_policies(policy_json)?;
    let request = parse_request(request_json)?;
    let state = state_json.map(parse_state).transpose()?.unwrap_or_default();
    let entries = policies
        .into_iter()
        .map(|(p, _)| PolicyEntry::unsigned(p))
        .collect::<Result<Vec<_>, _>>()?;
    let compiled = compile(entries)?;
    Ok(decision_to_json(&decide(&compiled, &request, &state)))
}
