//! Differential test: the compiled evaluator against a naive reference that walks the AST.
//!
//! The reference is written straight from the semantics (D1–D20) with no index, no
//! compilation and no shared code with `decide`.
mod common;

use std::cmp::Ordering;

use allmende_policy::compile::{PolicyEntry, compile};
use allmende_policy::{
    Action, Constraint, Decision, LeftOperand, LogicalOperator, MemoryState, Operator, Outcome,
    Policy, Request, RightOperand, RuleId, State, Usage, decide,
};
use proptest::prelude::*;

#[derive(Clone, Copy, PartialEq, Debug)]
enum T {
    Yes,
    No,
    Unknown,
}

fn b(x: bool) -> T {
    if x { T::Yes } else { T::No }
}

fn covers(rule: Action, asked: Action) -> bool {
    rule == asked || asked.included_in() == Some(rule)
}

fn cmp_op(o: Ordering, op: Operator) -> T {
    b(match op {
        Operator::Eq => o.is_eq(),
        Operator::Neq => o.is_ne(),
        Operator::Lt => o.is_lt(),
        Operator::Lteq => o.is_le(),
        Operator::Gt => o.is_gt(),
        Operator::Gteq => o.is_ge(),
        _ => return T::Unknown,
    })
}

fn terms(r: &RightOperand) -> Vec<String> {
    match r {
        RightOperand::List(items) => items
            .iter()
            .filter_map(|i| i.as_term().map(str::to_owned))
            .collect(),
        other => other.as_term().map(str::to_owned).into_iter().collect(),
    }
}

fn sets(l: &[String], op: Operator, r: &[String]) -> T {
    b(match op {
        Operator::IsAnyOf => l.iter().any(|x| r.contains(x)),
        Operator::IsNoneOf => l.iter().all(|x| !r.contains(x)),
        Operator::IsAllOf => r.iter().all(|x| l.contains(x)),
        Operator::IsPartOf => l.iter().all(|x| r.contains(x)),
        Operator::Eq => l.len() == 1 && r.len() == 1 && l[0] == r[0],
        Operator::Neq => !(l.len() == 1 && r.len() == 1 && l[0] == r[0]),
        _ => return T::Unknown,
    })
}

fn eval(c: &Constraint, req: &Request, u: Usage) -> T {
    match c {
        Constraint::Logical(l) => {
            let vs: Vec<T> = l.operands.iter().map(|c| eval(c, req, u)).collect();
            match l.operator {
                LogicalOperator::And => {
                    if vs.contains(&T::No) {
                        T::No
                    } else if vs.contains(&T::Unknown) {
                        T::Unknown
                    } else {
                        T::Yes
                    }
                }
                LogicalOperator::Or => {
                    if vs.contains(&T::Yes) {
                        T::Yes
                    } else if vs.contains(&T::Unknown) {
                        T::Unknown
                    } else {
                        T::No
                    }
                }
                LogicalOperator::Xone => {
                    if vs.contains(&T::Unknown) {
                        T::Unknown
                    } else {
                        b(vs.iter().filter(|v| **v == T::Yes).count() == 1)
                    }
                }
            }
        }
        Constraint::Atomic(a) => {
            let scalar = |v: Option<&str>| match v {
                None => T::Unknown,
                Some(v) => sets(&[v.to_owned()], a.operator, &terms(&a.right)),
            };
            match (a.left, &a.right) {
                (LeftOperand::DateTime, RightOperand::DateTime(t)) => {
                    cmp_op(req.time.cmp(&t.instant()), a.operator)
                }
                (LeftOperand::DateTime, RightOperand::Date(d)) => {
                    cmp_op(req.time.cmp(&d.instant()), a.operator)
                }
                (LeftOperand::ElapsedTime, RightOperand::Duration(d)) => {
                    let el = match u.first_use {
                        Some(f) => req.time - f,
                        None => chrono::TimeDelta::zero(),
                    };
                    cmp_op(el.cmp(&d.as_delta()), a.operator)
                }
                (LeftOperand::Count, RightOperand::Integer(n)) => {
                    cmp_op((u.count + 1).cmp(n), a.operator)
                }
                (LeftOperand::MinGroupSize, RightOperand::Integer(n)) => match req.group_size {
                    None => T::Unknown,
                    Some(k) => cmp_op(k.cmp(n), a.operator),
                },
                (LeftOperand::Purpose, _) => scalar(req.purpose.as_deref()),
                (LeftOperand::Spatial, _) => scalar(req.location.as_deref()),
                (LeftOperand::Recipient, _) => scalar(req.principal.org.as_deref()),
                (LeftOperand::QueryShape, _) => scalar(req.query_shape.map(|q| q.term())),
                (LeftOperand::Terms, _) => scalar(req.terms.map(|t| t.term())),
                (LeftOperand::AllowedColumns, r) => match &req.columns {
                    None => T::Unknown,
                    Some(cols) => sets(cols, a.operator, &terms(r)),
                },
                (LeftOperand::OrgRole, r) => sets(&req.principal.roles, a.operator, &terms(r)),
                _ => T::Unknown,
            }
        }
    }
}

fn all(cs: &[Constraint], req: &Request, u: Usage) -> T {
    let vs: Vec<T> = cs.iter().map(|c| eval(c, req, u)).collect();
    if vs.contains(&T::No) {
        T::No
    } else if vs.contains(&T::Unknown) {
        T::Unknown
    } else {
        T::Yes
    }
}

/// The reference evaluator.
pub fn reference(policies: &[Policy], req: &Request, state: &dyn State) -> Decision {
    let (mut permit, mut deny, mut up, mut ud, mut obligations) =
        (vec![], vec![], vec![], vec![], vec![]);
    for p in policies {
        if p.expires.is_some_and(|e| req.time >= e.instant()) {
            continue;
        }
        let id = allmende_policy::PolicyId::of(p).unwrap();
        let u = state.usage(&id, &p.uid);
        let applies = |target: &Option<String>, assignee: &Option<String>| {
            target.as_ref().or(p.target.as_ref()) == Some(&req.target)
                && assignee
                    .as_ref()
                    .or(p.assignee.as_ref())
                    .is_none_or(|a| req.principal.org.as_ref() == Some(a))
        };
        for (i, r) in p.permissions.iter().enumerate() {
            if covers(r.action, req.action) && applies(&r.parties.target, &r.parties.assignee) {
                let id = RuleId(
                    r.uid
                        .clone()
                        .unwrap_or(format!("{}#permission-{}", p.uid, i + 1)),
                );
                match all(&r.constraints, req, u) {
                    T::Yes => {
                        permit.push(id);
                        obligations.extend(r.duties.iter().cloned());
                    }
                    T::Unknown => up.push(id),
                    T::No => {}
                }
            }
        }
        for (i, r) in p.prohibitions.iter().enumerate() {
            if covers(r.action, req.action) && applies(&r.parties.target, &r.parties.assignee) {
                let id = RuleId(r.uid.clone().unwrap_or(format!(
                    "{}#prohibition-{}",
                    p.uid,
                    i + 1
                )));
                match all(&r.constraints, req, u) {
                    T::Yes => deny.push(id),
                    T::Unknown => ud.push(id),
                    T::No => {}
                }
            }
        }
    }
    let d = |decision, rules| Decision {
        decision,
        rules,
        obligations: vec![],
    };
    if !deny.is_empty() {
        return d(Outcome::Deny, deny);
    }
    if !ud.is_empty() {
        return d(Outcome::Indeterminate, ud);
    }
    if !permit.is_empty() {
        for p in policies {
            if p.expires.is_some_and(|e| req.time >= e.instant()) {
                continue;
            }
            for o in &p.obligations {
                let target_ok =
                    o.parties.target.as_ref().or(p.target.as_ref()) == Some(&req.target);
                let party_ok = o
                    .parties
                    .assignee
                    .as_ref()
                    .or(p.assignee.as_ref())
                    .is_none_or(|a| req.principal.org.as_ref() == Some(a));
                if target_ok && party_ok {
                    obligations.push(o.clone());
                }
            }
        }
        return Decision {
            decision: Outcome::Permit,
            rules: permit,
            obligations,
        };
    }
    if !up.is_empty() {
        return d(Outcome::Indeterminate, up);
    }
    d(Outcome::NotApplicable, vec![])
}

fn sorted(mut d: Decision) -> (Outcome, Vec<RuleId>, usize) {
    d.rules.sort();
    (d.decision, d.rules, d.obligations.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decide_matches_reference(
        policies in proptest::collection::vec(common::policy(), 1..4),
        requests in proptest::collection::vec(common::request(), 1..6),
        count in 0u64..6,
        first in proptest::option::of(-15i64..5),
    ) {
        let mut policies = policies;
        for (i, p) in policies.iter_mut().enumerate() {
            p.uid = format!("{}-{i}", p.uid);
        }
        let compiled = compile(policies.iter().cloned().map(|p| PolicyEntry::unsigned(p).unwrap())).unwrap();
        let state = MemoryState {
            default: Usage { count, first_use: first.map(|d| common::base_time() + chrono::TimeDelta::days(d)) },
            ..MemoryState::default()
        };
        for r in &requests {
            let got = decide(&compiled, r, &state);
            let want = reference(&policies, r, &state);
            prop_assert_eq!(sorted(got), sorted(want), "request {:?}", r);
        }
    }
}
