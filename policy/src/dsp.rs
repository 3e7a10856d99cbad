//! The profile's policies in the Dataspace Protocol's ODRL profile (DSP 2025-1,
//! `negotiation/contract-schema.json`), compacted against the DSP context
//! ([`DSP_CONTEXT`]), which has no `@vocab`: terms it defines (`use`, the operators, `and`,
//! `or`, `xone`) are written as terms, every other action and left operand as a compact
//! (`odrl:read`) or absolute (`urn:allmende:odrl:minGroupSize`) IRI, and typed values as
//! `{"@value", "@type"}` objects, since the schema's right operand is a string, an object or
//! an array, never a number.
//!
//! The policy stays what the provider enforces: its signed original is what decides; this is
//! how a DSP consumer reads it.
use serde_json::{Map, Value, json};

use crate::ast::{Constraint, Duty, Policy, RightOperand, RuleParties};
use crate::vocab::{Action, LeftOperand};

/// The JSON-LD context of every DSP 2025-1 message.
pub const DSP_CONTEXT: &str = "https://w3id.org/dspace/2025/1/context.jsonld";

/// `policy` as a DSP `Offer` with `@id` = `id`, as a dataset's `hasPolicy` lists it: without
/// a `target`, which the dataset implies.
pub fn offer(policy: &Policy, id: &str) -> Value {
    let mut m = Map::new();
    m.insert("@id".into(), json!(id));
    m.insert("@type".into(), json!("Offer"));
    if let Some(a) = &policy.assigner {
        m.insert("assigner".into(), json!(a));
    }
    rules(&mut m, policy);
    Value::Object(m)
}

fn rules(m: &mut Map<String, Value>, policy: &Policy) {
    if !policy.permissions.is_empty() {
        let list = policy.permissions.iter().map(|p| {
            let mut r = rule(p.action, &p.parties, &p.constraints);
            if !p.duties.is_empty() {
                r.insert("duty".into(), p.duties.iter().map(duty).collect());
            }
            Value::Object(r)
        });
        m.insert("permission".into(), list.collect());
    }
    if !policy.prohibitions.is_empty() {
        let list = policy
            .prohibitions
            .iter()
            .map(|p| Value::Object(rule(p.action, &p.parties, &p.constraints)));
        m.insert("prohibition".into(), list.collect());
    }
    if !policy.obligations.is_empty() {
        m.insert(
            "obligation".into(),
            policy.obligations.iter().map(duty).collect(),
        );
    }
}

/// A rule without its `target` (rules of an offer must not have one).
fn rule(action: Action, parties: &RuleParties, constraints: &[Constraint]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("action".into(), json!(action_term(action)));
    if let Some(a) = &parties.assignee {
        m.insert("assignee".into(), json!(a));
    }
    if !constraints.is_empty() {
        m.insert(
            "constraint".into(),
            constraints.iter().map(constraint).collect(),
        );
    }
    m
}

fn duty(d: &Duty) -> Value {
    let mut m = Map::new();
    m.insert("action".into(), json!(format!("odrl:{}", d.action.term())));
    if !d.constraints.is_empty() {
        m.insert(
            "constraint".into(),
            d.constraints.iter().map(constraint).collect(),
        );
    }
    Value::Object(m)
}

/// `use` is a term of the DSP context; the other actions are ODRL IRIs.
fn action_term(a: Action) -> String {
    match a {
        Action::Use => "use".into(),
        other => format!("odrl:{}", other.term()),
    }
}

fn left_operand(l: LeftOperand) -> String {
    if l.is_profile_term() {
        l.iri()
    } else {
        format!("odrl:{}", l.term())
    }
}

fn constraint(c: &Constraint) -> Value {
    match c {
        Constraint::Atomic(a) => json!({
            "leftOperand": left_operand(a.left),
            "operator": a.operator.term(),
            "rightOperand": right(&a.right),
        }),
        Constraint::Logical(l) => {
            let operands: Vec<Value> = l.operands.iter().map(constraint).collect();
            json!({ l.operator.term(): operands })
        }
    }
}

fn typed(value: Value, ty: &str) -> Value {
    json!({"@value": value, "@type": ty})
}

fn right(r: &RightOperand) -> Value {
    match r {
        RightOperand::Text(s) => json!(s),
        RightOperand::Iri(s) => json!({"@id": s}),
        RightOperand::Integer(i) => typed(json!(i), "xsd:integer"),
        RightOperand::DateTime(t) => typed(json!(t.to_string()), "xsd:dateTime"),
        RightOperand::Date(d) => typed(json!(d.to_string()), "xsd:date"),
        RightOperand::Duration(d) => typed(json!(d.to_string()), "xsd:duration"),
        RightOperand::List(items) => items.iter().map(right).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::jsonld;

    /// Aggregates for research, groups of at least 5, two columns; rows prohibited.
    const POLICY: &str = r#"{"@context": ["http://www.w3.org/ns/odrl.jsonld",
      {"allm": "urn:allmende:odrl:"}],
      "@type": "Offer", "uid": "urn:t:p", "assigner": "did:key:z6Mkprovider",
      "target": "urn:allmende:dataset:d",
      "permission": [{"action": "aggregate", "constraint": [
        {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]},
        {"leftOperand": "allm:minGroupSize", "operator": "gteq", "rightOperand": 5},
        {"or": [{"leftOperand": "allm:allowedColumns", "operator": "isPartOf",
                 "rightOperand": ["station", "no2"]},
                {"leftOperand": "dateTime", "operator": "lt",
                 "rightOperand": {"@value": "2030-01-01T00:00:00Z", "@type": "xsd:dateTime"}}]}],
        "duty": [{"action": "attribute"}]}],
      "prohibition": [{"action": "read"}]}"#;

    #[test]
    fn an_offer_in_dsp_terms() {
        let policy = jsonld::from_str(POLICY).unwrap();
        let offer = offer(&policy, "urn:allmende:offer:x");
        assert_eq!(
            offer,
            json!({
                "@id": "urn:allmende:offer:x",
                "@type": "Offer",
                "assigner": "did:key:z6Mkprovider",
                "permission": [{
                    "action": "odrl:aggregate",
                    "constraint": [
                        {"leftOperand": "odrl:purpose", "operator": "isAnyOf",
                         "rightOperand": ["research"]},
                        {"leftOperand": "urn:allmende:odrl:minGroupSize", "operator": "gteq",
                         "rightOperand": {"@value": 5, "@type": "xsd:integer"}},
                        {"or": [
                            {"leftOperand": "urn:allmende:odrl:allowedColumns",
                             "operator": "isPartOf", "rightOperand": ["station", "no2"]},
                            {"leftOperand": "odrl:dateTime", "operator": "lt",
                             "rightOperand": {"@value": "2030-01-01T00:00:00Z",
                                              "@type": "xsd:dateTime"}}]}],
                    "duty": [{"action": "odrl:attribute"}]
                }],
                "prohibition": [{"action": "odrl:read"}]
            })
        );
        assert!(offer.get("target").is_none());
    }
}
