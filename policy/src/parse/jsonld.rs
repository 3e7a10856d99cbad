//! Parsing JSON-LD compact into the AST.
//!
//! Every member is expanded through the active [`Context`] and matched against the profile by
//! IRI; anything else (unknown members, ODRL terms outside the profile, unknown types or
//! datatypes) is refused with an error naming it as written.
use serde_json::{Map, Value};

use super::context::{Context, RDF};
use super::keys::{Key, key_of};
use super::{MAX_DEPTH, ParseError};
use crate::ast::{
    AtomicConstraint, Constraint, Duty, LogicalConstraint, Permission, Policy, PolicyId,
    Prohibition, RuleParties,
};
use crate::validate::validate;
use crate::vocab::{Action, DutyAction, LogicalOperator, ODRL, PolicyKind};

/// Parses a policy from JSON-LD text and checks it against the profile.
pub fn from_str(text: &str) -> Result<Policy, ParseError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
    from_value(&value)
}

/// Parses a policy from a JSON-LD value and checks it against the profile.
pub fn from_value(value: &Value) -> Result<Policy, ParseError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ParseError::invalid("policy", "not a json object"))?;
    let ctx = Context::from_value(obj.get("@context"))?;
    let policy = Parser { ctx }.policy(obj)?;
    validate(&policy)?;
    Ok(policy)
}

pub(super) struct Parser {
    pub(super) ctx: Context,
}

type Fields<'a> = Vec<(Key, &'a str, &'a Value)>;

impl Parser {
    /// Expands every member of `obj` and keeps those in `allowed`, refusing the rest by name.
    fn fields<'a>(
        &self,
        obj: &'a Map<String, Value>,
        allowed: &[Key],
    ) -> Result<Fields<'a>, ParseError> {
        let mut out = Vec::with_capacity(obj.len());
        for (name, value) in obj {
            let key = self
                .ctx
                .expand_vocab(name)
                .and_then(|iri| key_of(&iri))
                .filter(|k| allowed.contains(k))
                .ok_or_else(|| ParseError::unsupported("property", name.clone()))?;
            if out.iter().any(|(k, _, _)| *k == key) {
                return Err(ParseError::invalid(name.clone(), "given twice"));
            }
            out.push((key, name.as_str(), value));
        }
        Ok(out)
    }

    fn policy(&self, obj: &Map<String, Value>) -> Result<Policy, ParseError> {
        use Key::*;
        let f = self.fields(
            obj,
            &[
                Context,
                Id,
                Type,
                Profile,
                Conflict,
                Assigner,
                Assignee,
                Target,
                Permission,
                Prohibition,
                Obligation,
                Issuer,
                Issued,
                Expires,
                Version,
                Previous,
            ],
        )?;
        let get = |k: Key| {
            f.iter()
                .find(|(key, _, _)| *key == k)
                .map(|(_, n, v)| (*n, *v))
        };
        let kind_value = get(Type).ok_or(ParseError::Missing {
            what: "@type",
            on: "the policy",
        })?;
        let kind_term = self.vocab_term(kind_value.1, "@type")?;
        let kind = self
            .ctx
            .expand_vocab(&kind_term)
            .and_then(|iri| PolicyKind::from_iri(&iri))
            .ok_or_else(|| ParseError::unsupported("policy type", kind_term.clone()))?;
        let mut policy = Policy::new(kind, String::new());
        if let Some((_, v)) = get(Profile) {
            let iri = self.iri(v, "profile")?;
            if iri != crate::vocab::PROFILE_IRI {
                return Err(ParseError::unsupported(
                    "profile",
                    str_of(v).unwrap_or(&iri).to_owned(),
                ));
            }
            policy.profile = Some(iri);
        }
        policy.conflict_prohibit = match get(Conflict) {
            None => false,
            Some((_, v)) => {
                let term = self.vocab_term(v, "conflict")?;
                match self.ctx.expand_vocab(&term).as_deref() {
                    Some(iri) if iri == format!("{ODRL}prohibit") => true,
                    _ => return Err(ParseError::unsupported("conflict strategy", term)),
                }
            }
        };
        policy.assigner = get(Assigner)
            .map(|(_, v)| self.party(v, "assigner"))
            .transpose()?;
        policy.assignee = get(Assignee)
            .map(|(_, v)| self.party(v, "assignee"))
            .transpose()?;
        policy.target = get(Target)
            .map(|(_, v)| self.iri(v, "target"))
            .transpose()?;
        if let Some((_, v)) = get(Permission) {
            for item in nodes(v, "permission")? {
                policy.permissions.push(self.permission(item)?);
            }
        }
        if let Some((_, v)) = get(Prohibition) {
            for item in nodes(v, "prohibition")? {
                policy.prohibitions.push(self.prohibition(item)?);
            }
        }
        if let Some((_, v)) = get(Obligation) {
            for item in nodes(v, "obligation")? {
                policy.obligations.push(self.duty(item)?);
            }
        }
        policy.issuer = get(Issuer)
            .map(|(_, v)| self.iri(v, "issuer"))
            .transpose()?;
        policy.issued = get(Issued)
            .map(|(_, v)| self.date_time_meta(v, "issued"))
            .transpose()?;
        policy.expires = get(Expires)
            .map(|(_, v)| self.date_time_meta(v, "expires"))
            .transpose()?;
        policy.version = get(Version)
            .map(|(_, v)| self.integer(v, "version"))
            .transpose()?;
        policy.previous = get(Previous)
            .map(|(_, v)| {
                let s = self.literal(v, "previousVersion")?;
                PolicyId::from_hex(&s).ok_or_else(|| {
                    ParseError::invalid("previousVersion", format!("`{s}` is not 64 hex digits"))
                })
            })
            .transpose()?;
        policy.uid = match get(Id) {
            Some((_, v)) => self.iri(v, "uid")?,
            None => {
                return Err(ParseError::Missing {
                    what: "uid",
                    on: "the policy",
                });
            }
        };
        Ok(policy)
    }

    fn rule<'a>(
        &self,
        obj: &'a Map<String, Value>,
        extra: &[Key],
        class: &str,
    ) -> Result<RuleParts<'a>, ParseError> {
        use Key::*;
        let mut allowed = vec![Id, Type, Action, Target, Assigner, Assignee, Constraint];
        allowed.extend_from_slice(extra);
        let fields = self.fields(obj, &allowed)?;
        let mut parts = RuleParts {
            uid: None,
            action: None,
            parties: RuleParties::default(),
            constraints: Vec::new(),
            duty: None,
        };
        for (key, name, value) in fields {
            match key {
                Id => parts.uid = Some(self.iri(value, name)?),
                Type => {
                    let t = self.vocab_term(value, "@type")?;
                    let iri = self.ctx.expand_vocab(&t).unwrap_or_default();
                    if iri != format!("{ODRL}{class}") {
                        return Err(ParseError::unsupported("rule type", t));
                    }
                }
                Action => parts.action = Some(value),
                Target => parts.parties.target = Some(self.iri(value, name)?),
                Assigner => parts.parties.assigner = Some(self.party(value, name)?),
                Assignee => parts.parties.assignee = Some(self.party(value, name)?),
                Constraint => parts.constraints = self.constraints(value, 0)?,
                Duty => parts.duty = Some(value),
                _ => return Err(ParseError::unsupported("property", name)),
            }
        }
        Ok(parts)
    }

    fn permission(&self, obj: &Map<String, Value>) -> Result<Permission, ParseError> {
        let parts = self.rule(obj, &[Key::Duty], "Permission")?;
        let action = self.action(parts.action, "permission")?;
        let mut duties = Vec::new();
        if let Some(v) = parts.duty {
            for item in nodes(v, "duty")? {
                duties.push(self.duty(item)?);
            }
        }
        Ok(Permission {
            uid: parts.uid,
            action,
            parties: parts.parties,
            constraints: parts.constraints,
            duties,
        })
    }

    fn prohibition(&self, obj: &Map<String, Value>) -> Result<Prohibition, ParseError> {
        let parts = self.rule(obj, &[], "Prohibition")?;
        let action = self.action(parts.action, "prohibition")?;
        Ok(Prohibition {
            uid: parts.uid,
            action,
            parties: parts.parties,
            constraints: parts.constraints,
        })
    }

    fn duty(&self, obj: &Map<String, Value>) -> Result<Duty, ParseError> {
        let parts = self.rule(obj, &[], "Duty")?;
        let value = parts.action.ok_or(ParseError::Missing {
            what: "action",
            on: "a duty",
        })?;
        let term = self.action_term(value)?;
        let action = self
            .ctx
            .expand_vocab(&term)
            .and_then(|iri| DutyAction::from_iri(&iri))
            .ok_or_else(|| ParseError::unsupported("duty action", term))?;
        Ok(Duty {
            uid: parts.uid,
            action,
            parties: parts.parties,
            constraints: parts.constraints,
        })
    }

    fn action(&self, value: Option<&Value>, on: &'static str) -> Result<Action, ParseError> {
        let value = value.ok_or(ParseError::Missing { what: "action", on })?;
        let term = self.action_term(value)?;
        self.ctx
            .expand_vocab(&term)
            .and_then(|iri| Action::from_iri(&iri))
            .ok_or_else(|| ParseError::unsupported("action", term))
    }

    /// The action's term: a string, `{"@id": …}`, or `{"rdf:value": {"@id": …}}` without
    /// refinement (refinements are outside the profile).
    fn action_term(&self, value: &Value) -> Result<String, ParseError> {
        let value = single(value, "action")?;
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Object(o) => {
                let mut term = None;
                let mut refinement = None;
                for (name, v) in o {
                    match self.ctx.expand_vocab(name).as_deref() {
                        Some("@id") => term = Some(self.vocab_term(v, "action")?),
                        Some(iri) if iri == format!("{RDF}value") => {
                            term = Some(self.vocab_term(v, "rdf:value")?)
                        }
                        Some(iri) if iri == format!("{ODRL}refinement") => refinement = Some(name),
                        _ => return Err(ParseError::unsupported("property", name.clone())),
                    }
                }
                let term = term.ok_or(ParseError::Missing {
                    what: "rdf:value",
                    on: "an action",
                })?;
                if self
                    .ctx
                    .expand_vocab(&term)
                    .and_then(|i| {
                        Action::from_iri(&i)
                            .map(|_| ())
                            .or_else(|| DutyAction::from_iri(&i).map(|_| ()))
                    })
                    .is_none()
                {
                    return Err(ParseError::unsupported("action", term));
                }
                if let Some(name) = refinement {
                    return Err(ParseError::unsupported("property", name.clone()));
                }
                Ok(term)
            }
            other => Err(ParseError::invalid("action", format!("unexpected {other}"))),
        }
    }

    fn constraints(&self, value: &Value, depth: usize) -> Result<Vec<Constraint>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        let items = match value {
            Value::Object(o) if o.contains_key("@list") => list_items(o)?,
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        items
            .into_iter()
            .map(|item| match item {
                Value::Object(o) => self.constraint(o, depth),
                other => Err(ParseError::invalid(
                    "constraint",
                    format!("unexpected {other}"),
                )),
            })
            .collect()
    }

    fn constraint(&self, obj: &Map<String, Value>, depth: usize) -> Result<Constraint, ParseError> {
        use Key::*;
        let fields = self.fields(
            obj,
            &[
                Id,
                Type,
                LeftOperand,
                Operator,
                RightOperand,
                Logical(LogicalOperator::And),
                Logical(LogicalOperator::Or),
                Logical(LogicalOperator::Xone),
            ],
        )?;
        let get = |k: Key| {
            fields
                .iter()
                .find(|(key, _, _)| *key == k)
                .map(|(_, n, v)| (*n, *v))
        };
        let uid = get(Id).map(|(_, v)| self.iri(v, "@id")).transpose()?;
        if let Some((_, v)) = get(Type) {
            let t = self.vocab_term(v, "@type")?;
            let iri = self.ctx.expand_vocab(&t).unwrap_or_default();
            if iri != format!("{ODRL}Constraint") && iri != format!("{ODRL}LogicalConstraint") {
                return Err(ParseError::unsupported("constraint type", t));
            }
        }
        let logical: Vec<_> = fields
            .iter()
            .filter_map(|(k, n, v)| match k {
                Logical(op) => Some((*op, *n, *v)),
                _ => None,
            })
            .collect();
        if let Some((op, name, value)) = logical.first() {
            if logical.len() > 1 || get(LeftOperand).is_some() {
                return Err(ParseError::invalid(
                    *name,
                    "a logical constraint has exactly one operator and no left operand",
                ));
            }
            let operands = self.constraints(value, depth + 1)?;
            return Ok(crate::ast::Constraint::Logical(LogicalConstraint {
                uid,
                operator: *op,
                operands,
            }));
        }
        let (_, left_v) = get(LeftOperand).ok_or(ParseError::Missing {
            what: "leftOperand",
            on: "a constraint",
        })?;
        let left_term = self.vocab_term(left_v, "leftOperand")?;
        let left = self
            .ctx
            .expand_vocab(&left_term)
            .and_then(|iri| crate::vocab::LeftOperand::from_iri(&iri))
            .ok_or_else(|| ParseError::unsupported("left operand", left_term.clone()))?;
        let (_, op_v) = get(Operator).ok_or(ParseError::Missing {
            what: "operator",
            on: "a constraint",
        })?;
        let op_term = self.vocab_term(op_v, "operator")?;
        let operator = self
            .ctx
            .expand_vocab(&op_term)
            .and_then(|iri| {
                // D17: an old context mapped `neq` to `odrl:neg`; compact `neq` is not-equal.
                if op_term == "neq" {
                    Some(crate::vocab::Operator::Neq)
                } else {
                    crate::vocab::Operator::from_iri(&iri)
                }
            })
            .ok_or_else(|| ParseError::unsupported("operator", op_term.clone()))?;
        let (_, right_v) = get(RightOperand).ok_or(ParseError::Missing {
            what: "rightOperand",
            on: "a constraint",
        })?;
        let right = self.right_operand(left, operator, right_v)?;
        Ok(crate::ast::Constraint::Atomic(AtomicConstraint {
            uid,
            left,
            operator,
            right,
        }))
    }

    /// A vocabulary value (`@type`, `operator`, `leftOperand`, `conflict`) as written.
    pub(super) fn vocab_term(&self, v: &Value, what: &str) -> Result<String, ParseError> {
        match single(v, what)? {
            Value::String(s) => Ok(s.clone()),
            Value::Object(o) if o.len() == 1 => match o.get("@id") {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(ParseError::invalid(what, "not a term")),
            },
            other => Err(ParseError::invalid(
                what,
                format!("`{other}` is not a term"),
            )),
        }
    }

    /// An IRI value: a string or `{"@id": …}`, expanded.
    pub(super) fn iri(&self, v: &Value, what: &str) -> Result<String, ParseError> {
        let s = match v {
            Value::String(s) => s,
            Value::Object(o) if o.len() == 1 => match o.get("@id").or_else(|| o.get("uid")) {
                Some(Value::String(s)) => s,
                _ => return Err(ParseError::invalid(what, "not an iri")),
            },
            other => {
                return Err(ParseError::invalid(
                    what,
                    format!("`{other}` is not an iri"),
                ));
            }
        };
        if s.is_empty() {
            return Err(ParseError::invalid(what, "empty iri"));
        }
        Ok(self.ctx.expand_iri(s))
    }

    /// A party: an IRI, or a `Party` object with a uid (party collections are outside the
    /// profile).
    fn party(&self, v: &Value, what: &str) -> Result<String, ParseError> {
        let Value::Object(o) = v else {
            return self.iri(v, what);
        };
        let mut uid = None;
        for (k, x) in o {
            match self.ctx.expand_vocab(k).as_deref() {
                Some("@id") => uid = Some(self.iri(x, what)?),
                Some("@type") => {
                    let t = self.vocab_term(x, "@type")?;
                    if self.ctx.expand_vocab(&t).as_deref() != Some(&format!("{ODRL}Party")) {
                        return Err(ParseError::unsupported("party type", t));
                    }
                }
                _ => return Err(ParseError::unsupported("property", k.clone())),
            }
        }
        uid.ok_or(ParseError::Missing {
            what: "uid",
            on: "a party",
        })
    }
}

struct RuleParts<'a> {
    uid: Option<String>,
    action: Option<&'a Value>,
    parties: RuleParties,
    constraints: Vec<Constraint>,
    duty: Option<&'a Value>,
}

pub(super) fn str_of(v: &Value) -> Option<&str> {
    v.as_str()
}

/// A member that must hold one value (a one-element array is unwrapped).
fn single<'a>(v: &'a Value, what: &str) -> Result<&'a Value, ParseError> {
    match v {
        Value::Array(a) if a.len() == 1 => Ok(&a[0]),
        Value::Array(_) => Err(ParseError::invalid(what, "exactly one value is allowed")),
        other => Ok(other),
    }
}

pub(super) fn list_items(o: &Map<String, Value>) -> Result<Vec<&Value>, ParseError> {
    if o.len() != 1 {
        return Err(ParseError::invalid(
            "@list",
            "a list object has only `@list`",
        ));
    }
    match o.get("@list") {
        Some(Value::Array(a)) => Ok(a.iter().collect()),
        _ => Err(ParseError::invalid("@list", "not an array")),
    }
}

/// Rule or duty nodes: one object or an array of objects.
fn nodes<'a>(v: &'a Value, what: &str) -> Result<Vec<&'a Map<String, Value>>, ParseError> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    items
        .into_iter()
        .map(|i| {
            i.as_object()
                .ok_or_else(|| ParseError::invalid(what, "not a json object"))
        })
        .collect()
}
