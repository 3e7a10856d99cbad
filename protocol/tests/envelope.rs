//! Envelope and deterministic-CBOR rejection tests, each with its typed error.

mod common;

use allmende_protocol::cbor::{self, DecodeError};
use allmende_protocol::envelope::{CoseLabel, OpenError};
use allmende_protocol::{
    MAX_ENVELOPE_BYTES, PeerId, Signed, SigningKey, did_key_of, peer_id_of, verifying_key_of,
};
use ciborium::Value;
use coset::{
    CborSerializable, CoseSign1, CoseSign1Builder, Header, HeaderBuilder, ProtectedHeader,
    TaggedCborSerializable, iana,
};
use ed25519_dalek::{Signer, VerifyingKey};

type Msg = Vec<String>;

fn msg() -> Msg {
    vec!["hello".to_owned(), "allmende".to_owned()]
}

fn good() -> Vec<u8> {
    Signed::sign(&msg(), &common::key7()).unwrap().to_bytes()
}

fn open(bytes: &[u8]) -> Result<Signed<Msg>, OpenError> {
    Signed::<Msg>::from_bytes(bytes, MAX_ENVELOPE_BYTES)
}

fn kid(key: &SigningKey) -> Vec<u8> {
    peer_id_of(&key.verifying_key()).to_bytes()
}

/// Builds a correctly signed envelope from the given parts.
fn envelope(protected: Header, unprotected: Header, payload: Option<Vec<u8>>) -> Vec<u8> {
    let key = common::key7();
    let payload = payload.unwrap_or_else(|| cbor::to_vec(&msg()).unwrap());
    CoseSign1Builder::new()
        .protected(protected)
        .unprotected(unprotected)
        .payload(payload)
        .create_signature(&[], |tbs| key.sign(tbs).to_bytes().to_vec())
        .build()
        .to_tagged_vec()
        .unwrap()
}

fn base_header() -> HeaderBuilder {
    HeaderBuilder::new()
        .algorithm(iana::Algorithm::Ed25519)
        .key_id(kid(&common::key7()))
}

#[test]
fn round_trip_is_byte_exact() {
    let bytes = good();
    let signed = open(&bytes).unwrap();
    assert_eq!(signed.payload(), &msg());
    assert_eq!(signed.to_bytes(), bytes);
    assert_eq!(signed.as_bytes(), bytes.as_slice());
    assert_eq!(signed.signer(), peer_id_of(&common::key7().verifying_key()));
    assert_eq!(
        envelope(base_header().build(), Header::default(), None),
        bytes
    );
}

#[test]
fn oversize() {
    let bytes = good();
    assert_eq!(
        Signed::<Msg>::from_bytes(&bytes, bytes.len() - 1).unwrap_err(),
        OpenError::TooLarge {
            len: bytes.len(),
            max: bytes.len() - 1
        }
    );
    assert_eq!(
        cbor::from_slice::<Msg>(&cbor::to_vec(&msg()).unwrap(), 3).unwrap_err(),
        DecodeError::TooLarge { len: 16, max: 3 }
    );
}

#[test]
fn non_deterministic_cbor() {
    let cases = [
        ("a2616201616100", "unsorted map {\"b\": 1, \"a\": 0}"),
        ("a2616100616201", "control: sorted map"),
        ("1817", "23 in a one-byte argument"),
        ("190017", "23 in a two-byte argument"),
        ("3a00000000", "-1 in a four-byte argument"),
        ("9f0102ff", "indefinite-length array"),
        ("7f6161ff", "indefinite-length text"),
        ("bf6161f5ff", "indefinite-length map"),
        ("5f41aaff", "indefinite-length bytes"),
        ("98020102", "array length in a one-byte argument"),
        ("fa3fc00000", "1.5 as single precision"),
        ("fb3ff8000000000000", "1.5 as double precision"),
        (
            "c249010000000000000000",
            "bignum 2^64 (not folded), control",
        ),
        ("c24101", "bignum for 1"),
    ];
    for (hex, what) in cases {
        let bytes = hex::decode(hex).unwrap();
        let result = cbor::decode_value(&bytes, 100);
        if what.contains("control") {
            assert!(result.is_ok(), "{what}: {result:?}");
        } else {
            assert_eq!(result.unwrap_err(), DecodeError::NotDeterministic, "{what}");
        }
    }
}

#[test]
fn trailing_bytes() {
    assert_eq!(
        cbor::decode_value(&[0x01, 0x02, 0x03], 10).unwrap_err(),
        DecodeError::TrailingBytes { count: 2 }
    );
    let mut bytes = good();
    bytes.push(0x00);
    assert_eq!(
        open(&bytes).unwrap_err(),
        OpenError::Envelope(DecodeError::TrailingBytes { count: 1 })
    );
}

#[test]
fn truncated_envelope() {
    let bytes = good();
    assert!(matches!(
        open(&bytes[..bytes.len() - 1]).unwrap_err(),
        OpenError::Envelope(DecodeError::Syntax(_))
    ));
}

#[test]
fn non_deterministic_envelope() {
    // Re-encode the outer array header of the good envelope in a two-byte form: 0x98 0x04.
    let bytes = good();
    let mut long = vec![0xd2, 0x98, 0x04];
    long.extend_from_slice(&bytes[2..]);
    assert_eq!(
        open(&long).unwrap_err(),
        OpenError::Envelope(DecodeError::NotDeterministic)
    );
}

#[test]
fn missing_or_wrong_tag() {
    let bytes = good();
    assert!(matches!(
        open(&bytes[1..]).unwrap_err(),
        OpenError::Malformed(_)
    ));
    let mut tagged17 = bytes.clone();
    tagged17[0] = 0xd1;
    assert!(matches!(
        open(&tagged17).unwrap_err(),
        OpenError::Malformed(_)
    ));
    // A tagged three-element array.
    assert!(matches!(
        open(&hex::decode("d283404040").unwrap()).unwrap_err(),
        OpenError::Malformed(_)
    ));
}

#[test]
fn crit_header() {
    let bytes = envelope(
        base_header()
            .add_critical(iana::HeaderParameter::Alg)
            .build(),
        Header::default(),
        None,
    );
    assert_eq!(
        open(&bytes).unwrap_err(),
        OpenError::UnknownCritical {
            label: CoseLabel::Int(1)
        }
    );
    let bytes = envelope(
        base_header()
            .add_critical_label(coset::RegisteredLabelWithPrivate::Text("x".into()))
            .build(),
        Header::default(),
        None,
    );
    assert_eq!(
        open(&bytes).unwrap_err(),
        OpenError::UnknownCritical {
            label: CoseLabel::Text("x".into())
        }
    );
}

#[test]
fn unknown_protected_labels() {
    let bytes = envelope(
        base_header().value(99, Value::Null).build(),
        Header::default(),
        None,
    );
    assert_eq!(
        open(&bytes).unwrap_err(),
        OpenError::UnknownCritical {
            label: CoseLabel::Int(99)
        }
    );
    let bytes = envelope(
        base_header()
            .content_format(iana::CoapContentFormat::Cbor)
            .build(),
        Header::default(),
        None,
    );
    assert_eq!(
        open(&bytes).unwrap_err(),
        OpenError::UnknownCritical {
            label: CoseLabel::Int(3)
        }
    );
}

#[test]
fn wrong_alg() {
    let bytes = envelope(
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .key_id(kid(&common::key7()))
            .build(),
        Header::default(),
        None,
    );
    assert_eq!(
        open(&bytes).unwrap_err(),
        OpenError::UnsupportedAlgorithm {
            alg: CoseLabel::Int(-7)
        }
    );
    // EdDSA (-8) is not accepted either: the envelope names the curve.
    let bytes = envelope(
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::EdDSA)
            .key_id(kid(&common::key7()))
            .build(),
        Header::default(),
        None,
    );
    assert_eq!(
        open(&bytes).unwrap_err(),
        OpenError::UnsupportedAlgorithm {
            alg: CoseLabel::Int(-8)
        }
    );
    let bytes = envelope(
        HeaderBuilder::new().key_id(kid(&common::key7())).build(),
        Header::default(),
        None,
    );
    assert_eq!(open(&bytes).unwrap_err(), OpenError::MissingAlgorithm);
}

#[test]
fn unprotected_header_must_be_empty() {
    let bytes = envelope(
        base_header().build(),
        HeaderBuilder::new().key_id(b"x".to_vec()).build(),
        None,
    );
    assert_eq!(open(&bytes).unwrap_err(), OpenError::UnprotectedHeader);
}

#[test]
fn missing_kid() {
    let bytes = envelope(
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::Ed25519)
            .build(),
        Header::default(),
        None,
    );
    assert_eq!(open(&bytes).unwrap_err(), OpenError::MissingKid);
}

#[test]
fn flipped_signature_bit() {
    let mut bytes = good();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    assert_eq!(
        open(&bytes).unwrap_err(),
        OpenError::BadSignature {
            kid: peer_id_of(&common::key7().verifying_key())
        }
    );
}

#[test]
fn flipped_payload_bit() {
    let mut bytes = good();
    let pos = bytes.windows(5).position(|w| w == b"hello").unwrap();
    bytes[pos] ^= 0x01; // "iello"
    assert_eq!(
        open(&bytes).unwrap_err(),
        OpenError::BadSignature {
            kid: peer_id_of(&common::key7().verifying_key())
        }
    );
}

#[test]
fn kid_of_another_key() {
    let other = common::key(9);
    let bytes = envelope(
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::Ed25519)
            .key_id(kid(&other))
            .build(),
        Header::default(),
        None,
    );
    assert_eq!(
        open(&bytes).unwrap_err(),
        OpenError::BadSignature {
            kid: peer_id_of(&other.verifying_key())
        }
    );
}

#[test]
fn kid_not_an_ed25519_peer_id() {
    let mut sha256_peer = vec![0x12, 0x20];
    sha256_peer.extend_from_slice(&[0x42; 32]);
    assert!(PeerId::from_bytes(&sha256_peer).is_ok());
    // An identity multihash of a protobuf key of type 2 (secp256k1) with 33 bytes.
    let mut secp = vec![0x00, 0x25, 0x08, 0x02, 0x12, 0x21, 0x02];
    secp.extend_from_slice(&[0x11; 32]);
    // An identity multihash of an ed25519 protobuf key that is not a curve point
    // (y = 2 has no x on edwards25519).
    let mut not_a_point = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20, 0x02];
    not_a_point.extend_from_slice(&[0x00; 31]);
    let cases: [(&str, Vec<u8>); 4] = [
        ("garbage", b"not a peer id".to_vec()),
        ("sha256 peer id", sha256_peer),
        ("secp256k1 peer id", secp),
        ("invalid point", not_a_point),
    ];
    for (what, kid) in cases {
        let bytes = envelope(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::Ed25519)
                .key_id(kid)
                .build(),
            Header::default(),
            None,
        );
        assert!(
            matches!(open(&bytes).unwrap_err(), OpenError::InvalidKid { .. }),
            "{what}"
        );
    }
}

#[test]
fn non_canonical_protected_header() {
    // {4: kid, 1: -19}: right content, wrong order, correctly signed.
    let key = common::key7();
    let map = Value::Map(vec![
        (Value::Integer(4.into()), Value::Bytes(kid(&key))),
        (Value::Integer(1.into()), Value::Integer((-19).into())),
    ]);
    let mut raw = Vec::new();
    ciborium::into_writer(&map, &mut raw).unwrap();
    let header = Header::from_slice(&raw).unwrap();
    let mut sign1 = CoseSign1 {
        protected: ProtectedHeader {
            original_data: Some(raw),
            header,
        },
        unprotected: Header::default(),
        payload: Some(cbor::to_vec(&msg()).unwrap()),
        signature: Vec::new(),
    };
    sign1.signature = key.sign(&sign1.tbs_data(&[])).to_bytes().to_vec();
    let bytes = sign1.to_tagged_vec().unwrap();
    assert_eq!(open(&bytes).unwrap_err(), OpenError::NonCanonicalHeader);
}

#[test]
fn detached_payload() {
    let key = common::key7();
    let bytes = CoseSign1Builder::new()
        .protected(base_header().build())
        .create_detached_signature(b"x", &[], |tbs| key.sign(tbs).to_bytes().to_vec())
        .build()
        .to_tagged_vec()
        .unwrap();
    assert_eq!(open(&bytes).unwrap_err(), OpenError::DetachedPayload);
}

#[test]
fn bad_payload() {
    // Correctly signed, but the payload is an unsorted map.
    let bytes = envelope(
        base_header().build(),
        Header::default(),
        Some(hex::decode("a2616201616100").unwrap()),
    );
    assert_eq!(
        open(&bytes).unwrap_err(),
        OpenError::Payload(DecodeError::NotDeterministic)
    );
    // Correctly signed and deterministic, but not a list of strings.
    let bytes = envelope(base_header().build(), Header::default(), Some(vec![0x01]));
    assert!(matches!(
        open(&bytes).unwrap_err(),
        OpenError::Payload(DecodeError::Structure(_))
    ));
}

#[test]
fn did_key_vectors() {
    // RFC 8032 §7.1 test 1 public key; did:key as published by several independent
    // implementations.
    let pk: [u8; 32] =
        hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
            .unwrap()
            .try_into()
            .unwrap();
    let key = VerifyingKey::from_bytes(&pk).unwrap();
    assert_eq!(
        did_key_of(&key),
        "did:key:z6MktwupdmLXVVqTzCw4i46r4uGyosGXRnR3XjN4Zq7oMMsw"
    );
    // The RFC 8032 test 1 secret key derives that public key.
    let sk: [u8; 32] =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
    assert_eq!(SigningKey::from_bytes(&sk).verifying_key(), key);
    // The all-zero seed (W3C did:key spec example key).
    assert_eq!(
        did_key_of(&SigningKey::from_bytes(&[0; 32]).verifying_key()),
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
    );
}

#[test]
fn peer_id_structure() {
    let key = common::key7().verifying_key();
    let peer = peer_id_of(&key);
    let bytes = peer.to_bytes();
    // identity multihash (0x00), 36 bytes: protobuf {1: Ed25519 (1), 2: <32 bytes>}.
    assert_eq!(&bytes[..6], &[0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
    assert_eq!(&bytes[6..], key.as_bytes());
    assert!(peer.to_base58().starts_with("12D3KooW"));
    assert_eq!(verifying_key_of(&peer), Some(key));
    let mut sha = vec![0x12, 0x20];
    sha.extend_from_slice(&[0; 32]);
    assert_eq!(verifying_key_of(&PeerId::from_bytes(&sha).unwrap()), None);
}

#[test]
fn payload_size_is_bounded_by_max_len() {
    // A payload longer than the envelope limit cannot occur; a limit smaller than the payload
    // is caught on the envelope first.
    let big = vec!["x".repeat(1000)];
    let bytes = Signed::sign(&big, &common::key7()).unwrap().to_bytes();
    assert!(matches!(
        Signed::<Msg>::from_bytes(&bytes, 500).unwrap_err(),
        OpenError::TooLarge { .. }
    ));
    assert!(Signed::<Msg>::from_bytes(&bytes, bytes.len()).is_ok());
}

#[test]
fn signing_refuses_oversize_envelopes() {
    let huge = vec!["x".repeat(MAX_ENVELOPE_BYTES)];
    assert!(matches!(
        Signed::sign(&huge, &common::key7()).unwrap_err(),
        allmende_protocol::SignError::TooLarge {
            max: MAX_ENVELOPE_BYTES,
            ..
        }
    ));
}
