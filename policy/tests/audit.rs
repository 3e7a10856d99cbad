//! The audit log: RFC 6962 proofs for every size, checkpoints, cosignatures, tampering.
use allmende_policy::audit::checkpoint::Checkpoint;
use allmende_policy::audit::{
    AuditLog, LogStore, MemoryStore, Tamper, cosign, leaf_hash, verify_consistency,
    verify_cosignature, verify_inclusion, verify_log,
};
use allmende_protocol::{SigningKey, peer_id_of};

fn log(n: u64) -> AuditLog<MemoryStore> {
    let mut log = AuditLog::open(MemoryStore::default()).unwrap();
    for i in 0..n {
        log.append(format!("entry {i}").as_bytes()).unwrap();
    }
    log
}

#[test]
fn known_roots() {
    // RFC 6962 empty root, and a one-leaf tree is its leaf hash.
    assert_eq!(
        hex::encode(log(0).root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(log(1).root(), leaf_hash(b"entry 0"));
    // Three leaves: node(node(l0, l1), l2).
    use allmende_policy::audit::node_hash;
    let l: Vec<_> = (0..3)
        .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
        .collect();
    assert_eq!(log(3).root(), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
}

#[test]
fn inclusion_and_consistency_for_all_small_sizes() {
    let log = log(40);
    for size in 1..=40 {
        let root = log.root_at(size).unwrap();
        for index in 0..size {
            let proof = log.inclusion_proof(index, size).unwrap();
            let leaf = leaf_hash(format!("entry {index}").as_bytes());
            verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
            assert!(verify_inclusion(&leaf_hash(b"x"), index, size, &proof, &root).is_err());
            if index + 1 < size {
                assert!(verify_inclusion(&leaf, index + 1, size, &proof, &root).is_err());
            }
        }
        for old in 0..=size {
            let proof = log.consistency_proof(old, size).unwrap();
            let old_root = log.root_at(old).unwrap();
            verify_consistency(old, size, &old_root, &root, &proof).unwrap();
            if old > 0 && old < size {
                assert!(verify_consistency(old, size, &leaf_hash(b"x"), &root, &proof).is_err());
            }
        }
    }
}

#[test]
fn checkpoints_cosignatures_and_tampering() {
    let (node, witness) = (
        SigningKey::from_bytes(&[1; 32]),
        SigningKey::from_bytes(&[2; 32]),
    );
    let me = peer_id_of(&node.verifying_key());
    let mut log = log(5);
    let cp1 = log
        .checkpoint("did:key:node", "2025-06-01T00:00:00Z", &node)
        .unwrap();
    for i in 5..12 {
        log.append(format!("entry {i}").as_bytes()).unwrap();
    }
    let cp2 = log
        .checkpoint("did:key:node", "2025-06-01T00:00:01Z", &node)
        .unwrap();
    let proof = log.consistency_proof(5, 12).unwrap();
    let cosig = cosign(&cp2, Some((&cp1, &proof)), "2025-06-01T00:00:02Z", &witness).unwrap();
    assert!(verify_cosignature(&cosig, &cp2));
    assert!(!verify_cosignature(&cosig, &cp1));
    // A witness refuses a checkpoint that does not extend what it saw.
    let forged = allmende_protocol::Signed::sign(
        &Checkpoint {
            origin: "did:key:node".into(),
            size: 12,
            root: [7; 32],
            time: "t".into(),
        },
        &node,
    )
    .unwrap();
    assert!(cosign(&forged, Some((&cp1, &proof)), "t", &witness).is_err());

    let report = verify_log(log.store(), &me).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.entries, report.checkpoints), (12, 2));

    // Change an entry: its leaf hash no longer matches.
    let mut store = log.store().clone();
    store.entries[3] = b"changed".to_vec();
    let report = verify_log(&store, &me).unwrap();
    assert!(
        report.tampering.contains(&Tamper::Entry { index: 3 }),
        "{report:?}"
    );
    // Change an entry and its leaf hash: the checkpoints' roots no longer match.
    store.leaves[3] = leaf_hash(b"changed");
    let report = verify_log(&store, &me).unwrap();
    assert!(
        report.tampering.contains(&Tamper::Root { size: 5 }),
        "{report:?}"
    );
    assert!(
        report.tampering.contains(&Tamper::Root { size: 12 }),
        "{report:?}"
    );
    // Drop entries: the last checkpoint covers more than is left.
    let mut store = log.store().clone();
    store.entries.truncate(8);
    store.leaves.truncate(8);
    let report = verify_log(&store, &me).unwrap();
    assert!(
        report
            .tampering
            .contains(&Tamper::Truncated { size: 12, len: 8 }),
        "{report:?}"
    );
    // A checkpoint by another key.
    let mut store = log.store().clone();
    store.add_checkpoint(forged.to_bytes()).unwrap();
    let report = verify_log(&store, &peer_id_of(&witness.verifying_key())).unwrap();
    assert!(matches!(report.tampering[0], Tamper::Checkpoint { .. }));
    // Reopening rebuilds the same tree.
    let reopened = AuditLog::open(log.store().clone()).unwrap();
    assert_eq!(reopened.root(), log.root());
}
