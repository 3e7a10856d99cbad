//! The replicated catalog: every member's append-only log of signed entries, as this node holds
//! it, with the checks that keep malicious or broken peers from corrupting it.
//!
//! In the store ([`allmende_store::keys::fed`]): each entry as a [`StoredEntry`], each
//! publisher's head, conflicting entries as evidence, and why a publisher is flagged.

use std::sync::{Arc, Mutex};

use allmende_protocol::catalog::{
    CatalogColumn, CatalogEntry, ChainError, EntryOp, SignedCatalogEntry,
};
use allmende_protocol::roster::Roster;
use allmende_protocol::sync::{Digest, Head};
use allmende_protocol::{MAX_ENVELOPE_BYTES, OpenError, PeerId, Signed, SigningKey};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use allmende_store::keys::{Key, fed, peer_of};
use allmende_store::{Store, StoreError};

/// An entry as stored: its exact signed bytes and when this node received it (Unix seconds).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredEntry {
    /// The signed envelope.
    pub bytes: ByteBuf,
    /// When this node received it.
    pub received: u64,
}

/// A publisher's head as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct HeadRecord {
    seq: u64,
    #[serde(with = "allmende_protocol::codec::bytes32")]
    hash: [u8; 32],
}

/// What happened to an entry offered to the log.
#[derive(Debug)]
pub enum Outcome {
    /// New and valid: stored.
    Applied(Box<SignedCatalogEntry>),
    /// Already held (a replay or a second copy).
    Duplicate,
    /// Valid so far, but entries before it are missing: sync with the sender.
    Gap {
        /// The publisher.
        publisher: PeerId,
        /// The highest seq held.
        have: u64,
    },
}

/// Why an entry was refused.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// It does not decode or its signature does not verify.
    #[error("invalid envelope: {0}")]
    Envelope(#[from] OpenError),
    /// Its publisher is not a member of the federation.
    #[error("publisher `{0}` is not a member")]
    NotMember(PeerId),
    /// It breaks the publisher's chain (wrong signer, wrong `prev`, …).
    #[error("chain check failed: {0}")]
    Chain(Box<ChainError>),
    /// A different entry with the same seq is held: kept as evidence, publisher flagged.
    #[error("publisher `{publisher}` signed two different entries with seq {seq}")]
    Equivocation {
        /// The publisher.
        publisher: PeerId,
        /// The seq.
        seq: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn corrupt(key: &Key, message: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key.as_bytes()).into_owned(),
        message: message.to_string(),
    }
}

/// The replicated catalog log.
#[derive(Debug, Clone)]
pub struct CatalogLog {
    store: Arc<Store>,
    /// Serialises appends, so that gossip and sync never interleave on one chain.
    lock: Arc<Mutex<()>>,
    /// [`Self::latest_entries`] as last read, each signature verified once; dropped by every
    /// append, so that federated queries choosing providers do not re-read the whole log.
    latest: Arc<Mutex<Option<LatestEntries>>>,
}

/// The latest entry per (publisher, dataset id), with the time it was received.
pub type LatestEntries = Arc<Vec<(SignedCatalogEntry, u64)>>;

impl CatalogLog {
    /// The log kept in `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            lock: Arc::new(Mutex::new(())),
            latest: Arc::new(Mutex::new(None)),
        }
    }

    fn head(&self, publisher: &PeerId) -> Result<Option<HeadRecord>, StoreError> {
        self.store.get_cbor(&fed::head(publisher))
    }

    /// The stored entry `seq` of `publisher`.
    pub fn entry(&self, publisher: &PeerId, seq: u64) -> Result<Option<StoredEntry>, StoreError> {
        self.store.get_cbor(&fed::entry(publisher, seq))
    }

    /// Up to `limit` entries of `publisher` from `from` on.
    pub fn range(
        &self,
        publisher: &PeerId,
        from: u64,
        limit: u32,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        self.store
            .scan(
                &fed::entries_of(publisher),
                Some(&fed::entry(publisher, from)),
                limit as usize,
            )?
            .into_iter()
            .map(|(k, v)| ciborium::from_reader(v.as_slice()).map_err(|e| corrupt(&k, e)))
            .collect()
    }

    /// Every publisher's head: the version vector (one record per member, read page by page).
    pub fn digest(&self, roster_version: u64) -> Result<Digest, StoreError> {
        let mut heads = Vec::new();
        self.store.scan_all(&fed::HEADS, |key, value| {
            let record: HeadRecord =
                ciborium::from_reader(value.as_slice()).map_err(|e| corrupt(&key, e))?;
            let publisher = fed::HEADS
                .rest(&key)
                .and_then(peer_of)
                .ok_or_else(|| corrupt(&key, "not a PeerId"))?;
            heads.push(Head {
                publisher,
                seq: record.seq,
                hash: record.hash,
            });
            Ok(())
        })?;
        heads.sort_by_key(|h| h.publisher.to_bytes());
        Ok(Digest {
            roster_version,
            heads,
        })
    }

    /// Why `publisher` is flagged, if it is.
    pub fn flagged(&self, publisher: &PeerId) -> Result<Option<String>, StoreError> {
        Ok(self
            .store
            .get_bytes(&fed::flag(publisher))?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Number of conflicting entries kept as evidence.
    pub fn evidence_count(&self) -> Result<usize, StoreError> {
        self.store.count(&fed::EVIDENCE)
    }

    /// Offers an entry received from a peer. `roster` is the current membership, `now` the time
    /// in Unix seconds.
    pub fn offer(
        &self,
        bytes: &[u8],
        roster: Option<&Roster>,
        now: u64,
    ) -> Result<Outcome, Rejection> {
        let signed = SignedCatalogEntry::from_bytes(bytes, MAX_ENVELOPE_BYTES)?;
        let publisher = signed.payload().publisher;
        if !roster.is_some_and(|r| r.contains(&publisher)) {
            return Err(Rejection::NotMember(publisher));
        }
        signed
            .verify_publisher()
            .map_err(|e| Rejection::Chain(Box::new(e)))?;
        self.append(signed, now)
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, signed: SignedCatalogEntry, now: u64) -> Result<Outcome, Rejection> {
        let _guard = self.guard();
        self.append_locked(signed, now)
    }

    /// Checks continuity against what is held and stores the entry; the caller holds the lock.
    fn append_locked(&self, signed: SignedCatalogEntry, now: u64) -> Result<Outcome, Rejection> {
        let entry = signed.payload();
        let publisher = entry.publisher;
        let seq = entry.seq;
        let have = self.head(&publisher)?.map_or(0, |h| h.seq);
        if seq <= have {
            let held = self.entry(&publisher, seq)?;
            if held.is_some_and(|h| h.bytes.as_slice() == signed.as_bytes()) {
                return Ok(Outcome::Duplicate);
            }
            let reason = format!("signed two different entries with seq {seq}");
            self.store.write(vec![
                (
                    fed::evidence(&publisher, seq, &signed.hash()),
                    Some(signed.to_bytes()),
                ),
                (fed::flag(&publisher), Some(reason.into_bytes())),
            ])?;
            return Err(Rejection::Equivocation { publisher, seq });
        }
        if seq > have + 1 {
            return Ok(Outcome::Gap { publisher, have });
        }
        let prev = match have {
            0 => None,
            n => {
                let key = fed::entry(&publisher, n);
                let held = self
                    .entry(&publisher, n)?
                    .ok_or_else(|| corrupt(&key, "head names an entry that is missing"))?;
                Some(
                    Signed::<CatalogEntry>::from_bytes(&held.bytes, MAX_ENVELOPE_BYTES)
                        .map_err(|e| corrupt(&key, e))?,
                )
            }
        };
        signed
            .check_chain(prev.as_ref())
            .map_err(|e| Rejection::Chain(Box::new(e)))?;
        let stored = StoredEntry {
            bytes: ByteBuf::from(signed.to_bytes()),
            received: now,
        };
        let head = HeadRecord {
            seq,
            hash: signed.hash(),
        };
        let entry_key = fed::entry(&publisher, seq);
        let head_key = fed::head(&publisher);
        let stored_bytes = Store::cbor(&entry_key, &stored)?;
        let head_bytes = Store::cbor(&head_key, &head)?;
        self.store.write(vec![
            (entry_key, Some(stored_bytes)),
            (head_key, Some(head_bytes)),
        ])?;
        self.keep_latest(&signed, now);
        Ok(Outcome::Applied(Box::new(signed)))
    }

    /// Signs and appends this node's next entry for `dataset`.
    pub fn publish(
        &self,
        key: &SigningKey,
        op: EntryOp,
        dataset: allmende_protocol::dcat::DatasetRecord,
        policy: Option<allmende_protocol::PolicyRef>,
        columns: Vec<CatalogColumn>,
        now: u64,
    ) -> Result<SignedCatalogEntry, PublishError> {
        let _guard = self.guard();
        let signed = self.sign_next(key, op, dataset, policy, columns, now)?;
        match self.append_locked(signed, now) {
            Ok(Outcome::Applied(s)) => Ok(*s),
            Ok(other) => Err(PublishError::Sign(format!(
                "own entry not applied: {other:?}"
            ))),
            Err(Rejection::Store(e)) => Err(PublishError::Store(e)),
            Err(e) => Err(PublishError::Sign(e.to_string())),
        }
    }

    /// Checks that this node's next entry for `dataset` can be signed (it fits the envelope's
    /// size limit), without appending it.
    pub fn check_publishable(
        &self,
        key: &SigningKey,
        dataset: allmende_protocol::dcat::DatasetRecord,
        policy: Option<allmende_protocol::PolicyRef>,
        columns: Vec<CatalogColumn>,
        now: u64,
    ) -> Result<(), PublishError> {
        self.sign_next(key, EntryOp::Update, dataset, policy, columns, now)
            .map(|_| ())
    }

    /// This node's next entry for `dataset`, signed.
    fn sign_next(
        &self,
        key: &SigningKey,
        op: EntryOp,
        dataset: allmende_protocol::dcat::DatasetRecord,
        policy: Option<allmende_protocol::PolicyRef>,
        columns: Vec<CatalogColumn>,
        now: u64,
    ) -> Result<SignedCatalogEntry, PublishError> {
        let publisher = allmende_protocol::peer_id_of(&key.verifying_key());
        let head = self.head(&publisher)?;
        let entry = CatalogEntry {
            publisher,
            seq: head.as_ref().map_or(1, |h| h.seq + 1),
            prev: head.map(|h| h.hash),
            op,
            dataset,
            policy,
            issued: chrono::DateTime::from_timestamp(now as i64, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            columns,
        };
        Signed::sign(&entry, key).map_err(|e| PublishError::Sign(e.to_string()))
    }

    /// The latest entry per (publisher, dataset id), for building the search index.
    pub fn latest_entries(&self) -> Result<LatestEntries, StoreError> {
        if let Some(latest) = self.cached().as_ref() {
            return Ok(latest.clone());
        }
        // Read under the append lock, so that no append lands between the scan and the cache.
        let _guard = self.guard();
        let mut latest: std::collections::HashMap<(PeerId, String), (SignedCatalogEntry, u64)> =
            std::collections::HashMap::new();
        self.store.scan_all(&fed::ENTRIES, |key, value| {
            let stored: StoredEntry =
                ciborium::from_reader(value.as_slice()).map_err(|e| corrupt(&key, e))?;
            let signed = SignedCatalogEntry::from_bytes(&stored.bytes, MAX_ENVELOPE_BYTES)
                .map_err(|e| corrupt(&key, e))?;
            let k = (
                signed.payload().publisher,
                signed.payload().dataset.id.clone(),
            );
            latest.insert(k, (signed, stored.received));
            Ok(())
        })?;
        let latest: LatestEntries = Arc::new(latest.into_values().collect());
        *self.cached() = Some(latest.clone());
        Ok(latest)
    }

    /// Puts an appended entry into the kept latest entries (the caller holds the append lock),
    /// so that a change does not make the next query read the whole log again.
    fn keep_latest(&self, signed: &SignedCatalogEntry, received: u64) {
        let mut cached = self.cached();
        let Some(latest) = cached.as_ref() else {
            return;
        };
        let e = signed.payload();
        let mut next: Vec<(SignedCatalogEntry, u64)> = latest
            .iter()
            .filter(|(held, _)| {
                let h = held.payload();
                h.publisher != e.publisher || h.dataset.id != e.dataset.id
            })
            .cloned()
            .collect();
        next.push((signed.clone(), received));
        *cached = Some(Arc::new(next));
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Option<LatestEntries>> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Errors publishing this node's own entry.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Signing or appending failed.
    #[error("cannot publish: {0}")]
    Sign(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmende_protocol::dcat::DatasetRecord;
    use allmende_protocol::roster::Member;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn peer(k: &SigningKey) -> PeerId {
        allmende_protocol::peer_id_of(&k.verifying_key())
    }

    fn roster(keys: &[&SigningKey]) -> Roster {
        let mut members: Vec<Member> = keys
            .iter()
            .map(|k| Member {
                peer_id: peer(k),
                organisation: "Stadt".into(),
                district_key: "05515".into(),
                roles: vec![],
                addresses: vec![],
            })
            .collect();
        members.sort_by_key(|m| m.peer_id.to_bytes());
        Roster {
            federation: "f".into(),
            version: 1,
            prev: None,
            members,
            threshold: None,
            valid_from: 0,
            valid_until: None,
        }
    }

    fn record(id: &str) -> DatasetRecord {
        DatasetRecord {
            id: id.into(),
            slug: id.into(),
            version: 1,
            title: format!("Dataset {id}"),
            ..DatasetRecord::default()
        }
    }

    fn entry(k: &SigningKey, seq: u64, prev: Option<[u8; 32]>, id: &str) -> SignedCatalogEntry {
        let e = CatalogEntry {
            publisher: peer(k),
            seq,
            prev,
            op: EntryOp::Create,
            dataset: record(id),
            policy: None,
            issued: "2026-01-01T00:00:00Z".into(),
            columns: vec![],
        };
        Signed::sign(&e, k).unwrap()
    }

    fn log() -> (tempfile::TempDir, CatalogLog) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), true).unwrap());
        (dir, CatalogLog::new(store))
    }

    #[test]
    fn applies_in_order_and_ignores_replays() {
        let (_d, log) = log();
        let a = key(1);
        let r = roster(&[&a]);
        let e1 = entry(&a, 1, None, "x");
        let e2 = entry(&a, 2, Some(e1.hash()), "y");
        assert!(matches!(
            log.offer(&e2.to_bytes(), Some(&r), 1).unwrap(),
            Outcome::Gap { have: 0, .. }
        ));
        assert!(matches!(
            log.offer(&e1.to_bytes(), Some(&r), 1).unwrap(),
            Outcome::Applied(_)
        ));
        assert!(matches!(
            log.offer(&e1.to_bytes(), Some(&r), 1).unwrap(),
            Outcome::Duplicate
        ));
        assert!(matches!(
            log.offer(&e2.to_bytes(), Some(&r), 1).unwrap(),
            Outcome::Applied(_)
        ));
        let digest = log.digest(1).unwrap();
        assert_eq!(digest.heads.len(), 1);
        assert_eq!(digest.heads[0].seq, 2);
        assert_eq!(log.range(&peer(&a), 1, 10).unwrap().len(), 2);
        assert_eq!(log.range(&peer(&a), 2, 10).unwrap().len(), 1);
    }

    #[test]
    fn rejects_non_members_forgeries_and_broken_chains() {
        let (_d, log) = log();
        let (a, outsider) = (key(1), key(9));
        let r = roster(&[&a]);
        let foreign = entry(&outsider, 1, None, "x");
        assert!(matches!(
            log.offer(&foreign.to_bytes(), Some(&r), 1),
            Err(Rejection::NotMember(_))
        ));
        assert!(matches!(
            log.offer(&foreign.to_bytes(), None, 1),
            Err(Rejection::NotMember(_))
        ));
        let mut forged = entry(&a, 1, None, "x").to_bytes();
        let n = forged.len();
        forged[n - 3] ^= 0x40;
        assert!(matches!(
            log.offer(&forged, Some(&r), 1),
            Err(Rejection::Envelope(_))
        ));
        assert!(matches!(
            log.offer(&vec![0u8; MAX_ENVELOPE_BYTES + 1], Some(&r), 1),
            Err(Rejection::Envelope(_))
        ));
        // An entry by the outsider claiming to be a's.
        let mut claimed = CatalogEntry {
            publisher: peer(&a),
            seq: 1,
            prev: None,
            op: EntryOp::Create,
            dataset: record("x"),
            policy: None,
            issued: "2026-01-01T00:00:00Z".into(),
            columns: vec![],
        };
        let impostor = Signed::sign(&claimed, &outsider).unwrap();
        assert!(matches!(
            log.offer(&impostor.to_bytes(), Some(&r), 1),
            Err(Rejection::Chain(_))
        ));
        let e1 = entry(&a, 1, None, "x");
        log.offer(&e1.to_bytes(), Some(&r), 1).unwrap();
        claimed.seq = 2;
        claimed.prev = Some([0; 32]);
        let wrong_prev = Signed::sign(&claimed, &a).unwrap();
        assert!(matches!(
            log.offer(&wrong_prev.to_bytes(), Some(&r), 1),
            Err(Rejection::Chain(_))
        ));
        assert_eq!(log.digest(1).unwrap().heads[0].seq, 1);
    }

    #[test]
    fn keeps_the_first_of_two_entries_with_one_seq_and_flags_the_publisher() {
        let (_d, log) = log();
        let a = key(1);
        let r = roster(&[&a]);
        let first = entry(&a, 1, None, "x");
        let second = entry(&a, 1, None, "other");
        log.offer(&first.to_bytes(), Some(&r), 1).unwrap();
        assert!(matches!(
            log.offer(&second.to_bytes(), Some(&r), 1),
            Err(Rejection::Equivocation { seq: 1, .. })
        ));
        assert_eq!(
            log.entry(&peer(&a), 1).unwrap().unwrap().bytes.as_slice(),
            first.as_bytes()
        );
        assert!(log.flagged(&peer(&a)).unwrap().is_some());
        assert_eq!(log.evidence_count().unwrap(), 1);
    }

    #[test]
    fn publishes_own_entries_as_a_chain() {
        let (_d, log) = log();
        let a = key(3);
        let e1 = log
            .publish(&a, EntryOp::Create, record("x"), None, vec![], 5)
            .unwrap();
        let e2 = log
            .publish(&a, EntryOp::Update, record("x"), None, vec![], 6)
            .unwrap();
        assert_eq!(e2.payload().seq, 2);
        assert_eq!(e2.payload().prev, Some(e1.hash()));
        assert_eq!(log.latest_entries().unwrap().len(), 1);
    }
}
