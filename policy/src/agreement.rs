//! Agreements as data: a consumer's signed request for an offer, the provider's countersigned
//! agreement that embeds it, and signed revocations.
//!
//! The negotiation protocol and storage live in the node; everything here is pure.
use std::collections::HashMap;

use allmende_protocol::codec::bytes32;
use allmende_protocol::envelope::{MAX_ENVELOPE_BYTES, OpenError, SignError, did_key_of};
use allmende_protocol::{PeerId, Signed, SigningKey};
use serde::{Deserialize, Serialize};

use crate::ast::{Policy, PolicyId};
use crate::compile::PolicyEntry;
use crate::sign::{PolicySignatureError, SignedPolicy, check_metadata, policy_id};
use crate::values::XsdDateTime;
use crate::vocab::PolicyKind;

/// A consumer's request to enter an agreement on an offer (signed by the consumer node).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractRequest {
    /// The offer's policy id.
    #[serde(with = "bytes32")]
    pub offer: [u8; 32],
    /// The consumer organisation's IRI, the agreement's assignee.
    pub assignee: String,
    /// When the request was made (RFC 3339).
    pub issued: String,
}

/// A provider's agreement: the offer's terms as an `Agreement`, embedding the consumer's signed
/// request (signed by the provider node).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    /// The consumer's signed request, as its exact envelope bytes.
    #[serde(with = "serde_bytes_vec")]
    pub request: Vec<u8>,
    /// The agreed policy (type `Agreement`).
    pub policy: Policy,
}

/// A signed statement that a policy or agreement no longer applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked policy or agreement id.
    #[serde(with = "bytes32")]
    pub target: [u8; 32],
    /// Why (free text).
    pub reason: String,
    /// When it was issued (RFC 3339).
    pub issued: String,
}

/// Why an agreement cannot be made or verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgreementError {
    /// An envelope could not be signed.
    #[error("cannot sign: {0}")]
    Sign(#[from] SignError),
    /// An envelope is invalid.
    #[error("invalid envelope: {0}")]
    Open(#[from] OpenError),
    /// The offer or agreement policy is not acceptable.
    #[error(transparent)]
    Policy(#[from] PolicySignatureError),
    /// The offer is not an `Offer`.
    #[error("policy `{0}` is not an `Offer`")]
    NotAnOffer(String),
    /// The request is for another offer.
    #[error("the request is for another offer")]
    WrongOffer,
    /// The agreement is not signed by the offer's signer.
    #[error("the agreement is not signed by the offer's provider")]
    WrongProvider,
    /// The agreement's terms differ from the offer's.
    #[error("the agreement's terms differ from the offer's: {0}")]
    Terms(&'static str),
}

/// Signs a request for `offer` as the consumer `assignee`.
pub fn request_agreement(
    offer: &SignedPolicy,
    assignee: &str,
    issued: &XsdDateTime,
    key: &SigningKey,
) -> Result<Signed<ContractRequest>, AgreementError> {
    if offer.payload().kind != PolicyKind::Offer {
        return Err(AgreementError::NotAnOffer(offer.payload().uid.clone()));
    }
    let id = policy_id(offer).map_err(PolicySignatureError::from)?;
    Ok(Signed::sign(
        &ContractRequest {
            offer: id.0,
            assignee: assignee.to_owned(),
            issued: issued.to_string(),
        },
        key,
    )?)
}

/// The provider countersigns: the offer's terms become an `Agreement` with the requester as
/// assignee, a new `uid`, the provider as issuer, version 1.
pub fn countersign(
    offer: &SignedPolicy,
    request: &Signed<ContractRequest>,
    uid: &str,
    issued: &XsdDateTime,
    key: &SigningKey,
) -> Result<Signed<Agreement>, AgreementError> {
    let id = policy_id(offer).map_err(PolicySignatureError::from)?;
    if request.payload().offer != id.0 {
        return Err(AgreementError::WrongOffer);
    }
    if allmende_protocol::peer_id_of(&key.verifying_key()) != offer.signer() {
        return Err(AgreementError::WrongProvider);
    }
    let mut policy = offer.payload().clone();
    policy.kind = PolicyKind::Agreement;
    policy.uid = uid.to_owned();
    policy.assignee = Some(request.payload().assignee.clone());
    policy.issuer = Some(did_key_of(&key.verifying_key()));
    policy.issued = Some(*issued);
    policy.version = Some(1);
    policy.previous = None;
    check_metadata(&policy, &did_key_of(&key.verifying_key()))?;
    Ok(Signed::sign(
        &Agreement {
            request: request.to_bytes(),
            policy,
        },
        key,
    )?)
}

/// An agreement whose signatures and linkage to its offer were checked.
#[derive(Clone, Debug)]
pub struct VerifiedAgreement {
    /// The provider-signed agreement.
    pub agreement: Signed<Agreement>,
    /// The consumer-signed request inside it.
    pub request: Signed<ContractRequest>,
}

impl VerifiedAgreement {
    /// The agreement's id: SHA-256 of the provider's envelope.
    pub fn id(&self) -> PolicyId {
        PolicyId(self.agreement.hash())
    }
    /// The consumer node.
    pub fn consumer(&self) -> PeerId {
        self.request.signer()
    }
    /// The provider node.
    pub fn provider(&self) -> PeerId {
        self.agreement.signer()
    }
    /// The agreement as a policy to compile; either side may revoke it.
    pub fn entry(&self) -> PolicyEntry {
        PolicyEntry {
            id: self.id(),
            policy: self.agreement.payload().policy.clone(),
            authority: vec![self.provider(), self.consumer()],
        }
    }
}

/// Verifies an agreement's bytes against its offer: both signatures, the request's offer hash,
/// the provider, and that the terms are the offer's.
pub fn verify_agreement(
    bytes: &[u8],
    offer: &SignedPolicy,
) -> Result<VerifiedAgreement, AgreementError> {
    let agreement: Signed<Agreement> = Signed::from_bytes(bytes, MAX_ENVELOPE_BYTES)?;
    let request: Signed<ContractRequest> =
        Signed::from_bytes(&agreement.payload().request, MAX_ENVELOPE_BYTES)?;
    let id = policy_id(offer).map_err(PolicySignatureError::from)?;
    if request.payload().offer != id.0 {
        return Err(AgreementError::WrongOffer);
    }
    if agreement.signer() != offer.signer() {
        return Err(AgreementError::WrongProvider);
    }
    let (a, o) = (&agreement.payload().policy, offer.payload());
    let key = allmende_protocol::envelope::verifying_key_of(&agreement.signer())
        .ok_or(AgreementError::WrongProvider)?;
    check_metadata(a, &did_key_of(&key))?;
    if a.kind != PolicyKind::Agreement {
        return Err(AgreementError::Terms("type is not `Agreement`"));
    }
    if a.assignee.as_deref() != Some(request.payload().assignee.as_str()) {
        return Err(AgreementError::Terms("assignee is not the requester"));
    }
    if a.permissions != o.permissions
        || a.prohibitions != o.prohibitions
        || a.obligations != o.obligations
    {
        return Err(AgreementError::Terms("rules"));
    }
    if a.target != o.target
        || a.assigner != o.assigner
        || a.expires != o.expires
        || a.profile != o.profile
    {
        return Err(AgreementError::Terms("target, assigner, profile or expiry"));
    }
    Ok(VerifiedAgreement { agreement, request })
}

/// Signs a revocation of `target`.
pub fn revoke(
    target: &PolicyId,
    reason: &str,
    issued: &XsdDateTime,
    key: &SigningKey,
) -> Result<Signed<Revocation>, SignError> {
    Signed::sign(
        &Revocation {
            target: target.0,
            reason: reason.to_owned(),
            issued: issued.to_string(),
        },
        key,
    )
}

/// The signed revocations a node has received; [`crate::decide()`] skips a policy revoked by a
/// peer in its authority.
#[derive(Clone, Debug, Default)]
pub struct Revocations {
    by_target: HashMap<PolicyId, Vec<Signed<Revocation>>>,
}

impl Revocations {
    /// Adds a verified statement; false if the same statement was already there.
    pub fn insert(&mut self, statement: Signed<Revocation>) -> bool {
        let list = self
            .by_target
            .entry(PolicyId(statement.payload().target))
            .or_default();
        if list.iter().any(|s| s.as_bytes() == statement.as_bytes()) {
            return false;
        }
        list.push(statement);
        true
    }
    /// Whether a peer in `authority` revoked `id`.
    pub fn revokes(&self, id: &PolicyId, authority: &[PeerId]) -> bool {
        self.by_target
            .get(id)
            .is_some_and(|list| list.iter().any(|s| authority.contains(&s.signer())))
    }
    /// How many statements are held.
    pub fn len(&self) -> usize {
        self.by_target.values().map(Vec::len).sum()
    }
    /// Whether no statement is held.
    pub fn is_empty(&self) -> bool {
        self.by_target.is_empty()
    }
}

/// `Vec<u8>` as a CBOR byte string.
mod serde_bytes_vec {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    struct V;
    impl Visitor<'_> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_bytes(V)
    }
}
