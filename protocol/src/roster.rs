//! Federation rosters: who belongs to a regional federation, agreed without a central operator.
//!
//! A roster lists the members (PeerId, organisation, district key, roles, addresses), a version,
//! the hash of the previous version and a validity window. It is signed by members, each with
//! a detached Ed25519 signature over the roster's deterministic CBOR:
//!
//! - the founding roster (version 1, no `prev`) is valid when *every* member signed it;
//! - version N+1 is valid when its `prev` is the hash of version N's payload and at least
//!   `threshold` (default: a majority) *members of version N* signed it.
//!
//! Wire form ([`SignedRoster::to_bytes`]): a deterministic CBOR map
//! `{"payload": bstr, "signatures": [[kid bstr, sig bstr], ...]}` with signatures sorted by kid.
//! Each signature covers `"allmende/roster/1" || 0x00 || payload`.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

use crate::cbor::{self, DecodeError};
use crate::envelope::{peer_id_of, verifying_key_of};

/// Domain separation for roster signatures.
const CONTEXT: &[u8] = b"allmende/roster/1\0";

/// Largest encoded roster accepted.
pub const MAX_ROSTER_BYTES: usize = 256 * 1024;

/// Most members a roster may list.
pub const MAX_MEMBERS: usize = 1000;

/// One member of a federation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member node's PeerId.
    #[serde(with = "crate::codec::peer_id")]
    pub peer_id: PeerId,
    /// The organisation running it, e.g. `Stadt Münster`.
    pub organisation: String,
    /// Its district key (AGS).
    pub district_key: String,
    /// Roles in the federation, e.g. `publisher`, `consumer`.
    pub roles: Vec<String>,
    /// Multiaddresses it can be reached at.
    pub addresses: Vec<String>,
}

/// A version of a federation's membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    /// The federation's id, e.g. `muensterland`.
    pub federation: String,
    /// The version, starting at 1.
    pub version: u64,
    /// SHA-256 of the previous version's payload; `None` iff `version == 1`.
    #[serde(with = "crate::codec::opt_bytes32")]
    pub prev: Option<[u8; 32]>,
    /// The members, ordered by PeerId bytes, each once.
    pub members: Vec<Member>,
    /// Signatures of this version's members needed to accept the next version;
    /// `None` means a majority.
    pub threshold: Option<u32>,
    /// Start of validity, Unix seconds.
    pub valid_from: u64,
    /// End of validity, Unix seconds; `None` means until replaced.
    pub valid_until: Option<u64>,
}

/// Why a roster is not acceptable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RosterError {
    /// The bytes do not decode.
    #[error("roster does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The roster could not be encoded.
    #[error("roster cannot be encoded: {0}")]
    Encode(String),
    /// A field is out of range.
    #[error("invalid roster: {0}")]
    Invalid(String),
    /// A signature does not verify, or its key id is not an Ed25519 PeerId.
    #[error("signature of `{0}` does not verify")]
    BadSignature(PeerId),
    /// Not enough of the required members signed.
    #[error("{have} of the required {need} signatures present")]
    NotEnoughSignatures {
        /// Valid signatures by the required signers.
        have: usize,
        /// How many are needed.
        need: usize,
    },
    /// The roster does not follow the one it claims to replace.
    #[error("roster version {version} does not follow version {current}: {reason}")]
    NotSuccessor {
        /// Its version.
        version: u64,
        /// The current version.
        current: u64,
        /// What does not match.
        reason: &'static str,
    },
    /// The roster is outside its validity window.
    #[error("roster is not valid at {0}")]
    Expired(u64),
}

impl Roster {
    /// The number of signatures by this version's members needed for the next version.
    pub fn required(&self) -> usize {
        let n = self.members.len();
        match self.threshold {
            Some(k) => (k as usize).clamp(1, n.max(1)),
            None => n / 2 + 1,
        }
    }

    /// The member with this PeerId.
    pub fn member(&self, peer: &PeerId) -> Option<&Member> {
        self.members.iter().find(|m| m.peer_id == *peer)
    }

    /// Whether `peer` is a member.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.member(peer).is_some()
    }

    /// Whether `now` (Unix seconds) is inside the validity window.
    pub fn valid_at(&self, now: u64) -> bool {
        now >= self.valid_from && self.valid_until.is_none_or(|end| now < end)
    }

    /// Checks the fields: versions, ordering, sizes.
    pub fn check(&self) -> Result<(), RosterError> {
        let bad = |m: String| Err(RosterError::Invalid(m));
        if self.federation.is_empty() || self.federation.len() > 64 {
            return bad("the federation id must be 1 to 64 characters".into());
        }
        if self.version == 0 || (self.version == 1) != self.prev.is_none() {
            return bad("version 1 has no `prev`; every later version has one".into());
        }
        if self.members.is_empty() || self.members.len() > MAX_MEMBERS {
            return bad(format!("a roster lists 1 to {MAX_MEMBERS} members"));
        }
        for pair in self.members.windows(2) {
            if pair[0].peer_id.to_bytes() >= pair[1].peer_id.to_bytes() {
                return bad("members must be ordered by PeerId and listed once".into());
            }
        }
        for m in &self.members {
            if verifying_key_of(&m.peer_id).is_none() {
                return bad(format!("member `{}` is not an Ed25519 PeerId", m.peer_id));
            }
        }
        if self.threshold == Some(0) || self.valid_until.is_some_and(|u| u <= self.valid_from) {
            return bad("threshold must be at least 1 and the validity window not empty".into());
        }
        Ok(())
    }

    /// Sorts the members into their canonical order.
    pub fn normalize(&mut self) {
        self.members.sort_by_key(|m| m.peer_id.to_bytes());
        self.members.dedup_by(|a, b| a.peer_id == b.peer_id);
    }

    /// The deterministic CBOR payload that members sign.
    pub fn payload(&self) -> Result<Vec<u8>, RosterError> {
        cbor::to_vec(self).map_err(|e| RosterError::Encode(e.to_string()))
    }
}

/// A roster with the members' signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRoster {
    roster: Roster,
    payload: Vec<u8>,
    signatures: BTreeMap<Vec<u8>, [u8; 64]>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    payload: ByteBuf,
    signatures: Vec<(ByteBuf, ByteBuf)>,
}

fn message(payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + payload.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(payload);
    m
}

impl SignedRoster {
    /// A roster with no signatures yet; the members are put in canonical order first.
    pub fn new(mut roster: Roster) -> Result<Self, RosterError> {
        roster.normalize();
        roster.check()?;
        let payload = roster.payload()?;
        Ok(Self {
            roster,
            payload,
            signatures: BTreeMap::new(),
        })
    }

    /// Adds (or replaces) the signature of `key`'s owner.
    pub fn sign(&mut self, key: &SigningKey) {
        let sig = key.sign(&message(&self.payload));
        let kid = peer_id_of(&key.verifying_key()).to_bytes();
        self.signatures.insert(kid, sig.to_bytes());
    }

    /// Adds the valid signatures of `other`, which must carry the same payload; returns how many
    /// were new.
    pub fn merge(&mut self, other: &SignedRoster) -> Result<usize, RosterError> {
        if other.payload != self.payload {
            return Err(RosterError::Invalid(
                "the rosters differ; signatures cannot be merged".into(),
            ));
        }
        let before = self.signatures.len();
        for (kid, sig) in &other.signatures {
            self.signatures.entry(kid.clone()).or_insert(*sig);
        }
        Ok(self.signatures.len() - before)
    }

    /// The roster.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// SHA-256 of the payload: what the next version's `prev` names.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(&self.payload).into()
    }

    /// The signers whose signatures verify; an invalid signature is an error.
    pub fn signers(&self) -> Result<Vec<PeerId>, RosterError> {
        let msg = message(&self.payload);
        let mut out = Vec::with_capacity(self.signatures.len());
        for (kid, sig) in &self.signatures {
            let peer = PeerId::from_bytes(kid)
                .map_err(|_| RosterError::Invalid("a signature's key id is not a PeerId".into()))?;
            let key = verifying_key_of(&peer).ok_or(RosterError::BadSignature(peer))?;
            key.verify(&msg, &Signature::from_bytes(sig))
                .map_err(|_| RosterError::BadSignature(peer))?;
            out.push(peer);
        }
        Ok(out)
    }

    /// Checks a founding roster: version 1, signed by every member.
    pub fn verify_founding(&self) -> Result<(), RosterError> {
        if self.roster.version != 1 {
            return Err(RosterError::Invalid(
                "a founding roster has version 1".into(),
            ));
        }
        let signers = self.signers()?;
        let have = self
            .roster
            .members
            .iter()
            .filter(|m| signers.contains(&m.peer_id))
            .count();
        let need = self.roster.members.len();
        if have < need {
            return Err(RosterError::NotEnoughSignatures { have, need });
        }
        Ok(())
    }

    /// Checks that this roster may replace `current`: the next version, linked by hash, and
    /// signed by at least `current.required()` members of `current`.
    pub fn verify_successor(&self, current: &SignedRoster) -> Result<(), RosterError> {
        let (next, cur) = (&self.roster, &current.roster);
        let not = |reason| RosterError::NotSuccessor {
            version: next.version,
            current: cur.version,
            reason,
        };
        if next.federation != cur.federation {
            return Err(not("another federation"));
        }
        if next.version != cur.version + 1 {
            return Err(not("the version is not the next one"));
        }
        if next.prev != Some(current.hash()) {
            return Err(not("`prev` is not the hash of the current roster"));
        }
        let signers = self.signers()?;
        let have = signers.iter().filter(|p| cur.contains(p)).count();
        let need = cur.required();
        if have < need {
            return Err(RosterError::NotEnoughSignatures { have, need });
        }
        Ok(())
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RosterError> {
        let wire = Wire {
            payload: ByteBuf::from(self.payload.clone()),
            signatures: self
                .signatures
                .iter()
                .map(|(k, s)| (ByteBuf::from(k.clone()), ByteBuf::from(s.to_vec())))
                .collect(),
        };
        cbor::to_vec(&wire).map_err(|e| RosterError::Encode(e.to_string()))
    }

    /// Decodes the wire form, checking sizes, the roster's fields and that every signature
    /// verifies (it does not check who signed: see [`Self::verify_founding`] and
    /// [`Self::verify_successor`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RosterError> {
        let wire: Wire = cbor::from_slice(bytes, MAX_ROSTER_BYTES)?;
        let roster: Roster = cbor::from_slice(&wire.payload, MAX_ROSTER_BYTES)?;
        roster.check()?;
        let mut signatures = BTreeMap::new();
        for (kid, sig) in wire.signatures {
            let sig: [u8; 64] = sig
                .into_vec()
                .try_into()
                .map_err(|_| RosterError::Invalid("a signature is not 64 bytes".into()))?;
            if signatures.insert(kid.into_vec(), sig).is_some() {
                return Err(RosterError::Invalid("a signer appears twice".into()));
            }
        }
        let signed = Self {
            roster,
            payload: wire.payload.into_vec(),
            signatures,
        };
        signed.signers()?;
        Ok(signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn member(k: &SigningKey, org: &str) -> Member {
        Member {
            peer_id: peer_id_of(&k.verifying_key()),
            organisation: org.into(),
            district_key: "05515".into(),
            roles: vec!["publisher".into()],
            addresses: vec!["/ip4/127.0.0.1/udp/4001/quic-v1".into()],
        }
    }

    fn founding(keys: &[SigningKey]) -> SignedRoster {
        let roster = Roster {
            federation: "muensterland".into(),
            version: 1,
            prev: None,
            members: keys
                .iter()
                .enumerate()
                .map(|(i, k)| member(k, &format!("Stadt {i}")))
                .collect(),
            threshold: None,
            valid_from: 0,
            valid_until: None,
        };
        SignedRoster::new(roster).unwrap()
    }

    #[test]
    fn founding_needs_every_member_and_round_trips() {
        let keys = [key(1), key(2), key(3)];
        let mut r = founding(&keys);
        r.sign(&keys[0]);
        r.sign(&keys[1]);
        assert!(matches!(
            r.verify_founding(),
            Err(RosterError::NotEnoughSignatures { have: 2, need: 3 })
        ));
        r.sign(&keys[2]);
        r.verify_founding().unwrap();
        let bytes = r.to_bytes().unwrap();
        let back = SignedRoster::from_bytes(&bytes).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn successor_needs_a_majority_of_the_current_members() {
        let keys = [key(1), key(2), key(3), key(4)];
        let mut v1 = founding(&keys[..3]);
        for k in &keys[..3] {
            v1.sign(k);
        }
        let mut next = v1.roster().clone();
        next.version = 2;
        next.prev = Some(v1.hash());
        next.members.push(member(&keys[3], "Stadt neu"));
        let mut v2 = SignedRoster::new(next).unwrap();
        v2.sign(&keys[3]); // the newcomer's signature does not count
        v2.sign(&keys[0]);
        assert!(matches!(
            v2.verify_successor(&v1),
            Err(RosterError::NotEnoughSignatures { have: 1, need: 2 })
        ));
        let mut other = v2.clone();
        other.signatures.clear();
        other.sign(&keys[1]);
        assert_eq!(v2.merge(&other).unwrap(), 1);
        v2.verify_successor(&v1).unwrap();

        let mut skipped = v2.roster().clone();
        skipped.version = 3;
        let skipped = SignedRoster::new(skipped).unwrap();
        assert!(matches!(
            skipped.verify_successor(&v1),
            Err(RosterError::NotSuccessor { .. })
        ));
    }

    #[test]
    fn rejects_forged_signatures_and_bad_fields() {
        let keys = [key(1), key(2)];
        let mut r = founding(&keys);
        r.sign(&keys[0]);
        let mut bytes = r.to_bytes().unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            SignedRoster::from_bytes(&bytes),
            Err(RosterError::BadSignature(_))
        ));
        assert!(matches!(
            SignedRoster::from_bytes(&vec![0u8; MAX_ROSTER_BYTES + 1]),
            Err(RosterError::Decode(_))
        ));
        let mut bad = r.roster().clone();
        bad.version = 2;
        assert!(SignedRoster::new(bad).is_err());
        let mut empty = r.roster().clone();
        empty.members.clear();
        assert!(SignedRoster::new(empty).is_err());
    }
}
