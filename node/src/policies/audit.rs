//! The audit log of decisions taken for remote requests, in the store, and its cosigning by
//! other members: each node asks a witness to cosign its latest checkpoint, and a witness
//! checks the consistency proof from the last checkpoint of that node it cosigned.

use std::sync::Arc;
use std::time::Instant;

use allmende_policy::audit::{
    AuditError, Checkpoint, Cosignature, LogStore, VerifyReport, verify_log,
};
use allmende_protocol::{MAX_ENVELOPE_BYTES, PeerId, Signed};
use allmende_store::keys::audit;
use allmende_store::{Store, StoreError};

use super::{Audit, AuditRecord, CosignRequest, Policies, PolicyError};

/// How many of the latest checkpoints a cosignature may be for.
const COSIGNABLE: usize = 64;

/// A [`LogStore`] in RocksDB, which knows its length, its number of checkpoints and its last
/// checkpoint without reading the log (the last keys of each range, read once at open).
pub struct RocksLogStore {
    store: Arc<Store>,
    len: u64,
    checkpoints: u64,
    last_checkpoint: Option<Vec<u8>>,
}

fn store_err(e: StoreError) -> AuditError {
    AuditError::Store(e.to_string())
}

/// The number after `prefix` in the last key of its range, plus one: the range's length when
/// its keys count 0, 1, 2, …
fn next_index(store: &Store, prefix: &allmende_store::keys::Prefix) -> Result<u64, StoreError> {
    let last = store.scan_back(prefix, 1)?;
    let Some((key, _)) = last.first() else {
        return Ok(0);
    };
    prefix
        .rest(key)
        .and_then(|n| n.parse::<u64>().ok())
        .map(|n| n + 1)
        .ok_or_else(|| StoreError::Corrupt {
            key: String::from_utf8_lossy(key.as_bytes()).into_owned(),
            message: "not an index".into(),
        })
}

impl RocksLogStore {
    /// Opens the log kept in `store`.
    pub fn open(store: Arc<Store>) -> Result<Self, StoreError> {
        let len = next_index(&store, &audit::LEAVES)?;
        let checkpoints = next_index(&store, &audit::CHECKPOINTS)?;
        let last_checkpoint = store
            .scan_back(&audit::CHECKPOINTS, 1)?
            .pop()
            .map(|(_, v)| v);
        Ok(Self {
            store,
            len,
            checkpoints,
            last_checkpoint,
        })
    }

    /// The last signed checkpoint.
    pub fn last_checkpoint(&self) -> Option<&[u8]> {
        self.last_checkpoint.as_deref()
    }
}

impl LogStore for RocksLogStore {
    fn len(&self) -> u64 {
        self.len
    }

    fn append(&mut self, entry: &[u8], leaf: &[u8; 32]) -> Result<(), AuditError> {
        self.store
            .write(vec![
                (audit::entry(self.len), Some(entry.to_vec())),
                (audit::leaf(self.len), Some(leaf.to_vec())),
            ])
            .map_err(store_err)?;
        self.len += 1;
        Ok(())
    }

    fn entry(&self, index: u64) -> Result<Vec<u8>, AuditError> {
        self.store
            .get_bytes(&audit::entry(index))
            .map_err(store_err)?
            .ok_or_else(|| AuditError::Store(format!("entry {index} is missing")))
    }

    fn leaf(&self, index: u64) -> Result<[u8; 32], AuditError> {
        let bytes = self
            .store
            .get_bytes(&audit::leaf(index))
            .map_err(store_err)?
            .ok_or_else(|| AuditError::Store(format!("leaf {index} is missing")))?;
        bytes
            .try_into()
            .map_err(|_| AuditError::Store(format!("leaf {index} is not 32 bytes")))
    }

    fn add_checkpoint(&mut self, bytes: Vec<u8>) -> Result<(), AuditError> {
        self.store
            .write(vec![(
                audit::checkpoint(self.checkpoints),
                Some(bytes.clone()),
            )])
            .map_err(store_err)?;
        self.checkpoints += 1;
        self.last_checkpoint = Some(bytes);
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<Vec<u8>>, AuditError> {
        let mut out = Vec::new();
        self.store
            .scan_all(&audit::CHECKPOINTS, |_, v| {
                out.push(v);
                Ok(())
            })
            .map_err(store_err)?;
        Ok(out)
    }
}

impl Policies {
    /// Appends a decision taken for a remote request to the audit log; signs a checkpoint when
    /// the last one is more than a second old.
    pub fn record(
        &self,
        peer: &str,
        kind: &str,
        dataset: &str,
        decision: &str,
        detail: &str,
    ) -> Result<u64, PolicyError> {
        let record = AuditRecord {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            peer: peer.into(),
            kind: kind.into(),
            dataset: dataset.into(),
            decision: decision.into(),
            detail: detail.into(),
        };
        let bytes = serde_json::to_vec(&record)?;
        let mut audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        let index = audit.log.append(&bytes)?;
        if audit
            .last_checkpoint
            .is_none_or(|t| t.elapsed().as_secs() >= 1)
        {
            self.checkpoint_locked(&mut audit)?;
        }
        Ok(index)
    }

    /// [`Self::record`] from async code: on a blocking thread, since the append is a synced
    /// write that waits for the disk; a failure is logged, the request it audits goes on.
    pub async fn audit(
        self: &Arc<Self>,
        peer: &PeerId,
        kind: &'static str,
        dataset: &str,
        decision: &'static str,
        detail: String,
    ) {
        let (policies, peer, dataset) = (self.clone(), peer.to_string(), dataset.to_owned());
        let recorded = tokio::task::spawn_blocking(move || {
            policies.record(&peer, kind, &dataset, decision, &detail)
        })
        .await;
        match recorded {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, kind, "auditing a decision failed"),
            Err(e) => tracing::error!(error = %e, kind, "auditing a decision failed"),
        }
    }

    fn checkpoint_locked(&self, audit: &mut Audit) -> Result<(), PolicyError> {
        if audit.log.len() == audit.checkpointed_size && audit.last_checkpoint.is_some() {
            return Ok(());
        }
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        audit
            .log
            .checkpoint(&self.peer_id.to_string(), &time, &self.key)?;
        audit.checkpointed_size = audit.log.len();
        audit.last_checkpoint = Some(Instant::now());
        Ok(())
    }

    /// Signs a checkpoint now if entries were added since the last one (on shutdown, and from
    /// the network task's timer).
    pub fn checkpoint(&self) -> Result<(), PolicyError> {
        let mut audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        if audit.log.len() == audit.checkpointed_size {
            return Ok(());
        }
        self.checkpoint_locked(&mut audit)
    }

    /// The latest signed checkpoint of this node's log, with what a witness needs to cosign
    /// it: the size it cosigned last (0 for none) and the consistency proof from there.
    /// `None` when the witness has already cosigned the latest checkpoint.
    pub fn cosign_request(&self, witness: &PeerId) -> Result<Option<CosignRequest>, PolicyError> {
        let audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        let Some(bytes) = audit.log.store().last_checkpoint().map(<[u8]>::to_vec) else {
            return Ok(None);
        };
        let checkpoint: Signed<Checkpoint> = Signed::from_bytes(&bytes, MAX_ENVELOPE_BYTES)?;
        let size = checkpoint.payload().size;
        let from = self.witnessed_size(witness)?;
        if from >= size {
            return Ok(None);
        }
        let proof = if from == 0 {
            Vec::new()
        } else {
            audit.log.consistency_proof(from, size)?
        };
        Ok(Some(CosignRequest {
            checkpoint: bytes,
            from,
            proof,
        }))
    }

    fn witnessed_size(&self, witness: &PeerId) -> Result<u64, PolicyError> {
        Ok(self
            .store
            .get_bytes(&audit::witnessed(&witness.to_string()))?
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// As a witness: cosigns `peer`'s checkpoint after checking that it is consistent with the
    /// last one of that peer this node cosigned (a rewritten or forked log is refused).
    pub fn witness(
        &self,
        peer: &PeerId,
        checkpoint: &[u8],
        from: u64,
        proof: &[[u8; 32]],
    ) -> Result<Signed<Cosignature>, PolicyError> {
        let checkpoint: Signed<Checkpoint> = Signed::from_bytes(checkpoint, MAX_ENVELOPE_BYTES)?;
        if checkpoint.signer() != *peer {
            return Err(PolicyError::Invalid(
                "the checkpoint is not the asking peer's".into(),
            ));
        }
        let key = audit::cosigned_for(&peer.to_string());
        let previous = match self.store.get_bytes(&key)? {
            Some(b) => Some(Signed::<Checkpoint>::from_bytes(&b, MAX_ENVELOPE_BYTES)?),
            None => None,
        };
        if let Some(prev) = &previous
            && prev.payload().size != from
        {
            return Err(PolicyError::Invalid(format!(
                "this witness last cosigned size {}, not {from}",
                prev.payload().size
            )));
        }
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let cosignature = allmende_policy::audit::cosign(
            &checkpoint,
            previous.as_ref().map(|p| (p, proof)),
            &time,
            &self.key,
        )?;
        self.store.write(vec![(key, Some(checkpoint.to_bytes()))])?;
        Ok(cosignature)
    }

    /// Keeps a witness's cosignature of this node's latest checkpoint.
    pub fn keep_cosignature(&self, witness: &PeerId, bytes: &[u8]) -> Result<(), PolicyError> {
        let cosignature: Signed<Cosignature> = Signed::from_bytes(bytes, MAX_ENVELOPE_BYTES)?;
        if cosignature.signer() != *witness {
            return Err(PolicyError::Invalid(
                "the cosignature is not the witness's".into(),
            ));
        }
        // A cosignature is for one of the latest checkpoints; older ones are not looked for.
        let recent = self.store.scan_back(&audit::CHECKPOINTS, COSIGNABLE)?;
        let signed = recent
            .iter()
            .filter_map(|(_, b)| Signed::<Checkpoint>::from_bytes(b, MAX_ENVELOPE_BYTES).ok())
            .find(|c| allmende_policy::audit::verify_cosignature(&cosignature, c))
            .ok_or_else(|| {
                PolicyError::Invalid(
                    "the cosignature is for none of this log's latest checkpoints".into(),
                )
            })?;
        let size = signed.payload().size;
        let witness = witness.to_string();
        self.store.write(vec![
            (
                audit::cosignature(&witness, size),
                Some(cosignature.to_bytes()),
            ),
            (
                audit::witnessed(&witness),
                Some(size.to_be_bytes().to_vec()),
            ),
        ])?;
        Ok(())
    }

    /// Number of cosignatures of this node's checkpoints held.
    pub fn cosignature_count(&self) -> Result<usize, PolicyError> {
        Ok(self.store.count(&audit::COSIGNATURES)?)
    }

    /// The log's size and root.
    pub fn audit_head(&self) -> (u64, String) {
        let audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        (audit.log.len(), hex::encode(audit.log.root()))
    }

    /// Up to `limit` audited decisions from index `from` on, with their indexes.
    pub fn audit_entries(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, AuditRecord)>, PolicyError> {
        let mut out = Vec::new();
        for (k, v) in self
            .store
            .scan(&audit::ENTRIES, Some(&audit::entry(from)), limit)?
        {
            let corrupt = |message: String| StoreError::Corrupt {
                key: String::from_utf8_lossy(k.as_bytes()).into_owned(),
                message,
            };
            let index = audit::ENTRIES
                .rest(&k)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| corrupt("not an index".into()))?;
            let record = serde_json::from_slice(&v).map_err(|e| corrupt(e.to_string()))?;
            out.push((index, record));
        }
        Ok(out)
    }

    /// Recomputes the log and checks every checkpoint.
    pub fn verify(&self) -> Result<VerifyReport, PolicyError> {
        let audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        Ok(verify_log(audit.log.store(), &self.peer_id)?)
    }
}

/// Verifies the audit log of a data dir without the node running (read from a RocksDB opened
/// read-only), so that a tampered node process cannot vouch for itself.
pub fn verify_offline(store: Arc<Store>, peer: &PeerId) -> Result<VerifyReport, PolicyError> {
    let log_store = RocksLogStore::open(store)?;
    Ok(verify_log(&log_store, peer)?)
}
