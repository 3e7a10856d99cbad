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

/// A minimal policy document with `uid` and the permission's `uid` as given, under `context`.
fn doc(context: serde_json::Value, uid: &str, rule_uid: &str) -> String {
    serde_json::json!({"@context": context, "@type": "Set", "uid": uid, "target": "urn:ds",
                       "permission": [{"uid": rule_uid, "action": "use"}]})
    .to_string()
}

#[test]
fn only_prefix_terms_expand_compact_iris() {
    const ODRL: &str = "http://www.w3.org/ns/odrl.jsonld";
    // `action` is an ODRL term but not a prefix (its IRI does not end in a gen-delim), so
    // `action:` is an IRI of its own; the fuzzer's `policy_cbor` crash of 7 December 2026.
    let p = jsonld::from_str(&doc(ODRL.into(), "action:", "action:x")).unwrap();
    assert_eq!(p.uid, "action:");
    assert_eq!(p.permissions[0].uid.as_deref(), Some("action:x"));
    assert_eq!(jsonld::from_str(&emit::to_string(&p)).unwrap(), p);
    // `odrl` is a prefix.
    let p = jsonld::from_str(&doc(ODRL.into(), "odrl:p", "urn:r")).unwrap();
    assert_eq!(p.uid, "http://www.w3.org/ns/odrl/2/p");
    // Inline: a plain string ending in `/` or an explicit `@prefix: true` is a prefix; a
    // string ending otherwise is not.
    let context = serde_json::json!([ODRL, {
        "ex": "https://e.example/ns/",
        "ey": {"@id": "https://e.example/y", "@prefix": true},
        "ez": "https://e.example/z",
    }]);
    let p = jsonld::from_str(&doc(context.clone(), "ex:a", "ey:b")).unwrap();
    assert_eq!(p.uid, "https://e.example/ns/a");
    assert_eq!(
        p.permissions[0].uid.as_deref(),
        Some("https://e.example/yb")
    );
    let p = jsonld::from_str(&doc(context, "ez:c", "urn:r")).unwrap();
    assert_eq!(p.uid, "ez:c");
}

#[test]
fn iris_the_emitted_context_would_misread_are_refused() {
    // An IRI with the scheme `dct` (a prefix of the emitted context) cannot be written out.
    let err = jsonld::from_str(&doc(
        "http://www.w3.org/ns/odrl.jsonld".into(),
        "urn:p",
        "dct:x",
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("`dct:x`"), "{err}");
    let mut p = allmende_policy::Policy::new(allmende_policy::PolicyKind::Set, "odrl:p");
    p.target = Some("urn:ds".into());
    let bytes = cbor::to_vec(&p).unwrap();
    let err = cbor::from_slice(&bytes, 1 << 20).unwrap_err().to_string();
    assert!(err.contains("`odrl:p`"), "{err}");
    // `scheme://…` is never a compact IRI.
    p.uid = "odrl://p".into();
    let bytes = cbor::to_vec(&p).unwrap();
    assert_eq!(cbor::from_slice(&bytes, 1 << 20).unwrap(), p);
}

#[test]
fn a_duration_beyond_chronos_range_keeps_its_nanoseconds() {
    use allmende_policy::values::XsdDuration;
    // 3 001 714 728 579 days: past what a chrono delta holds, where `as_delta` saturates; the
    // fuzzer's `policy_jsonld` crash of 7 December 2026 (the CBOR form gained 0.807 s).
    for d in [
        "P3001714728579D".parse::<XsdDuration>().unwrap(),
        XsdDuration::new(u64::MAX, 999_999_999),
        XsdDuration::new(259_348_152_549_225_600, 5),
    ] {
        let mut p = allmende_policy::Policy::new(allmende_policy::PolicyKind::Set, "urn:p");
        p.target = Some("urn:ds".into());
        p.permissions.push(allmende_policy::Permission {
            uid: None,
            action: allmende_policy::Action::Use,
            parties: Default::default(),
            constraints: vec![allmende_policy::Constraint::Atomic(
                allmende_policy::AtomicConstraint {
                    uid: None,
                    left: allmende_policy::LeftOperand::ElapsedTime,
                    operator: allmende_policy::Operator::Lteq,
                    right: allmende_policy::RightOperand::Duration(d),
                },
            )],
            duties: vec![],
        });
        let back = cbor::from_slice(&cbor::to_vec(&p).unwrap(), 1 << 20).unwrap();
        assert_eq!(back, p, "{d}");
        assert_eq!(jsonld::from_str(&emit::to_string(&p)).unwrap(), p, "{d}");
    }
}
