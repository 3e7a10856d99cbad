//! The tamper-evident audit log: an RFC 6962 Merkle tree over opaque entries, signed
//! checkpoints, cosignatures by peers, and a verifier that reports tampering.
//!
//! Storage sits behind [`LogStore`]; [`MemoryStore`] keeps everything in memory (the node adds
//! a RocksDB store).
pub mod checkpoint;
pub mod log;
pub mod merkle;

pub use checkpoint::{Checkpoint, Cosignature, cosign, verify_cosignature};
pub use log::{AuditError, AuditLog, LogStore, MemoryStore, Tamper, VerifyReport, verify_log};
pub use merkle::{Hash, ProofError, leaf_hash, node_hash, verify_consistency, verify_inclusion};
