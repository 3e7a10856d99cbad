//! Federated query messages, carried over the stream protocol [`crate::version::QUERY`], the
//! signed receipt an asking node hands its user, and the [`Fragment`], a restricted selection
//! over one dataset that a transfer view carries.
//!
//! The asking node sends each provider a [`PlanRequest`] (a sub-plan of the plan language,
//! [`crate::plan`], over the provider's dataset), plus who asks and why. The provider answers
//! with a [`QueryResponse`]: its signed [`AnswerHeader`] (status, row count, SHA-256 of the
//! Arrow IPC bytes) and the bytes themselves. A [`Receipt`], signed by the asking node, lists
//! every provider asked with its signed header, so it can be checked offline.

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

use crate::envelope::Signed;
use crate::plan::SubPlan;

/// Largest query request accepted.
pub const MAX_QUERY_REQUEST_BYTES: usize = 256 * 1024;
/// Largest answer accepted from one provider (Arrow IPC bytes).
pub const MAX_QUERY_RESPONSE_BYTES: usize = 64 << 20;

/// A request for one provider over [`crate::version::QUERY`]: a [`SubPlan`] of the plan
/// language over one of its datasets (checked by the provider before it plans anything,
/// [`SubPlan::check`]), and who asks and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanRequest {
    /// SHA-256 of the user's whole query text.
    #[serde(with = "crate::codec::bytes32")]
    pub query_hash: [u8; 32],
    /// The provider's dataset id.
    pub dataset: String,
    /// What to compute over the dataset.
    pub plan: SubPlan,
    /// Who asks and why: a [`UserAssertion`] signed by the asking node (COSE_Sign1).
    pub assertion: ByteBuf,
    /// How long the asking node waits, in milliseconds.
    pub deadline_ms: u64,
    /// The asking node's W3C trace context (a `traceparent` value), so that the provider's spans
    /// join the asker's trace; absent when the asker records no trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The agreement the asker concluded with the provider for this dataset (its id, the
    /// SHA-256 of the agreement's envelope), so that the provider decides under its terms;
    /// absent, the provider decides under the dataset's offer.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::codec::opt_bytes32"
    )]
    pub agreement: Option<[u8; 32]>,
}

/// Longest an assertion may be valid, in seconds.
pub const MAX_ASSERTION_SECS: u64 = 300;

/// What the asking node vouches for about its user, for one provider and a few minutes. Remote
/// nodes never see the user's tokens; the subject is a pseudonym.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAssertion {
    /// Pseudonymous subject, stable at the asking node, not linkable across nodes.
    pub subject: String,
    /// The organisation the user acts for.
    pub organisation: String,
    /// The user's roles.
    pub roles: Vec<String>,
    /// Why the user asks (an IRI such as `https://w3id.org/dpv#AcademicResearch`).
    pub purpose: Option<String>,
    /// The provider it is for.
    #[serde(with = "crate::codec::peer_id")]
    pub audience: PeerId,
    /// Issued at, Unix seconds.
    pub issued: u64,
    /// Expires at, Unix seconds; at most [`MAX_ASSERTION_SECS`] after `issued`.
    pub expires: u64,
    /// Random, so that a provider can refuse a replay.
    #[serde(with = "crate::codec::bytes32")]
    pub nonce: [u8; 32],
}

/// Why an assertion is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionError {
    /// It does not decode or verify.
    #[error("invalid assertion: {0}")]
    Envelope(#[from] crate::envelope::OpenError),
    /// It was signed by another node than the one asking.
    #[error("the assertion is not signed by the asking node")]
    WrongSigner,
    /// It is meant for another provider.
    #[error("the assertion is for another provider")]
    WrongAudience,
    /// It is expired, not yet valid, or valid for too long.
    #[error("the assertion is expired or not valid now")]
    Expired,
}

impl UserAssertion {
    /// Opens and checks an assertion received from `asker` by `me` at `now` (Unix seconds);
    /// replays are the caller's to refuse (by nonce).
    pub fn open(
        bytes: &[u8],
        asker: &PeerId,
        me: &PeerId,
        now: u64,
    ) -> Result<UserAssertion, AssertionError> {
        let signed: Signed<UserAssertion> = Signed::from_bytes(bytes, MAX_QUERY_REQUEST_BYTES)?;
        if signed.signer() != *asker {
            return Err(AssertionError::WrongSigner);
        }
        let a = signed.into_payload();
        if a.audience != *me {
            return Err(AssertionError::WrongAudience);
        }
        let skew = 30;
        if a.expires <= a.issued
            || a.expires - a.issued > MAX_ASSERTION_SECS
            || now + skew < a.issued
            || now > a.expires
        {
            return Err(AssertionError::Expired);
        }
        Ok(a)
    }
}

/// A literal in a filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Literal {
    /// `NULL`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A decimal number.
    Float(f64),
    /// A string.
    Text(String),
}

/// A comparison operator in a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `<>`
    Neq,
    /// `<`
    Lt,
    /// `<=`
    Lteq,
    /// `>`
    Gt,
    /// `>=`
    Gteq,
    /// `IS NULL` (no values)
    IsNull,
    /// `IS NOT NULL` (no values)
    IsNotNull,
    /// `IN (values)`
    In,
}

/// One filter condition on a column; the conditions of a fragment are and-ed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// The column.
    pub column: String,
    /// The operator.
    pub op: CompareOp,
    /// The operands (one for comparisons, none for null checks, any number for `In`).
    pub values: Vec<Literal>,
}

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AggregateFn {
    /// `COUNT(column)` (non-null values).
    Count,
    /// `SUM(column)`.
    Sum,
    /// `MIN(column)`.
    Min,
    /// `MAX(column)`.
    Max,
}

/// One partial aggregate a provider computes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregate {
    /// The function.
    pub func: AggregateFn,
    /// The column it aggregates.
    pub column: String,
}

/// The plan fragment a provider runs over its dataset: either rows (`columns`, with optional
/// order and limit) or partial aggregates per group (`aggregates` non-empty). Providers build
/// the SQL themselves from this structure; no SQL text crosses the network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Fragment {
    /// Columns to return, for a row query; empty means all.
    pub columns: Vec<String>,
    /// Partial aggregates, for an aggregate query; the provider adds the group's row count.
    pub aggregates: Vec<Aggregate>,
    /// Grouping columns, for an aggregate query.
    pub group_by: Vec<String>,
    /// And-ed filter conditions.
    pub filter: Vec<Condition>,
    /// Ordering (column, ascending), for a row query.
    pub order_by: Vec<(String, bool)>,
    /// Row limit, for a row query.
    pub limit: Option<u64>,
    /// An aggregate query even without partial aggregates or groups (`SELECT COUNT(*) …`): the
    /// provider returns the row count of the one group.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub count_only: bool,
}

/// Most columns a fragment names in one of its lists.
pub const MAX_FRAGMENT_COLUMNS: usize = 4096;
/// Most filter conditions, aggregates, grouping or ordering columns of a fragment.
pub const MAX_FRAGMENT_TERMS: usize = 256;
/// Most values of one `IN` condition.
pub const MAX_CONDITION_VALUES: usize = 10_000;
/// Longest column name a fragment names, in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 256;
/// Longest text literal of a fragment, in bytes.
pub const MAX_LITERAL_BYTES: usize = 64 << 10;

/// Why a fragment is refused before anything is planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FragmentError {
    /// A list of the fragment is longer than its limit.
    #[error("the fragment has {len} {what}; at most {max} are allowed")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A column name or a literal is longer than its limit.
    #[error("a {what} of the fragment is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// What is too long.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A condition has the wrong number of values for its operator.
    #[error("the condition on `{0}` has the wrong number of values for its operator")]
    Arity(String),
}

impl Fragment {
    /// Whether the fragment asks for aggregates rather than rows.
    pub fn is_aggregate(&self) -> bool {
        self.count_only || !self.aggregates.is_empty() || !self.group_by.is_empty()
    }

    /// Checks the fragment's sizes against the limits above; a provider calls it first, before
    /// it looks at anything else of a request.
    pub fn check(&self) -> Result<(), FragmentError> {
        let count = |what, len, max| {
            if len > max {
                Err(FragmentError::TooMany { what, len, max })
            } else {
                Ok(())
            }
        };
        count("columns", self.columns.len(), MAX_FRAGMENT_COLUMNS)?;
        count("conditions", self.filter.len(), MAX_FRAGMENT_TERMS)?;
        count("aggregates", self.aggregates.len(), MAX_FRAGMENT_TERMS)?;
        count("grouping columns", self.group_by.len(), MAX_FRAGMENT_TERMS)?;
        count("ordering columns", self.order_by.len(), MAX_FRAGMENT_TERMS)?;
        let names = self
            .columns
            .iter()
            .chain(self.aggregates.iter().map(|a| &a.column))
            .chain(&self.group_by)
            .chain(self.filter.iter().map(|c| &c.column))
            .chain(self.order_by.iter().map(|(c, _)| c));
        for name in names {
            if name.len() > MAX_IDENTIFIER_BYTES {
                return Err(FragmentError::TooLong {
                    what: "column name",
                    len: name.len(),
                    max: MAX_IDENTIFIER_BYTES,
                });
            }
        }
        for c in &self.filter {
            let arity_ok = match c.op {
                CompareOp::IsNull | CompareOp::IsNotNull => c.values.is_empty(),
                CompareOp::In => true,
                _ => c.values.len() == 1,
            };
            if !arity_ok {
                return Err(FragmentError::Arity(c.column.clone()));
            }
            count(
                "values in one IN condition",
                c.values.len(),
                MAX_CONDITION_VALUES,
            )?;
            for v in &c.values {
                if let Literal::Text(t) = v
                    && t.len() > MAX_LITERAL_BYTES
                {
                    return Err(FragmentError::TooLong {
                        what: "text literal",
                        len: t.len(),
                        max: MAX_LITERAL_BYTES,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The status of one provider's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerStatus {
    /// Answered.
    Ok,
    /// The provider's policy refused.
    Denied,
    /// The provider failed or refused the request as malformed.
    Error,
}

/// What a provider signs about its answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerHeader {
    /// The query's hash, from the request.
    #[serde(with = "crate::codec::bytes32")]
    pub query_hash: [u8; 32],
    /// The dataset.
    pub dataset: String,
    /// The outcome.
    pub status: AnswerStatus,
    /// Why, when not `Ok`.
    pub reason: Option<String>,
    /// The reason in machine-readable form, when the provider gives one: a code of the plan
    /// language's checks or of the minimum group size (`distinct-under-group-size`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The policy rules that decided.
    pub rules: Vec<String>,
    /// Rows returned.
    pub rows: u64,
    /// Groups suppressed for being smaller than the minimum group size.
    pub suppressed: u64,
    /// SHA-256 of the Arrow IPC bytes.
    #[serde(with = "crate::codec::bytes32")]
    pub batches_hash: [u8; 32],
}

/// Largest data frame of a streamed answer.
pub const MAX_ANSWER_FRAME_BYTES: usize = (1 << 20) + 1024;

/// One frame of an answer streamed over [`crate::version::QUERY`]: the provider writes the
/// Arrow IPC stream bytes in [`AnswerFrame::Data`] frames of at most 1 MiB as it produces them,
/// then its signed [`AnswerHeader`] (whose `batches_hash` covers all data bytes) and closes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnswerFrame {
    /// The next part of the Arrow IPC stream.
    Data(ByteBuf),
    /// The signed header (COSE_Sign1); the last frame.
    Header(ByteBuf),
    /// The provider does not take the request (the asker is over its rate), with the reason;
    /// the only frame. Unsigned: the stream's peer is authenticated, and a refusal carries no
    /// data.
    Refused(String),
}

/// A provider's answer, as the asking node assembles it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// The provider-signed [`AnswerHeader`] (COSE_Sign1).
    pub header: ByteBuf,
    /// Arrow IPC stream bytes (empty unless `Ok`).
    pub batches: ByteBuf,
}

/// The SHA-256 of answer bytes.
pub fn batches_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The SHA-256 of a query text.
pub fn query_hash(sql: &str) -> [u8; 32] {
    Sha256::digest(sql.as_bytes()).into()
}

/// One provider's line in a receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptLine {
    /// The provider.
    #[serde(with = "crate::codec::peer_id")]
    pub peer: PeerId,
    /// Its member name in the query.
    pub member: String,
    /// `ok`, `denied`, `timeout` or `error`.
    pub status: String,
    /// Rows it contributed.
    pub rows: u64,
    /// Milliseconds until it answered (or the deadline).
    pub latency_ms: u64,
    /// Its signed answer header, when it answered.
    pub answer: Option<ByteBuf>,
}

/// What the asking node signs about a federated answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// SHA-256 of the query text.
    #[serde(with = "crate::codec::bytes32")]
    pub query_hash: [u8; 32],
    /// The query text.
    pub sql: String,
    /// When it was asked, RFC 3339.
    pub issued: String,
    /// Every provider asked.
    pub providers: Vec<ReceiptLine>,
}

/// Why a receipt does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The receipt or a header does not decode or verify.
    #[error("invalid envelope: {0}")]
    Envelope(#[from] crate::envelope::OpenError),
    /// A header does not match its line.
    #[error("the answer of `{peer}` does not match the receipt: {reason}")]
    Mismatch {
        /// The provider.
        peer: PeerId,
        /// What differs.
        reason: &'static str,
    },
}

/// Verifies a signed receipt and every provider header in it; returns the receipt.
pub fn verify_receipt(bytes: &[u8]) -> Result<Signed<Receipt>, ReceiptError> {
    let receipt: Signed<Receipt> = Signed::from_bytes(bytes, MAX_QUERY_REQUEST_BYTES * 16)?;
    let r = receipt.payload();
    if r.query_hash != query_hash(&r.sql) {
        return Err(ReceiptError::Mismatch {
            peer: receipt.signer(),
            reason: "the query hash is not the hash of the query",
        });
    }
    for line in &r.providers {
        let Some(answer) = &line.answer else {
            if line.status == "ok" {
                return Err(ReceiptError::Mismatch {
                    peer: line.peer,
                    reason: "an ok line has no answer",
                });
            }
            continue;
        };
        let header: Signed<AnswerHeader> = Signed::from_bytes(answer, MAX_QUERY_REQUEST_BYTES)?;
        let h = header.payload();
        let mismatch = |reason| ReceiptError::Mismatch {
            peer: line.peer,
            reason,
        };
        if header.signer() != line.peer {
            return Err(mismatch("the answer is signed by another peer"));
        }
        if h.query_hash != r.query_hash {
            return Err(mismatch("the answer is for another query"));
        }
        let status = match h.status {
            AnswerStatus::Ok => "ok",
            AnswerStatus::Denied => "denied",
            AnswerStatus::Error => "error",
        };
        if status != line.status {
            return Err(mismatch("the status differs"));
        }
        if h.status == AnswerStatus::Ok && h.rows != line.rows {
            return Err(mismatch("the row count differs"));
        }
    }
    Ok(receipt)
}
