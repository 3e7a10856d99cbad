//! The policy tree: one AST for both encodings.
//!
//! The types can only hold what the profile allows (closed vocabularies in [`crate::vocab`],
//! typed right operands), so a parsed policy is inside the profile by construction; the few
//! rules that span fields (operator/operand pairs, party requirements) are checked by
//! [`crate::validate`].
use std::fmt;

use sha2::{Digest, Sha256};

use crate::values::{XsdDate, XsdDateTime, XsdDuration};
use crate::vocab::{Action, DutyAction, LeftOperand, LogicalOperator, Operator, PolicyKind};

/// A policy's identity: SHA-256 of its deterministic CBOR encoding, which is exactly the payload
/// of its COSE_Sign1 envelope (the "hash of the signed payload").
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(pub [u8; 32]);

impl PolicyId {
    /// The id of `policy` (SHA-256 of [`crate::parse::cbor::to_vec`]).
    pub fn of(policy: &Policy) -> Result<PolicyId, allmende_protocol::EncodeError> {
        Ok(PolicyId::of_payload(&crate::parse::cbor::to_vec(policy)?))
    }
    /// The id of a payload's bytes.
    pub fn of_payload(bytes: &[u8]) -> PolicyId {
        PolicyId(Sha256::digest(bytes).into())
    }
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<PolicyId> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(PolicyId(out))
    }
}

impl fmt::Debug for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyId({})", self.to_hex())
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A policy of the profile (`Set`, `Offer` or `Agreement`) with its signing metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `uid`: the policy's IRI.
    pub uid: String,
    /// `@type`.
    pub kind: PolicyKind,
    /// `profile`: absent or [`crate::vocab::PROFILE_IRI`].
    pub profile: Option<String>,
    /// `conflict`: whether `prohibit` is stated; a policy without `conflict` is evaluated as
    /// `prohibit` too (`perm` and `invalid` are refused).
    pub conflict_prohibit: bool,
    /// Policy-level `assigner` (D20: inherited by rules).
    pub assigner: Option<String>,
    /// Policy-level `assignee` (D20).
    pub assignee: Option<String>,
    /// Policy-level `target` (D20).
    pub target: Option<String>,
    /// `permission` rules.
    pub permissions: Vec<Permission>,
    /// `prohibition` rules.
    pub prohibitions: Vec<Prohibition>,
    /// Policy-level `obligation` duties.
    pub obligations: Vec<Duty>,
    /// `issuer`: the `did:key` of the node key that signs the policy.
    pub issuer: Option<String>,
    /// `issued`: when it was issued.
    pub issued: Option<XsdDateTime>,
    /// `expires`: from this instant on the policy no longer applies.
    pub expires: Option<XsdDateTime>,
    /// `version`, from 1.
    pub version: Option<u64>,
    /// `previousVersion`: the id of the version this one replaces.
    pub previous: Option<PolicyId>,
}

impl Policy {
    /// An empty policy of `kind` with `uid` that states `conflict: prohibit`.
    pub fn new(kind: PolicyKind, uid: impl Into<String>) -> Policy {
        Policy {
            uid: uid.into(),
            kind,
            profile: None,
            conflict_prohibit: true,
            assigner: None,
            assignee: None,
            target: None,
            permissions: Vec::new(),
            prohibitions: Vec::new(),
            obligations: Vec::new(),
            issuer: None,
            issued: None,
            expires: None,
            version: None,
            previous: None,
        }
    }
}

/// The parts every rule has.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RuleParties {
    /// `target` (else the policy's).
    pub target: Option<String>,
    /// `assigner` (else the policy's).
    pub assigner: Option<String>,
    /// `assignee` (else the policy's; absent means anyone, D9).
    pub assignee: Option<String>,
}

/// A `permission`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    /// `@id` / `uid` of the rule.
    pub uid: Option<String>,
    /// `action`.
    pub action: Action,
    /// `target`, `assigner`, `assignee`.
    pub parties: RuleParties,
    /// `constraint`s (implicitly and-ed).
    pub constraints: Vec<Constraint>,
    /// `duty`: returned as obligations when the permission applies (D10, D11).
    pub duties: Vec<Duty>,
}

/// A `prohibition`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prohibition {
    /// `@id` / `uid` of the rule.
    pub uid: Option<String>,
    /// `action`.
    pub action: Action,
    /// `target`, `assigner`, `assignee`.
    pub parties: RuleParties,
    /// `constraint`s (implicitly and-ed).
    pub constraints: Vec<Constraint>,
}

/// A `duty` of a permission, or a policy-level `obligation`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duty {
    /// `@id` / `uid`.
    pub uid: Option<String>,
    /// `action`: what must be done.
    pub action: DutyAction,
    /// `target`, `assigner`, `assignee`.
    pub parties: RuleParties,
    /// `constraint`s describing the duty (e.g. `elapsedTime lteq P30D`); not evaluated (D11).
    pub constraints: Vec<Constraint>,
}

/// A `constraint`: atomic or logical.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Constraint {
    /// `leftOperand operator rightOperand`.
    Atomic(AtomicConstraint),
    /// `and` / `or` / `xone` over constraints.
    Logical(LogicalConstraint),
}

/// An atomic constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtomicConstraint {
    /// `@id` / `uid`.
    pub uid: Option<String>,
    /// `leftOperand`.
    pub left: LeftOperand,
    /// `operator`.
    pub operator: Operator,
    /// `rightOperand`.
    pub right: RightOperand,
}

/// A logical constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalConstraint {
    /// `@id` / `uid`.
    pub uid: Option<String>,
    /// `and`, `or` or `xone`.
    pub operator: LogicalOperator,
    /// The operands (a JSON array or `@list`, D13).
    pub operands: Vec<Constraint>,
}

/// A right operand value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RightOperand {
    /// A plain string literal.
    Text(String),
    /// An IRI (`{"@id": …}`), held expanded.
    Iri(String),
    /// A non-negative integer (a JSON number or `xsd:integer`, D15).
    Integer(u64),
    /// An `xsd:dateTime`.
    DateTime(XsdDateTime),
    /// An `xsd:date` (compared as 00:00:00Z of that day).
    Date(XsdDate),
    /// A day-time `xsd:duration`.
    Duration(XsdDuration),
    /// A set of strings or IRIs, for the set operators.
    List(Vec<RightOperand>),
}

impl RightOperand {
    /// The string of a `Text` or `Iri` value.
    pub fn as_term(&self) -> Option<&str> {
        match self {
            RightOperand::Text(s) | RightOperand::Iri(s) => Some(s),
            _ => None,
        }
    }
}
