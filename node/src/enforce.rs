//! The one place a remote request is decided: who asks (the member, its organisation and the
//! user its node vouches for), which dataset, under which terms (the dataset's signed offer or
//! an agreement's terms), in which shape (rows, or aggregates with the group size the provider
//! enforces), which columns and what for. Federated queries, transfers and every later
//! protocol call [`decide`]; the answer is a typed [`Decision`] whose [`Refusal`] words the
//! reason the asker is told.

use allmende_policy::sign::SignedPolicy;
use allmende_policy::{
    Action, CompileError, Constraint, LeftOperand, Operator, Outcome, Policy, PolicyEntry,
    PolicyId, PolicyKind, Principal, QueryShape, Request, RightOperand, State, TermsKind, Usage,
    compile,
};
use allmende_protocol::PeerId;
use allmende_protocol::query::UserAssertion;
use allmende_store::StoredDataset;

use crate::policies::{Policies, dataset_target};

/// The shape of what would leave the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Rows.
    Rows,
    /// Aggregates per group, each group of at least the given number of rows.
    Aggregates {
        /// The smallest group the provider returns.
        min_group: u64,
    },
}

/// The terms a request is decided under.
#[derive(Clone, Copy, Debug)]
pub enum Terms<'a> {
    /// The dataset's signed offer.
    Offer(&'a SignedPolicy),
    /// An agreement's terms (bound to its consumer by both parties' signatures), with the
    /// agreement's id (its use is counted under it) and who may revoke it.
    Agreement {
        /// The terms.
        policy: &'a Policy,
        /// The agreement's id.
        id: PolicyId,
        /// The parties, whose revocations end it.
        parties: [PeerId; 2],
    },
}

/// A remote request, as the decision sees it.
#[derive(Clone, Debug)]
pub struct Ask<'a> {
    /// The member asking.
    pub peer: PeerId,
    /// Its organisation, from the roster.
    pub organisation: Option<String>,
    /// The user its node vouches for.
    pub user: &'a UserAssertion,
    /// The dataset.
    pub dataset: &'a StoredDataset,
    /// The terms.
    pub terms: Terms<'a>,
    /// What would leave the node.
    pub shape: Shape,
    /// Every column the request reads, anywhere in it.
    pub columns: Vec<String>,
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A prohibition applies, or the agreement was revoked.
    #[error("a prohibition of the {0} applies (or it was revoked)")]
    Prohibited(&'static str),
    /// The terms need a value the request does not carry.
    #[error("the {0} needs a value the request does not carry (e.g. a purpose)")]
    Indeterminate(&'static str),
    /// No permission covers the request.
    #[error("no permission of the {0} covers this request")]
    NotPermitted(&'static str),
    /// The dataset's policy permits the request only under an agreement, and none was given
    /// (or the one given is not usable).
    #[error(
        "the dataset's policy permits this only under an agreement; negotiate one \
         (`allmende agreement negotiate`) and ask again"
    )]
    AgreementRequired,
    /// A sub-plan asks more than a minimum group size lets it.
    #[error(transparent)]
    GroupSize(#[from] allmende_policy::group_size::GroupSizeRefusal),
}

impl Refusal {
    /// The machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Prohibited(_) => "prohibited",
            Self::Indeterminate(_) => "indeterminate",
            Self::NotPermitted(_) => "not-permitted",
            Self::AgreementRequired => "agreement-required",
            Self::GroupSize(r) => r.code(),
        }
    }
}

/// The decision on a request.
#[derive(Clone, Debug)]
pub struct Decision {
    /// `Ok` to answer, or why not.
    pub outcome: Result<(), Refusal>,
    /// The rules that decided, as the audit log records them.
    pub rules: Vec<String>,
    /// The use to count when the answer is given: the policy or agreement id.
    pub counted: Option<PolicyId>,
}

/// Why a request could not be decided at all.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// The terms do not compile (a stored policy the node cannot read).
    #[error("the terms cannot be evaluated: {0}")]
    Compile(#[from] CompileError),
}

/// The smallest group size a policy's permissions require (`minGroupSize`), if any.
pub fn required_group_size(policy: &Policy) -> Option<u64> {
    fn walk(c: &Constraint, out: &mut Option<u64>) {
        match c {
            Constraint::Atomic(a) if a.left == LeftOperand::MinGroupSize => {
                if let RightOperand::Integer(n) = a.right {
                    let k = match a.operator {
                        Operator::Gt => n + 1,
                        _ => n,
                    };
                    *out = Some(out.map_or(k, |o: u64| o.max(k)));
                }
            }
            Constraint::Atomic(_) => {}
            Constraint::Logical(l) => l.operands.iter().for_each(|o| walk(o, out)),
        }
    }
    let mut out = None;
    for p in &policy.permissions {
        p.constraints.iter().for_each(|c| walk(c, &mut out));
    }
    out
}

/// Past use per policy, counted in the store, as the evaluator reads it.
struct UsageCounts<'a>(&'a Policies);

impl State for UsageCounts<'_> {
    fn usage(&self, id: &PolicyId, _uid: &str) -> Usage {
        self.0.usage(id).unwrap_or_default()
    }
}

/// Decides `ask` with the node's policies (revocations, use counts).
pub fn decide(policies: &Policies, ask: &Ask<'_>) -> Result<Decision, EnforceError> {
    let (entry, what, kind) = match ask.terms {
        Terms::Offer(signed) => (
            PolicyEntry::signed(signed)?,
            "dataset's policy",
            TermsKind::Offer,
        ),
        Terms::Agreement {
            policy,
            id,
            parties,
        } => {
            // Evaluated like an offer: the party check is the signatures, not a string.
            let mut terms = policy.clone();
            terms.kind = PolicyKind::Offer;
            terms.assignee = None;
            (
                PolicyEntry {
                    id,
                    policy: terms,
                    authority: parties.to_vec(),
                },
                "agreement",
                TermsKind::Agreement,
            )
        }
    };
    let counted = Some(entry.id);
    let mut compiled = compile([entry])?;
    for r in policies.revocations().iter() {
        compiled.revocations_mut().insert(r.clone());
    }
    let aggregate = matches!(ask.shape, Shape::Aggregates { .. });
    let mut request = Request::new(
        if aggregate {
            Action::Aggregate
        } else {
            Action::Read
        },
        dataset_target(&ask.dataset.record.id),
        chrono::Utc::now(),
    );
    request.principal = Principal {
        peer: Some(ask.peer),
        org: ask.organisation.clone(),
        claims: [
            ("sub".to_owned(), ask.user.subject.clone()),
            ("organisation".to_owned(), ask.user.organisation.clone()),
        ]
        .into_iter()
        .collect(),
        roles: ask.user.roles.clone(),
    };
    request.purpose = ask.user.purpose.clone();
    request.query_shape = Some(if aggregate {
        QueryShape::Aggregate
    } else {
        QueryShape::Row
    });
    if let Shape::Aggregates { min_group } = ask.shape {
        request.group_size = Some(min_group);
    }
    request.columns = Some(ask.columns.clone());
    request.terms = Some(kind);
    let state = UsageCounts(policies);
    let decision = allmende_policy::decide(&compiled, &request, &state);
    let rules = decision.rules.iter().map(ToString::to_string).collect();
    let outcome = match decision.decision {
        Outcome::Permit => Ok(()),
        Outcome::Deny => Err(Refusal::Prohibited(what)),
        Outcome::Indeterminate => Err(Refusal::Indeterminate(what)),
        // Would an agreement for these terms permit it? Then that is what is missing.
        _ if kind == TermsKind::Offer && {
            let mut under_agreement = request.clone();
            under_agreement.terms = Some(TermsKind::Agreement);
            allmende_policy::decide(&compiled, &under_agreement, &state).decision == Outcome::Permit
        } =>
        {
            Err(Refusal::AgreementRequired)
        }
        _ => Err(Refusal::NotPermitted(what)),
    };
    Ok(Decision {
        outcome,
        rules,
        counted,
    })
}
