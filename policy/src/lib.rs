//! Allmende usage policies (issue 4): a closed-world ODRL 2.2 profile and everything around it
//! that is pure (no networking, no storage engine, no clock: time arrives in the request).
//!
//! - [`ast`]: the one policy tree; [`parse::jsonld`] and [`parse::cbor`] are its two encodings;
//!   [`validate`] is the profile check that both parsers run (fail closed, naming the construct);
//! - [`compile`] indexes policies by (target, action); [`decide()`] is the pure evaluator
//!   (deny-overrides) answering a [`Request`] with a [`Decision`];
//! - [`sign`]: COSE_Sign1 policies (`Signed<Policy>`) and `eddsa-jcs-2022` Data Integrity proofs;
//! - [`agreement`]: consumer requests, countersigned agreements, signed revocations;
//! - [`audit`]: an RFC 6962 Merkle log with signed checkpoints and cosignatures;
//! - [`dsp`]: a policy as the Dataspace Protocol's ODRL profile writes it (an `Offer`);
//! - [`cli_json`]: the stable JSON interface of `allmende policy evaluate` and `check`.
//!
//! The evaluation semantics (D1–D20 of the project's policy-semantics note) are listed in the
//! crate README.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod agreement;
pub mod ast;
pub mod audit;
pub mod cli_json;
pub mod compile;
pub mod decide;
pub mod decision;
pub mod dsp;
pub mod group_size;
pub mod parse;
pub mod request;
pub mod sign;
pub mod validate;
pub mod values;
pub mod vocab;

pub use agreement::{Agreement, ContractRequest, Revocation, Revocations};
pub use ast::{
    AtomicConstraint, Constraint, Duty, LogicalConstraint, Permission, Policy, PolicyId,
    Prohibition, RightOperand,
};
pub use compile::{CompileError, CompiledPolicies, PolicyEntry, compile};
pub use decide::decide;
pub use decision::{Decision, Outcome, RuleId};
pub use request::{MemoryState, Principal, QueryShape, Request, State, TermsKind, Usage};
pub use validate::{ProfileError, validate};
pub use vocab::{Action, DutyAction, LeftOperand, LogicalOperator, Operator, PolicyKind};
