//! Signed envelopes: COSE_Sign1 (RFC 9052, tag 18) with Ed25519 over deterministic CBOR.
//!
//! An envelope is the tagged array `18([protected, unprotected, payload, signature])` where
//!
//! - `protected` is the byte string holding the deterministic CBOR map
//!   `{1: -19, 4: kid}`: `alg` = EdDSA/Ed25519 (-19), `kid` = the signer's libp2p
//!   [`PeerId`] bytes ([`PeerId::to_bytes`], an identity multihash of the protobuf-encoded
//!   Ed25519 public key), and nothing else;
//! - `unprotected` is the empty map;
//! - `payload` is the deterministic CBOR of the value ([`crate::cbor::to_vec`]), attached;
//! - `signature` is the 64-byte Ed25519 signature over the COSE `Sig_structure`
//!   `["Signature1", protected, h'' (external AAD), payload]`.
//!
//! [`Signed::from_bytes`] accepts exactly this shape and nothing looser:
//!
//! - the whole envelope must be deterministic CBOR without trailing bytes;
//! - any `crit` entry is rejected ([`OpenError::UnknownCritical`]): we implement no extension
//!   that would need one. Any protected label other than `alg` and `kid` is rejected the same
//!   way, because an unknown protected parameter is signed, so the signer meant it, and we cannot
//!   honour what we do not understand;
//! - the unprotected header must be empty, since anything in it would change the envelope's
//!   bytes (and so its [`hash`](Signed::hash)) without the signer's consent;
//! - the protected header's bytes must equal the canonical encoding of `{1: -19, 4: kid}`, and
//!   the kid must be the canonical bytes of an Ed25519 peer id.
//!
//! Together these make the encoding of an envelope a function of (payload, signer, signature),
//! and with Ed25519's deterministic signatures a function of (payload, key).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use ciborium::Value;
use coset::iana::EnumI64;
use coset::{
    AsCborValue, CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, Label,
    RegisteredLabelWithPrivate, TaggedCborSerializable, iana,
};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use libp2p_identity::PeerId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::cbor::{self, DecodeError, EncodeError};

/// The largest envelope, in bytes, that nodes accept.
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;

/// The CBOR tag of COSE_Sign1.
const COSE_SIGN1_TAG: u64 = 18;

/// A header label or algorithm identifier as it appeared on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CoseLabel {
    /// An integer label.
    Int(i64),
    /// A text label.
    Text(String),
}

impl std::fmt::Display for CoseLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoseLabel::Int(i) => write!(f, "{i}"),
            CoseLabel::Text(t) => write!(f, "{t:?}"),
        }
    }
}

impl<T: EnumI64 + coset::iana::WithPrivateRange> From<&RegisteredLabelWithPrivate<T>>
    for CoseLabel
{
    fn from(l: &RegisteredLabelWithPrivate<T>) -> Self {
        match l {
            RegisteredLabelWithPrivate::PrivateUse(i) => CoseLabel::Int(*i),
            RegisteredLabelWithPrivate::Assigned(a) => CoseLabel::Int(a.to_i64()),
            RegisteredLabelWithPrivate::Text(t) => CoseLabel::Text(t.clone()),
        }
    }
}

impl From<&Label> for CoseLabel {
    fn from(l: &Label) -> Self {
        match l {
            Label::Int(i) => CoseLabel::Int(*i),
            Label::Text(t) => CoseLabel::Text(t.clone()),
        }
    }
}

/// Why a value could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The value could not be encoded as deterministic CBOR.
    #[error("cannot encode payload: {0}")]
    Encode(#[from] EncodeError),
    /// The value's encoding does not decode back into the type.
    #[error("payload does not decode back into its type: {0}")]
    RoundTrip(DecodeError),
    /// The COSE structure could not be serialised.
    #[error("cannot serialise cose_sign1: {0}")]
    Cose(String),
    /// The envelope would be larger than [`MAX_ENVELOPE_BYTES`], so no node would accept it.
    #[error("envelope would be {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// The envelope's length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why bytes are not a valid signed envelope.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// The input is longer than the caller's limit; nothing was parsed.
    #[error("envelope is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// The length of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The envelope is not deterministic CBOR (or not CBOR at all).
    #[error("envelope is not valid deterministic cbor: {0}")]
    Envelope(DecodeError),
    /// The CBOR is not a tagged COSE_Sign1 structure.
    #[error("not a cose_sign1 structure: {0}")]
    Malformed(String),
    /// The protected header names a critical parameter, or carries a parameter we do not know.
    #[error("unknown critical or unsupported header parameter {label}")]
    UnknownCritical {
        /// The offending label.
        label: CoseLabel,
    },
    /// The protected header has no `alg`.
    #[error("protected header has no algorithm")]
    MissingAlgorithm,
    /// The algorithm is not Ed25519 (-19).
    #[error("unsupported signature algorithm {alg}")]
    UnsupportedAlgorithm {
        /// The algorithm found.
        alg: CoseLabel,
    },
    /// The unprotected header is not empty.
    #[error("unprotected header is not empty")]
    UnprotectedHeader,
    /// The protected header has no `kid`.
    #[error("protected header has no kid")]
    MissingKid,
    /// The kid is not the canonical bytes of a peer id with an inlined Ed25519 key.
    #[error("kid is not an ed25519 peer id: {reason}")]
    InvalidKid {
        /// What is wrong with it.
        reason: String,
    },
    /// The protected header is not the canonical encoding of `{1: -19, 4: kid}`.
    #[error("protected header is not in canonical form")]
    NonCanonicalHeader,
    /// The payload is detached (`nil`).
    #[error("payload is detached")]
    DetachedPayload,
    /// The signature does not verify under the kid's key.
    #[error("signature does not verify for signer {kid}")]
    BadSignature {
        /// The claimed signer.
        kid: PeerId,
    },
    /// The payload is not deterministic CBOR of the expected type.
    #[error("bad payload: {0}")]
    Payload(DecodeError),
}

/// A value of type `T` signed in a COSE_Sign1 envelope, together with its exact bytes.
#[derive(Clone, Debug)]
pub struct Signed<T> {
    payload: T,
    signer: PeerId,
    bytes: Vec<u8>,
}

impl<T: PartialEq> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl<T: Eq> Eq for Signed<T> {}

impl<T: Serialize + DeserializeOwned> Signed<T> {
    /// Signs `value` with `key`.
    ///
    /// Fails if the envelope would exceed [`MAX_ENVELOPE_BYTES`].
    ///
    /// The payload held by the result is `value` as decoded back from its own encoding, so it is
    /// exactly what a receiver will see.
    pub fn sign(value: &T, key: &SigningKey) -> Result<Signed<T>, SignError> {
        let payload_bytes = cbor::to_vec(value)?;
        let payload: T =
            cbor::from_slice(&payload_bytes, usize::MAX).map_err(SignError::RoundTrip)?;
        let signer = peer_id_of(&key.verifying_key());
        let sign1 = CoseSign1Builder::new()
            .protected(protected_header(&signer))
            .payload(payload_bytes)
            .create_signature(&[], |tbs| key.sign(tbs).to_bytes().to_vec())
            .build();
        let bytes = sign1
            .to_tagged_vec()
            .map_err(|e| SignError::Cose(e.to_string()))?;
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(SignError::TooLarge {
                len: bytes.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        Ok(Signed {
            payload,
            signer,
            bytes,
        })
    }

    /// Parses and verifies an envelope.
    ///
    /// Checks `bytes.len() <= max_len` before parsing; `max_len` also bounds the payload.
    /// See the [module docs](self) for what is accepted.
    pub fn from_bytes(bytes: &[u8], max_len: usize) -> Result<Signed<T>, OpenError> {
        if bytes.len() > max_len {
            return Err(OpenError::TooLarge {
                len: bytes.len(),
                max: max_len,
            });
        }
        let value = cbor::decode_value(bytes, max_len).map_err(OpenError::Envelope)?;
        let inner = match value {
            Value::Tag(COSE_SIGN1_TAG, inner) => *inner,
            Value::Tag(tag, _) => {
                return Err(OpenError::Malformed(format!("tag {tag} instead of 18")));
            }
            _ => return Err(OpenError::Malformed("missing tag 18".to_owned())),
        };
        let sign1 =
            CoseSign1::from_cbor_value(inner).map_err(|e| OpenError::Malformed(e.to_string()))?;

        let header = &sign1.protected.header;
        if let Some(label) = header.crit.first() {
            return Err(OpenError::UnknownCritical {
                label: label.into(),
            });
        }
        let unknown = [
            (
                header.content_type.is_some(),
                iana::HeaderParameter::ContentType,
            ),
            (!header.iv.is_empty(), iana::HeaderParameter::Iv),
            (
                !header.partial_iv.is_empty(),
                iana::HeaderParameter::PartialIv,
            ),
            (
                !header.counter_signatures.is_empty(),
                iana::HeaderParameter::CounterSignature,
            ),
        ];
        if let Some((_, param)) = unknown.iter().find(|(present, _)| *present) {
            return Err(OpenError::UnknownCritical {
                label: CoseLabel::Int(param.to_i64()),
            });
        }
        if let Some((label, _)) = header.rest.first() {
            return Err(OpenError::UnknownCritical {
                label: label.into(),
            });
        }
        match &header.alg {
            None => return Err(OpenError::MissingAlgorithm),
            Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::Ed25519)) => {}
            Some(other) => {
                return Err(OpenError::UnsupportedAlgorithm { alg: other.into() });
            }
        }
        if !sign1.unprotected.is_empty() {
            return Err(OpenError::UnprotectedHeader);
        }
        if header.key_id.is_empty() {
            return Err(OpenError::MissingKid);
        }
        let (signer, key) = key_of_kid(&header.key_id)?;
        let canonical = protected_header(&signer)
            .to_vec()
            .map_err(|e| OpenError::Malformed(e.to_string()))?;
        if sign1.protected.original_data.as_deref() != Some(canonical.as_slice()) {
            return Err(OpenError::NonCanonicalHeader);
        }
        let Some(payload_bytes) = sign1.payload.as_deref() else {
            return Err(OpenError::DetachedPayload);
        };
        sign1
            .verify_signature(&[], |sig, tbs| {
                let sig = Signature::from_slice(sig)?;
                key.verify_strict(tbs, &sig)
            })
            .map_err(|_| OpenError::BadSignature { kid: signer })?;
        let payload = cbor::from_slice(payload_bytes, max_len).map_err(OpenError::Payload)?;
        Ok(Signed {
            payload,
            signer,
            bytes: bytes.to_vec(),
        })
    }
}

impl<T> Signed<T> {
    /// The signed value.
    pub fn payload(&self) -> &T {
        &self.payload
    }

    /// The signed value, consuming the envelope.
    pub fn into_payload(self) -> T {
        self.payload
    }

    /// The peer id of the key that signed the envelope (its `kid`).
    pub fn signer(&self) -> PeerId {
        self.signer
    }

    /// The envelope's exact bytes, as signed or as received.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    /// The envelope's exact bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 of the envelope's bytes: the identity of a signed message.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(&self.bytes).into()
    }
}

/// The libp2p peer id of an Ed25519 public key (identity multihash of its protobuf encoding).
pub fn peer_id_of(key: &VerifyingKey) -> PeerId {
    // Identity multihash (code 0, 36 bytes) of the protobuf `PublicKey { Type: Ed25519 (1),
    // Data: 32 bytes }`, built here since libp2p's own way decompresses the key once more.
    let mut bytes = Vec::with_capacity(38);
    bytes.extend_from_slice(&[0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
    bytes.extend_from_slice(key.as_bytes());
    PeerId::from_bytes(&bytes)
        .unwrap_or_else(|_| unreachable!("an identity multihash of 36 bytes is a peer id"))
}

/// The `did:key` of an Ed25519 public key: `did:key:z` + base58btc(0xed 0x01 ‖ key bytes).
pub fn did_key_of(key: &VerifyingKey) -> String {
    let mut bytes = Vec::with_capacity(34);
    bytes.extend_from_slice(&[0xed, 0x01]);
    bytes.extend_from_slice(key.as_bytes());
    format!("did:key:z{}", bs58::encode(bytes).into_string())
}

/// The Ed25519 verifying key inside a peer id, if it inlines one.
pub fn verifying_key_of(peer: &PeerId) -> Option<VerifyingKey> {
    key_of_kid(&peer.to_bytes()).ok().map(|(_, key)| key)
}

/// The canonical protected header for `signer`.
fn protected_header(signer: &PeerId) -> coset::Header {
    HeaderBuilder::new()
        .algorithm(iana::Algorithm::Ed25519)
        .key_id(signer.to_bytes())
        .build()
}

/// Kids parsed so far with their peer id and key (decompressing a key costs about as much as a
/// third of a signature check, and the same few signers sign almost everything a node reads).
static KIDS: OnceLock<Mutex<HashMap<Vec<u8>, KidKey>>> = OnceLock::new();

/// A signer's peer id and Ed25519 key.
type KidKey = (PeerId, VerifyingKey);

/// At most this many parsed kids are kept.
const KIDS_KEPT: usize = 4096;

/// Parses a kid into the peer id and its inlined Ed25519 key; the kid must be canonical.
fn key_of_kid(kid: &[u8]) -> Result<KidKey, OpenError> {
    let kids = || {
        let kids = KIDS.get_or_init(Mutex::default);
        kids.lock().unwrap_or_else(|p| p.into_inner())
    };
    if let Some(parsed) = kids().get(kid) {
        return Ok(*parsed);
    }
    let parsed = parse_kid(kid)?;
    let mut kids = kids();
    if kids.len() >= KIDS_KEPT {
        kids.clear();
    }
    kids.insert(kid.to_vec(), parsed);
    Ok(parsed)
}

fn parse_kid(kid: &[u8]) -> Result<KidKey, OpenError> {
    let invalid = |reason: &str| OpenError::InvalidKid {
        reason: reason.to_owned(),
    };
    let peer = PeerId::from_bytes(kid).map_err(|e| invalid(&e.to_string()))?;
    let multihash = peer.as_ref();
    if multihash.code() != 0 {
        return Err(invalid("peer id hashes its key instead of inlining it"));
    }
    let public = libp2p_identity::PublicKey::try_decode_protobuf(multihash.digest())
        .map_err(|e| invalid(&e.to_string()))?;
    let ed = public
        .try_into_ed25519()
        .map_err(|_| invalid("key is not ed25519"))?;
    let key = VerifyingKey::from_bytes(&ed.to_bytes()).map_err(|e| invalid(&e.to_string()))?;
    if peer_id_of(&key).to_bytes() != kid {
        return Err(invalid("kid is not in canonical form"));
    }
    Ok((peer, key))
}
