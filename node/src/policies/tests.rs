//! Tests of policies, agreements, revocations and the audit log in the store.

use std::sync::Arc;

use allmende_policy::audit::LogStore;
use allmende_policy::sign;
use allmende_protocol::{PeerId, SigningKey};
use allmende_store::Store;
use allmende_store::keys::audit;

use super::*;

fn policies() -> (tempfile::TempDir, Arc<Store>, Policies) {
    policies_with(5)
}

const OFFER: &str = r#"{
  "@context": "http://www.w3.org/ns/odrl.jsonld",
  "@type": "Offer",
  "uid": "urn:allmende:policy:traffic",
  "permission": [{ "action": "use" }]
}"#;

#[test]
fn attaches_versions_and_concludes_agreements() {
    let (_d, _s, provider) = policies();
    let first = provider.attach("ds1", OFFER).unwrap();
    assert_eq!(first.payload().version, Some(1));
    assert_eq!(
        first.payload().target.as_deref(),
        Some("urn:allmende:dataset:ds1")
    );
    let second = provider.attach("ds1", OFFER).unwrap();
    assert_eq!(second.payload().version, Some(2));
    assert_eq!(
        second.payload().previous,
        Some(sign::policy_id(&first).unwrap())
    );

    let (_d2, _s2, consumer) = policies_with(6);
    let request = consumer.request_for(&second).unwrap();
    let agreement = provider
        .conclude(consumer.peer_id, "ds1", &request.to_bytes())
        .unwrap();
    consumer
        .accept(provider.peer_id, "ds1", &second, &agreement.to_bytes())
        .unwrap();
    assert_eq!(provider.agreements().unwrap().len(), 1);
    assert_eq!(consumer.agreements().unwrap()[0].1.role, "consumer");
    let id = consumer.agreements().unwrap()[0].0.clone();
    let revocation = consumer.revoke(&id, "no longer needed").unwrap();
    provider.keep_revocation(&revocation).unwrap();
    assert_eq!(provider.revocations().len(), 1);
    // A request signed by someone else than the asking peer is refused, and audited.
    assert!(
        provider
            .conclude(PeerId::random(), "ds1", &request.to_bytes())
            .is_err()
    );
    assert_eq!(provider.audit_head().0, 2);
    assert!(provider.verify().unwrap().is_intact());
}

fn policies_with(n: u8) -> (tempfile::TempDir, Arc<Store>, Policies) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), true).unwrap());
    let p = Policies::open(store.clone(), SigningKey::from_bytes(&[n; 32])).unwrap();
    (dir, store, p)
}

#[test]
fn refuses_policies_for_other_targets_and_outside_the_profile() {
    let (_d, _s, p) = policies();
    let other = OFFER.replace(
        "\"@type\": \"Offer\",",
        "\"@type\": \"Offer\", \"target\": \"urn:x\",",
    );
    assert!(
        matches!(p.attach("ds1", &other), Err(PolicyError::Invalid(m)) if m.contains("target"))
    );
    let print = OFFER.replace("\"use\"", "\"print\"");
    assert!(
        matches!(p.attach("ds1", &print), Err(e @ PolicyError::Parse(_)) if e.to_string().contains("print"))
    );
}

#[test]
fn witnesses_cosign_consistent_checkpoints_and_refuse_a_forked_log() {
    let (_d, _s, owner) = policies();
    let (_d2, _s2, witness) = policies_with(6);
    let (_d3, _s3, fork) = policies(); // the same key as `owner`, another history
    for i in 0..3 {
        owner
            .record("p", "query", "ds", "permit", &format!("#{i}"))
            .unwrap();
        fork.record("p", "query", "ds", "deny", &format!("#{i}"))
            .unwrap();
    }
    owner.checkpoint().unwrap();
    let CosignRequest {
        checkpoint: cp,
        from,
        proof,
    } = owner.cosign_request(&witness.peer_id).unwrap().unwrap();
    assert_eq!(from, 0);
    let cosig = witness.witness(&owner.peer_id, &cp, from, &proof).unwrap();
    owner
        .keep_cosignature(&witness.peer_id, &cosig.to_bytes())
        .unwrap();
    assert!(owner.cosign_request(&witness.peer_id).unwrap().is_none());
    assert_eq!(owner.cosignature_count().unwrap(), 1);

    std::thread::sleep(std::time::Duration::from_millis(1100));
    owner.record("p", "query", "ds", "permit", "#3").unwrap();
    owner.checkpoint().unwrap();
    let CosignRequest {
        checkpoint: cp,
        from,
        proof,
    } = owner.cosign_request(&witness.peer_id).unwrap().unwrap();
    assert_eq!(from, 3);
    let cosig = witness.witness(&owner.peer_id, &cp, from, &proof).unwrap();
    owner
        .keep_cosignature(&witness.peer_id, &cosig.to_bytes())
        .unwrap();

    // The fork (same key) shows another log of size 5: not consistent with size 4.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fork.record("p", "query", "ds", "deny", "#3").unwrap();
    fork.record("p", "query", "ds", "deny", "#4").unwrap();
    fork.checkpoint().unwrap();
    let audit = fork.audit.lock().unwrap();
    let cp = audit.log.store().checkpoints().unwrap().pop().unwrap();
    let proof = audit.log.consistency_proof(4, 5).unwrap();
    drop(audit);
    assert!(witness.witness(&owner.peer_id, &cp, 4, &proof).is_err());
}

#[test]
fn the_audit_log_detects_tampering_in_rocksdb() {
    let (_d, store, p) = policies();
    for i in 0..5 {
        p.record("peer", "query", "ds", "permit", &format!("#{i}"))
            .unwrap();
    }
    p.checkpoint().unwrap();
    assert!(p.verify().unwrap().is_intact());
    store
        .write(vec![(audit::entry(2), Some(b"{\"forged\":true}".to_vec()))])
        .unwrap();
    let report = verify_offline(store, &p.peer_id).unwrap();
    assert!(!report.is_intact());
}
