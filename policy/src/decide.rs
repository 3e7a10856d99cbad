//! The pure evaluator: deny-overrides over the rules indexed for (target, action).
//!
//! Constraints are evaluated in three-valued logic: a constraint whose request value is
//! missing is *unknown*; `and` is false if any operand is false, `or` true if any is true,
//! `xone` unknown if any operand is unknown. A rule with an unknown constraint makes the
//! decision `indeterminate` (treated as deny), unless a prohibition applies outright
//! (`deny`) or, for permissions, another permission applies (`permit`).
use std::cmp::Ordering;

use crate::compile::{Compiled, CompiledPolicies, CompiledPolicy, Value};
use crate::decision::{Decision, Outcome};
use crate::request::{Request, State, Usage};
use crate::vocab::{LeftOperand, LogicalOperator, Operator};

/// Three-valued truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tri {
    True,
    False,
    Unknown,
}

impl From<bool> for Tri {
    fn from(b: bool) -> Tri {
        if b { Tri::True } else { Tri::False }
    }
}

/// Decides `request` against `policies` and past use in `state`.
///
/// Pure: no I/O, no clock (the time is `request.time`). Revoked policies and policies whose
/// `expires` is not after `request.time` are skipped entirely.
pub fn decide(policies: &CompiledPolicies, request: &Request, state: &dyn State) -> Decision {
    let none = Decision {
        decision: Outcome::NotApplicable,
        rules: Vec::new(),
        obligations: Vec::new(),
    };
    let Some(slots) = policies.index.get(request.target.as_str()) else {
        return none;
    };
    let mut permits = Vec::new();
    let mut denies = Vec::new();
    let mut unknown_permits = Vec::new();
    let mut unknown_denies = Vec::new();
    for &ri in &slots[request.action.index()] {
        let rule = &policies.rules[ri];
        let policy = &policies.policies[rule.policy];
        if !live(policies, policy, request) {
            continue;
        }
        if let Some(assignee) = &rule.assignee
            && request.principal.org.as_deref() != Some(assignee.as_str())
        {
            continue;
        }
        let ctx = Ctx {
            request,
            state,
            policy,
            usage: std::cell::Cell::new(None),
        };
        let verdict = all(&rule.constraints, &ctx);
        match (verdict, rule.deny) {
            (Tri::True, true) => denies.push(ri),
            (Tri::True, false) => permits.push(ri),
            (Tri::Unknown, true) => unknown_denies.push(ri),
            (Tri::Unknown, false) => unknown_permits.push(ri),
            (Tri::False, _) => {}
        }
    }
    let ids = |rs: &[usize]| rs.iter().map(|&i| policies.rules[i].id.clone()).collect();
    if !denies.is_empty() {
        return Decision {
            decision: Outcome::Deny,
            rules: ids(&denies),
            obligations: Vec::new(),
        };
    }
    if !unknown_denies.is_empty() {
        return Decision {
            decision: Outcome::Indeterminate,
            rules: ids(&unknown_denies),
            obligations: Vec::new(),
        };
    }
    if !permits.is_empty() {
        let mut obligations: Vec<_> = permits
            .iter()
            .flat_map(|&i| policies.rules[i].duties.iter().cloned())
            .collect();
        if let Some(obls) = policies.obligations.get(request.target.as_str()) {
            for o in obls {
                let live = live(policies, &policies.policies[o.policy], request);
                let party = o.assignee.is_none()
                    || o.assignee.as_deref() == request.principal.org.as_deref();
                if live && party {
                    obligations.push(o.duty.clone());
                }
            }
        }
        return Decision {
            decision: Outcome::Permit,
            rules: ids(&permits),
            obligations,
        };
    }
    if !unknown_permits.is_empty() {
        return Decision {
            decision: Outcome::Indeterminate,
            rules: ids(&unknown_permits),
            obligations: Vec::new(),
        };
    }
    none
}

/// Not revoked and not expired at the request's time.
fn live(all: &CompiledPolicies, p: &CompiledPolicy, r: &Request) -> bool {
    p.expires.is_none_or(|e| r.time < e) && !all.revocations.revokes(&p.id, &p.authority)
}

struct Ctx<'a> {
    request: &'a Request,
    state: &'a dyn State,
    policy: &'a CompiledPolicy,
    usage: std::cell::Cell<Option<Usage>>,
}

impl Ctx<'_> {
    fn usage(&self) -> Usage {
        if let Some(u) = self.usage.get() {
            return u;
        }
        let u = self.state.usage(&self.policy.id, &self.policy.uid);
        self.usage.set(Some(u));
        u
    }
}

fn all(cs: &[Compiled], ctx: &Ctx<'_>) -> Tri {
    let mut out = Tri::True;
    for c in cs {
        match eval(c, ctx) {
            Tri::False => return Tri::False,
            Tri::Unknown => out = Tri::Unknown,
            Tri::True => {}
        }
    }
    out
}

fn eval(c: &Compiled, ctx: &Ctx<'_>) -> Tri {
    match c {
        Compiled::Logical(LogicalOperator::And, cs) => all(cs, ctx),
        Compiled::Logical(LogicalOperator::Or, cs) => {
            let mut out = Tri::False;
            for c in cs {
                match eval(c, ctx) {
                    Tri::True => return Tri::True,
                    Tri::Unknown => out = Tri::Unknown,
                    Tri::False => {}
                }
            }
            out
        }
        Compiled::Logical(LogicalOperator::Xone, cs) => {
            let mut trues = 0;
            for c in cs {
                match eval(c, ctx) {
                    Tri::True => trues += 1,
                    Tri::Unknown => return Tri::Unknown,
                    Tri::False => {}
                }
            }
            (trues == 1).into()
        }
        Compiled::Atomic { left, op, right } => atomic(*left, *op, right, ctx),
    }
}

fn atomic(left: LeftOperand, op: Operator, right: &Value, ctx: &Ctx<'_>) -> Tri {
    let r = ctx.request;
    match (left, right) {
        (LeftOperand::DateTime, Value::Time(t)) => ordered(r.time.cmp(t), op),
        (LeftOperand::ElapsedTime, Value::Duration(d)) => {
            let elapsed = ctx
                .usage()
                .first_use
                .map(|f| r.time - f)
                .unwrap_or_default();
            ordered(elapsed.cmp(d), op)
        }
        (LeftOperand::Count, Value::Int(n)) => {
            ordered(ctx.usage().count.saturating_add(1).cmp(n), op)
        }
        (LeftOperand::MinGroupSize, Value::Int(n)) => match r.group_size {
            Some(k) => ordered(k.cmp(n), op),
            None => Tri::Unknown,
        },
        (LeftOperand::Purpose, _) => scalar(r.purpose.as_deref(), op, right),
        (LeftOperand::Spatial, _) => scalar(r.location.as_deref(), op, right),
        (LeftOperand::Recipient, _) => scalar(r.principal.org.as_deref(), op, right),
        (LeftOperand::QueryShape, _) => scalar(r.query_shape.map(|q| q.term()), op, right),
        (LeftOperand::Terms, _) => scalar(r.terms.map(|t| t.term()), op, right),
        (LeftOperand::AllowedColumns, Value::Set(set)) => match &r.columns {
            Some(cols) => set_op(cols, op, set),
            None => Tri::Unknown,
        },
        (LeftOperand::OrgRole, Value::Set(set)) => set_op(&r.principal.roles, op, set),
        _ => Tri::Unknown,
    }
}

fn ordered(ord: Ordering, op: Operator) -> Tri {
    match op {
        Operator::Eq => ord == Ordering::Equal,
        Operator::Neq => ord != Ordering::Equal,
        Operator::Lt => ord == Ordering::Less,
        Operator::Lteq => ord != Ordering::Greater,
        Operator::Gt => ord == Ordering::Greater,
        Operator::Gteq => ord != Ordering::Less,
        _ => return Tri::Unknown,
    }
    .into()
}

fn scalar(value: Option<&str>, op: Operator, right: &Value) -> Tri {
    let Some(v) = value else { return Tri::Unknown };
    match (op, right) {
        (Operator::Eq, Value::Term(t)) => (v == t).into(),
        (Operator::Neq, Value::Term(t)) => (v != t).into(),
        (_, Value::Set(set)) => set_op(std::slice::from_ref(&v), op, set),
        _ => Tri::Unknown,
    }
}

/// D4 over a left set `l` and a sorted right set `r`.
fn set_op<S: AsRef<str>>(l: &[S], op: Operator, r: &[String]) -> Tri {
    let in_r = |x: &S| r.binary_search_by(|p| p.as_str().cmp(x.as_ref())).is_ok();
    match op {
        Operator::IsAnyOf => l.iter().any(in_r),
        Operator::IsNoneOf => !l.iter().any(in_r),
        Operator::IsAllOf => r.iter().all(|x| l.iter().any(|y| y.as_ref() == x)),
        Operator::IsPartOf => l.iter().all(in_r),
        _ => return Tri::Unknown,
    }
    .into()
}
