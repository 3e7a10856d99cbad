//! Usage policies in the node: signed offers attached to datasets and their use counts
//! ([`attached`]), agreements on both sides and revocations ([`agreements`]), and the
//! tamper-evident audit log of decisions taken for remote requests with its cosigning
//! ([`audit`]), all in the store (`allmende_store::keys::{policy, audit}`). Revocations are
//! kept in memory as well, current on every write, since every decision reads them.

mod agreements;
mod attached;
mod audit;
#[cfg(test)]
mod tests;

pub use agreements::{AgreementRefused, UsableAgreement};
pub use audit::{RocksLogStore, verify_offline};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use allmende_policy::agreement::Revocation;
use allmende_policy::audit::{AuditError, AuditLog};
use allmende_policy::sign::SignedPolicy;
use allmende_policy::values::XsdDateTime;
use allmende_protocol::{PeerId, Signed, SigningKey};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use allmende_store::{Store, StoreError};

/// Errors of policy operations.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A policy, request or statement that this node refuses, with why.
    #[error("invalid policy: {0}")]
    Invalid(String),
    /// The policy does not parse or breaks the profile.
    #[error("invalid policy: {0}")]
    Parse(#[from] allmende_policy::parse::ParseError),
    /// The policy cannot be signed (profile or metadata), or its signature does not verify.
    #[error("invalid policy: {0}")]
    Signature(#[from] allmende_policy::sign::PolicySignatureError),
    /// A contract request, agreement or revocation is malformed or does not verify.
    #[error(transparent)]
    Agreement(#[from] allmende_policy::agreement::AgreementError),
    /// A signed envelope (a request, an agreement, a checkpoint) does not open.
    #[error("a signed message does not open: {0}")]
    Envelope(#[from] allmende_protocol::envelope::OpenError),
    /// A value could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(#[from] allmende_protocol::EncodeError),
    /// A statement could not be signed.
    #[error("cannot sign: {0}")]
    Sign(#[from] allmende_protocol::SignError),
    /// A witness's cosignature is refused, or this node cannot cosign.
    #[error(transparent)]
    Cosign(#[from] allmende_policy::audit::checkpoint::CosignError),
    /// An audit record could not be encoded.
    #[error("cannot encode an audit record: {0}")]
    Record(#[from] serde_json::Error),
    /// Nothing found.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// The policy target naming a dataset.
pub fn dataset_target(id: &str) -> String {
    format!("urn:allmende:dataset:{id}")
}

fn now_xsd() -> XsdDateTime {
    XsdDateTime::from_utc(chrono::Utc::now())
}

/// An agreement as stored by either side.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AgreementRecord {
    /// The provider-signed agreement envelope.
    pub bytes: ByteBuf,
    /// `provider` or `consumer`: this node's side.
    pub role: String,
    /// The dataset it covers.
    pub dataset: String,
    /// The other side.
    pub counterpart: String,
    /// When it was concluded, RFC 3339.
    pub concluded: String,
}

/// What a witness needs to cosign this node's latest checkpoint.
#[derive(Clone, Debug)]
pub struct CosignRequest {
    /// The signed checkpoint.
    pub checkpoint: Vec<u8>,
    /// The size of the checkpoint the witness cosigned last (0 for none).
    pub from: u64,
    /// The consistency proof from `from` to the checkpoint's size.
    pub proof: Vec<[u8; 32]>,
}

/// One audited decision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When, RFC 3339.
    pub time: String,
    /// The remote peer that asked.
    pub peer: String,
    /// What was asked, e.g. `negotiate` or `query`.
    pub kind: String,
    /// The dataset.
    pub dataset: String,
    /// `permit`, `deny`, …
    pub decision: String,
    /// The deciding rules or the reason.
    pub detail: String,
}

struct Audit {
    log: AuditLog<RocksLogStore>,
    last_checkpoint: Option<Instant>,
    checkpointed_size: u64,
}

/// The node's policies, agreements, revocations and audit log.
pub struct Policies {
    store: Arc<Store>,
    key: SigningKey,
    peer_id: PeerId,
    audit: Mutex<Audit>,
    /// Policies opened so far, by dataset, with the stored bytes they were opened from, so
    /// that a policy's signature is verified once, not on every request.
    opened: Mutex<HashMap<String, (Vec<u8>, SignedPolicy)>>,
    /// Every stored revocation, read once at open and kept current on each write.
    revocations: RwLock<Arc<Vec<Signed<Revocation>>>>,
}

/// Opened policies kept at most.
const OPENED_KEPT: usize = 1024;

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Policies")
    }
}

impl Policies {
    /// Opens the policies kept in `store`; `key` is the node's signing key.
    pub fn open(store: Arc<Store>, key: SigningKey) -> Result<Self, PolicyError> {
        let log = AuditLog::open(RocksLogStore::open(store.clone())?)?;
        let size = log.len();
        let revocations = agreements::load_revocations(&store)?;
        Ok(Self {
            peer_id: allmende_protocol::peer_id_of(&key.verifying_key()),
            store,
            key,
            opened: Mutex::new(HashMap::new()),
            revocations: RwLock::new(Arc::new(revocations)),
            audit: Mutex::new(Audit {
                log,
                last_checkpoint: None,
                checkpointed_size: size,
            }),
        })
    }
}
