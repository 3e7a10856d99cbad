//! Catalog chain checks.

mod common;

use allmende_protocol::catalog::{CatalogEntry, ChainError, EntryOp, SignedCatalogEntry};
use allmende_protocol::{MAX_ENVELOPE_BYTES, Signed, cbor, peer_id_of};
use ciborium::Value;

fn first() -> SignedCatalogEntry {
    Signed::sign(&common::entry1(), &common::key7()).unwrap()
}

fn resign(entry: CatalogEntry) -> SignedCatalogEntry {
    Signed::sign(&entry, &common::key7()).unwrap()
}

#[test]
fn chain_of_three() {
    let key = common::key7();
    let e1 = first();
    let e2 = common::next(&e1, &key);
    let e3 = common::next(&e2, &key);
    e1.check_chain(None).unwrap();
    e2.check_chain(Some(&e1)).unwrap();
    e3.check_chain(Some(&e2)).unwrap();
    assert_eq!(e3.payload().seq, 3);
    // Entries survive the wire.
    let e3b = SignedCatalogEntry::from_bytes(&e3.to_bytes(), MAX_ENVELOPE_BYTES).unwrap();
    e3b.check_chain(Some(&e2)).unwrap();
    assert_eq!(e3b.hash(), e3.hash());
}

#[test]
fn seq_gap() {
    let key = common::key7();
    let e1 = first();
    let e2 = common::next(&e1, &key);
    let mut skip = common::next(&e2, &key).payload().clone();
    skip.prev = Some(e1.hash());
    let skip = resign(skip);
    assert_eq!(
        skip.check_chain(Some(&e1)).unwrap_err(),
        ChainError::SeqGap {
            expected: 2,
            found: 3
        }
    );
    // Not starting at 1.
    assert_eq!(
        e2.check_chain(None).unwrap_err(),
        ChainError::SeqGap {
            expected: 1,
            found: 2
        }
    );
    // seq 0 never starts a chain.
    let mut zero = common::entry1();
    zero.seq = 0;
    assert_eq!(
        resign(zero).check_chain(None).unwrap_err(),
        ChainError::SeqGap {
            expected: 1,
            found: 0
        }
    );
}

#[test]
fn wrong_prev_hash() {
    let key = common::key7();
    let e1 = first();
    let mut e2 = common::next(&e1, &key).payload().clone();
    let mut wrong = e1.hash();
    wrong[0] ^= 1;
    e2.prev = Some(wrong);
    assert_eq!(
        resign(e2.clone()).check_chain(Some(&e1)).unwrap_err(),
        ChainError::PrevMismatch {
            expected: Some(e1.hash()),
            found: Some(wrong)
        }
    );
    e2.prev = None;
    assert_eq!(
        resign(e2).check_chain(Some(&e1)).unwrap_err(),
        ChainError::PrevMismatch {
            expected: Some(e1.hash()),
            found: None
        }
    );
    // The first entry must not have a prev.
    let mut e1b = common::entry1();
    e1b.prev = Some([0; 32]);
    assert_eq!(
        resign(e1b).check_chain(None).unwrap_err(),
        ChainError::PrevMismatch {
            expected: None,
            found: Some([0; 32])
        }
    );
}

#[test]
fn signer_is_not_publisher() {
    let mallory = common::key(9);
    let forged = Signed::sign(&common::entry1(), &mallory).unwrap();
    let expected = ChainError::SignerNotPublisher {
        signer: peer_id_of(&mallory.verifying_key()),
        publisher: peer_id_of(&common::key7().verifying_key()),
    };
    assert_eq!(forged.verify_publisher().unwrap_err(), expected);
    assert_eq!(forged.check_chain(None).unwrap_err(), expected);
    // A forged previous entry is caught too.
    let e2 = common::next(&forged, &common::key7());
    assert_eq!(e2.check_chain(Some(&forged)).unwrap_err(), expected);
}

#[test]
fn publisher_changed() {
    let e1 = first();
    let other = common::key(9);
    let mut e2 = common::next(&e1, &common::key7()).payload().clone();
    e2.publisher = peer_id_of(&other.verifying_key());
    let e2 = Signed::sign(&e2, &other).unwrap();
    assert_eq!(
        e2.check_chain(Some(&e1)).unwrap_err(),
        ChainError::PublisherChanged {
            expected: peer_id_of(&common::key7().verifying_key()),
            found: peer_id_of(&other.verifying_key()),
        }
    );
}

#[test]
fn seq_overflow() {
    let mut last = common::entry1();
    last.seq = u64::MAX;
    let last = resign(last);
    let mut after = common::entry1();
    after.seq = u64::MAX;
    after.prev = Some(last.hash());
    assert_eq!(
        resign(after).check_chain(Some(&last)).unwrap_err(),
        ChainError::SeqOverflow
    );
}

#[test]
fn wire_keys_are_stable() {
    let bytes = cbor::to_vec(&common::entry1()).unwrap();
    let Value::Map(entries) = cbor::decode_value(&bytes, MAX_ENVELOPE_BYTES).unwrap() else {
        panic!("not a map");
    };
    let get = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no key {name}"))
    };
    let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_text().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "op",
            "seq",
            "prev",
            "issued",
            "policy",
            "dataset",
            "publisher"
        ]
    );
    assert_eq!(get("op"), Value::Text("create".into()));
    assert_eq!(get("seq"), Value::Integer(1.into()));
    assert_eq!(get("prev"), Value::Null);
    assert_eq!(
        get("publisher"),
        Value::Bytes(peer_id_of(&common::key7().verifying_key()).to_bytes())
    );
    let Value::Map(policy) = get("policy") else {
        panic!("policy is not a map")
    };
    assert_eq!(
        policy[0],
        (Value::Text("id".into()), Value::Bytes(vec![0x11; 32]))
    );
    for (op, text) in [
        (EntryOp::Create, "create"),
        (EntryOp::Update, "update"),
        (EntryOp::Withdraw, "withdraw"),
    ] {
        assert_eq!(cbor::to_vec(&op).unwrap(), cbor::to_vec(text).unwrap());
    }
}

#[test]
fn malformed_binary_fields_are_rejected() {
    let bytes = cbor::to_vec(&common::entry1()).unwrap();
    let Value::Map(mut entries) = cbor::decode_value(&bytes, MAX_ENVELOPE_BYTES).unwrap() else {
        panic!("not a map");
    };
    let set = |entries: &mut Vec<(Value, Value)>, name: &str, v: Value| {
        for (k, old) in entries.iter_mut() {
            if k.as_text() == Some(name) {
                *old = v.clone();
            }
        }
    };
    let decode = |entries: &Vec<(Value, Value)>| {
        let bytes = cbor::encode_value(Value::Map(entries.clone())).unwrap();
        cbor::from_slice::<CatalogEntry>(&bytes, MAX_ENVELOPE_BYTES)
    };
    set(&mut entries, "prev", Value::Bytes(vec![0; 31]));
    assert!(matches!(
        decode(&entries),
        Err(cbor::DecodeError::Structure(_))
    ));
    set(
        &mut entries,
        "prev",
        Value::Array(vec![Value::Integer(0.into()); 32]),
    );
    assert!(matches!(
        decode(&entries),
        Err(cbor::DecodeError::Structure(_))
    ));
    set(&mut entries, "prev", Value::Bytes(vec![0; 32]));
    assert_eq!(decode(&entries).unwrap().prev, Some([0; 32]));
    set(&mut entries, "publisher", Value::Bytes(b"nope".to_vec()));
    assert!(matches!(
        decode(&entries),
        Err(cbor::DecodeError::Structure(_))
    ));
    set(
        &mut entries,
        "publisher",
        Value::Bytes(peer_id_of(&common::key(3).verifying_key()).to_bytes()),
    );
    set(&mut entries, "op", Value::Text("delete".into()));
    assert!(matches!(
        decode(&entries),
        Err(cbor::DecodeError::Structure(_))
    ));
}

#[test]
fn an_entry_names_its_columns_and_one_without_reads_as_before() {
    use allmende_protocol::CatalogColumn;
    use allmende_protocol::plan::DataType;
    let mut entry = common::entry1();
    entry.columns = vec![CatalogColumn {
        name: "anzahl".into(),
        data_type: DataType::Int64,
        nullable: true,
    }];
    let signed = resign(entry.clone());
    let back = SignedCatalogEntry::from_bytes(&signed.to_bytes(), MAX_ENVELOPE_BYTES).unwrap();
    assert_eq!(back.payload(), &entry);
    // No columns: no `columns` key at all, so the bytes (and hashes) of older entries hold.
    let without = first();
    let map: Value =
        ciborium::from_reader(cbor::to_vec(without.payload()).unwrap().as_slice()).unwrap();
    let keys: Vec<String> = map
        .as_map()
        .unwrap()
        .iter()
        .filter_map(|(k, _)| k.as_text().map(str::to_owned))
        .collect();
    assert!(!keys.contains(&"columns".to_owned()), "{keys:?}");
}
