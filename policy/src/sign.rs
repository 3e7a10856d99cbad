//! Signed policies: COSE_Sign1 over the CBOR form, and `eddsa-jcs-2022` Data Integrity proofs
//! over the JSON-LD form.
//!
//! A signed policy must carry `issuer` (the signer's `did:key`), `issued`, `expires` and
//! `version`; `previousVersion` is absent exactly for version 1. Its id is the SHA-256 of the
//! signed payload (the deterministic CBOR of the policy): [`PolicyId::of`].
use allmende_protocol::envelope::{OpenError, SignError, did_key_of, verifying_key_of};
use allmende_protocol::{EncodeError, Signed, SigningKey, VerifyingKey};
use ed25519_dalek::{Signature, Signer};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::ast::{Policy, PolicyId};
use crate::parse::context::{DATA_INTEGRITY_CONTEXT, ODRL_CONTEXT, profile_context};
use crate::parse::{ParseError, emit, jsonld};
use crate::validate::{ProfileError, validate};
use crate::values::XsdDateTime;

/// A policy in a COSE_Sign1 envelope.
pub type SignedPolicy = Signed<Policy>;

/// Why a policy cannot be signed, or a signed policy is not acceptable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicySignatureError {
    /// The policy breaks the profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// A metadata field a signed policy needs is missing.
    #[error("a signed policy needs `{0}`")]
    MissingMetadata(&'static str),
    /// `previousVersion` must be present exactly when `version` > 1.
    #[error("`previousVersion` must be given exactly when `version` is above 1")]
    PreviousVersion,
    /// The issuer is not the signing key's `did:key`.
    #[error("issuer `{issuer}` is not the signer `{signer}`")]
    IssuerMismatch {
        /// The policy's issuer.
        issuer: String,
        /// The signer's did:key.
        signer: String,
    },
    /// The COSE envelope could not be made.
    #[error("cannot sign: {0}")]
    Sign(#[from] SignError),
    /// The COSE envelope is invalid.
    #[error("invalid signed policy: {0}")]
    Open(#[from] OpenError),
    /// The policy could not be encoded.
    #[error("cannot encode policy: {0}")]
    Encode(#[from] EncodeError),
    /// The JSON-LD document is not a policy of the profile.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The Data Integrity proof is malformed or does not verify.
    #[error("invalid data integrity proof: {0}")]
    Proof(String),
}

/// Checks the signing metadata against the signer's did:key.
pub fn check_metadata(policy: &Policy, signer_did: &str) -> Result<(), PolicySignatureError> {
    validate(policy)?;
    let issuer = policy
        .issuer
        .as_deref()
        .ok_or(PolicySignatureError::MissingMetadata("issuer"))?;
    policy
        .issued
        .ok_or(PolicySignatureError::MissingMetadata("issued"))?;
    policy
        .expires
        .ok_or(PolicySignatureError::MissingMetadata("expires"))?;
    let version = policy
        .version
        .ok_or(PolicySignatureError::MissingMetadata("version"))?;
    if (version > 1) != policy.previous.is_some() {
        return Err(PolicySignatureError::PreviousVersion);
    }
    if issuer != signer_did {
        return Err(PolicySignatureError::IssuerMismatch {
            issuer: issuer.to_owned(),
            signer: signer_did.to_owned(),
        });
    }
    Ok(())
}

/// Signs a policy as COSE_Sign1 after checking the profile and the metadata.
pub fn sign_policy(
    policy: &Policy,
    key: &SigningKey,
) -> Result<SignedPolicy, PolicySignatureError> {
    check_metadata(policy, &did_key_of(&key.verifying_key()))?;
    Ok(Signed::sign(policy, key)?)
}

/// Opens and verifies a signed policy: signature, profile and metadata.
pub fn open_policy(bytes: &[u8], max_len: usize) -> Result<SignedPolicy, PolicySignatureError> {
    let signed: SignedPolicy = Signed::from_bytes(bytes, max_len)?;
    let key = verifying_key_of(&signed.signer())
        .ok_or_else(|| PolicySignatureError::Proof("signer has no ed25519 key".into()))?;
    check_metadata(signed.payload(), &did_key_of(&key))?;
    Ok(signed)
}

/// The id of a signed policy: SHA-256 of its payload.
pub fn policy_id(signed: &SignedPolicy) -> Result<PolicyId, EncodeError> {
    PolicyId::of(signed.payload())
}

/// Why a policy version does not supersede another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupersedeError {
    /// Different uids.
    #[error("uid `{new}` is not `{old}`")]
    Uid {
        /// The new uid.
        new: String,
        /// The old uid.
        old: String,
    },
    /// Different signers.
    #[error("the new version is signed by another key")]
    Signer,
    /// Not the next version number.
    #[error("version {new} does not follow {old}")]
    Version {
        /// The new version.
        new: u64,
        /// The old version.
        old: u64,
    },
    /// `previousVersion` is not the old version's id.
    #[error("`previousVersion` is not the id of the previous version")]
    Previous,
}

/// Checks that `new` is the next version of `old`: same uid and signer, version + 1, and
/// `previousVersion` = id of `old`.
pub fn check_supersedes(new: &SignedPolicy, old: &SignedPolicy) -> Result<(), SupersedeError> {
    let (n, o) = (new.payload(), old.payload());
    if n.uid != o.uid {
        return Err(SupersedeError::Uid {
            new: n.uid.clone(),
            old: o.uid.clone(),
        });
    }
    if new.signer() != old.signer() {
        return Err(SupersedeError::Signer);
    }
    let (nv, ov) = (n.version.unwrap_or(0), o.version.unwrap_or(0));
    if ov.checked_add(1) != Some(nv) {
        return Err(SupersedeError::Version { new: nv, old: ov });
    }
    if n.previous.is_none() || n.previous != policy_id(old).ok() {
        return Err(SupersedeError::Previous);
    }
    Ok(())
}

/// The `did:key` verification method of a key: `did:key:z…#z…`.
pub fn verification_method(key: &VerifyingKey) -> String {
    let did = did_key_of(key);
    let frag = did.trim_start_matches("did:key:").to_owned();
    format!("{did}#{frag}")
}

/// The key of a `did:key` Ed25519 verification method.
pub fn key_of_verification_method(vm: &str) -> Option<VerifyingKey> {
    let (did, frag) = vm.split_once('#').unwrap_or((vm, ""));
    let mb = did.strip_prefix("did:key:")?;
    if !frag.is_empty() && frag != mb {
        return None;
    }
    let bytes = bs58::decode(mb.strip_prefix('z')?).into_vec().ok()?;
    let raw = bytes.strip_prefix(&[0xed, 0x01])?;
    VerifyingKey::from_bytes(raw.try_into().ok()?).ok()
}

fn jcs_hash(v: &Value) -> Result<[u8; 32], PolicySignatureError> {
    let bytes = serde_json_canonicalizer::to_vec(v)
        .map_err(|e| PolicySignatureError::Proof(e.to_string()))?;
    Ok(Sha256::digest(bytes).into())
}

fn proof_input(doc: &Value, config: &Value) -> Result<Vec<u8>, PolicySignatureError> {
    let mut data = jcs_hash(config)?.to_vec();
    data.extend_from_slice(&jcs_hash(doc)?);
    Ok(data)
}

/// Signs the JSON-LD form with an `eddsa-jcs-2022` Data Integrity proof (`created` is given
/// by the caller). The document's `@context` gains the Data Integrity v2 context.
pub fn sign_jsonld(
    policy: &Policy,
    key: &SigningKey,
    created: &XsdDateTime,
) -> Result<Value, PolicySignatureError> {
    check_metadata(policy, &did_key_of(&key.verifying_key()))?;
    let Value::Object(mut map) = emit::to_value(policy) else {
        return Err(PolicySignatureError::Proof(
            "a policy is emitted as an object".into(),
        ));
    };
    let ctx = json!([ODRL_CONTEXT, profile_context(), DATA_INTEGRITY_CONTEXT]);
    map.insert("@context".into(), ctx.clone());
    let doc = Value::Object(map.clone());
    let options = json!({
        "type": "DataIntegrityProof",
        "cryptosuite": "eddsa-jcs-2022",
        "created": created.to_string(),
        "verificationMethod": verification_method(&key.verifying_key()),
        "proofPurpose": "assertionMethod",
    });
    let mut config = options.clone();
    if let Value::Object(c) = &mut config {
        c.insert("@context".into(), ctx);
    }
    let signature = key.sign(&proof_input(&doc, &config)?);
    let mut proof = options;
    if let Value::Object(p) = &mut proof {
        p.insert(
            "proofValue".into(),
            json!(format!(
                "z{}",
                bs58::encode(signature.to_bytes()).into_string()
            )),
        );
    }
    map.insert("proof".into(), proof);
    Ok(Value::Object(map))
}

/// Verifies an `eddsa-jcs-2022` proof on a JSON-LD policy and parses it; the issuer must be
/// the proof's did:key.
pub fn verify_jsonld(doc: &Value) -> Result<(Policy, VerifyingKey), PolicySignatureError> {
    let bad = |m: &str| PolicySignatureError::Proof(m.to_owned());
    let mut unsecured: Map<String, Value> = doc
        .as_object()
        .ok_or_else(|| bad("not a json object"))?
        .clone();
    let proof = unsecured.remove("proof").ok_or_else(|| bad("no `proof`"))?;
    let mut options = proof
        .as_object()
        .ok_or_else(|| bad("`proof` is not an object"))?
        .clone();
    let value = options
        .remove("proofValue")
        .ok_or_else(|| bad("no `proofValue`"))?;
    let field = |k: &str| options.get(k).and_then(Value::as_str);
    if field("type") != Some("DataIntegrityProof") || field("cryptosuite") != Some("eddsa-jcs-2022")
    {
        return Err(bad(
            "not a DataIntegrityProof with cryptosuite eddsa-jcs-2022",
        ));
    }
    if field("proofPurpose") != Some("assertionMethod") {
        return Err(bad("proofPurpose is not assertionMethod"));
    }
    let key = field("verificationMethod")
        .and_then(key_of_verification_method)
        .ok_or_else(|| bad("verificationMethod is not an ed25519 did:key"))?;
    let doc_ctx = unsecured.get("@context").cloned();
    if let Some(proof_ctx) = options.get("@context") {
        let as_vec = |v: &Value| match v {
            Value::Array(a) => a.clone(),
            o => vec![o.clone()],
        };
        let (p, d) = (
            as_vec(proof_ctx),
            doc_ctx.as_ref().map(as_vec).unwrap_or_default(),
        );
        if !d.starts_with(&p) {
            return Err(bad(
                "the proof's @context is not a prefix of the document's",
            ));
        }
        unsecured.insert("@context".into(), proof_ctx.clone());
    } else if let Some(c) = &doc_ctx {
        options.insert("@context".into(), c.clone());
    }
    let sig = value
        .as_str()
        .and_then(|s| s.strip_prefix('z'))
        .and_then(|s| bs58::decode(s).into_vec().ok())
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| bad("proofValue is not a base58btc multibase ed25519 signature"))?;
    let unsecured = Value::Object(unsecured);
    key.verify_strict(&proof_input(&unsecured, &Value::Object(options))?, &sig)
        .map_err(|_| bad("signature does not verify"))?;
    let policy = jsonld::from_value(&unsecured)?;
    check_metadata(&policy, &did_key_of(&key))?;
    Ok((policy, key))
}

/// The parts of a COSE_Sign1 envelope that batch verification needs: the to-be-signed
/// `Sig_structure` bytes, the signature and the signer's key.
pub fn batch_item<T>(signed: &Signed<T>) -> Option<(Vec<u8>, Signature, VerifyingKey)> {
    use coset::TaggedCborSerializable;
    let sign1 = coset::CoseSign1::from_tagged_slice(signed.as_bytes()).ok()?;
    let tbs = sign1.tbs_data(&[]);
    let sig = Signature::from_slice(&sign1.signature).ok()?;
    Some((tbs, sig, verifying_key_of(&signed.signer())?))
}

/// Verifies many Ed25519 signatures at once (faster per signature than one by one); items
/// come from [`batch_item`]. Fails if any does not verify.
pub fn verify_batch(
    items: &[(Vec<u8>, Signature, VerifyingKey)],
) -> Result<(), PolicySignatureError> {
    let msgs: Vec<&[u8]> = items.iter().map(|(m, _, _)| m.as_slice()).collect();
    let sigs: Vec<Signature> = items.iter().map(|(_, s, _)| *s).collect();
    let keys: Vec<VerifyingKey> = items.iter().map(|(_, _, k)| *k).collect();
    ed25519_dalek::verify_batch(&msgs, &sigs, &keys)
        .map_err(|_| PolicySignatureError::Proof("a signature in the batch does not verify".into()))
}
