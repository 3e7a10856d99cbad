//! The two encodings of a [`crate::Policy`]: JSON-LD compact and deterministic CBOR.
use allmende_protocol::DecodeError;

use crate::validate::ProfileError;
use crate::values::ValueError;

pub mod cbor;
pub mod context;
pub mod emit;
pub mod jsonld;
mod keys;
mod literal;

/// The deepest nesting of logical constraints the parsers accept.
pub const MAX_DEPTH: usize = 16;

/// Why a document is not a policy of the profile.
///
/// Messages name the construct as it was written, in backticks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input is not JSON.
    #[error("invalid json: {0}")]
    Json(String),
    /// The input is not deterministic CBOR.
    #[error("invalid cbor: {0}")]
    Cbor(#[from] DecodeError),
    /// A construct outside the profile (a term, property, type or operator).
    #[error("unsupported {what} `{name}`")]
    Unsupported {
        /// What kind of construct it is, e.g. `action`.
        what: &'static str,
        /// The construct as written.
        name: String,
    },
    /// A remote `@context` that is not pinned: contexts are never fetched.
    #[error(
        "unsupported @context `{0}`: only the pinned odrl and data integrity contexts are known, remote contexts are never fetched"
    )]
    UnpinnedContext(String),
    /// A required member is missing.
    #[error("missing `{what}` in {on}")]
    Missing {
        /// The member.
        what: &'static str,
        /// Where it was expected.
        on: &'static str,
    },
    /// A member has the wrong shape or value.
    #[error("invalid `{what}`: {reason}")]
    Invalid {
        /// The member.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A literal outside its type's lexical space.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// Logical constraints nest too deeply.
    #[error("constraints nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The policy parsed but breaks a rule of the profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

impl ParseError {
    pub(crate) fn unsupported(what: &'static str, name: impl Into<String>) -> ParseError {
        ParseError::Unsupported {
            what,
            name: name.into(),
        }
    }
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> ParseError {
        ParseError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
