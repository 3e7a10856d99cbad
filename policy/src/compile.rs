//! Compiling policies once into an index by (target, action).
//!
//! Rules inherit the policy's target, assigner and assignee (D20); every rule is filed under
//! each action it covers (D8: `use` covers `read`, `aggregate`, `derive`, `distribute`), so a
//! decision is one hash lookup plus the candidate rules' constraints.
use std::collections::HashMap;

use allmende_protocol::{PeerId, Signed};
use chrono::{DateTime, TimeDelta, Utc};

use crate::agreement::Revocations;
use crate::ast::{Constraint, Duty, Policy, PolicyId, RightOperand};
use crate::decision::RuleId;
use crate::validate::{ProfileError, validate};
use crate::vocab::{LeftOperand, LogicalOperator, Operator};

/// Why policies could not be compiled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// A policy breaks the profile.
    #[error("policy `{uid}`: {source}")]
    Profile {
        /// The policy's uid.
        uid: String,
        /// What is wrong.
        source: ProfileError,
    },
    /// A policy could not be encoded to compute its id.
    #[error("policy `{uid}` cannot be encoded: {reason}")]
    Encode {
        /// The policy's uid.
        uid: String,
        /// Why.
        reason: String,
    },
    /// The same policy id was given twice.
    #[error("policy `{0}` is given twice")]
    Duplicate(String),
}

/// A policy to compile, with its id and the peers that may revoke it.
#[derive(Clone, Debug)]
pub struct PolicyEntry {
    /// The policy's (or agreement's) id; revocations and usage state refer to it.
    pub id: PolicyId,
    /// The policy.
    pub policy: Policy,
    /// The peers whose signed revocations are honoured (the signer; for agreements both sides).
    pub authority: Vec<PeerId>,
}

impl PolicyEntry {
    /// An unsigned (local) policy: id = SHA-256 of its CBOR form, no revocation authority.
    pub fn unsigned(policy: Policy) -> Result<PolicyEntry, CompileError> {
        let id = PolicyId::of(&policy).map_err(|e| CompileError::Encode {
            uid: policy.uid.clone(),
            reason: e.to_string(),
        })?;
        Ok(PolicyEntry {
            id,
            policy,
            authority: Vec::new(),
        })
    }
    /// A signed policy: id = SHA-256 of the signed payload, revocable by its signer.
    pub fn signed(signed: &Signed<Policy>) -> Result<PolicyEntry, CompileError> {
        let mut entry = PolicyEntry::unsigned(signed.payload().clone())?;
        entry.authority = vec![signed.signer()];
        Ok(entry)
    }
}

/// A compiled value of a right operand.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Int(u64),
    Time(DateTime<Utc>),
    Duration(TimeDelta),
    Term(String),
    /// Sorted and deduplicated.
    Set(Vec<String>),
}

/// A compiled constraint.
#[derive(Clone, Debug)]
pub(crate) enum Compiled {
    Atomic {
        left: LeftOperand,
        op: Operator,
        right: Value,
    },
    Logical(LogicalOperator, Vec<Compiled>),
}

#[derive(Clone, Debug)]
pub(crate) struct CompiledPolicy {
    pub id: PolicyId,
    pub uid: String,
    pub expires: Option<DateTime<Utc>>,
    pub authority: Vec<PeerId>,
}

#[derive(Clone, Debug)]
pub(crate) struct CompiledRule {
    pub id: RuleId,
    pub policy: usize,
    pub deny: bool,
    pub assignee: Option<String>,
    pub constraints: Vec<Compiled>,
    pub duties: Vec<Duty>,
}

#[derive(Clone, Debug)]
pub(crate) struct CompiledObligation {
    pub policy: usize,
    pub assignee: Option<String>,
    pub duty: Duty,
}

/// Policies compiled for [`crate::decide()`], plus the revocations it honours.
#[derive(Clone, Debug, Default)]
pub struct CompiledPolicies {
    pub(crate) policies: Vec<CompiledPolicy>,
    pub(crate) rules: Vec<CompiledRule>,
    /// target → per requested action → candidate rules, in policy and document order.
    pub(crate) index: HashMap<String, [Vec<usize>; 5]>,
    /// target → policy-level obligations.
    pub(crate) obligations: HashMap<String, Vec<CompiledObligation>>,
    pub(crate) revocations: Revocations,
}

impl CompiledPolicies {
    /// How many policies are loaded.
    pub fn len(&self) -> usize {
        self.policies.len()
    }
    /// Whether no policy is loaded.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
    /// The revocations honoured by every decision.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }
    /// The revocations, to add newly received statements.
    pub fn revocations_mut(&mut self) -> &mut Revocations {
        &mut self.revocations
    }
    /// The ids of the loaded policies, in order.
    pub fn ids(&self) -> impl Iterator<Item = &PolicyId> {
        self.policies.iter().map(|p| &p.id)
    }
}

/// Validates and compiles policies.
pub fn compile(
    entries: impl IntoIterator<Item = PolicyEntry>,
) -> Result<CompiledPolicies, CompileError> {
    let mut out = CompiledPolicies::default();
    let mut seen = std::collections::HashSet::new();
    for entry in entries {
        let p = &entry.policy;
        validate(p).map_err(|source| CompileError::Profile {
            uid: p.uid.clone(),
            source,
        })?;
        if !seen.insert(entry.id) {
            return Err(CompileError::Duplicate(p.uid.clone()));
        }
        let pi = out.policies.len();
        out.policies.push(CompiledPolicy {
            id: entry.id,
            uid: p.uid.clone(),
            expires: p.expires.map(|t| t.instant()),
            authority: entry.authority.clone(),
        });
        let inherit =
            |own: &Option<String>, policy: &Option<String>| own.clone().or_else(|| policy.clone());
        let rules = p
            .permissions
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    false,
                    i,
                    &r.uid,
                    r.action,
                    &r.parties,
                    &r.constraints,
                    r.duties.clone(),
                )
            })
            .chain(p.prohibitions.iter().enumerate().map(|(i, r)| {
                (
                    true,
                    i,
                    &r.uid,
                    r.action,
                    &r.parties,
                    &r.constraints,
                    Vec::new(),
                )
            }));
        for (deny, i, uid, action, parties, constraints, duties) in rules {
            let kind = if deny { "prohibition" } else { "permission" };
            let id = RuleId(
                uid.clone()
                    .unwrap_or_else(|| format!("{}#{kind}-{}", p.uid, i + 1)),
            );
            let Some(target) = inherit(&parties.target, &p.target) else {
                continue;
            };
            let ri = out.rules.len();
            out.rules.push(CompiledRule {
                id,
                policy: pi,
                deny,
                assignee: inherit(&parties.assignee, &p.assignee),
                constraints: constraints.iter().map(compile_constraint).collect(),
                duties,
            });
            let slots = out.index.entry(target).or_default();
            for covered in action.covers() {
                slots[covered.index()].push(ri);
            }
        }
        for d in &p.obligations {
            let Some(target) = inherit(&d.parties.target, &p.target) else {
                continue;
            };
            out.obligations
                .entry(target)
                .or_default()
                .push(CompiledObligation {
                    policy: pi,
                    assignee: inherit(&d.parties.assignee, &p.assignee),
                    duty: d.clone(),
                });
        }
    }
    Ok(out)
}

fn compile_constraint(c: &Constraint) -> Compiled {
    match c {
        Constraint::Logical(l) => Compiled::Logical(
            l.operator,
            l.operands.iter().map(compile_constraint).collect(),
        ),
        Constraint::Atomic(a) => Compiled::Atomic {
            left: a.left,
            op: a.operator,
            right: compile_value(&a.right),
        },
    }
}

fn compile_value(r: &RightOperand) -> Value {
    match r {
        RightOperand::Text(s) | RightOperand::Iri(s) => Value::Term(s.clone()),
        RightOperand::Integer(i) => Value::Int(*i),
        RightOperand::DateTime(t) => Value::Time(t.instant()),
        RightOperand::Date(d) => Value::Time(d.instant()),
        RightOperand::Duration(d) => Value::Duration(d.as_delta()),
        RightOperand::List(items) => {
            let mut set: Vec<String> = items
                .iter()
                .filter_map(|i| i.as_term().map(str::to_owned))
                .collect();
            set.sort();
            set.dedup();
            Value::Set(set)
        }
    }
}
