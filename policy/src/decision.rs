//! The answer of [`crate::decide()`].
use std::fmt;

use crate::ast::Duty;

/// A rule's id: its `uid`, or `<policy uid>#permission-N` / `#prohibition-N` (N from 1).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub String);

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The outcome of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// An applicable permission and no applicable prohibition.
    Permit,
    /// An applicable prohibition (deny-overrides).
    Deny,
    /// No rule applies: closed world, so the request is denied (D12).
    NotApplicable,
    /// A rule could not be evaluated (a request value it needs is missing); treated as deny.
    Indeterminate,
}

impl Outcome {
    /// `permit`, `deny`, `not_applicable` or `indeterminate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Permit => "permit",
            Outcome::Deny => "deny",
            Outcome::NotApplicable => "not_applicable",
            Outcome::Indeterminate => "indeterminate",
        }
    }
    /// Whether the request may go ahead (only [`Outcome::Permit`]).
    pub fn is_permit(self) -> bool {
        self == Outcome::Permit
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision: the outcome, the rules that decided it and the duties to fulfil.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The outcome.
    pub decision: Outcome,
    /// Permit: the applicable permissions; deny: the applicable prohibitions; indeterminate:
    /// the rules that could not be evaluated; not applicable: none.
    pub rules: Vec<RuleId>,
    /// For a permit, the duties to fulfil (D10); empty otherwise.
    pub obligations: Vec<Duty>,
}
