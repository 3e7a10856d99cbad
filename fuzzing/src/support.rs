//! Helpers the targets share: a fixed signing key, an envelope around arbitrary payload bytes,
//! and the decode → encode → decode check.
use allmende_protocol::cbor;
use allmende_protocol::envelope::peer_id_of;
use allmende_protocol::{PeerId, SigningKey};
use coset::{CoseSign1Builder, HeaderBuilder, TaggedCborSerializable, iana};
use ed25519_dalek::Signer;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The key every generated envelope is signed with.
pub fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// The peer id of [`key`].
pub fn signer() -> PeerId {
    peer_id_of(&key().verifying_key())
}

/// A correctly signed COSE_Sign1 envelope (the canonical header of [`key`]) around `payload`,
/// whatever those bytes are: lets a target reach the payload decoding behind the signature check.
pub fn sign_raw(payload: &[u8]) -> Vec<u8> {
    let key = key();
    let header = HeaderBuilder::new()
        .algorithm(iana::Algorithm::Ed25519)
        .key_id(signer().to_bytes())
        .build();
    let sign1 = CoseSign1Builder::new()
        .protected(header)
        .payload(payload.to_vec())
        .create_signature(&[], |tbs| key.sign(tbs).to_bytes().to_vec())
        .build();
    // A byte string payload always encodes; an empty vector makes the envelope fail to open.
    sign1.to_tagged_vec().unwrap_or_default()
}

/// Decodes `data` as a `T`; when it decodes, checks that its encoding decodes again to a value
/// with the same encoding (the round trip is stable), and returns it.
pub fn round_trip<T: Serialize + DeserializeOwned>(data: &[u8], max_len: usize) -> Option<T> {
    let value: T = cbor::from_slice(data, max_len).ok()?;
    let bytes = cbor::to_vec(&value).expect("a decoded value encodes");
    let back: T =
        cbor::from_slice(&bytes, usize::MAX).expect("the encoding of a decoded value decodes");
    let again = cbor::to_vec(&back).expect("a decoded value encodes");
    assert_eq!(
        again, bytes,
        "decode → encode → decode → encode is not stable"
    );
    Some(value)
}

/// Whether a CBOR value has the same encoding as another (`Value` has no `Eq`: floats).
pub fn same_cbor(a: &ciborium::Value, b: &ciborium::Value) -> bool {
    match (cbor::encode_value(a.clone()), cbor::encode_value(b.clone())) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Splits off the first byte (a selector), if any.
pub fn split(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(s, rest)| (*s, rest))
}
