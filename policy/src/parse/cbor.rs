//! The deterministic CBOR form of a policy: integer keys, vocabulary as compact terms.
//!
//! ```text
//! policy     = { 1: uid, 2: type, ? 3: profile, ? 4: "prohibit", ? 5: assigner, ? 6: assignee,
//!                ? 7: target, ? 8: [* permission], ? 9: [* prohibition], ? 10: [* duty],
//!                ? 11: issuer, ? 12: issued (tag 0), ? 13: expires (tag 0), ? 14: version,
//!                ? 15: previous (bstr .size 32) }
//! permission = { ? 1: uid, 16: action, ? 5/6/7, ? 17: [* constraint], ? 18: [* duty] }
//! prohibition, duty = { ? 1: uid, 16: action, ? 5/6/7, ? 17: [* constraint] }
//! constraint = { ? 1: uid, 19: leftOperand, 20: operator, 21: value }
//!            / { ? 1: uid, 22: "and" / "or" / "xone", 23: [* constraint] }
//! value      = tstr / 32(tstr) IRI / uint / 0(tstr) dateTime / 1004(tstr) date
//!            / 1002({1: seconds, ? -9: nanoseconds}) duration / [* value]
//! ```
//!
//! Empty arrays and absent options are left out, so every policy has exactly one encoding.
//! [`Policy`]'s serde implementations produce and read exactly this form, which makes
//! `Signed<Policy>` work with the protocol's envelope.
use allmende_protocol::{EncodeError, cbor};
use ciborium::Value;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{MAX_DEPTH, ParseError};
use crate::ast::{
    AtomicConstraint, Constraint, Duty, LogicalConstraint, Permission, Policy, PolicyId,
    Prohibition, RightOperand, RuleParties,
};
use crate::validate::validate;
use crate::values::{XsdDate, XsdDuration};
use crate::vocab::{Action, DutyAction, LeftOperand, LogicalOperator, Operator, PolicyKind};

const UID: u8 = 1;
const TYPE: u8 = 2;
const PROFILE: u8 = 3;
const CONFLICT: u8 = 4;
const ASSIGNER: u8 = 5;
const ASSIGNEE: u8 = 6;
const TARGET: u8 = 7;
const PERMISSION: u8 = 8;
const PROHIBITION: u8 = 9;
const OBLIGATION: u8 = 10;
const ISSUER: u8 = 11;
const ISSUED: u8 = 12;
const EXPIRES: u8 = 13;
const VERSION: u8 = 14;
const PREVIOUS: u8 = 15;
const ACTION: u8 = 16;
const CONSTRAINT: u8 = 17;
const DUTY: u8 = 18;
const LEFT: u8 = 19;
const OPERATOR: u8 = 20;
const RIGHT: u8 = 21;
const LOGICAL: u8 = 22;
const OPERANDS: u8 = 23;

const TAG_DATETIME: u64 = 0;
const TAG_URI: u64 = 32;
const TAG_DURATION: u64 = 1002;
const TAG_DATE: u64 = 1004;

/// Encodes a policy as deterministic CBOR (the payload that is signed and hashed).
pub fn to_vec(policy: &Policy) -> Result<Vec<u8>, EncodeError> {
    cbor::encode_value(to_value(policy))
}

/// Decodes deterministic CBOR into a policy and checks it against the profile.
pub fn from_slice(bytes: &[u8], max_len: usize) -> Result<Policy, ParseError> {
    let value = cbor::decode_value(bytes, max_len)?;
    let policy = from_value(&value)?;
    validate(&policy)?;
    Ok(policy)
}

struct MapBuilder(Vec<(Value, Value)>);

impl MapBuilder {
    fn put(&mut self, k: u8, v: Value) {
        self.0.push((Value::Integer(k.into()), v));
    }
    fn opt_text(&mut self, k: u8, v: &Option<String>) {
        if let Some(s) = v {
            self.put(k, Value::Text(s.clone()));
        }
    }
    fn list<T>(&mut self, k: u8, items: &[T], f: impl Fn(&T) -> Value) {
        if !items.is_empty() {
            self.put(k, Value::Array(items.iter().map(f).collect()));
        }
    }
}

/// The policy as a CBOR value (maps not yet sorted; [`cbor::encode_value`] sorts them).
pub fn to_value(p: &Policy) -> Value {
    let mut m = MapBuilder(Vec::new());
    m.put(UID, Value::Text(p.uid.clone()));
    m.put(TYPE, Value::Text(p.kind.term().into()));
    m.opt_text(PROFILE, &p.profile);
    if p.conflict_prohibit {
        m.put(CONFLICT, Value::Text("prohibit".into()));
    }
    m.opt_text(ASSIGNER, &p.assigner);
    m.opt_text(ASSIGNEE, &p.assignee);
    m.opt_text(TARGET, &p.target);
    m.list(PERMISSION, &p.permissions, |r| {
        let mut m = rule(&r.uid, r.action.term(), &r.parties, &r.constraints);
        m.list(DUTY, &r.duties, duty);
        Value::Map(m.0)
    });
    m.list(PROHIBITION, &p.prohibitions, |r| {
        Value::Map(rule(&r.uid, r.action.term(), &r.parties, &r.constraints).0)
    });
    m.list(OBLIGATION, &p.obligations, duty);
    m.opt_text(ISSUER, &p.issuer);
    if let Some(t) = &p.issued {
        m.put(
            ISSUED,
            Value::Tag(TAG_DATETIME, Box::new(Value::Text(t.to_string()))),
        );
    }
    if let Some(t) = &p.expires {
        m.put(
            EXPIRES,
            Value::Tag(TAG_DATETIME, Box::new(Value::Text(t.to_string()))),
        );
    }
    if let Some(v) = p.version {
        m.put(VERSION, Value::Integer(v.into()));
    }
    if let Some(prev) = &p.previous {
        m.put(PREVIOUS, Value::Bytes(prev.0.to_vec()));
    }
    Value::Map(m.0)
}

fn rule(uid: &Option<String>, action: &str, p: &RuleParties, cs: &[Constraint]) -> MapBuilder {
    let mut m = MapBuilder(Vec::new());
    m.opt_text(UID, uid);
    m.put(ACTION, Value::Text(action.into()));
    m.opt_text(ASSIGNER, &p.assigner);
    m.opt_text(ASSIGNEE, &p.assignee);
    m.opt_text(TARGET, &p.target);
    m.list(CONSTRAINT, cs, constraint);
    m
}

fn duty(d: &Duty) -> Value {
    Value::Map(rule(&d.uid, d.action.term(), &d.parties, &d.constraints).0)
}

fn constraint(c: &Constraint) -> Value {
    let mut m = MapBuilder(Vec::new());
    match c {
        Constraint::Atomic(a) => {
            m.opt_text(UID, &a.uid);
            m.put(LEFT, Value::Text(a.left.term().into()));
            m.put(OPERATOR, Value::Text(a.operator.term().into()));
            m.put(RIGHT, right(&a.right));
        }
        Constraint::Logical(l) => {
            m.opt_text(UID, &l.uid);
            m.put(LOGICAL, Value::Text(l.operator.term().into()));
            m.put(
                OPERANDS,
                Value::Array(l.operands.iter().map(constraint).collect()),
            );
        }
    }
    Value::Map(m.0)
}

fn right(r: &RightOperand) -> Value {
    match r {
        RightOperand::Text(s) => Value::Text(s.clone()),
        RightOperand::Iri(s) => Value::Tag(TAG_URI, Box::new(Value::Text(s.clone()))),
        RightOperand::Integer(i) => Value::Integer((*i).into()),
        RightOperand::DateTime(t) => Value::Tag(TAG_DATETIME, Box::new(Value::Text(t.to_string()))),
        RightOperand::Date(d) => Value::Tag(TAG_DATE, Box::new(Value::Text(d.to_string()))),
        RightOperand::Duration(d) => {
            let mut m = vec![(Value::Integer(1.into()), Value::Integer(d.secs().into()))];
            // Not through `as_delta`, which saturates beyond chrono's range (about 292 million
            // years) and would invent nanoseconds.
            let nanos = d.subsec_nanos();
            if nanos != 0 {
                m.push((Value::Integer((-9).into()), Value::Integer(nanos.into())));
            }
            Value::Tag(TAG_DURATION, Box::new(Value::Map(m)))
        }
        RightOperand::List(items) => Value::Array(items.iter().map(right).collect()),
    }
}

/// Reads a CBOR map's integer keys, refusing unknown ones by number.
struct Fields<'a> {
    entries: Vec<(u8, &'a Value)>,
}

impl<'a> Fields<'a> {
    fn new(v: &'a Value, on: &'static str, allowed: &[u8]) -> Result<Fields<'a>, ParseError> {
        let Value::Map(entries) = v else {
            return Err(ParseError::invalid(on, "not a cbor map"));
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let key = k
                .as_integer()
                .and_then(|i| u8::try_from(i).ok())
                .filter(|k| allowed.contains(k))
                .ok_or_else(|| ParseError::unsupported("cbor key", format!("{k:?} in {on}")))?;
            out.push((key, v));
        }
        Ok(Fields { entries: out })
    }
    fn get(&self, k: u8) -> Option<&'a Value> {
        self.entries
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| *v)
    }
    fn text(&self, k: u8, what: &'static str) -> Result<Option<String>, ParseError> {
        self.get(k).map(|v| text(v, what)).transpose()
    }
    fn list(&self, k: u8, what: &'static str) -> Result<&'a [Value], ParseError> {
        match self.get(k) {
            None => Ok(&[]),
            Some(Value::Array(a)) if !a.is_empty() => Ok(a),
            Some(_) => Err(ParseError::invalid(what, "not a non-empty cbor array")),
        }
    }
}

fn text(v: &Value, what: &'static str) -> Result<String, ParseError> {
    v.as_text()
        .map(str::to_owned)
        .ok_or_else(|| ParseError::invalid(what, "not a cbor text string"))
}

fn tagged_text(v: &Value, tag: u64, what: &'static str) -> Result<String, ParseError> {
    match v {
        Value::Tag(t, inner) if *t == tag => text(inner, what),
        _ => Err(ParseError::invalid(what, format!("not a cbor tag {tag}"))),
    }
}

/// Reads a policy from its CBOR value (without the profile check).
///
/// The value must be the one encoding of the policy it describes (no empty arrays, no
/// zero nanoseconds, …), so that a policy's id is a function of the policy.
pub fn from_value(v: &Value) -> Result<Policy, ParseError> {
    let p = read_policy(v)?;
    let again = cbor::canonicalize(to_value(&p))
        .map_err(|e| ParseError::invalid("policy", e.to_string()))?;
    let given =
        cbor::canonicalize(v.clone()).map_err(|e| ParseError::invalid("policy", e.to_string()))?;
    if again != given {
        return Err(ParseError::invalid(
            "policy",
            "not the canonical cbor form of the policy",
        ));
    }
    Ok(p)
}

fn read_policy(v: &Value) -> Result<Policy, ParseError> {
    let f = Fields::new(
        v,
        "policy",
        &[
            UID,
            TYPE,
            PROFILE,
            CONFLICT,
            ASSIGNER,
            ASSIGNEE,
            TARGET,
            PERMISSION,
            PROHIBITION,
            OBLIGATION,
            ISSUER,
            ISSUED,
            EXPIRES,
            VERSION,
            PREVIOUS,
        ],
    )?;
    let kind_term = f.text(TYPE, "type")?.ok_or(ParseError::Missing {
        what: "type",
        on: "the policy",
    })?;
    let kind = PolicyKind::from_term(&kind_term)
        .ok_or_else(|| ParseError::unsupported("policy type", kind_term))?;
    let uid = f.text(UID, "uid")?.ok_or(ParseError::Missing {
        what: "uid",
        on: "the policy",
    })?;
    let mut p = Policy::new(kind, uid);
    p.profile = f.text(PROFILE, "profile")?;
    p.conflict_prohibit = match f.text(CONFLICT, "conflict")? {
        None => false,
        Some(s) if s == "prohibit" => true,
        Some(s) => return Err(ParseError::unsupported("conflict strategy", s)),
    };
    p.assigner = f.text(ASSIGNER, "assigner")?;
    p.assignee = f.text(ASSIGNEE, "assignee")?;
    p.target = f.text(TARGET, "target")?;
    for r in f.list(PERMISSION, "permission")? {
        let (uid, action, parties, constraints, duties) = read_rule(r, "permission", true)?;
        p.permissions.push(Permission {
            uid,
            action: rule_action(&action)?,
            parties,
            constraints,
            duties,
        });
    }
    for r in f.list(PROHIBITION, "prohibition")? {
        let (uid, action, parties, constraints, _) = read_rule(r, "prohibition", false)?;
        p.prohibitions.push(Prohibition {
            uid,
            action: rule_action(&action)?,
            parties,
            constraints,
        });
    }
    for d in f.list(OBLIGATION, "obligation")? {
        p.obligations.push(read_duty(d)?);
    }
    p.issuer = f.text(ISSUER, "issuer")?;
    p.issued = f
        .get(ISSUED)
        .map(|v| tagged_text(v, TAG_DATETIME, "issued"))
        .transpose()?
        .map(|s| s.parse())
        .transpose()?;
    p.expires = f
        .get(EXPIRES)
        .map(|v| tagged_text(v, TAG_DATETIME, "expires"))
        .transpose()?
        .map(|s| s.parse())
        .transpose()?;
    p.version = f.get(VERSION).map(|v| uint(v, "version")).transpose()?;
    p.previous = match f.get(PREVIOUS) {
        None => None,
        Some(Value::Bytes(b)) => Some(PolicyId(
            <[u8; 32]>::try_from(b.as_slice())
                .map_err(|_| ParseError::invalid("previous", "not 32 bytes"))?,
        )),
        Some(_) => return Err(ParseError::invalid("previous", "not a byte string")),
    };
    Ok(p)
}

type RuleTuple = (
    Option<String>,
    String,
    RuleParties,
    Vec<Constraint>,
    Vec<Duty>,
);

fn read_rule(v: &Value, on: &'static str, with_duties: bool) -> Result<RuleTuple, ParseError> {
    let mut allowed = vec![UID, ACTION, ASSIGNER, ASSIGNEE, TARGET, CONSTRAINT];
    if with_duties {
        allowed.push(DUTY);
    }
    let f = Fields::new(v, on, &allowed)?;
    let action = f
        .text(ACTION, "action")?
        .ok_or(ParseError::Missing { what: "action", on })?;
    let parties = RuleParties {
        target: f.text(TARGET, "target")?,
        assigner: f.text(ASSIGNER, "assigner")?,
        assignee: f.text(ASSIGNEE, "assignee")?,
    };
    let constraints = f
        .list(CONSTRAINT, "constraint")?
        .iter()
        .map(|c| read_constraint(c, 0))
        .collect::<Result<_, _>>()?;
    let duties = f
        .list(DUTY, "duty")?
        .iter()
        .map(read_duty)
        .collect::<Result<_, _>>()?;
    Ok((f.text(UID, "uid")?, action, parties, constraints, duties))
}

fn rule_action(term: &str) -> Result<Action, ParseError> {
    Action::from_term(term).ok_or_else(|| ParseError::unsupported("action", term))
}

fn read_duty(v: &Value) -> Result<Duty, ParseError> {
    let (uid, action, parties, constraints, _) = read_rule(v, "duty", false)?;
    let action = DutyAction::from_term(&action)
        .ok_or_else(|| ParseError::unsupported("duty action", action))?;
    Ok(Duty {
        uid,
        action,
        parties,
        constraints,
    })
}

fn read_constraint(v: &Value, depth: usize) -> Result<Constraint, ParseError> {
    if depth > MAX_DEPTH {
        return Err(ParseError::TooDeep);
    }
    let f = Fields::new(
        v,
        "constraint",
        &[UID, LEFT, OPERATOR, RIGHT, LOGICAL, OPERANDS],
    )?;
    let uid = f.text(UID, "uid")?;
    if let Some(op) = f.text(LOGICAL, "logical operator")? {
        let operator = LogicalOperator::from_term(&op)
            .ok_or_else(|| ParseError::unsupported("logical operator", op))?;
        if f.get(LEFT).is_some() || f.get(OPERATOR).is_some() || f.get(RIGHT).is_some() {
            return Err(ParseError::invalid("constraint", "both logical and atomic"));
        }
        let operands = f
            .list(OPERANDS, "operands")?
            .iter()
            .map(|c| read_constraint(c, depth + 1))
            .collect::<Result<_, _>>()?;
        return Ok(Constraint::Logical(LogicalConstraint {
            uid,
            operator,
            operands,
        }));
    }
    let left = f.text(LEFT, "leftOperand")?.ok_or(ParseError::Missing {
        what: "leftOperand",
        on: "a constraint",
    })?;
    let left = LeftOperand::from_term(&left)
        .ok_or_else(|| ParseError::unsupported("left operand", left))?;
    let op = f.text(OPERATOR, "operator")?.ok_or(ParseError::Missing {
        what: "operator",
        on: "a constraint",
    })?;
    let operator =
        Operator::from_term(&op).ok_or_else(|| ParseError::unsupported("operator", op))?;
    let right = read_right(
        f.get(RIGHT).ok_or(ParseError::Missing {
            what: "rightOperand",
            on: "a constraint",
        })?,
        0,
    )?;
    Ok(Constraint::Atomic(AtomicConstraint {
        uid,
        left,
        operator,
        right,
    }))
}

fn uint(v: &Value, what: &'static str) -> Result<u64, ParseError> {
    v.as_integer()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| ParseError::invalid(what, "not an unsigned integer"))
}

fn read_right(v: &Value, depth: usize) -> Result<RightOperand, ParseError> {
    Ok(match v {
        Value::Text(s) => RightOperand::Text(s.clone()),
        Value::Integer(_) => RightOperand::Integer(uint(v, "rightOperand")?),
        Value::Tag(TAG_URI, inner) => RightOperand::Iri(text(inner, "rightOperand")?),
        Value::Tag(TAG_DATETIME, inner) => {
            RightOperand::DateTime(text(inner, "rightOperand")?.parse()?)
        }
        Value::Tag(TAG_DATE, inner) => {
            RightOperand::Date(text(inner, "rightOperand")?.parse::<XsdDate>()?)
        }
        Value::Tag(TAG_DURATION, inner) => {
            let (secs, nanos) = duration_with_nanos(inner)?;
            let nanos = u32::try_from(nanos)
                .ok()
                .filter(|n| *n < 1_000_000_000)
                .ok_or_else(|| ParseError::invalid("duration", "nanoseconds out of range"))?;
            RightOperand::Duration(XsdDuration::new(secs, nanos))
        }
        Value::Array(items) if depth == 0 => RightOperand::List(
            items
                .iter()
                .map(|i| read_right(i, 1))
                .collect::<Result<_, _>>()?,
        ),
        other => {
            return Err(ParseError::invalid(
                "rightOperand",
                format!("unexpected cbor value {other:?}"),
            ));
        }
    })
}

fn duration_with_nanos(v: &Value) -> Result<(u64, u64), ParseError> {
    let Value::Map(entries) = v else {
        return Err(ParseError::invalid("duration", "not a cbor map"));
    };
    let (mut secs, mut nanos) = (None, None);
    for (k, x) in entries {
        match k.as_integer().map(i128::from) {
            Some(1) => secs = Some(uint(x, "duration")?),
            Some(-9) => nanos = Some(uint(x, "duration")?),
            _ => {
                return Err(ParseError::unsupported(
                    "cbor key",
                    format!("{k:?} in duration"),
                ));
            }
        }
    }
    Ok((
        secs.ok_or(ParseError::Missing {
            what: "1",
            on: "a duration",
        })?,
        nanos.unwrap_or(0),
    ))
}

impl Serialize for Policy {
    /// Serialises the CBOR form (this is what `Signed<Policy>` signs).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        to_value(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Policy {
    /// Reads the CBOR form and checks the profile.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Policy, D::Error> {
        let v = Value::deserialize(d)?;
        let p = from_value(&v).map_err(serde::de::Error::custom)?;
        validate(&p).map_err(serde::de::Error::custom)?;
        Ok(p)
    }
}
