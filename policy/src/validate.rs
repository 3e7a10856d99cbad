//! The profile check on a whole policy: rules that span several fields.
//!
//! Both parsers run it, and so do [`crate::compile()`] and the signing functions, so a policy
//! built in code cannot bypass it.
use crate::ast::{Constraint, Duty, Policy, RightOperand, RuleParties};
use crate::parse::MAX_DEPTH;
use crate::parse::context::emitted_prefix_of;
use crate::vocab::{LeftOperand, Operator, PROFILE_IRI, PolicyKind};

/// Why a policy breaks the profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The policy has no uid.
    #[error("the policy has an empty `uid`")]
    EmptyUid,
    /// A profile other than the Allmende profile.
    #[error("unsupported profile `{0}`")]
    Profile(String),
    /// A rule has no target, neither its own nor the policy's.
    #[error("{rule} has no `target` and the policy has none to inherit")]
    MissingTarget {
        /// The rule, e.g. `permission 1`.
        rule: String,
    },
    /// An `Offer` or `Agreement` rule without the parties its type requires.
    #[error("{rule} of an `{kind}` has no `{party}`")]
    MissingParty {
        /// The rule.
        rule: String,
        /// The policy type.
        kind: PolicyKind,
        /// `assigner` or `assignee`.
        party: &'static str,
    },
    /// An operator that is not defined for a left operand.
    #[error("operator `{operator}` is not defined for left operand `{left}`")]
    Operator {
        /// The left operand.
        left: LeftOperand,
        /// The operator.
        operator: Operator,
    },
    /// A right operand of the wrong type.
    #[error("left operand `{left}` needs {expected} as right operand")]
    RightOperand {
        /// The left operand.
        left: LeftOperand,
        /// What it needs.
        expected: &'static str,
    },
    /// A logical constraint without operands.
    #[error("logical constraint `{0}` has no operands")]
    EmptyLogical(&'static str),
    /// Logical constraints nest too deeply.
    #[error("constraints nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// `version` 0.
    #[error("`version` starts at 1")]
    Version,
    /// An IRI that a policy document would read as a compact IRI (`odrl:x`, `dct:x`): written
    /// out, it would come back as another IRI.
    #[error(
        "the IRI `{iri}` begins with `{prefix}:`, a prefix of the policy context; \
         write the IRI in full"
    )]
    PrefixedIri {
        /// The IRI.
        iri: String,
        /// The prefix.
        prefix: &'static str,
    },
}

/// Checks a policy against the profile.
pub fn validate(p: &Policy) -> Result<(), ProfileError> {
    if p.uid.is_empty() {
        return Err(ProfileError::EmptyUid);
    }
    if let Some(profile) = &p.profile
        && profile != PROFILE_IRI
    {
        return Err(ProfileError::Profile(profile.clone()));
    }
    if p.version == Some(0) {
        return Err(ProfileError::Version);
    }
    check_iris(p)?;
    let rules = p
        .permissions
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("permission {}", i + 1), &r.parties, &r.constraints))
        .chain(
            p.prohibitions
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("prohibition {}", i + 1), &r.parties, &r.constraints)),
        )
        .chain(
            p.obligations
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("obligation {}", i + 1), &r.parties, &r.constraints)),
        );
    for (name, parties, constraints) in rules {
        check_parties(p, &name, parties)?;
        for c in constraints {
            check_constraint(c, 0)?;
        }
    }
    for r in &p.permissions {
        for d in &r.duties {
            check_duty(d)?;
        }
    }
    Ok(())
}

/// Refuses IRIs that the emitted JSON-LD cannot carry unchanged ([`emitted_prefix_of`]).
fn check_iris(p: &Policy) -> Result<(), ProfileError> {
    fn parties(r: &RuleParties) -> impl Iterator<Item = &String> {
        [&r.target, &r.assigner, &r.assignee].into_iter().flatten()
    }
    fn constraint<'a>(c: &'a Constraint, out: &mut Vec<&'a String>) {
        match c {
            Constraint::Logical(l) => {
                out.extend(&l.uid);
                l.operands.iter().for_each(|c| constraint(c, out));
            }
            Constraint::Atomic(a) => {
                out.extend(&a.uid);
                match &a.right {
                    RightOperand::Iri(i) => out.push(i),
                    RightOperand::List(items) => out.extend(items.iter().filter_map(|r| match r {
                        RightOperand::Iri(i) => Some(i),
                        _ => None,
                    })),
                    _ => {}
                }
            }
        }
    }
    fn duty<'a>(d: &'a Duty, out: &mut Vec<&'a String>) {
        out.extend(&d.uid);
        out.extend(parties(&d.parties));
        d.constraints.iter().for_each(|c| constraint(c, out));
    }
    let mut iris: Vec<&String> = vec![&p.uid];
    iris.extend(
        [&p.target, &p.assigner, &p.assignee, &p.issuer]
            .into_iter()
            .flatten(),
    );
    for r in &p.permissions {
        iris.extend(&r.uid);
        iris.extend(parties(&r.parties));
        r.constraints.iter().for_each(|c| constraint(c, &mut iris));
        r.duties.iter().for_each(|d| duty(d, &mut iris));
    }
    for r in &p.prohibitions {
        iris.extend(&r.uid);
        iris.extend(parties(&r.parties));
        r.constraints.iter().for_each(|c| constraint(c, &mut iris));
    }
    p.obligations.iter().for_each(|d| duty(d, &mut iris));
    match iris
        .into_iter()
        .find_map(|i| emitted_prefix_of(i).map(|prefix| (i, prefix)))
    {
        Some((iri, prefix)) => Err(ProfileError::PrefixedIri {
            iri: iri.clone(),
            prefix,
        }),
        None => Ok(()),
    }
}

fn check_duty(d: &Duty) -> Result<(), ProfileError> {
    d.constraints
        .iter()
        .try_for_each(|c| check_constraint(c, 0))
}

fn check_parties(p: &Policy, rule: &str, parties: &RuleParties) -> Result<(), ProfileError> {
    if parties.target.is_none() && p.target.is_none() {
        return Err(ProfileError::MissingTarget {
            rule: rule.to_owned(),
        });
    }
    let missing = |party| ProfileError::MissingParty {
        rule: rule.to_owned(),
        kind: p.kind,
        party,
    };
    let has_assigner = parties.assigner.is_some() || p.assigner.is_some();
    let has_assignee = parties.assignee.is_some() || p.assignee.is_some();
    match p.kind {
        PolicyKind::Set => Ok(()),
        PolicyKind::Offer if !has_assigner => Err(missing("assigner")),
        PolicyKind::Offer => Ok(()),
        PolicyKind::Agreement if !has_assigner => Err(missing("assigner")),
        PolicyKind::Agreement if !has_assignee => Err(missing("assignee")),
        PolicyKind::Agreement => Ok(()),
    }
}

/// Checks one constraint: operator/operand pairs and right operand types.
pub fn check_constraint(c: &Constraint, depth: usize) -> Result<(), ProfileError> {
    if depth > MAX_DEPTH {
        return Err(ProfileError::TooDeep);
    }
    let a = match c {
        Constraint::Logical(l) => {
            if l.operands.is_empty() {
                return Err(ProfileError::EmptyLogical(l.operator.term()));
            }
            return l
                .operands
                .iter()
                .try_for_each(|c| check_constraint(c, depth + 1));
        }
        Constraint::Atomic(a) => a,
    };
    use LeftOperand as L;
    let bad_op = || ProfileError::Operator {
        left: a.left,
        operator: a.operator,
    };
    let bad_right = |expected| ProfileError::RightOperand {
        left: a.left,
        expected,
    };
    let ordered = matches!(a.operator, Operator::Eq | Operator::Neq) || a.operator.is_ordering();
    match a.left {
        L::DateTime => {
            if !ordered {
                return Err(bad_op());
            }
            if !matches!(a.right, RightOperand::DateTime(_) | RightOperand::Date(_)) {
                return Err(bad_right("an xsd:dateTime or xsd:date"));
            }
        }
        L::ElapsedTime => {
            if !ordered {
                return Err(bad_op());
            }
            if !matches!(a.right, RightOperand::Duration(_)) {
                return Err(bad_right("an xsd:duration"));
            }
        }
        L::Count | L::MinGroupSize => {
            if !ordered {
                return Err(bad_op());
            }
            if !matches!(a.right, RightOperand::Integer(_)) {
                return Err(bad_right("an integer"));
            }
        }
        L::Purpose
        | L::Spatial
        | L::Recipient
        | L::QueryShape
        | L::AllowedColumns
        | L::OrgRole
        | L::Terms => {
            if a.operator.is_ordering() || (a.left.is_set_valued() && !a.operator.is_set_operator())
            {
                return Err(bad_op());
            }
            let terms_ok = |r: &RightOperand| match r {
                RightOperand::Text(s) if a.left == L::QueryShape => s == "row" || s == "aggregate",
                RightOperand::Text(s) if a.left == L::Terms => s == "offer" || s == "agreement",
                RightOperand::Text(_) | RightOperand::Iri(_) => {
                    !matches!(a.left, L::QueryShape | L::Terms)
                }
                _ => false,
            };
            let ok = match &a.right {
                RightOperand::List(items) => {
                    a.operator.is_set_operator() && !items.is_empty() && items.iter().all(terms_ok)
                }
                r => !a.operator.is_set_operator() && terms_ok(r),
            };
            if !ok {
                return Err(bad_right(match (a.left, a.operator.is_set_operator()) {
                    (L::QueryShape, true) => "a list of `row` / `aggregate`",
                    (L::QueryShape, false) => "`row` or `aggregate`",
                    (L::Terms, true) => "a list of `offer` / `agreement`",
                    (L::Terms, false) => "`offer` or `agreement`",
                    (_, true) => "a non-empty list of strings or iris",
                    (_, false) => "a string or iri",
                }));
            }
        }
    }
    Ok(())
}
