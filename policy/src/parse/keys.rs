//! The members of the JSON-LD form, recognised by expanded IRI.
use super::context::RDF;
use crate::vocab::{ALLMENDE, LogicalOperator, ODRL};

/// The profile members a node may carry, by expanded IRI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Key {
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
    Duty,
    Action,
    Constraint,
    LeftOperand,
    Operator,
    RightOperand,
    Logical(LogicalOperator),
    RdfValue,
    Issuer,
    Issued,
    Expires,
    Version,
    Previous,
}

pub(super) fn key_of(iri: &str) -> Option<Key> {
    Some(match iri {
        "@context" => Key::Context,
        "@id" => Key::Id,
        "@type" => Key::Type,
        _ => {
            if let Some(t) = iri.strip_prefix(ODRL) {
                match t {
                    "profile" => Key::Profile,
                    "conflict" => Key::Conflict,
                    "assigner" => Key::Assigner,
                    "assignee" => Key::Assignee,
                    "target" => Key::Target,
                    "permission" => Key::Permission,
                    "prohibition" => Key::Prohibition,
                    "obligation" => Key::Obligation,
                    "duty" => Key::Duty,
                    "action" => Key::Action,
                    "constraint" => Key::Constraint,
                    "leftOperand" => Key::LeftOperand,
                    "operator" => Key::Operator,
                    "rightOperand" => Key::RightOperand,
                    other => Key::Logical(LogicalOperator::from_term(other)?),
                }
            } else if let Some(t) = iri.strip_prefix(ALLMENDE) {
                match t {
                    "issuer" => Key::Issuer,
                    "expires" => Key::Expires,
                    "version" => Key::Version,
                    "previousVersion" => Key::Previous,
                    _ => return None,
                }
            } else if iri == "http://purl.org/dc/terms/issued" {
                Key::Issued
            } else if iri == format!("{RDF}value") {
                Key::RdfValue
            } else {
                return None;
            }
        }
    })
}
