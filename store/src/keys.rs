//! Every key layout of the store, and nowhere else: each kind of record has a constructor for
//! its key and a [`Prefix`] for its range. Numbers are zero-padded to 20 digits so that the
//! byte order of keys is the numeric order; peers and hashes are lower-case hex.
//!
//! | key | value |
//! |---|---|
//! | `dataset/<id>` | CBOR of a [`crate::StoredDataset`] |
//! | `slug/<slug>` | the dataset id |
//! | `fed/roster` | the signed roster in force |
//! | `fed/left` | present once this node left its federation |
//! | `fed/published/<id>` | present while the dataset is published |
//! | `fed/pending/<hash>` | a roster proposal not yet in force |
//! | `fed/entry/<publisher>/<seq>` | a catalog entry of a publisher's log |
//! | `fed/head/<publisher>` | the seq and hash of a publisher's last entry |
//! | `fed/flag/<publisher>` | why a publisher is flagged (equivocation) |
//! | `fed/evidence/<publisher>/<seq>/<hash>` | a conflicting entry kept as evidence |
//! | `policy/<dataset>` | the dataset's signed policy |
//! | `usage/<policy>` | a policy's use count |
//! | `agreement/<hash>` | an agreement with its role and counterpart |
//! | `revocation/<target>/<hash>` | a signed revocation |
//! | `audit/entry/<n>`, `audit/leaf/<n>`, `audit/checkpoint/<n>` | the Merkle audit log |
//! | `audit/witnessed/<peer>`, `audit/cosignature/<peer>/<size>` | cosigning of this node's log |
//! | `witness/<peer>` | as a witness: the last checkpoint of a peer this node cosigned |
//! | `transfer/<id>` | a transfer's record |

use allmende_protocol::PeerId;

/// A key of the store.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Vec<u8>);

impl Key {
    fn new(text: String) -> Self {
        Self(text.into_bytes())
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key of these bytes (a key read back from a scan).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

/// The range of keys starting with a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix(&'static str, String);

impl Prefix {
    const fn of(root: &'static str) -> Self {
        Self(root, String::new())
    }

    fn within(root: &'static str, rest: String) -> Self {
        Self(root, rest)
    }

    /// The prefix's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        format!("{}{}", self.0, self.1).into_bytes()
    }

    /// What follows the prefix in `key`, if `key` is in the range.
    pub fn rest<'a>(&self, key: &'a Key) -> Option<&'a str> {
        let bytes = self.bytes();
        key.0
            .strip_prefix(bytes.as_slice())
            .and_then(|rest| std::str::from_utf8(rest).ok())
    }
}

fn hex_peer(peer: &PeerId) -> String {
    hex::encode(peer.to_bytes())
}

/// The peer a hex key part names.
pub fn peer_of(hex: &str) -> Option<PeerId> {
    PeerId::from_bytes(&hex::decode(hex).ok()?).ok()
}

/// Datasets and their names.
pub mod dataset {
    use super::{Key, Prefix};

    /// A dataset's record.
    pub fn record(id: &str) -> Key {
        Key::new(format!("dataset/{id}"))
    }

    /// Every dataset's record.
    pub const ALL: Prefix = Prefix::of("dataset/");

    /// The id a name points to.
    pub fn slug(slug: &str) -> Key {
        Key::new(format!("slug/{slug}"))
    }
}

/// The federation: roster, proposals, the catalog logs.
pub mod fed {
    use super::{Key, PeerId, Prefix, hex_peer};

    /// The roster in force.
    pub fn roster() -> Key {
        Key::new("fed/roster".into())
    }

    /// Present once this node left.
    pub fn left() -> Key {
        Key::new("fed/left".into())
    }

    /// Present while dataset `id` is published.
    pub fn published(id: &str) -> Key {
        Key::new(format!("fed/published/{id}"))
    }

    /// A roster proposal, by its hash.
    pub fn pending(hash: &[u8; 32]) -> Key {
        Key::new(format!("fed/pending/{}", hex::encode(hash)))
    }

    /// Every pending proposal.
    pub const PENDING: Prefix = Prefix::of("fed/pending/");

    /// Entry `seq` of `publisher`'s log.
    pub fn entry(publisher: &PeerId, seq: u64) -> Key {
        Key::new(format!("fed/entry/{}/{seq:020}", hex_peer(publisher)))
    }

    /// The entries of `publisher`'s log, in order.
    pub fn entries_of(publisher: &PeerId) -> Prefix {
        Prefix::within("fed/entry/", format!("{}/", hex_peer(publisher)))
    }

    /// Every publisher's entries.
    pub const ENTRIES: Prefix = Prefix::of("fed/entry/");

    /// The head of `publisher`'s log.
    pub fn head(publisher: &PeerId) -> Key {
        Key::new(format!("fed/head/{}", hex_peer(publisher)))
    }

    /// Every publisher's head; the rest of a key is the publisher's hex ([`super::peer_of`]).
    pub const HEADS: Prefix = Prefix::of("fed/head/");

    /// Why `publisher` is flagged.
    pub fn flag(publisher: &PeerId) -> Key {
        Key::new(format!("fed/flag/{}", hex_peer(publisher)))
    }

    /// A conflicting entry of `publisher` at `seq`, by its hash.
    pub fn evidence(publisher: &PeerId, seq: u64, hash: &[u8; 32]) -> Key {
        Key::new(format!(
            "fed/evidence/{}/{seq:020}/{}",
            hex_peer(publisher),
            hex::encode(hash)
        ))
    }

    /// Every piece of evidence.
    pub const EVIDENCE: Prefix = Prefix::of("fed/evidence/");
}

/// Signed policies, their use, agreements and revocations.
pub mod policy {
    use super::{Key, Prefix};

    /// The signed policy attached to dataset `dataset`.
    pub fn attached(dataset: &str) -> Key {
        Key::new(format!("policy/{dataset}"))
    }

    /// Every attached policy; the rest of a key is the dataset id.
    pub const ATTACHED: Prefix = Prefix::of("policy/");

    /// The use count of a policy, by its id's hex.
    pub fn usage(policy_hex: &str) -> Key {
        Key::new(format!("usage/{policy_hex}"))
    }

    /// An agreement, by the hex of its hash.
    pub fn agreement(hash_hex: &str) -> Key {
        Key::new(format!("agreement/{hash_hex}"))
    }

    /// Every agreement; the rest of a key is its id.
    pub const AGREEMENTS: Prefix = Prefix::of("agreement/");

    /// A revocation of `target` (hex), by its statement's hash.
    pub fn revocation(target: &[u8; 32], hash: &[u8; 32]) -> Key {
        Key::new(format!(
            "revocation/{}/{}",
            hex::encode(target),
            hex::encode(hash)
        ))
    }

    /// Every revocation.
    pub const REVOCATIONS: Prefix = Prefix::of("revocation/");
}

/// The Merkle audit log and its cosigning.
pub mod audit {
    use super::{Key, Prefix};

    /// Audited decision `n`.
    pub fn entry(n: u64) -> Key {
        Key::new(format!("audit/entry/{n:020}"))
    }

    /// Every audited decision; the rest of a key is its zero-padded index.
    pub const ENTRIES: Prefix = Prefix::of("audit/entry/");

    /// The Merkle leaf of decision `n`.
    pub fn leaf(n: u64) -> Key {
        Key::new(format!("audit/leaf/{n:020}"))
    }

    /// Every leaf.
    pub const LEAVES: Prefix = Prefix::of("audit/leaf/");

    /// Signed checkpoint `n`.
    pub fn checkpoint(n: u64) -> Key {
        Key::new(format!("audit/checkpoint/{n:020}"))
    }

    /// Every checkpoint.
    pub const CHECKPOINTS: Prefix = Prefix::of("audit/checkpoint/");

    /// The log size `witness` last cosigned.
    pub fn witnessed(witness: &str) -> Key {
        Key::new(format!("audit/witnessed/{witness}"))
    }

    /// `witness`'s cosignature of the checkpoint of `size`.
    pub fn cosignature(witness: &str, size: u64) -> Key {
        Key::new(format!("audit/cosignature/{witness}/{size:020}"))
    }

    /// Every cosignature.
    pub const COSIGNATURES: Prefix = Prefix::of("audit/cosignature/");

    /// As a witness: the last checkpoint of `peer` this node cosigned.
    pub fn cosigned_for(peer: &str) -> Key {
        Key::new(format!("witness/{peer}"))
    }
}

/// Whole-dataset transfers.
pub mod transfer {
    use super::{Key, Prefix};

    /// A transfer's record.
    pub fn record(id: &str) -> Key {
        Key::new(format!("transfer/{id}"))
    }

    /// Every transfer; the rest of a key is its id.
    pub const ALL: Prefix = Prefix::of("transfer/");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sort_as_numbers_and_ranges_hold_their_keys_only() {
        assert!(audit::entry(9).as_bytes() < audit::entry(10).as_bytes());
        let peer = PeerId::random();
        let other = PeerId::random();
        let mine = fed::entries_of(&peer);
        assert_eq!(
            mine.rest(&fed::entry(&peer, 7)),
            Some("00000000000000000007")
        );
        assert_eq!(mine.rest(&fed::entry(&other, 7)), None);
        let head = fed::head(&peer);
        assert_eq!(fed::HEADS.rest(&head).and_then(peer_of), Some(peer));
        assert_eq!(dataset::ALL.rest(&dataset::record("x")), Some("x"));
        assert_eq!(dataset::ALL.rest(&dataset::slug("x")), None);
    }
}
