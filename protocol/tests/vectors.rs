//! Byte-exact test vectors.
//!
//! The `.hex` files in `tests/vectors/` are the reference encodings. Regenerate them (only after
//! a deliberate format change) with `UPDATE_VECTORS=1 cargo test -p allmende-protocol --test
//! vectors`, then review the diff.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use allmende_protocol::catalog::{CatalogEntry, SignedCatalogEntry};
use allmende_protocol::cbor;
use allmende_protocol::{MAX_ENVELOPE_BYTES, Signed, peer_id_of};
use serde::{Deserialize, Serialize};

/// The package's directory: as cargo gives it to the running test (a test built in another
/// checkout sharing the target dir would otherwise carry that checkout's path), else as compiled.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// Compares `bytes` with the named vector, or writes it when `UPDATE_VECTORS=1`.
fn check_vector(name: &str, bytes: &[u8]) {
    let path = manifest_dir()
        .join("tests/vectors")
        .join(format!("{name}.hex"));
    let hex = hex::encode(bytes);
    if std::env::var_os("UPDATE_VECTORS").is_some_and(|v| v == "1") {
        std::fs::write(&path, format!("{hex}\n")).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_VECTORS=1)", path.display()));
    assert_eq!(hex, expected.trim(), "vector {name} changed");
}

fn read_vector(name: &str) -> Vec<u8> {
    let path = manifest_dir()
        .join("tests/vectors")
        .join(format!("{name}.hex"));
    hex::decode(std::fs::read_to_string(path).unwrap().trim()).unwrap()
}

/// A struct whose declaration order is not the deterministic key order.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Unsorted {
    zeta: u32,
    a: bool,
    mid: Vec<i64>,
    #[serde(with = "allmende_protocol::codec::bytes32")]
    hash: [u8; 32],
    nested: BTreeMap<String, Option<String>>,
    ratio: f64,
    bb: String,
}

fn unsorted() -> Unsorted {
    Unsorted {
        zeta: 1_000_000,
        a: true,
        mid: vec![0, -1, 24, -25, 65_536],
        hash: [0xab; 32],
        nested: BTreeMap::from([
            ("long-key".to_owned(), None),
            ("k".to_owned(), Some("v".to_owned())),
        ]),
        ratio: 0.5,
        bb: "ümlaut".to_owned(),
    }
}

#[test]
fn map_with_keys_to_sort() {
    let bytes = cbor::to_vec(&unsorted()).unwrap();
    check_vector("cbor_unsorted_struct", &bytes);
    // Keys come out as: "a", "bb", "mid", "hash", "ratio", "zeta", "nested" (length first).
    let keys: Vec<String> = match cbor::decode_value(&bytes, 1024).unwrap() {
        ciborium::Value::Map(entries) => entries
            .into_iter()
            .map(|(k, _)| k.into_text().unwrap())
            .collect(),
        other => panic!("not a map: {other:?}"),
    };
    assert_eq!(keys, ["a", "bb", "mid", "hash", "zeta", "ratio", "nested"]);
    let back: Unsorted = cbor::from_slice(&bytes, 1024).unwrap();
    assert_eq!(back, unsorted());
    assert_eq!(cbor::to_vec(&back).unwrap(), bytes);
}

#[test]
fn integer_boundaries() {
    let ints: Vec<i64> = vec![
        0,
        23,
        24,
        255,
        256,
        65_535,
        65_536,
        u32::MAX as i64,
        u32::MAX as i64 + 1,
        i64::MAX,
        -1,
        -24,
        -25,
        -256,
        -257,
        i64::MIN,
    ];
    let bytes = cbor::to_vec(&ints).unwrap();
    check_vector("cbor_integers", &bytes);
    assert_eq!(
        hex::encode(&bytes),
        concat!(
            "90",
            "00",
            "17",
            "1818",
            "18ff",
            "190100",
            "19ffff",
            "1a00010000",
            "1affffffff",
            "1b0000000100000000",
            "1b7fffffffffffffff",
            "20",
            "37",
            "3818",
            "38ff",
            "390100",
            "3b7fffffffffffffff",
        )
    );
    assert_eq!(cbor::from_slice::<Vec<i64>>(&bytes, 1024).unwrap(), ints);
}

#[test]
fn catalog_entry_payload() {
    let bytes = cbor::to_vec(&common::entry1()).unwrap();
    check_vector("catalog_entry_payload", &bytes);
    let back: CatalogEntry = cbor::from_slice(&bytes, MAX_ENVELOPE_BYTES).unwrap();
    assert_eq!(back, common::entry1());
}

#[test]
fn signed_catalog_entry() {
    let key = common::key7();
    let signed = Signed::sign(&common::entry1(), &key).unwrap();
    check_vector("signed_catalog_entry", &signed.to_bytes());
    check_vector("signed_catalog_entry.sha256", &signed.hash());

    // Signing is deterministic.
    assert_eq!(
        Signed::sign(&common::entry1(), &key).unwrap().to_bytes(),
        signed.to_bytes()
    );

    let stored = read_vector("signed_catalog_entry");
    let opened = SignedCatalogEntry::from_bytes(&stored, MAX_ENVELOPE_BYTES).unwrap();
    assert_eq!(opened.payload(), &common::entry1());
    assert_eq!(opened.signer(), peer_id_of(&key.verifying_key()));
    assert_eq!(opened.to_bytes(), stored, "byte-exact re-encoding");
    assert_eq!(
        opened.hash().to_vec(),
        read_vector("signed_catalog_entry.sha256")
    );
    opened.verify_publisher().unwrap();
    opened.check_chain(None).unwrap();

    // The payload inside the envelope is the payload vector.
    let payload = read_vector("catalog_entry_payload");
    assert!(stored.windows(payload.len()).any(|w| w == payload));
}

#[test]
fn signed_catalog_entry_second() {
    let key = common::key7();
    let first =
        SignedCatalogEntry::from_bytes(&read_vector("signed_catalog_entry"), MAX_ENVELOPE_BYTES)
            .unwrap();
    let second = common::next(&first, &key);
    check_vector("signed_catalog_entry_2", &second.to_bytes());
    let opened =
        SignedCatalogEntry::from_bytes(&read_vector("signed_catalog_entry_2"), MAX_ENVELOPE_BYTES)
            .unwrap();
    assert_eq!(opened, second);
    opened.check_chain(Some(&first)).unwrap();
}

#[test]
fn envelope_structure() {
    // d2 = tag 18, 84 = array(4), 58 2c = bstr(44) protected header
    // {1: -19, 4: h'<38-byte peer id>'} = a2 01 32 04 58 26 <00 24 08 01 12 20 <key>>,
    // a0 = empty unprotected header.
    let stored = read_vector("signed_catalog_entry");
    let key = common::key7().verifying_key();
    let mut expected = vec![0xd2, 0x84, 0x58, 0x2c, 0xa2, 0x01, 0x32, 0x04, 0x58, 0x26];
    expected.extend_from_slice(&[0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
    expected.extend_from_slice(key.as_bytes());
    expected.push(0xa0); // empty unprotected header
    assert_eq!(&stored[..expected.len()], expected.as_slice());
    // Signature: bstr(64) at the end.
    assert_eq!(stored[stored.len() - 66..stored.len() - 64], [0x58, 0x40]);
}

#[test]
fn sub_plan_encoding_is_stable() {
    use allmende_protocol::plan::*;
    let plan = SubPlan {
        version: PLAN_VERSION,
        filter: Some(Expr::Binary {
            op: BinaryOp::GtEq,
            left: Box::new(Expr::Column("ts".into())),
            right: Box::new(Expr::Literal(Scalar::Timestamp {
                value: 1_767_225_600_000_000,
                unit: TimeUnit::Microsecond,
                timezone: Some("UTC".into()),
            })),
        }),
        output: Output::Aggregate {
            group_by: vec![Named {
                name: "day".into(),
                expr: Expr::Call {
                    function: "date_trunc".into(),
                    args: vec![
                        Expr::Literal(Scalar::Utf8("day".into())),
                        Expr::Column("ts".into()),
                    ],
                },
            }],
            aggregates: vec![AggregateCall {
                name: "vehicles".into(),
                function: "sum".into(),
                args: vec![Expr::Cast {
                    expr: Box::new(Expr::Column("n".into())),
                    to: DataType::Decimal128 {
                        precision: 20,
                        scale: 0,
                    },
                    safe: false,
                }],
                distinct: false,
                filter: None,
                order_by: vec![],
            }],
        },
    };
    plan.check().unwrap();
    let bytes = cbor::to_vec(&plan).unwrap();
    check_vector("sub_plan", &bytes);
    let back: SubPlan = cbor::from_slice(&read_vector("sub_plan"), 1 << 20).unwrap();
    assert_eq!(back, plan);
}
