//! Property tests: round trips, determinism, and no panics on arbitrary input.

mod common;

use std::collections::{BTreeMap, HashMap};

use allmende_protocol::catalog::{CatalogEntry, EntryOp, PolicyRef, SignedCatalogEntry};
use allmende_protocol::{MAX_ENVELOPE_BYTES, Signed, SigningKey, cbor, peer_id_of};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = EntryOp> {
    prop_oneof![
        Just(EntryOp::Create),
        Just(EntryOp::Update),
        Just(EntryOp::Withdraw)
    ]
}

prop_compose! {
    fn entry()(
        seed in any::<[u8; 32]>(),
        seq in 1u64..,
        prev in any::<[u8; 32]>(),
        op in op(),
        title in ".{0,40}",
        keywords in prop::collection::vec("[a-zäöü ]{0,12}", 0..5),
        version in any::<u64>(),
        policy in prop::option::of((any::<[u8; 32]>(), prop::option::of("[a-z:/.]{1,30}"))),
        issued in "[0-9T:Z-]{0,25}",
    ) -> (SigningKey, CatalogEntry) {
        let key = SigningKey::from_bytes(&seed);
        let mut dataset = common::dataset();
        dataset.title = title;
        dataset.keywords = keywords;
        dataset.version = version;
        let entry = CatalogEntry {
            publisher: peer_id_of(&key.verifying_key()),
            seq,
            prev: (seq > 1).then_some(prev),
            op,
            dataset,
            policy: policy.map(|(id, uri)| PolicyRef { id, uri }),
            issued,
            columns: vec![],
        };
        (key, entry)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn peer_ids_are_libp2ps_own(seed in any::<[u8; 32]>()) {
        let key = SigningKey::from_bytes(&seed).verifying_key();
        let libp2p = libp2p_identity::ed25519::PublicKey::try_from_bytes(key.as_bytes()).unwrap();
        let expected = libp2p_identity::PublicKey::from(libp2p).to_peer_id();
        prop_assert_eq!(peer_id_of(&key), expected);
    }

    #[test]
    fn signed_entries_round_trip((key, entry) in entry()) {
        let signed = Signed::sign(&entry, &key).unwrap();
        prop_assert_eq!(signed.payload(), &entry);
        let bytes = signed.to_bytes();
        let opened = SignedCatalogEntry::from_bytes(&bytes, MAX_ENVELOPE_BYTES).unwrap();
        prop_assert_eq!(opened.payload(), &entry);
        prop_assert_eq!(opened.to_bytes(), bytes);
        prop_assert_eq!(opened.hash(), signed.hash());
        prop_assert!(opened.verify_publisher().is_ok());
    }

    #[test]
    fn any_bit_flip_is_rejected((key, entry) in entry(), bit in any::<prop::sample::Index>()) {
        let bytes = Signed::sign(&entry, &key).unwrap().to_bytes();
        let mut flipped = bytes.clone();
        let i = bit.index(bytes.len() * 8);
        flipped[i / 8] ^= 1 << (i % 8);
        prop_assert!(SignedCatalogEntry::from_bytes(&flipped, MAX_ENVELOPE_BYTES).is_err());
    }

    #[test]
    fn maps_encode_the_same_in_any_order(m in prop::collection::hash_map(".{0,8}", any::<i64>(), 0..20)) {
        let from_hash = cbor::to_vec(&m).unwrap();
        let sorted: BTreeMap<_, _> = m.iter().collect();
        prop_assert_eq!(&cbor::to_vec(&sorted).unwrap(), &from_hash);
        let back: HashMap<String, i64> = cbor::from_slice(&from_hash, usize::MAX).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn decoded_values_re_encode_identically(v in prop::collection::vec((any::<i64>(), any::<f64>(), any::<Option<bool>>(), ".{0,5}"), 0..8)) {
        let bytes = cbor::to_vec(&v).unwrap();
        let value = cbor::decode_value(&bytes, usize::MAX).unwrap();
        prop_assert_eq!(cbor::encode_value(value).unwrap(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = SignedCatalogEntry::from_bytes(&bytes, MAX_ENVELOPE_BYTES);
        let _ = cbor::decode_value(&bytes, MAX_ENVELOPE_BYTES);
        // Behind a valid tag and array header, too.
        let mut tagged = vec![0xd2, 0x84];
        tagged.extend_from_slice(&bytes);
        let _ = SignedCatalogEntry::from_bytes(&tagged, MAX_ENVELOPE_BYTES);
    }
}
