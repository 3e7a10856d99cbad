//! Catalog entries: a publisher's hash-linked, signed log of dataset announcements.
//!
//! Each publisher keeps one chain. Entry `seq` 1 has no `prev`; entry `n + 1` carries the
//! SHA-256 of the complete signed envelope of entry `n` ([`Signed::hash`]). The envelope must be
//! signed by the entry's `publisher`.
//!
//! CBOR keys (a map, in deterministic order): `op` (text: `create`, `update` or `withdraw`),
//! `seq` (uint), `prev` (32-byte bstr or null), `policy` (null or map `{id: 32-byte bstr,
//! uri: text or null}`), `issued` (text, RFC 3339), `dataset` (map, [`DatasetRecord`] with its
//! field names), `publisher` (bstr, the peer id bytes). These names are part of the wire format
//! and must not change within [`crate::version::CATALOG_ENTRY_VERSION`] 1.

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

use crate::dcat::DatasetRecord;
use crate::envelope::Signed;

/// What an entry does to the dataset it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryOp {
    /// The dataset is published for the first time.
    Create,
    /// A new description or version of a published dataset.
    Update,
    /// The dataset is no longer offered.
    Withdraw,
}

/// A reference to the signed usage policy that governs a dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// SHA-256 of the policy's signed envelope.
    #[serde(with = "crate::codec::bytes32")]
    pub id: [u8; 32],
    /// Where the policy can be fetched, if anywhere.
    pub uri: Option<String>,
}

/// One entry of a publisher's catalog chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The publishing node; must equal the envelope's signer.
    #[serde(with = "crate::codec::peer_id")]
    pub publisher: PeerId,
    /// The position in the publisher's chain, starting at 1.
    pub seq: u64,
    /// SHA-256 of the previous signed entry; `None` iff `seq == 1`.
    #[serde(with = "crate::codec::opt_bytes32")]
    pub prev: Option<[u8; 32]>,
    /// What the entry does.
    pub op: EntryOp,
    /// The dataset description.
    pub dataset: DatasetRecord,
    /// The usage policy, if the dataset has one.
    pub policy: Option<PolicyRef>,
    /// When the entry was issued, RFC 3339.
    pub issued: String,
    /// The dataset's columns, as a federated query over it reads them (the types the plan
    /// language has a name for); empty for a withdrawal and in entries signed before columns
    /// were published (a federated query cannot plan over those).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<CatalogColumn>,
}

/// One column of a published dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogColumn {
    /// Its name in SQL.
    pub name: String,
    /// Its type.
    pub data_type: crate::plan::DataType,
    /// Whether it may hold nulls.
    pub nullable: bool,
}

/// A catalog entry in its signed envelope.
pub type SignedCatalogEntry = Signed<CatalogEntry>;

/// Why an entry does not continue a chain.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// The envelope was signed by someone other than the entry's publisher.
    #[error("entry signed by {signer} but published by {publisher}")]
    SignerNotPublisher {
        /// The envelope's signer.
        signer: PeerId,
        /// The entry's publisher.
        publisher: PeerId,
    },
    /// The entry and the previous one have different publishers.
    #[error("previous entry belongs to {expected}, this one to {found}")]
    PublisherChanged {
        /// The previous entry's publisher.
        expected: PeerId,
        /// This entry's publisher.
        found: PeerId,
    },
    /// The sequence number does not follow the previous one (or is not 1 at the start).
    #[error("expected seq {expected}, found {found}")]
    SeqGap {
        /// The sequence number that would continue the chain.
        expected: u64,
        /// The entry's sequence number.
        found: u64,
    },
    /// The previous entry's sequence number is `u64::MAX`.
    #[error("chain is at its maximum length")]
    SeqOverflow,
    /// `prev` is not the hash of the previous entry (or not `None` at the start).
    #[error("prev hash does not match the previous entry")]
    PrevMismatch {
        /// The hash that would continue the chain.
        expected: Option<[u8; 32]>,
        /// The entry's `prev`.
        found: Option<[u8; 32]>,
    },
}

impl Signed<CatalogEntry> {
    /// Checks that the envelope's signer is the entry's publisher.
    #[expect(
        clippy::result_large_err,
        reason = "the error names both peers; chain checks are not a hot path"
    )]
    pub fn verify_publisher(&self) -> Result<(), ChainError> {
        let publisher = self.payload().publisher;
        if self.signer() != publisher {
            return Err(ChainError::SignerNotPublisher {
                signer: self.signer(),
                publisher,
            });
        }
        Ok(())
    }

    /// Checks that this entry continues the chain after `prev` (`None`: it starts the chain).
    ///
    /// Verifies the signer of this entry (and of `prev`), the publisher's continuity, the
    /// sequence number and the `prev` hash.
    #[expect(
        clippy::result_large_err,
        reason = "the error names both peers; chain checks are not a hot path"
    )]
    pub fn check_chain(&self, prev: Option<&SignedCatalogEntry>) -> Result<(), ChainError> {
        self.verify_publisher()?;
        let entry = self.payload();
        let (expected_seq, expected_prev) = match prev {
            None => (1, None),
            Some(p) => {
                p.verify_publisher()?;
                let before = p.payload();
                if before.publisher != entry.publisher {
                    return Err(ChainError::PublisherChanged {
                        expected: before.publisher,
                        found: entry.publisher,
                    });
                }
                let next = before.seq.checked_add(1).ok_or(ChainError::SeqOverflow)?;
                (next, Some(p.hash()))
            }
        };
        if entry.seq != expected_seq {
            return Err(ChainError::SeqGap {
                expected: expected_seq,
                found: entry.seq,
            });
        }
        if entry.prev != expected_prev {
            return Err(ChainError::PrevMismatch {
                expected: expected_prev,
                found: entry.prev,
            });
        }
        Ok(())
    }
}
