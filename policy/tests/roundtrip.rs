//! Lossless conversion between the two encodings (property tests).
mod common;

use allmende_policy::parse::{cbor, emit, jsonld};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn jsonld_round_trip(p in common::policy()) {
        let text = emit::to_string(&p);
        let back = jsonld::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back, &p);
    }

    #[test]
    fn cbor_round_trip_and_determinism(p in common::policy()) {
        let bytes = cbor::to_vec(&p).unwrap();
        let back = cbor::from_slice(&bytes, 1 << 20).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &p);
        prop_assert_eq!(cbor::to_vec(&back).unwrap(), bytes);
    }

    #[test]
    fn jsonld_to_cbor_to_jsonld(p in common::policy()) {
        let from_json = jsonld::from_str(&emit::to_string(&p)).unwrap();
        let from_cbor = cbor::from_slice(&cbor::to_vec(&from_json).unwrap(), 1 << 20).unwrap();
        prop_assert_eq!(emit::to_value(&from_cbor), emit::to_value(&p));
    }
}

#[test]
fn cbor_rejects_unknown_keys_and_non_canonical_forms() {
    use ciborium::Value;
    let p = allmende_policy::Policy::new(allmende_policy::PolicyKind::Set, "urn:p");
    let Value::Map(mut m) = cbor::to_value(&p) else {
        panic!()
    };
    m.push((Value::Integer(99.into()), Value::Null));
    let bytes = allmende_protocol::cbor::encode_value(Value::Map(m)).unwrap();
    let err = cbor::from_slice(&bytes, 1 << 20).unwrap_err().to_string();
    assert!(err.contains("99"), "{err}");
    // An empty permission array is not the canonical form (it is left out).
    let Value::Map(mut m) = cbor::to_value(&p) else {
        panic!()
    };
    m.push((Value::Integer(8.into()), Value::Array(vec![])));
    let bytes = allmende_protocol::cbor::encode_value(Value::Map(m)).unwrap();
    assert!(cbor::from_slice(&bytes, 1 << 20).is_err());
}
