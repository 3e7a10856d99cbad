//! Literal values of the JSON-LD form: right operands, typed literals, integers.
use serde_json::Value;

use super::ParseError;
use super::context::XSD;
use super::jsonld::{Parser, list_items, str_of};
use crate::ast::RightOperand;
use crate::values::{XsdDate, XsdDateTime, XsdDuration};
use crate::vocab::{LeftOperand, Operator};

impl Parser {
    pub(super) fn right_operand(
        &self,
        left: LeftOperand,
        op: Operator,
        v: &Value,
    ) -> Result<RightOperand, ParseError> {
        use LeftOperand as L;
        let value = match left {
            L::DateTime => match self.typed(v, "rightOperand")? {
                (s, None) => RightOperand::DateTime(s.parse()?),
                (s, Some(t)) if t == format!("{XSD}dateTime") => RightOperand::DateTime(s.parse()?),
                (s, Some(t)) if t == format!("{XSD}date") => {
                    RightOperand::Date(s.parse::<XsdDate>()?)
                }
                (_, Some(t)) => return Err(ParseError::unsupported("datatype", t)),
            },
            L::ElapsedTime => match self.typed(v, "rightOperand")? {
                (s, None) => RightOperand::Duration(s.parse::<XsdDuration>()?),
                (s, Some(t)) if t == format!("{XSD}duration") => RightOperand::Duration(s.parse()?),
                (_, Some(t)) => return Err(ParseError::unsupported("datatype", t)),
            },
            L::Count | L::MinGroupSize => RightOperand::Integer(self.integer(v, "rightOperand")?),
            _ => {
                let items = match v {
                    Value::Array(a) => Some(a.iter().collect::<Vec<_>>()),
                    Value::Object(o) if o.contains_key("@list") => Some(list_items(o)?),
                    _ => None,
                };
                match items {
                    Some(items) => RightOperand::List(
                        items
                            .into_iter()
                            .map(|i| self.term_value(i))
                            .collect::<Result<_, _>>()?,
                    ),
                    None if op.is_set_operator() => RightOperand::List(vec![self.term_value(v)?]),
                    None => self.term_value(v)?,
                }
            }
        };
        Ok(value)
    }

    /// A string or IRI right operand.
    pub(super) fn term_value(&self, v: &Value) -> Result<RightOperand, ParseError> {
        match v {
            Value::String(s) => Ok(RightOperand::Text(s.clone())),
            Value::Object(o) if o.contains_key("@id") && o.len() == 1 => {
                Ok(RightOperand::Iri(self.iri(v, "rightOperand")?))
            }
            Value::Object(_) => match self.typed(v, "rightOperand")? {
                (s, None) => Ok(RightOperand::Text(s)),
                (s, Some(t)) if t == format!("{XSD}string") => Ok(RightOperand::Text(s)),
                (_, Some(t)) => Err(ParseError::unsupported("datatype", t)),
            },
            other => Err(ParseError::invalid(
                "rightOperand",
                format!("`{other}` is not a string or iri"),
            )),
        }
    }

    /// A literal: a string, or `{"@value": …, "@type": …}` (the type expanded).
    pub(super) fn typed(
        &self,
        v: &Value,
        what: &str,
    ) -> Result<(String, Option<String>), ParseError> {
        match v {
            Value::String(s) => Ok((s.clone(), None)),
            Value::Object(o) => {
                let mut value = None;
                let mut ty = None;
                for (k, x) in o {
                    match k.as_str() {
                        "@value" => {
                            value = Some(match x {
                                Value::String(s) => s.clone(),
                                Value::Number(n) => n.to_string(),
                                other => {
                                    return Err(ParseError::invalid(
                                        what,
                                        format!("unexpected {other}"),
                                    ));
                                }
                            })
                        }
                        "@type" => {
                            ty = Some(self.ctx.expand_iri(str_of(x).ok_or_else(|| {
                                ParseError::invalid(what, "`@type` is not a string")
                            })?))
                        }
                        other => return Err(ParseError::unsupported("property", other)),
                    }
                }
                let value = value.ok_or(ParseError::Missing {
                    what: "@value",
                    on: "a typed literal",
                })?;
                Ok((value, ty))
            }
            other => Err(ParseError::invalid(what, format!("unexpected {other}"))),
        }
    }

    pub(super) fn integer(&self, v: &Value, what: &str) -> Result<u64, ParseError> {
        let bad =
            |s: &str| ParseError::invalid(what, format!("`{s}` is not a non-negative integer"));
        match v {
            Value::Number(n) => n.as_u64().ok_or_else(|| bad(&n.to_string())),
            Value::Object(_) => match self.typed(v, what)? {
                (s, Some(t))
                    if t == format!("{XSD}integer") || t == format!("{XSD}nonNegativeInteger") =>
                {
                    s.parse().map_err(|_| bad(&s))
                }
                (_, Some(t)) => Err(ParseError::unsupported("datatype", t)),
                (s, None) => Err(bad(&s)),
            },
            Value::String(s) => Err(bad(s)),
            other => Err(bad(&other.to_string())),
        }
    }

    pub(super) fn date_time_meta(&self, v: &Value, what: &str) -> Result<XsdDateTime, ParseError> {
        match self.typed(v, what)? {
            (s, None) => Ok(s.parse()?),
            (s, Some(t)) if t == format!("{XSD}dateTime") => Ok(s.parse()?),
            (_, Some(t)) => Err(ParseError::unsupported("datatype", t)),
        }
    }

    pub(super) fn literal(&self, v: &Value, what: &str) -> Result<String, ParseError> {
        match self.typed(v, what)? {
            (s, None) => Ok(s),
            (_, Some(t)) => Err(ParseError::unsupported("datatype", t)),
        }
    }
}
