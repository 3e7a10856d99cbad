//! Signed checkpoints of the log and cosignatures by peers (witnesses).
use allmende_protocol::codec::bytes32;
use allmende_protocol::envelope::SignError;
use allmende_protocol::{Signed, SigningKey};
use serde::{Deserialize, Serialize};

use super::merkle::{Hash, ProofError, verify_consistency};

/// The state of a log at one size, signed by the log's node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The log's name (e.g. the node's did:key).
    pub origin: String,
    /// The number of entries.
    pub size: u64,
    /// The Merkle tree hash over those entries.
    #[serde(with = "bytes32")]
    pub root: [u8; 32],
    /// When it was made (RFC 3339, given by the caller).
    pub time: String,
}

/// A peer's signature over a checkpoint it checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cosignature {
    /// SHA-256 of the signed checkpoint envelope.
    #[serde(with = "bytes32")]
    pub checkpoint: [u8; 32],
    /// When it was cosigned (RFC 3339).
    pub time: String,
}

/// Why a checkpoint is not cosigned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CosignError {
    /// The new checkpoint is from another log or signer than the previous one.
    #[error("checkpoint is from another log than the previous one")]
    OtherLog,
    /// The log is not consistent with the previous checkpoint (a split view or rewrite).
    #[error("checkpoint is not consistent with the previous one: {0}")]
    Inconsistent(#[from] ProofError),
    /// The cosignature could not be signed.
    #[error("cannot sign: {0}")]
    Sign(#[from] SignError),
}

/// Cosigns `checkpoint` after checking, when the witness saw an earlier checkpoint of the same
/// log, the consistency proof from it.
pub fn cosign(
    checkpoint: &Signed<Checkpoint>,
    previous: Option<(&Signed<Checkpoint>, &[Hash])>,
    time: &str,
    key: &SigningKey,
) -> Result<Signed<Cosignature>, CosignError> {
    if let Some((prev, proof)) = previous {
        let (p, c) = (prev.payload(), checkpoint.payload());
        if prev.signer() != checkpoint.signer() || p.origin != c.origin {
            return Err(CosignError::OtherLog);
        }
        verify_consistency(p.size, c.size, &p.root, &c.root, proof)?;
    }
    Ok(Signed::sign(
        &Cosignature {
            checkpoint: checkpoint.hash(),
            time: time.to_owned(),
        },
        key,
    )?)
}

/// Whether `cosignature` is over `checkpoint`.
pub fn verify_cosignature(
    cosignature: &Signed<Cosignature>,
    checkpoint: &Signed<Checkpoint>,
) -> bool {
    cosignature.payload().checkpoint == checkpoint.hash()
}
