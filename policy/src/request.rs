//! What is decided: the [`Request`], and the [`State`] of past use it is decided against.
use std::collections::{BTreeMap, HashMap};

use allmende_protocol::PeerId;
use chrono::{DateTime, Utc};

use crate::ast::PolicyId;
use crate::vocab::Action;

/// The party asking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principal {
    /// The requesting node.
    pub peer: Option<PeerId>,
    /// The requesting organisation's IRI (matched against `assignee`, and the `recipient`).
    pub org: Option<String>,
    /// Mapped user claims (carried for the audit log; no operand reads them).
    pub claims: BTreeMap<String, String>,
    /// Roles (`orgRole`).
    pub roles: Vec<String>,
}

/// The shape of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueryShape {
    /// Row-level results.
    Row,
    /// Aggregates only.
    Aggregate,
}

impl QueryShape {
    /// `row` or `aggregate`.
    pub fn term(self) -> &'static str {
        match self {
            QueryShape::Row => "row",
            QueryShape::Aggregate => "aggregate",
        }
    }
}

/// What a request is decided under (`terms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TermsKind {
    /// The dataset's published offer, used as it stands.
    Offer,
    /// An agreement the asker concluded for the dataset (both parties' signatures checked by
    /// the caller).
    Agreement,
}

impl TermsKind {
    /// `offer` or `agreement`.
    pub fn term(self) -> &'static str {
        match self {
            TermsKind::Offer => "offer",
            TermsKind::Agreement => "agreement",
        }
    }
}

/// An evaluation request. Time comes from the caller: the evaluator reads no clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Who asks.
    pub principal: Principal,
    /// What they want to do.
    pub action: Action,
    /// The dataset IRI.
    pub target: String,
    /// The purpose IRI (`purpose`).
    pub purpose: Option<String>,
    /// The time of the request (`dateTime`, `elapsedTime`, expiry).
    pub time: DateTime<Utc>,
    /// Where the result goes, an ISO 3166 code (`spatial`).
    pub location: Option<String>,
    /// `queryShape`.
    pub query_shape: Option<QueryShape>,
    /// The smallest group in an aggregate result (`minGroupSize`).
    pub group_size: Option<u64>,
    /// The requested columns (`allowedColumns`).
    pub columns: Option<Vec<String>>,
    /// What the request is decided under (`terms`).
    pub terms: Option<TermsKind>,
}

impl Request {
    /// A request for `action` on `target` at `time`, with nothing else set.
    pub fn new(action: Action, target: impl Into<String>, time: DateTime<Utc>) -> Request {
        Request {
            principal: Principal::default(),
            action,
            target: target.into(),
            purpose: None,
            time,
            location: None,
            query_shape: None,
            group_size: None,
            columns: None,
            terms: None,
        }
    }
}

/// Past use under one policy or agreement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Uses so far, not counting the one being decided.
    pub count: u64,
    /// The first use, if any.
    pub first_use: Option<DateTime<Utc>>,
}

/// The state of the world the evaluator reads: past use per policy or agreement.
pub trait State {
    /// Past use under the policy with this id and uid.
    fn usage(&self, id: &PolicyId, uid: &str) -> Usage;
}

/// A [`State`] in memory: usage by policy id or uid, with a default for the rest.
#[derive(Clone, Debug, Default)]
pub struct MemoryState {
    /// Usage by policy id.
    pub by_id: HashMap<PolicyId, Usage>,
    /// Usage by policy uid.
    pub by_uid: HashMap<String, Usage>,
    /// Usage of every other policy.
    pub default: Usage,
}

impl State for MemoryState {
    fn usage(&self, id: &PolicyId, uid: &str) -> Usage {
        self.by_id
            .get(id)
            .or_else(|| self.by_uid.get(uid))
            .copied()
            .unwrap_or(self.default)
    }
}

/// No use so far, for every policy.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoUse;

impl State for NoUse {
    fn usage(&self, _: &PolicyId, _: &str) -> Usage {
        Usage::default()
    }
}
