//! Usage policies in the node: signed offers attached to datasets, agreements on both sides,
//! revocations, and the tamper-evident audit log of decisions taken for remote requests, all in
//! RocksDB.
//!
//! Keys: `policy/<dataset id>` → the current signed policy (COSE); `agreement/<hex id>` → an
//! [`AgreementRecord`]; `revocation/<hex target>/<hex hash>` → a signed revocation;
//! `audit/entry/<index:020>`, `audit/leaf/<index:020>`, `audit/checkpoint/<n:020>` → the Merkle
//! log ([`RocksLogStore`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use allmende_policy::agreement::{self, Agreement, Revocation, VerifiedAgreement};
use allmende_policy::audit::{
    AuditError, AuditLog, Checkpoint, Cosignature, LogStore, VerifyReport, verify_log,
};
use allmende_policy::sign::{self, SignedPolicy};
use allmende_policy::values::XsdDateTime;
use allmende_policy::{Policy, PolicyId, PolicyKind};
use allmende_protocol::{MAX_ENVELOPE_BYTES, PeerId, Signed, SigningKey};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::store::{Store, StoreError};

/// Errors of policy operations.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy does not parse or breaks the profile.
    #[error("invalid policy: {0}")]
    Invalid(String),
    /// Nothing found.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// The policy target naming a dataset.
pub fn dataset_target(id: &str) -> String {
    format!("urn:allmende:dataset:{id}")
}

fn now_xsd() -> XsdDateTime {
    XsdDateTime::from_utc(chrono::Utc::now())
}

/// An agreement as stored by either side.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AgreementRecord {
    /// The provider-signed agreement envelope.
    pub bytes: ByteBuf,
    /// `provider` or `consumer`: this node's side.
    pub role: String,
    /// The dataset it covers.
    pub dataset: String,
    /// The other side.
    pub counterpart: String,
    /// When it was concluded, RFC 3339.
    pub concluded: String,
}

/// A [`LogStore`] in RocksDB.
pub struct RocksLogStore {
    store: Arc<Store>,
    len: u64,
    checkpoints: u64,
}

fn key(kind: &str, n: u64) -> Vec<u8> {
    format!("audit/{kind}/{n:020}").into_bytes()
}

fn store_err(e: StoreError) -> AuditError {
    AuditError::Store(e.to_string())
}

impl RocksLogStore {
    /// Opens the log kept in `store`.
    pub fn open(store: Arc<Store>) -> Result<Self, StoreError> {
        let len = store
            .scan(b"audit/leaf/", b"audit/leaf/", usize::MAX)?
            .len() as u64;
        let checkpoints = store
            .scan(b"audit/checkpoint/", b"audit/checkpoint/", usize::MAX)?
            .len() as u64;
        Ok(Self {
            store,
            len,
            checkpoints,
        })
    }
}

impl LogStore for RocksLogStore {
    fn len(&self) -> u64 {
        self.len
    }

    fn append(&mut self, entry: &[u8], leaf: &[u8; 32]) -> Result<(), AuditError> {
        self.store
            .write_raw(&[
                (key("entry", self.len), Some(entry.to_vec())),
                (key("leaf", self.len), Some(leaf.to_vec())),
            ])
            .map_err(store_err)?;
        self.len += 1;
        Ok(())
    }

    fn entry(&self, index: u64) -> Result<Vec<u8>, AuditError> {
        self.store
            .get_raw(&key("entry", index))
            .map_err(store_err)?
            .ok_or_else(|| AuditError::Store(format!("entry {index} is missing")))
    }

    fn leaf(&self, index: u64) -> Result<[u8; 32], AuditError> {
        let bytes = self
            .store
            .get_raw(&key("leaf", index))
            .map_err(store_err)?
            .ok_or_else(|| AuditError::Store(format!("leaf {index} is missing")))?;
        bytes
            .try_into()
            .map_err(|_| AuditError::Store(format!("leaf {index} is not 32 bytes")))
    }

    fn add_checkpoint(&mut self, bytes: Vec<u8>) -> Result<(), AuditError> {
        self.store
            .write_raw(&[(key("checkpoint", self.checkpoints), Some(bytes))])
            .map_err(store_err)?;
        self.checkpoints += 1;
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<Vec<u8>>, AuditError> {
        Ok(self
            .store
            .scan(b"audit/checkpoint/", b"audit/checkpoint/", usize::MAX)
            .map_err(store_err)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }
}

/// What a witness needs to cosign this node's latest checkpoint.
#[derive(Clone, Debug)]
pub struct CosignRequest {
    /// The signed checkpoint.
    pub checkpoint: Vec<u8>,
    /// The size of the checkpoint the witness cosigned last (0 for none).
    pub from: u64,
    /// The consistency proof from `from` to the checkpoint's size.
    pub proof: Vec<[u8; 32]>,
}

/// One audited decision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When, RFC 3339.
    pub time: String,
    /// The remote peer that asked.
    pub peer: String,
    /// What was asked, e.g. `negotiate` or `query`.
    pub kind: String,
    /// The dataset.
    pub dataset: String,
    /// `permit`, `deny`, …
    pub decision: String,
    /// The deciding rules or the reason.
    pub detail: String,
}

struct Audit {
    log: AuditLog<RocksLogStore>,
    last_checkpoint: Option<Instant>,
    checkpointed_size: u64,
}

/// The node's policies, agreements, revocations and audit log.
pub struct Policies {
    store: Arc<Store>,
    key: SigningKey,
    peer_id: PeerId,
    audit: Mutex<Audit>,
    /// Policies opened so far, by dataset, with the stored bytes they were opened from, so
    /// that a policy's signature is verified once, not on every request.
    opened: Mutex<HashMap<String, (Vec<u8>, SignedPolicy)>>,
}

/// Opened policies kept at most.
const OPENED_KEPT: usize = 1024;

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Policies")
    }
}

fn decode_agreement(key: &[u8], bytes: &[u8]) -> Result<AgreementRecord, StoreError> {
    ciborium::from_reader(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

fn policy_key(dataset: &str) -> Vec<u8> {
    format!("policy/{dataset}").into_bytes()
}

impl Policies {
    /// Opens the policies kept in `store`; `key` is the node's signing key.
    pub fn open(store: Arc<Store>, key: SigningKey) -> Result<Self, PolicyError> {
        let log = AuditLog::open(RocksLogStore::open(store.clone())?)?;
        let size = log.len();
        Ok(Self {
            peer_id: allmende_protocol::peer_id_of(&key.verifying_key()),
            store,
            key,
            opened: Mutex::new(HashMap::new()),
            audit: Mutex::new(Audit {
                log,
                last_checkpoint: None,
                checkpointed_size: size,
            }),
        })
    }

    /// The signed policy of a dataset.
    pub fn get(&self, dataset: &str) -> Result<Option<SignedPolicy>, PolicyError> {
        let Some(bytes) = self.store.get_raw(&policy_key(dataset))? else {
            return Ok(None);
        };
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((held, policy)) = opened.get(dataset)
            && *held == bytes
        {
            return Ok(Some(policy.clone()));
        }
        let policy =
            sign::open_policy(&bytes, MAX_ENVELOPE_BYTES).map_err(|e| StoreError::Corrupt {
                key: format!("policy/{dataset}"),
                message: e.to_string(),
            })?;
        if opened.len() >= OPENED_KEPT {
            opened.clear();
        }
        opened.insert(dataset.to_owned(), (bytes, policy.clone()));
        Ok(Some(policy))
    }

    /// Attaches a policy (JSON-LD) to a dataset: sets the target, issuer, issued, expiry (one
    /// year unless given), version and the previous version's id, signs it and stores it.
    pub fn attach(&self, dataset: &str, json: &str) -> Result<SignedPolicy, PolicyError> {
        let target = dataset_target(dataset);
        let did = allmende_protocol::did_key_of(&self.key.verifying_key());
        let mut value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| PolicyError::Invalid(format!("not JSON: {e}")))?;
        let object = value
            .as_object_mut()
            .ok_or_else(|| PolicyError::Invalid("a policy is one JSON-LD object".into()))?;
        match object.get("target") {
            Some(serde_json::Value::String(t)) if *t != target => {
                return Err(PolicyError::Invalid(format!(
                    "the policy's target is `{t}`, but this dataset is `{target}` (or leave the target out)"
                )));
            }
            Some(serde_json::Value::String(_)) => {}
            Some(_) => return Err(PolicyError::Invalid("`target` must be a string".into())),
            None => {
                object.insert("target".into(), target.clone().into());
            }
        }
        if object.get("@type").and_then(|t| t.as_str()) == Some("Offer")
            && !object.contains_key("assigner")
        {
            object.insert("assigner".into(), did.clone().into());
        }
        let mut policy: Policy = allmende_policy::parse::jsonld::from_value(&value)
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        if policy.kind != PolicyKind::Offer && policy.kind != PolicyKind::Set {
            return Err(PolicyError::Invalid(
                "a dataset's policy is an `Offer` or a `Set`".into(),
            ));
        }
        let now = chrono::Utc::now();
        policy.issuer = Some(did);
        policy.issued = Some(XsdDateTime::from_utc(now));
        if policy.expires.is_none() {
            policy.expires = Some(XsdDateTime::from_utc(now + chrono::Duration::days(365)));
        }
        let previous = self.get(dataset)?;
        policy.version = Some(
            previous
                .as_ref()
                .and_then(|p| p.payload().version)
                .unwrap_or(0)
                + 1,
        );
        policy.previous = previous
            .as_ref()
            .map(sign::policy_id)
            .transpose()
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        let signed = sign::sign_policy(&policy, &self.key)
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        self.store
            .write_raw(&[(policy_key(dataset), Some(signed.to_bytes()))])?;
        Ok(signed)
    }

    /// Removes a dataset's policy (when the dataset is deleted).
    pub fn detach(&self, dataset: &str) -> Result<(), PolicyError> {
        Ok(self.store.write_raw(&[(policy_key(dataset), None)])?)
    }

    /// As the provider: countersigns a consumer's signed request for the offer on `dataset`,
    /// stores the agreement and audits the decision.
    pub fn conclude(
        &self,
        consumer: PeerId,
        dataset: &str,
        request: &[u8],
    ) -> Result<Signed<Agreement>, PolicyError> {
        let result = (|| {
            let offer = self.get(dataset)?.ok_or_else(|| {
                PolicyError::NotFound(format!("dataset `{dataset}` has no policy"))
            })?;
            let request: Signed<agreement::ContractRequest> =
                Signed::from_bytes(request, MAX_ENVELOPE_BYTES)
                    .map_err(|e| PolicyError::Invalid(e.to_string()))?;
            if request.signer() != consumer {
                return Err(PolicyError::Invalid(
                    "the request is not signed by the asking peer".into(),
                ));
            }
            let uid = format!(
                "urn:allmende:agreement:{}",
                hex::encode(&request.hash()[..16])
            );
            let signed = agreement::countersign(&offer, &request, &uid, &now_xsd(), &self.key)
                .map_err(|e| PolicyError::Invalid(e.to_string()))?;
            self.keep_agreement(&signed, "provider", dataset, &consumer.to_string())?;
            Ok(signed)
        })();
        let (decision, detail) = match &result {
            Ok(a) => ("permit", format!("agreement {}", hex::encode(a.hash()))),
            Err(e) => ("deny", e.to_string()),
        };
        self.record(
            &consumer.to_string(),
            "negotiate",
            dataset,
            decision,
            &detail,
        )?;
        result
    }

    /// As the consumer: the signed request for an offer.
    pub fn request_for(
        &self,
        offer: &SignedPolicy,
    ) -> Result<Signed<agreement::ContractRequest>, PolicyError> {
        let did = allmende_protocol::did_key_of(&self.key.verifying_key());
        agreement::request_agreement(offer, &did, &now_xsd(), &self.key)
            .map_err(|e| PolicyError::Invalid(e.to_string()))
    }

    /// As the consumer: verifies and stores an agreement received for `offer`.
    pub fn accept(
        &self,
        provider: PeerId,
        dataset: &str,
        offer: &SignedPolicy,
        bytes: &[u8],
    ) -> Result<VerifiedAgreement, PolicyError> {
        let verified = agreement::verify_agreement(bytes, offer)
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        if verified.provider() != provider || verified.consumer() != self.peer_id {
            return Err(PolicyError::Invalid(
                "the agreement names other parties".into(),
            ));
        }
        self.keep_agreement(
            &verified.agreement,
            "consumer",
            dataset,
            &provider.to_string(),
        )?;
        Ok(verified)
    }

    fn keep_agreement(
        &self,
        signed: &Signed<Agreement>,
        role: &str,
        dataset: &str,
        counterpart: &str,
    ) -> Result<(), PolicyError> {
        let record = AgreementRecord {
            bytes: ByteBuf::from(signed.to_bytes()),
            role: role.into(),
            dataset: dataset.into(),
            counterpart: counterpart.into(),
            concluded: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let mut bytes = Vec::new();
        ciborium::into_writer(&record, &mut bytes)
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        let key = format!("agreement/{}", hex::encode(signed.hash())).into_bytes();
        Ok(self.store.write_raw(&[(key, Some(bytes))])?)
    }

    /// All agreements this node is party to, by id (hex).
    pub fn agreements(&self) -> Result<Vec<(String, AgreementRecord)>, PolicyError> {
        let mut out = Vec::new();
        for (k, v) in self.store.scan(b"agreement/", b"agreement/", usize::MAX)? {
            out.push((
                String::from_utf8_lossy(&k["agreement/".len()..]).into_owned(),
                decode_agreement(&k, &v)?,
            ));
        }
        Ok(out)
    }

    /// The agreement with this id (hex), if this node is party to it.
    pub fn agreement(&self, id: &str) -> Result<Option<AgreementRecord>, PolicyError> {
        let key = format!("agreement/{id}").into_bytes();
        match self.store.get_raw(&key)? {
            Some(v) => Ok(Some(decode_agreement(&key, &v)?)),
            None => Ok(None),
        }
    }

    /// Signs a revocation of one of this node's agreements (by hex id) and stores it; the caller
    /// gossips the returned bytes.
    pub fn revoke(
        &self,
        agreement_id: &str,
        reason: &str,
    ) -> Result<Signed<Revocation>, PolicyError> {
        let record = self
            .agreements()?
            .into_iter()
            .find(|(id, _)| id == agreement_id)
            .ok_or_else(|| PolicyError::NotFound(format!("no agreement `{agreement_id}`")))?
            .1;
        let agreement: Signed<Agreement> = Signed::from_bytes(&record.bytes, MAX_ENVELOPE_BYTES)
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        let id = PolicyId::of(&agreement.payload().policy)
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        let statement = agreement::revoke(&id, reason, &now_xsd(), &self.key)
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        self.keep_revocation(&statement)?;
        Ok(statement)
    }

    /// Stores a revocation received from a peer (its signature is checked on decoding; whose
    /// authority it carries is checked by the evaluator).
    pub fn keep_revocation(&self, statement: &Signed<Revocation>) -> Result<(), PolicyError> {
        let key = format!(
            "revocation/{}/{}",
            hex::encode(statement.payload().target),
            hex::encode(statement.hash())
        );
        Ok(self
            .store
            .write_raw(&[(key.into_bytes(), Some(statement.to_bytes()))])?)
    }

    /// Every stored revocation.
    pub fn revocations(&self) -> Result<Vec<Signed<Revocation>>, PolicyError> {
        let mut out = Vec::new();
        for (_, v) in self
            .store
            .scan(b"revocation/", b"revocation/", usize::MAX)?
        {
            if let Ok(s) = Signed::from_bytes(&v, MAX_ENVELOPE_BYTES) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Past use under a policy (queries answered), for `count` and `elapsedTime` constraints.
    pub fn usage(&self, id: &PolicyId) -> Result<allmende_policy::Usage, PolicyError> {
        let key = format!("usage/{}", id.to_hex()).into_bytes();
        Ok(match self.store.get_raw(&key)? {
            Some(bytes) => {
                let (count, first): (u64, i64) =
                    ciborium::from_reader(&bytes[..]).map_err(|e| StoreError::Corrupt {
                        key: String::from_utf8_lossy(&key).into_owned(),
                        message: e.to_string(),
                    })?;
                allmende_policy::Usage {
                    count,
                    first_use: chrono::DateTime::from_timestamp(first, 0),
                }
            }
            None => allmende_policy::Usage::default(),
        })
    }

    /// Counts one more use under a policy.
    pub fn count_use(&self, id: &PolicyId) -> Result<(), PolicyError> {
        let _guard = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        let usage = self.usage(id)?;
        let first = usage
            .first_use
            .map_or_else(|| chrono::Utc::now().timestamp(), |t| t.timestamp());
        let mut bytes = Vec::new();
        ciborium::into_writer(&(usage.count + 1, first), &mut bytes)
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        Ok(self
            .store
            .write_raw(&[(format!("usage/{}", id.to_hex()).into_bytes(), Some(bytes))])?)
    }

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
        let bytes = serde_json::to_vec(&record).map_err(|e| PolicyError::Invalid(e.to_string()))?;
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
        let Some(bytes) = audit.log.store().checkpoints()?.pop() else {
            return Ok(None);
        };
        let checkpoint: Signed<Checkpoint> = Signed::from_bytes(&bytes, MAX_ENVELOPE_BYTES)
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
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
        let key = format!("audit/witnessed/{witness}").into_bytes();
        Ok(self
            .store
            .get_raw(&key)?
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
        let checkpoint: Signed<Checkpoint> = Signed::from_bytes(checkpoint, MAX_ENVELOPE_BYTES)
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        if checkpoint.signer() != *peer {
            return Err(PolicyError::Invalid(
                "the checkpoint is not the asking peer's".into(),
            ));
        }
        let key = format!("witness/{peer}").into_bytes();
        let previous = match self.store.get_raw(&key)? {
            Some(b) => Some(
                Signed::<Checkpoint>::from_bytes(&b, MAX_ENVELOPE_BYTES)
                    .map_err(|e| PolicyError::Invalid(e.to_string()))?,
            ),
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
        )
        .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        self.store
            .write_raw(&[(key, Some(checkpoint.to_bytes()))])?;
        Ok(cosignature)
    }

    /// Keeps a witness's cosignature of this node's latest checkpoint.
    pub fn keep_cosignature(&self, witness: &PeerId, bytes: &[u8]) -> Result<(), PolicyError> {
        let cosignature: Signed<Cosignature> = Signed::from_bytes(bytes, MAX_ENVELOPE_BYTES)
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        if cosignature.signer() != *witness {
            return Err(PolicyError::Invalid(
                "the cosignature is not the witness's".into(),
            ));
        }
        let checkpoints = {
            let audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
            audit.log.store().checkpoints()?
        };
        let signed = checkpoints
            .iter()
            .rev()
            .filter_map(|b| Signed::<Checkpoint>::from_bytes(b, MAX_ENVELOPE_BYTES).ok())
            .find(|c| allmende_policy::audit::verify_cosignature(&cosignature, c))
            .ok_or_else(|| {
                PolicyError::Invalid("the cosignature is for no checkpoint of this log".into())
            })?;
        let size = signed.payload().size;
        self.store.write_raw(&[
            (
                format!("audit/cosignature/{witness}/{size:020}").into_bytes(),
                Some(cosignature.to_bytes()),
            ),
            (
                format!("audit/witnessed/{witness}").into_bytes(),
                Some(size.to_be_bytes().to_vec()),
            ),
        ])?;
        Ok(())
    }

    /// Number of cosignatures of this node's checkpoints held.
    pub fn cosignature_count(&self) -> Result<usize, PolicyError> {
        Ok(self
            .store
            .scan(b"audit/cosignature/", b"audit/cosignature/", usize::MAX)?
            .len())
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
        let start = key("entry", from);
        let mut out = Vec::new();
        for (k, v) in self.store.scan(b"audit/entry/", &start, limit)? {
            let corrupt = |message: String| StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                message,
            };
            let index = std::str::from_utf8(&k["audit/entry/".len()..])
                .ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> (tempfile::TempDir, Arc<Store>, Policies) {
        policies_with(5)
    }

    const OFFER: &str = r#"{
      "@context": "http://www.w3.org/ns/odrl.jsonld",
      "@type": "Offer",
      "uid": "urn:allmende:policy:traffic",
      "permission": [{ "action": "use" }]
    }"#;

    #[test]
    fn attaches_versions_and_concludes_agreements() {
        let (_d, _s, provider) = policies();
        let first = provider.attach("ds1", OFFER).unwrap();
        assert_eq!(first.payload().version, Some(1));
        assert_eq!(
            first.payload().target.as_deref(),
            Some("urn:allmende:dataset:ds1")
        );
        let second = provider.attach("ds1", OFFER).unwrap();
        assert_eq!(second.payload().version, Some(2));
        assert_eq!(
            second.payload().previous,
            Some(sign::policy_id(&first).unwrap())
        );

        let (_d2, _s2, consumer) = policies_with(6);
        let request = consumer.request_for(&second).unwrap();
        let agreement = provider
            .conclude(consumer.peer_id, "ds1", &request.to_bytes())
            .unwrap();
        consumer
            .accept(provider.peer_id, "ds1", &second, &agreement.to_bytes())
            .unwrap();
        assert_eq!(provider.agreements().unwrap().len(), 1);
        assert_eq!(consumer.agreements().unwrap()[0].1.role, "consumer");
        let id = consumer.agreements().unwrap()[0].0.clone();
        let revocation = consumer.revoke(&id, "no longer needed").unwrap();
        provider.keep_revocation(&revocation).unwrap();
        assert_eq!(provider.revocations().unwrap().len(), 1);
        // A request signed by someone else than the asking peer is refused, and audited.
        assert!(
            provider
                .conclude(PeerId::random(), "ds1", &request.to_bytes())
                .is_err()
        );
        assert_eq!(provider.audit_head().0, 2);
        assert!(provider.verify().unwrap().is_intact());
    }

    fn policies_with(n: u8) -> (tempfile::TempDir, Arc<Store>, Policies) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), true).unwrap());
        let p = Policies::open(store.clone(), SigningKey::from_bytes(&[n; 32])).unwrap();
        (dir, store, p)
    }

    #[test]
    fn refuses_policies_for_other_targets_and_outside_the_profile() {
        let (_d, _s, p) = policies();
        let other = OFFER.replace(
            "\"@type\": \"Offer\",",
            "\"@type\": \"Offer\", \"target\": \"urn:x\",",
        );
        assert!(
            matches!(p.attach("ds1", &other), Err(PolicyError::Invalid(m)) if m.contains("target"))
        );
        let print = OFFER.replace("\"use\"", "\"print\"");
        assert!(
            matches!(p.attach("ds1", &print), Err(PolicyError::Invalid(m)) if m.contains("print"))
        );
    }

    #[test]
    fn witnesses_cosign_consistent_checkpoints_and_refuse_a_forked_log() {
        let (_d, _s, owner) = policies();
        let (_d2, _s2, witness) = policies_with(6);
        let (_d3, _s3, fork) = policies(); // the same key as `owner`, another history
        for i in 0..3 {
            owner
                .record("p", "query", "ds", "permit", &format!("#{i}"))
                .unwrap();
            fork.record("p", "query", "ds", "deny", &format!("#{i}"))
                .unwrap();
        }
        owner.checkpoint().unwrap();
        let CosignRequest {
            checkpoint: cp,
            from,
            proof,
        } = owner.cosign_request(&witness.peer_id).unwrap().unwrap();
        assert_eq!(from, 0);
        let cosig = witness.witness(&owner.peer_id, &cp, from, &proof).unwrap();
        owner
            .keep_cosignature(&witness.peer_id, &cosig.to_bytes())
            .unwrap();
        assert!(owner.cosign_request(&witness.peer_id).unwrap().is_none());
        assert_eq!(owner.cosignature_count().unwrap(), 1);

        std::thread::sleep(std::time::Duration::from_millis(1100));
        owner.record("p", "query", "ds", "permit", "#3").unwrap();
        owner.checkpoint().unwrap();
        let CosignRequest {
            checkpoint: cp,
            from,
            proof,
        } = owner.cosign_request(&witness.peer_id).unwrap().unwrap();
        assert_eq!(from, 3);
        let cosig = witness.witness(&owner.peer_id, &cp, from, &proof).unwrap();
        owner
            .keep_cosignature(&witness.peer_id, &cosig.to_bytes())
            .unwrap();

        // The fork (same key) shows another log of size 5: not consistent with size 4.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        fork.record("p", "query", "ds", "deny", "#3").unwrap();
        fork.record("p", "query", "ds", "deny", "#4").unwrap();
        fork.checkpoint().unwrap();
        let audit = fork.audit.lock().unwrap();
        let cp = audit.log.store().checkpoints().unwrap().pop().unwrap();
        let proof = audit.log.consistency_proof(4, 5).unwrap();
        drop(audit);
        assert!(witness.witness(&owner.peer_id, &cp, 4, &proof).is_err());
    }

    #[test]
    fn the_audit_log_detects_tampering_in_rocksdb() {
        let (_d, store, p) = policies();
        for i in 0..5 {
            p.record("peer", "query", "ds", "permit", &format!("#{i}"))
                .unwrap();
        }
        p.checkpoint().unwrap();
        assert!(p.verify().unwrap().is_intact());
        store
            .write_raw(&[(key("entry", 2), Some(b"{\"forged\":true}".to_vec()))])
            .unwrap();
        let report = verify_offline(store, &p.peer_id).unwrap();
        assert!(!report.is_intact());
    }
}
