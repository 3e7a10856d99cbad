//! Writing the AST as JSON-LD compact, with the pinned context inline.
//!
//! Rules are written as arrays, logical operands as plain arrays, dateTimes as
//! `xsd:dateTime` typed literals, durations as `xsd:duration`, IRIs as `{"@id": …}`.
use serde_json::{Map, Value, json};

use super::context::policy_context;
use crate::ast::{Constraint, Duty, Permission, Policy, Prohibition, RightOperand, RuleParties};

/// The policy as a JSON-LD compact document.
pub fn to_value(policy: &Policy) -> Value {
    let mut m = Map::new();
    m.insert("@context".into(), policy_context());
    m.insert("@type".into(), json!(policy.kind.term()));
    m.insert("uid".into(), json!(policy.uid));
    if let Some(p) = &policy.profile {
        m.insert("profile".into(), json!(p));
    }
    if policy.conflict_prohibit {
        m.insert("conflict".into(), json!("prohibit"));
    }
    parties(
        &mut m,
        &RuleParties {
            target: policy.target.clone(),
            assigner: policy.assigner.clone(),
            assignee: policy.assignee.clone(),
        },
    );
    if !policy.permissions.is_empty() {
        m.insert(
            "permission".into(),
            policy.permissions.iter().map(permission).collect(),
        );
    }
    if !policy.prohibitions.is_empty() {
        m.insert(
            "prohibition".into(),
            policy.prohibitions.iter().map(prohibition).collect(),
        );
    }
    if !policy.obligations.is_empty() {
        m.insert(
            "obligation".into(),
            policy.obligations.iter().map(duty).collect(),
        );
    }
    if let Some(i) = &policy.issuer {
        m.insert("issuer".into(), json!(i));
    }
    if let Some(t) = &policy.issued {
        m.insert("issued".into(), typed(&t.to_string(), "xsd:dateTime"));
    }
    if let Some(t) = &policy.expires {
        m.insert("expires".into(), typed(&t.to_string(), "xsd:dateTime"));
    }
    if let Some(v) = policy.version {
        m.insert("version".into(), json!(v));
    }
    if let Some(p) = &policy.previous {
        m.insert("previousVersion".into(), json!(p.to_hex()));
    }
    Value::Object(m)
}

/// The policy as JSON-LD text (compact, no whitespace).
pub fn to_string(policy: &Policy) -> String {
    to_value(policy).to_string()
}

fn typed(value: &str, ty: &str) -> Value {
    json!({"@value": value, "@type": ty})
}

fn parties(m: &mut Map<String, Value>, p: &RuleParties) {
    if let Some(t) = &p.target {
        m.insert("target".into(), json!(t));
    }
    if let Some(a) = &p.assigner {
        m.insert("assigner".into(), json!(a));
    }
    if let Some(a) = &p.assignee {
        m.insert("assignee".into(), json!(a));
    }
}

fn rule_head(
    uid: &Option<String>,
    action: &str,
    p: &RuleParties,
    cs: &[Constraint],
) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(u) = uid {
        m.insert("uid".into(), json!(u));
    }
    m.insert("action".into(), json!(action));
    parties(&mut m, p);
    if !cs.is_empty() {
        m.insert("constraint".into(), cs.iter().map(constraint).collect());
    }
    m
}

fn permission(p: &Permission) -> Value {
    let mut m = rule_head(&p.uid, p.action.term(), &p.parties, &p.constraints);
    if !p.duties.is_empty() {
        m.insert("duty".into(), p.duties.iter().map(duty).collect());
    }
    Value::Object(m)
}

fn prohibition(p: &Prohibition) -> Value {
    Value::Object(rule_head(
        &p.uid,
        p.action.term(),
        &p.parties,
        &p.constraints,
    ))
}

/// A duty as a JSON-LD node (without `@context`), as listed in decision obligations.
pub fn duty(d: &Duty) -> Value {
    Value::Object(rule_head(
        &d.uid,
        d.action.term(),
        &d.parties,
        &d.constraints,
    ))
}

/// A constraint as a JSON-LD node.
pub fn constraint(c: &Constraint) -> Value {
    let mut m = Map::new();
    match c {
        Constraint::Atomic(a) => {
            if let Some(u) = &a.uid {
                m.insert("uid".into(), json!(u));
            }
            m.insert("leftOperand".into(), json!(a.left.term()));
            m.insert("operator".into(), json!(a.operator.term()));
            m.insert("rightOperand".into(), right(&a.right));
        }
        Constraint::Logical(l) => {
            if let Some(u) = &l.uid {
                m.insert("uid".into(), json!(u));
            }
            m.insert(
                l.operator.term().into(),
                l.operands.iter().map(constraint).collect(),
            );
        }
    }
    Value::Object(m)
}

fn right(r: &RightOperand) -> Value {
    match r {
        RightOperand::Text(s) => json!(s),
        RightOperand::Iri(s) => json!({"@id": s}),
        RightOperand::Integer(i) => json!(i),
        RightOperand::DateTime(t) => typed(&t.to_string(), "xsd:dateTime"),
        RightOperand::Date(d) => typed(&d.to_string(), "xsd:date"),
        RightOperand::Duration(d) => typed(&d.to_string(), "xsd:duration"),
        RightOperand::List(items) => items.iter().map(right).collect(),
    }
}
