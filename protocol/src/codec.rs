//! Serde helpers that write binary fields as CBOR byte strings.
//!
//! Use them with `#[serde(with = "…")]`. Without them serde writes `[u8; 32]` as an array of
//! 32 integers and has no representation for a [`PeerId`] at all.

use std::fmt;

use libp2p_identity::PeerId;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

struct Bytes32Visitor;

impl Visitor<'_> for Bytes32Visitor {
    type Value = [u8; 32];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string of 32 bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        <[u8; 32]>::try_from(v).map_err(|_| E::invalid_length(v.len(), &self))
    }
}

/// `[u8; 32]` (a SHA-256 hash) as a CBOR byte string.
pub mod bytes32 {
    use super::*;

    /// Writes the array as a byte string.
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// Reads a byte string of exactly 32 bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        d.deserialize_bytes(Bytes32Visitor)
    }
}

/// `Option<[u8; 32]>` as a CBOR byte string or `null`.
pub mod opt_bytes32 {
    use super::*;

    struct Wrap<'a>(&'a [u8; 32]);

    impl serde::Serialize for Wrap<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    struct OptVisitor;

    impl<'de> Visitor<'de> for OptVisitor {
        type Value = Option<[u8; 32]>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("null or a byte string of 32 bytes")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            super::bytes32::deserialize(d).map(Some)
        }
    }

    /// Writes `Some` as a byte string and `None` as `null`.
    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_some(&Wrap(bytes)),
            None => s.serialize_none(),
        }
    }

    /// Reads `null` or a byte string of exactly 32 bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        d.deserialize_option(OptVisitor)
    }
}

/// A [`PeerId`] as a CBOR byte string of its canonical multihash bytes ([`PeerId::to_bytes`]).
pub mod peer_id {
    use super::*;

    struct PeerIdVisitor;

    impl Visitor<'_> for PeerIdVisitor {
        type Value = PeerId;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string holding a libp2p peer id")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            let peer = PeerId::from_bytes(v).map_err(|e| E::custom(format!("bad peer id: {e}")))?;
            if peer.to_bytes() != v {
                return Err(E::custom("peer id is not in canonical form"));
            }
            Ok(peer)
        }
    }

    /// Writes the peer id's multihash bytes as a byte string.
    pub fn serialize<S: Serializer>(v: &PeerId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&v.to_bytes())
    }

    /// Reads a byte string holding a peer id in canonical form.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
        d.deserialize_bytes(PeerIdVisitor)
    }
}
