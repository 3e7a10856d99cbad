//! The append-only log: storage trait, in-memory store, proofs and verification.
use allmende_protocol::envelope::{MAX_ENVELOPE_BYTES, SignError};
use allmende_protocol::{PeerId, Signed, SigningKey};

use super::checkpoint::Checkpoint;
use super::merkle::{
    Hash, ProofError, empty_root, leaf_hash, node_hash, split, verify_consistency,
};

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The store failed.
    #[error("audit store: {0}")]
    Store(String),
    /// An index or size beyond the log.
    #[error("{what} {value} is beyond the log of {size} entries")]
    Range {
        /// What was asked for.
        what: &'static str,
        /// The value.
        value: u64,
        /// The log's size.
        size: u64,
    },
    /// A checkpoint could not be signed.
    #[error("cannot sign checkpoint: {0}")]
    Sign(#[from] SignError),
    /// A proof does not verify.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// Where the log keeps entries, their leaf hashes and signed checkpoints.
pub trait LogStore {
    /// Number of entries.
    fn len(&self) -> u64;
    /// Whether the log is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends an entry and its leaf hash.
    fn append(&mut self, entry: &[u8], leaf: &Hash) -> Result<(), AuditError>;
    /// The entry at `index`.
    fn entry(&self, index: u64) -> Result<Vec<u8>, AuditError>;
    /// The stored leaf hash at `index`.
    fn leaf(&self, index: u64) -> Result<Hash, AuditError>;
    /// Stores a signed checkpoint's bytes.
    fn add_checkpoint(&mut self, bytes: Vec<u8>) -> Result<(), AuditError>;
    /// Every stored checkpoint, oldest first.
    fn checkpoints(&self) -> Result<Vec<Vec<u8>>, AuditError>;
}

/// A [`LogStore`] in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    /// The entries.
    pub entries: Vec<Vec<u8>>,
    /// Their leaf hashes.
    pub leaves: Vec<Hash>,
    /// Signed checkpoints.
    pub checkpoints: Vec<Vec<u8>>,
}

impl LogStore for MemoryStore {
    fn len(&self) -> u64 {
        self.entries.len() as u64
    }
    fn append(&mut self, entry: &[u8], leaf: &Hash) -> Result<(), AuditError> {
        self.entries.push(entry.to_vec());
        self.leaves.push(*leaf);
        Ok(())
    }
    fn entry(&self, index: u64) -> Result<Vec<u8>, AuditError> {
        self.entries
            .get(index as usize)
            .cloned()
            .ok_or(AuditError::Range {
                what: "index",
                value: index,
                size: self.len(),
            })
    }
    fn leaf(&self, index: u64) -> Result<Hash, AuditError> {
        self.leaves
            .get(index as usize)
            .copied()
            .ok_or(AuditError::Range {
                what: "index",
                value: index,
                size: self.len(),
            })
    }
    fn add_checkpoint(&mut self, bytes: Vec<u8>) -> Result<(), AuditError> {
        self.checkpoints.push(bytes);
        Ok(())
    }
    fn checkpoints(&self) -> Result<Vec<Vec<u8>>, AuditError> {
        Ok(self.checkpoints.clone())
    }
}

/// Hashes of perfect, aligned subtrees: `levels[k][i]` covers leaves `[i·2^k, (i+1)·2^k)`.
#[derive(Clone, Debug, Default)]
struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut k = 0;
        loop {
            if self.levels.len() == k {
                self.levels.push(Vec::new());
            }
            self.levels[k].push(h);
            let len = self.levels[k].len();
            if !len.is_multiple_of(2) {
                break;
            }
            h = node_hash(&self.levels[k][len - 2], &self.levels[k][len - 1]);
            k += 1;
        }
    }
    fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }
    /// MTH(D[lo:hi]).
    fn mth(&self, lo: u64, hi: u64) -> Hash {
        let n = hi - lo;
        if n == 0 {
            return empty_root();
        }
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            let k = n.trailing_zeros() as usize;
            return self.levels[k][(lo / n) as usize];
        }
        let k = split(n);
        node_hash(&self.mth(lo, lo + k), &self.mth(lo + k, hi))
    }
    fn path(&self, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) {
        let n = hi - lo;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, lo, lo + k, out);
            out.push(self.mth(lo + k, hi));
        } else {
            self.path(m - k, lo + k, hi, out);
            out.push(self.mth(lo, lo + k));
        }
    }
    fn subproof(&self, m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<Hash>) {
        let n = hi - lo;
        if m == n {
            if !whole {
                out.push(self.mth(lo, hi));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, lo, lo + k, whole, out);
            out.push(self.mth(lo + k, hi));
        } else {
            self.subproof(m - k, lo + k, hi, false, out);
            out.push(self.mth(lo, lo + k));
        }
    }
}

/// An append-only Merkle log over a [`LogStore`].
#[derive(Debug)]
pub struct AuditLog<S: LogStore> {
    store: S,
    tree: Tree,
}

impl<S: LogStore> AuditLog<S> {
    /// Opens a log, rebuilding the tree from the stored leaf hashes.
    pub fn open(store: S) -> Result<AuditLog<S>, AuditError> {
        let mut tree = Tree::default();
        for i in 0..store.len() {
            tree.push(store.leaf(i)?);
        }
        Ok(AuditLog { store, tree })
    }
    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.tree.len()
    }
    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends an entry; returns its index.
    pub fn append(&mut self, entry: &[u8]) -> Result<u64, AuditError> {
        let leaf = leaf_hash(entry);
        self.store.append(entry, &leaf)?;
        self.tree.push(leaf);
        Ok(self.len() - 1)
    }
    /// The current root.
    pub fn root(&self) -> Hash {
        self.tree.mth(0, self.len())
    }
    /// The root of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash, AuditError> {
        self.check(size, "size")?;
        Ok(self.tree.mth(0, size))
    }
    fn check(&self, v: u64, what: &'static str) -> Result<(), AuditError> {
        if v > self.len() {
            return Err(AuditError::Range {
                what,
                value: v,
                size: self.len(),
            });
        }
        Ok(())
    }
    /// The inclusion proof of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        self.check(size, "size")?;
        if index >= size {
            return Err(AuditError::Range {
                what: "index",
                value: index,
                size,
            });
        }
        let mut out = Vec::new();
        self.tree.path(index, 0, size, &mut out);
        Ok(out)
    }
    /// The consistency proof from size `old` to size `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, AuditError> {
        self.check(new, "size")?;
        if old > new {
            return Err(AuditError::Range {
                what: "old size",
                value: old,
                size: new,
            });
        }
        let mut out = Vec::new();
        if old > 0 && old < new {
            self.tree.subproof(old, 0, new, true, &mut out);
        }
        Ok(out)
    }
    /// Signs and stores a checkpoint of the current state (`time` given by the caller).
    pub fn checkpoint(
        &mut self,
        origin: &str,
        time: &str,
        key: &SigningKey,
    ) -> Result<Signed<Checkpoint>, AuditError> {
        let cp = Checkpoint {
            origin: origin.to_owned(),
            size: self.len(),
            root: self.root(),
            time: time.to_owned(),
        };
        let signed = Signed::sign(&cp, key)?;
        self.store.add_checkpoint(signed.to_bytes())?;
        Ok(signed)
    }
}

/// One sign of tampering found by [`verify_log`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// An entry does not hash to its stored leaf hash.
    Entry {
        /// The entry's index.
        index: u64,
    },
    /// A stored checkpoint is not a valid envelope signed by the log's key.
    Checkpoint {
        /// Its position among the checkpoints.
        position: usize,
        /// Why.
        reason: String,
    },
    /// A checkpoint covers more entries than the log has (entries were removed).
    Truncated {
        /// The checkpoint's size.
        size: u64,
        /// The log's size.
        len: u64,
    },
    /// A checkpoint's root is not the root of the stored entries (entries were changed).
    Root {
        /// The checkpoint's size.
        size: u64,
    },
    /// Two checkpoints are not consistent (the log was rewritten between them).
    Inconsistent {
        /// The older size.
        old: u64,
        /// The newer size.
        new: u64,
    },
}

/// What [`verify_log`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Checkpoints checked.
    pub checkpoints: usize,
    /// Every sign of tampering; empty if the log is intact.
    pub tampering: Vec<Tamper>,
}

impl VerifyReport {
    /// Whether no tampering was found.
    pub fn is_intact(&self) -> bool {
        self.tampering.is_empty()
    }
}

/// Recomputes every leaf hash and root from the stored entries and checks each checkpoint's
/// signature (by `log_key`), size, root, and consistency with the previous checkpoint.
pub fn verify_log(store: &dyn LogStore, log_key: &PeerId) -> Result<VerifyReport, AuditError> {
    let mut report = VerifyReport {
        entries: store.len(),
        ..VerifyReport::default()
    };
    let mut tree = Tree::default();
    for i in 0..store.len() {
        let h = leaf_hash(&store.entry(i)?);
        if h != store.leaf(i)? {
            report.tampering.push(Tamper::Entry { index: i });
        }
        tree.push(h);
    }
    let mut previous: Option<Checkpoint> = None;
    for (position, bytes) in store.checkpoints()?.iter().enumerate() {
        report.checkpoints += 1;
        let cp = match Signed::<Checkpoint>::from_bytes(bytes, MAX_ENVELOPE_BYTES) {
            Ok(s) if &s.signer() == log_key => s.into_payload(),
            Ok(_) => {
                report.tampering.push(Tamper::Checkpoint {
                    position,
                    reason: "signed by another key".into(),
                });
                continue;
            }
            Err(e) => {
                report.tampering.push(Tamper::Checkpoint {
                    position,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if cp.size > tree.len() {
            report.tampering.push(Tamper::Truncated {
                size: cp.size,
                len: tree.len(),
            });
        } else if tree.mth(0, cp.size) != cp.root {
            report.tampering.push(Tamper::Root { size: cp.size });
        }
        if let Some(prev) = &previous {
            let consistent = prev.size <= cp.size && cp.size <= tree.len() && {
                let mut proof = Vec::new();
                if prev.size > 0 && prev.size < cp.size {
                    tree.subproof(prev.size, 0, cp.size, true, &mut proof);
                }
                verify_consistency(prev.size, cp.size, &prev.root, &cp.root, &proof).is_ok()
            };
            if !consistent {
                report.tampering.push(Tamper::Inconsistent {
                    old: prev.size,
                    new: cp.size,
                });
            }
        }
        previous = Some(cp);
    }
    Ok(report)
}
