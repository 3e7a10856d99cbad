//! Catalog synchronisation (anti-entropy) between federation members, carried over the
//! request-response protocol [`crate::version::CATALOG_SYNC`].
//!
//! A node sends its [`Digest`] (roster version and hash, and per publisher the highest `seq` and
//! its entry hash); the peer answers with its own. Each side then asks for the ranges it lacks
//! with [`SyncRequest::Range`] and gets signed entries back, oldest first. A peer holding a
//! newer roster sends it in [`SyncResponse::Digest`] so that the other can verify and adopt it.

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Largest sync request accepted.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Largest sync response accepted.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;
/// Most entries one range response carries.
pub const MAX_RANGE_ENTRIES: u32 = 256;

/// A publisher's position: the highest `seq` held and that entry's hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The publisher.
    #[serde(with = "crate::codec::peer_id")]
    pub publisher: PeerId,
    /// The highest sequence number held.
    pub seq: u64,
    /// SHA-256 of that signed entry.
    #[serde(with = "crate::codec::bytes32")]
    pub hash: [u8; 32],
}

/// What a node holds: its roster and every publisher's head (the version vector).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The roster version held (0 for none).
    pub roster_version: u64,
    /// The heads, ordered by publisher bytes.
    pub heads: Vec<Head>,
}

impl Digest {
    /// The SHA-256 over the deterministic CBOR of the version vector: equal on two nodes iff
    /// they hold the same entries of the same publishers.
    pub fn hash(&self) -> [u8; 32] {
        let bytes = crate::cbor::to_vec(&self.heads).unwrap_or_default();
        Sha256::digest(bytes).into()
    }
}

/// A sync request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// "Here is what I hold; what do you hold?"
    Digest(Digest),
    /// "Send me `publisher`'s entries from `from` on, at most `limit`."
    Range {
        /// The publisher.
        #[serde(with = "crate::codec::peer_id")]
        publisher: PeerId,
        /// The first sequence number wanted.
        from: u64,
        /// How many at most.
        limit: u32,
    },
    /// "Cosign my audit log's latest checkpoint": the signed checkpoint, the size of the one
    /// the asker believes the witness cosigned last (0 for none), and the consistency proof
    /// from that size to this one.
    Cosign {
        /// The signed checkpoint (COSE_Sign1).
        checkpoint: serde_bytes::ByteBuf,
        /// The size the proof starts from.
        from: u64,
        /// The RFC 6962 consistency proof.
        proof: Vec<serde_bytes::ByteBuf>,
    },
}

/// A sync response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// The responder's digest, and its roster (wire form) when it is newer than the asker's.
    Digest {
        /// What the responder holds.
        digest: Digest,
        /// The responder's roster, if newer.
        roster: Option<serde_bytes::ByteBuf>,
    },
    /// Signed entries (wire form), in sequence order.
    Entries(Vec<serde_bytes::ByteBuf>),
    /// A cosignature of the checkpoint (COSE_Sign1).
    Cosignature(serde_bytes::ByteBuf),
    /// The request was refused, e.g. rate-limited or malformed.
    Refused(String),
}
