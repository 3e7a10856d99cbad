//! The pinned JSON-LD contexts and compact-IRI expansion.
//!
//! Nothing is ever fetched. A document's `@context` may hold the W3C ODRL context
//! (`http://www.w3.org/ns/odrl.jsonld`, resolved from the pinned term list below, with the
//! 2025-04-10 `neq` erratum), the Data Integrity v2 context, and inline objects (prefixes and
//! term definitions, such as the profile context from [`profile_context`]). Any other remote
//! context is refused by name.
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

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
        "terms": "allmende:terms",
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

/// An active context: term → absolute IRI or keyword, and which terms may be used as the
/// prefix of a compact IRI.
///
/// Prefixes follow JSON-LD 1.1 (§ 4.1.5 of the syntax, the term definition's *prefix flag*): a
/// term defined by a plain string that ends in a gen-delim character (`:/?#[]@`), or by an
/// object with `"@prefix": true`. Other terms are not prefixes: `action:` stays the IRI
/// `action:` although `action` is an ODRL term.
#[derive(Debug, Clone, Default)]
pub struct Context {
    terms: HashMap<String, String>,
    prefixes: HashSet<String>,
}

/// The context of every emitted policy ([`policy_context`]), built once.
static EMITTED: LazyLock<Context> = LazyLock::new(|| {
    Context::from_value(Some(&policy_context())).expect("the emitted context is valid")
});

/// The prefix of the emitted policy context that `iri` would be read with, if any: such an
/// IRI (`odrl:x`, `dct:x`) cannot be written in a policy document without changing its
/// meaning, since a reader expands it.
pub fn emitted_prefix_of(iri: &str) -> Option<&'static str> {
    let (p, rest) = iri.split_once(':')?;
    if rest.starts_with("//") {
        return None;
    }
    EMITTED.prefixes.get(p).map(String::as_str)
}

/// Whether a simple term definition's IRI ends in a gen-delim character (RFC 3986 § 2.2).
fn ends_in_gen_delim(iri: &str) -> bool {
    iri.ends_with([':', '/', '?', '#', '[', ']', '@'])
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
                    self.define(t, iri, false);
                }
                self.define("dataType", format!("{ODRL}datatype"), false);
                self.define("odrl", ODRL.into(), true);
                self.define("rdf", RDF.into(), true);
                self.define("xsd", XSD.into(), true);
                self.define("uid", "@id".into(), false);
                self.define("type", "@type".into(), false);
                Ok(())
            }
            DATA_INTEGRITY_CONTEXT => {
                self.define("id", "@id".into(), false);
                self.define("type", "@type".into(), false);
                Ok(())
            }
            other => Err(ParseError::UnpinnedContext(other.to_owned())),
        }
    }

    /// Defines `term`, replacing an earlier definition and its prefix flag.
    fn define(&mut self, term: &str, iri: String, prefix: bool) {
        if prefix {
            self.prefixes.insert(term.to_owned());
        } else {
            self.prefixes.remove(term);
        }
        self.terms.insert(term.to_owned(), iri);
    }

    fn add_inline(&mut self, map: &Map<String, Value>) -> Result<(), ParseError> {
        // Two passes, so that term definitions may use prefixes defined in the same object.
        let mut defined = Vec::new();
        for (term, def) in map {
            if term == "@version" {
                continue;
            }
            if term.starts_with('@') {
                return Err(ParseError::unsupported("@context keyword", term.clone()));
            }
            let (iri, prefix) = match def {
                Value::String(s) => (
                    s.clone(),
                    !term.contains([':', '/']) && ends_in_gen_delim(s),
                ),
                Value::Object(o) => {
                    let Some(Value::String(s)) = o.get("@id") else {
                        return Err(ParseError::invalid(
                            term.clone(),
                            "term definition without `@id`",
                        ));
                    };
                    let prefix = match o.get("@prefix") {
                        None => false,
                        Some(Value::Bool(b)) => *b,
                        Some(_) => {
                            return Err(ParseError::invalid(
                                term.clone(),
                                "`@prefix` is not a boolean",
                            ));
                        }
                    };
                    (s.clone(), prefix)
                }
                Value::Null => {
                    self.terms.remove(term);
                    self.prefixes.remove(term);
                    continue;
                }
                _ => {
                    return Err(ParseError::invalid(
                        term.clone(),
                        "term definition is not a string or object",
                    ));
                }
            };
            defined.push((term.clone(), iri, prefix));
        }
        // A definition's own IRI may be compact, with a prefix of this object or of the
        // context before it.
        let mut local = self.clone();
        for (term, iri, prefix) in &defined {
            local.define(term, iri.clone(), *prefix);
        }
        for (term, iri, prefix) in defined {
            self.define(&term, local.expand_iri(&iri), prefix);
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
            && self.prefixes.contains(p)
            && let Some(base) = self.terms.get(p)
            && base.contains(':')
        {
            return format!("{base}{rest}");
        }
        s.to_owned()
    }
}
