//! Agreements on both sides, and revocations.

use allmende_policy::PolicyId;
use allmende_policy::agreement::{self, Agreement, Revocation, VerifiedAgreement};
use allmende_policy::sign::SignedPolicy;
use allmende_protocol::{MAX_ENVELOPE_BYTES, PeerId, Signed};
use allmende_store::keys::policy;
use allmende_store::{Store, StoreError};
use serde_bytes::ByteBuf;

use super::{AgreementRecord, Policies, PolicyError, dataset_target, now_xsd};

/// Why an agreement a member names cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AgreementRefused {
    /// This node concluded no such agreement with the member (as the provider).
    #[error("no agreement `{0}` with this member")]
    Unknown(String),
    /// The agreement is for another dataset.
    #[error("agreement `{id}` does not cover dataset `{dataset}`")]
    OtherDataset {
        /// The agreement's id (hex).
        id: String,
        /// The dataset asked for.
        dataset: String,
    },
    /// The stored agreement could not be read.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// An agreement as the decision uses it: its terms and the id revocations and use counts are
/// kept under (the id of its policy, as [`Policies::revoke`] signs it).
#[derive(Clone, Debug)]
pub struct UsableAgreement {
    /// The agreement, both signatures checked.
    pub signed: Signed<Agreement>,
    /// The id of its terms.
    pub id: PolicyId,
}

/// Every stored revocation, read page by page when the node starts.
pub(super) fn load_revocations(store: &Store) -> Result<Vec<Signed<Revocation>>, StoreError> {
    let mut out = Vec::new();
    store.scan_all(&policy::REVOCATIONS, |_, v| {
        if let Ok(s) = Signed::from_bytes(&v, MAX_ENVELOPE_BYTES) {
            out.push(s);
        }
        Ok(())
    })?;
    Ok(out)
}

impl Policies {
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
                Signed::from_bytes(request, MAX_ENVELOPE_BYTES)?;
            if request.signer() != consumer {
                return Err(PolicyError::Invalid(
                    "the request is not signed by the asking peer".into(),
                ));
            }
            let uid = format!(
                "urn:allmende:agreement:{}",
                hex::encode(&request.hash()[..16])
            );
            let signed = agreement::countersign(&offer, &request, &uid, &now_xsd(), &self.key)?;
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
        Ok(agreement::request_agreement(
            offer,
            &did,
            &now_xsd(),
            &self.key,
        )?)
    }

    /// As the consumer: verifies and stores an agreement received for `offer`.
    pub fn accept(
        &self,
        provider: PeerId,
        dataset: &str,
        offer: &SignedPolicy,
        bytes: &[u8],
    ) -> Result<VerifiedAgreement, PolicyError> {
        let verified = agreement::verify_agreement(bytes, offer)?;
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
        let key = policy::agreement(&hex::encode(signed.hash()));
        let bytes = Store::cbor(&key, &record)?;
        Ok(self.store.write(vec![(key, Some(bytes))])?)
    }

    /// All agreements this node is party to, by id (hex).
    pub fn agreements(&self) -> Result<Vec<(String, AgreementRecord)>, PolicyError> {
        let mut out = Vec::new();
        self.store.scan_all(&policy::AGREEMENTS, |k, v| {
            let id = policy::AGREEMENTS.rest(&k).unwrap_or_default().to_owned();
            let record = ciborium::from_reader(v.as_slice()).map_err(|e| StoreError::Corrupt {
                key: String::from_utf8_lossy(k.as_bytes()).into_owned(),
                message: e.to_string(),
            })?;
            out.push((id, record));
            Ok(())
        })?;
        Ok(out)
    }

    /// As the provider: the agreement `id` this node concluded with `consumer`, for the dataset
    /// with id `dataset_id`, both signatures checked.
    pub fn provider_agreement(
        &self,
        consumer: PeerId,
        dataset_id: &str,
        id: &[u8; 32],
    ) -> Result<UsableAgreement, AgreementRefused> {
        let hex_id = hex::encode(id);
        let unknown = || AgreementRefused::Unknown(hex_id.clone());
        let record = self.agreement(&hex_id)?.ok_or_else(unknown)?;
        if record.role != "provider" || record.counterpart != consumer.to_string() {
            return Err(unknown());
        }
        let signed: Signed<Agreement> =
            Signed::from_bytes(&record.bytes, MAX_ENVELOPE_BYTES).map_err(PolicyError::from)?;
        let request: Signed<agreement::ContractRequest> =
            Signed::from_bytes(&signed.payload().request, MAX_ENVELOPE_BYTES)
                .map_err(PolicyError::from)?;
        if signed.signer() != self.peer_id || request.signer() != consumer {
            return Err(unknown());
        }
        if signed.payload().policy.target.as_deref() != Some(dataset_target(dataset_id).as_str()) {
            return Err(AgreementRefused::OtherDataset {
                id: hex_id,
                dataset: dataset_id.to_owned(),
            });
        }
        let id = PolicyId::of(&signed.payload().policy).map_err(PolicyError::from)?;
        Ok(UsableAgreement { signed, id })
    }

    /// As the consumer: the id of the newest agreement this node holds with `provider` for the
    /// dataset with id `dataset_id` that neither side has revoked, if there is one.
    pub fn consumer_agreement(
        &self,
        provider: PeerId,
        dataset_id: &str,
    ) -> Result<Option<[u8; 32]>, PolicyError> {
        let target = dataset_target(dataset_id);
        let revocations = self.revocations();
        let mut best: Option<(String, [u8; 32])> = None;
        for (_, record) in self.agreements()? {
            if record.role != "consumer" || record.counterpart != provider.to_string() {
                continue;
            }
            let Ok(signed) = Signed::<Agreement>::from_bytes(&record.bytes, MAX_ENVELOPE_BYTES)
            else {
                continue;
            };
            let policy = &signed.payload().policy;
            if policy.target.as_deref() != Some(target.as_str()) {
                continue;
            }
            let id = PolicyId::of(policy)?;
            let authority = [self.peer_id, provider];
            let revoked = revocations
                .iter()
                .any(|r| r.payload().target == id.0 && authority.contains(&r.signer()));
            if !revoked && best.as_ref().is_none_or(|(at, _)| record.concluded > *at) {
                best = Some((record.concluded, signed.hash()));
            }
        }
        Ok(best.map(|(_, id)| id))
    }

    /// The agreement with this id (hex), if this node is party to it.
    pub fn agreement(&self, id: &str) -> Result<Option<AgreementRecord>, PolicyError> {
        Ok(self.store.get_cbor(&policy::agreement(id))?)
    }

    /// Signs a revocation of one of this node's agreements (by hex id) and stores it; the caller
    /// gossips the returned bytes.
    pub fn revoke(
        &self,
        agreement_id: &str,
        reason: &str,
    ) -> Result<Signed<Revocation>, PolicyError> {
        let record = self
            .agreement(agreement_id)?
            .ok_or_else(|| PolicyError::NotFound(format!("no agreement `{agreement_id}`")))?;
        let agreement: Signed<Agreement> = Signed::from_bytes(&record.bytes, MAX_ENVELOPE_BYTES)?;
        let id = PolicyId::of(&agreement.payload().policy)?;
        let statement = agreement::revoke(&id, reason, &now_xsd(), &self.key)?;
        self.keep_revocation(&statement)?;
        Ok(statement)
    }

    /// Stores a revocation received from a peer (its signature is checked on decoding; whose
    /// authority it carries is checked by the evaluator).
    pub fn keep_revocation(&self, statement: &Signed<Revocation>) -> Result<(), PolicyError> {
        let key = policy::revocation(&statement.payload().target, &statement.hash());
        let mut held = self.revocations.write().unwrap_or_else(|p| p.into_inner());
        if held.iter().any(|r| r.hash() == statement.hash()) {
            return Ok(());
        }
        self.store.write(vec![(key, Some(statement.to_bytes()))])?;
        let mut next = held.as_ref().clone();
        next.push(statement.clone());
        *held = std::sync::Arc::new(next);
        Ok(())
    }

    /// Every stored revocation (from memory; see [`Policies`]).
    pub fn revocations(&self) -> std::sync::Arc<Vec<Signed<Revocation>>> {
        self.revocations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
