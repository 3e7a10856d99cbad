//! Allmende wire and storage types.
//!
//! This crate owns everything that is signed, hashed, stored or sent between Allmende nodes,
//! and nothing else: no I/O, no clock, no async runtime.
//!
//! - [`cbor`]: deterministic CBOR (RFC 8949 §4.2.1), the only encoding of signed data;
//! - [`envelope`]: [`Signed<T>`], a COSE_Sign1 (RFC 9052) envelope with Ed25519, whose key id is
//!   the signer's libp2p [`PeerId`];
//! - [`catalog`]: [`CatalogEntry`], the hash-linked log entries that announce datasets;
//! - [`dcat`]: DCAT-AP.de dataset descriptions carried in catalog entries;
//! - [`roster`]: [`roster::SignedRoster`], federation membership signed by its members;
//! - [`sync`]: anti-entropy messages: digests (version vectors) and entry ranges;
//! - [`negotiate`]: contract negotiation messages (offer, signed request, agreement);
//! - [`frame`]: length-prefixed CBOR frames of the stream protocols;
//! - [`query`]: federated query requests, signed answers and receipts;
//! - [`plan`]: the closed plan language of what a provider computes for an asking node;
//! - [`transfer`]: whole-dataset transfer requests and signed file headers;
//! - [`codec`]: serde helpers for binary fields;
//! - [`version`]: protocol ids and format versions.
#![deny(missing_docs)]

pub mod catalog;
pub mod cbor;
pub mod codec;
pub mod dcat;
pub mod envelope;
pub mod frame;
pub mod negotiate;
pub mod plan;
pub mod query;
pub mod roster;
pub mod sync;
pub mod transfer;
pub mod version;

pub use catalog::{
    CatalogColumn, CatalogEntry, ChainError, EntryOp, PolicyRef, SignedCatalogEntry,
};
pub use cbor::{DecodeError, EncodeError};
pub use dcat::DatasetRecord;
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use envelope::{
    CoseLabel, MAX_ENVELOPE_BYTES, OpenError, SignError, Signed, did_key_of, peer_id_of,
    verifying_key_of,
};
pub use libp2p_identity::PeerId;
