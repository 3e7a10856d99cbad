//! The pinned JSON-LD contexts and compact-IRI expansion.
//!
//! Nothing is ever fetched. A document's `@context` may hold the W3C ODRL context
//! (`http://www.w3.org/ns/odrl.jsonld`, resolved from the pinned term list below, with the
//! 2025-04-10 `neq` erratum), the Data Integrity v2 context, and inline objects (prefixes and
//! term definitions, such as the profile context from [`profile_context`]). Any other remote
//! context is refused by name.
use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::ParseError;
use crate::vocab::{ALLMENDE, ODRL};

/// The W3C ODRL context's URL, as written by ODRL documents.
pub const ODRL_CONTEXT: &str = "http://www.w3.org/ns/odrl.jsonld";
/// The W3C Data Integrity v2 context (for documents that carry a proof).
pub const DATA_INTEGRITY_CONTEXT: &str = "https://w3id.org/security/data-integrity/v2";
/// `xsd:` namespace.
pub const XSD: &str = "http://www.w3.org/2001/XMLSchema#";
/// `rdf:` namespace.
pub const RDF: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
/// `dct:` namespace.
pub const DCT: &str = "http://purl.org/dc/terms/";

/// ODRL terms pinned from the W3C context (a subset: every term the profile uses, plus the
/// ODRL terms it refuses by name).
const ODRL_TERMS: &[&str] = &[
    "Policy",
    "Rule",
    "profile",
    "inheritFrom",
    "ConflictTerm",
    "conflict",
    "perm",
    "prohibit",
    "invalid",
    "Agreement",
    "Assertion",
    "Offer",
    "Privacy",
    "Request",
    "Set",
    "Ticket",
    "Asset",
    "AssetCollection",
    "target",
    "partOf",
    "Party",
    "PartyCollection",
    "assignee",
    "assigner",
    "Action",
    "action",
    "includedIn",
    "implies",
    "Permission",
    "permission",
    "Prohibition",
    "prohibition",
    "obligation",
    "use",
    "aggregate",
    "anonymize",
    "derive",
    "distribute",
    "print",
    "read",
    "Duty",
    "duty",
    "consequence",
    "remedy",
    "attribute",
    "delete",
    "inform",
    "Constraint",
    "LogicalConstraint",
    "constraint",
    "refinement",
    "Operator",
    "operator",
    "RightOperand",
    "rightOperand",
    "rightOperandReference",
    "LeftOperand",
    "leftOperand",
    "unit",
    "status",
    "count",
    "dateTime",
    "elapsedTime",
    "payAmount",
    "purpose",
    "recipient",
    "spatial",
    "eq",
    "gt",
    "gteq",
    "lt",
    "lteq",
    "neq",
    "isA",
    "hasPart",
    "isPartOf",
    "isAllOf",
    "isAnyOf",
    "isNoneOf",
    "or",
    "xone",
    "and",
    "andSequence",
];

/// The profile's inline context: the prefix `allmende:`, its left operands and the policy
/// metadata terms. Emitted inside every policy, so no processor needs to fetch it.
pub fn profile_context() -> Value {
    json!({
        "allmende": ALLMENDE,
        "dct": DCT,
        "queryShape": "allmende:queryShape",
        "minGroupSize": "allmende:minGroupSize",
        "allowedColumns": "allmende:allowedColumns",
        "orgRole": "allmende:orgRole",
        "issuer": {"@id": "allmende:issuer", "@type": "@id"},
        "issued": {"@id": "dct:issued", "@type": "xsd:dateTime"},
        "expires": {"@id": "allmende:expires", "@type": "xsd:dateTime"},
        "version": {"@id": "allmende:version", "@type": "xsd:integer"},
        "previousVersion": {"@id": "allmende:previousVersion"}
    })
}

/// The `@context` written on every emitted policy.
pub fn policy_context() -> Value {
    json!([ODRL_CONTEXT, profile_context()])
}

/// An active context: term → absolute IRI or keyword.
#[derive(Debug, Clone, Default)]
pub struct Context {
    terms: HashMap<String, String>,
}

impl Context {
    /// Builds the active context from a document's `@context` value.
    pub fn from_value(value: Option<&Value>) -> Result<Context, ParseError> {
        let mut ctx = Context::default();
        match value {
            None => {}
            Some(Value::Array(items)) => {
                for item in items {
                    ctx.add(item)?;
                }
            }
            Some(v) => ctx.add(v)?,
        }
        Ok(ctx)
    }

    fn add(&mut self, value: &Value) -> Result<(), ParseError> {
        match value {
            Value::String(url) => self.add_remote(url),
            Value::Object(map) => self.add_inline(map),
            Value::Null => {
                self.terms.clear();
                Ok(())
            }
            other => Err(ParseError::invalid(
                "@context",
                format!("unexpected {other}"),
            )),
        }
    }

    fn add_remote(&mut self, url: &str) -> Result<(), ParseError> {
        match url {
            ODRL_CONTEXT | "https://www.w3.org/ns/odrl.jsonld" => {
                for t in ODRL_TERMS {
                    let iri = match *t {
                        "dataType" => format!("{ODRL}datatype"),
                        _ => format!("{ODRL}{t}"),
                    };
                    self.terms.insert((*t).to_owned(), iri);
                }
                self.terms
                    .insert("dataType".into(), format!("{ODRL}datatype"));
                self.terms.insert("odrl".into(), ODRL.into());
                self.terms.insert("rdf".into(), RDF.into());
                self.terms.insert("xsd".into(), XSD.into());
                self.terms.insert("uid".into(), "@id".into());
                self.terms.insert("type".into(), "@type".into());
                Ok(())
            }
            DATA_INTEGRITY_CONTEXT => {
                self.terms.insert("id".into(), "@id".into());
                self.terms.insert("type".into(), "@type".into());
                Ok(())
            }
            other => Err(ParseError::UnpinnedContext(other.to_owned())),
        }
    }

    fn add_inline(&mut self, map: &Map<String, Value>) -> Result<(), ParseError> {
        // Two passes, so that term definitions may use prefixes defined in the same object.
        let mut pending = Vec::new();
        for (term, def) in map {
            if term == "@version" {
                continue;
            }
            if term.starts_with('@') {
                return Err(ParseError::unsupported("@context keyword", term.clone()));
            }
            let iri = match def {
                Value::String(s) => s.clone(),
                Value::Object(o) => match o.get("@id") {
                    Some(Value::String(s)) => s.clone(),
                    _ => {
                        return Err(ParseError::invalid(
                            term.clone(),
                            "term definition without `@id`",
                        ));
                    }
                },
                Value::Null => continue,
                _ => {
                    return Err(ParseError::invalid(
                        term.clone(),
                        "term definition is not a string or object",
                    ));
                }
            };
            if !iri.contains(':') || iri.starts_with('@') {
                self.terms.insert(term.clone(), iri);
            } else {
                pending.push((term.clone(), iri));
            }
        }
        let snapshot = self.clone();
        let mut local = Context {
            terms: HashMap::new(),
        };
        for (term, iri) in &pending {
            local.terms.insert(term.clone(), iri.clone());
        }
        for (term, iri) in pending {
            let expanded = match iri.split_once(':') {
                Some((p, rest)) if !rest.starts_with("//") => local
                    .terms
                    .get(p)
                    .or_else(|| snapshot.terms.get(p))
                    .filter(|base| base.contains(':'))
                    .map(|base| format!("{base}{rest}"))
                    .unwrap_or(iri),
                _ => iri,
            };
            self.terms.insert(term, expanded);
        }
        Ok(())
    }

    /// Expands a term or compact IRI used as a property or vocabulary value; `None` if it is
    /// neither a defined term nor an absolute or compact IRI.
    pub fn expand_vocab(&self, s: &str) -> Option<String> {
        if s.starts_with('@') {
            return Some(s.to_owned());
        }
        if let Some(iri) = self.terms.get(s) {
            return Some(iri.clone());
        }
        if s.contains(':') {
            return Some(self.expand_iri(s));
        }
        None
    }

    /// Expands a compact IRI (`prefix:suffix`) used as an `@id` value; other strings are kept.
    pub fn expand_iri(&self, s: &str) -> String {
        if let Some((p, rest)) = s.split_once(':')
            && !rest.starts_with("//")
            && let Some(base) = self.terms.get(p)
            && base.contains(':')
        {
            return format!("{base}{rest}");
        }
        s.to_owned()
    }
}
