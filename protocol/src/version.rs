//! Protocol identifiers and format versions.
//!
//! A change to the encoding of a message that old nodes would misread bumps its version and the
//! protocol id that carries it; old and new ids can then be served side by side.

/// The libp2p protocol id of catalog synchronisation.
pub const CATALOG_SYNC: &str = "/allmende/catalog-sync/1";

/// The version of the signed-envelope format ([`crate::envelope`]).
pub const ENVELOPE_VERSION: u32 = 1;

/// The version of the catalog-entry format ([`crate::catalog::CatalogEntry`]).
pub const CATALOG_ENTRY_VERSION: u32 = 1;

/// The gossipsub topic of a federation's catalog announcements.
pub fn catalog_topic(federation: &str) -> String {
    format!("allmende/{federation}/catalog/1")
}

/// The gossipsub topic of a federation's roster proposals.
pub fn roster_topic(federation: &str) -> String {
    format!("allmende/{federation}/roster/1")
}

/// The Kademlia protocol id of Allmende federations (kept apart from the public IPFS DHT).
pub const KADEMLIA: &str = "/allmende/kad/1";

/// The libp2p protocol id of contract negotiation.
pub const NEGOTIATE: &str = "/allmende/negotiate/1";

/// The gossipsub topic of a federation's signed revocations.
pub fn revocation_topic(federation: &str) -> String {
    format!("allmende/{federation}/revocation/1")
}

/// The libp2p stream protocol id of federated queries: a [`crate::query::PlanRequest`] frame,
/// answer frames back. (Version 2 carried fragments.)
pub const QUERY: &str = "/allmende/query/3";

/// The libp2p stream protocol id of whole-dataset transfers.
pub const TRANSFER: &str = "/allmende/transfer/1";
