//! Signed policies (COSE and Data Integrity), versions, agreements and revocations.
use allmende_policy::agreement::{countersign, request_agreement, revoke, verify_agreement};
use allmende_policy::compile::{PolicyEntry, compile};
use allmende_policy::parse::jsonld;
use allmende_policy::sign::{
    PolicySignatureError, batch_item, check_supersedes, open_policy, policy_id, sign_jsonld,
    sign_policy, verify_batch, verify_jsonld,
};
use allmende_policy::values::XsdDateTime;
use allmende_policy::{Action, Outcome, PolicyId, PolicyKind, Request, decide};
use allmende_protocol::envelope::{MAX_ENVELOPE_BYTES, did_key_of};
use allmende_protocol::{Signed, SigningKey};

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn t(s: &str) -> XsdDateTime {
    s.parse().unwrap()
}

/// The typical policy: 1 permission, 3 constraints, 1 duty.
fn typical(kind: PolicyKind, key: &SigningKey) -> allmende_policy::Policy {
    let text = r#"{
      "@context": ["http://www.w3.org/ns/odrl.jsonld", {"allmende": "urn:allmende:odrl:", "queryShape": "allmende:queryShape", "minGroupSize": "allmende:minGroupSize"}],
      "@type": "Offer", "uid": "https://muenster.de/policy/verkehr", "conflict": "prohibit",
      "assigner": "did:web:muenster.de", "target": "https://muenster.de/dataset/verkehr",
      "permission": [{"action": "use", "constraint": [
          {"leftOperand": "queryShape", "operator": "eq", "rightOperand": "aggregate"},
          {"leftOperand": "minGroupSize", "operator": "gteq", "rightOperand": 10},
          {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": [{"@id": "https://w3id.org/dpv#AcademicResearch"}]}],
        "duty": [{"action": "attribute"}]}]
    }"#;
    let mut p = jsonld::from_str(text).unwrap();
    p.kind = kind;
    p.issuer = Some(did_key_of(&key.verifying_key()));
    p.issued = Some(t("2025-06-01T00:00:00Z"));
    p.expires = Some(t("2026-06-01T00:00:00Z"));
    p.version = Some(1);
    p
}

#[test]
fn cose_sign_open_and_size() {
    let k = key(7);
    let signed = sign_policy(&typical(PolicyKind::Offer, &k), &k).unwrap();
    let bytes = signed.to_bytes();
    assert!(
        bytes.len() <= 512,
        "typical signed policy is {} bytes",
        bytes.len()
    );
    println!("typical signed policy: {} bytes as COSE/CBOR", bytes.len());
    let opened = open_policy(&bytes, MAX_ENVELOPE_BYTES).unwrap();
    assert_eq!(opened.payload(), signed.payload());
    // id = SHA-256 of the payload = SHA-256 of the deterministic CBOR.
    let payload = allmende_policy::parse::cbor::to_vec(signed.payload()).unwrap();
    assert_eq!(policy_id(&opened).unwrap(), PolicyId::of_payload(&payload));
    // A flipped byte anywhere is refused.
    for i in [10, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[i] ^= 1;
        assert!(open_policy(&bad, MAX_ENVELOPE_BYTES).is_err(), "byte {i}");
    }
}

#[test]
fn signing_needs_metadata_and_the_right_issuer() {
    let k = key(7);
    let mut p = typical(PolicyKind::Offer, &k);
    p.expires = None;
    assert!(matches!(
        sign_policy(&p, &k),
        Err(PolicySignatureError::MissingMetadata("expires"))
    ));
    let p = typical(PolicyKind::Offer, &key(8));
    let err = sign_policy(&p, &k).unwrap_err();
    assert!(
        matches!(err, PolicySignatureError::IssuerMismatch { .. }),
        "{err}"
    );
    let mut p = typical(PolicyKind::Offer, &k);
    p.version = Some(2);
    assert!(matches!(
        sign_policy(&p, &k),
        Err(PolicySignatureError::PreviousVersion)
    ));
}

#[test]
fn versions_chain() {
    let k = key(7);
    let v1 = sign_policy(&typical(PolicyKind::Offer, &k), &k).unwrap();
    let mut p2 = typical(PolicyKind::Offer, &k);
    p2.version = Some(2);
    p2.previous = Some(policy_id(&v1).unwrap());
    let v2 = sign_policy(&p2, &k).unwrap();
    check_supersedes(&v2, &v1).unwrap();
    assert!(check_supersedes(&v1, &v2).is_err());
    p2.previous = Some(PolicyId([0; 32]));
    let forged = sign_policy(&p2, &k).unwrap();
    assert!(check_supersedes(&forged, &v1).is_err());
}

#[test]
fn data_integrity_proof() {
    let k = key(7);
    let p = typical(PolicyKind::Offer, &k);
    let doc = sign_jsonld(&p, &k, &t("2025-06-01T00:00:00Z")).unwrap();
    assert_eq!(doc["proof"]["cryptosuite"], "eddsa-jcs-2022");
    assert!(
        doc["proof"]["proofValue"]
            .as_str()
            .unwrap()
            .starts_with('z')
    );
    assert!(
        doc["proof"]["verificationMethod"]
            .as_str()
            .unwrap()
            .starts_with("did:key:z6Mk")
    );
    let (back, vk) = verify_jsonld(&doc).unwrap();
    assert_eq!(back, p);
    assert_eq!(vk, k.verifying_key());
    // Member order does not matter (JCS); a changed value does.
    let reordered: serde_json::Value =
        serde_json::from_str(&serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    verify_jsonld(&reordered).unwrap();
    let mut bad = doc.clone();
    bad["permission"][0]["constraint"][1]["rightOperand"] = serde_json::json!(2);
    assert!(verify_jsonld(&bad).is_err());
    let mut bad = doc.clone();
    bad["proof"]["created"] = serde_json::json!("2030-01-01T00:00:00Z");
    assert!(verify_jsonld(&bad).is_err());
    // The CLI check accepts the signed document.
    let summary = allmende_policy::cli_json::check(&doc.to_string()).unwrap();
    assert!(summary.signed);
}

#[test]
fn batch_verification() {
    let signed: Vec<_> = (1..=8u8)
        .map(|n| {
            let k = key(n);
            sign_policy(&typical(PolicyKind::Offer, &k), &k).unwrap()
        })
        .collect();
    let items: Vec<_> = signed.iter().map(|s| batch_item(s).unwrap()).collect();
    verify_batch(&items).unwrap();
    let mut bad = items.clone();
    bad[3].0[20] ^= 1;
    assert!(verify_batch(&bad).is_err());
}

#[test]
fn agreements_and_revocation() {
    let (provider, consumer) = (key(1), key(2));
    let offer = sign_policy(&typical(PolicyKind::Offer, &provider), &provider).unwrap();
    let request = request_agreement(
        &offer,
        "did:web:bochum.de",
        &t("2025-06-02T00:00:00Z"),
        &consumer,
    )
    .unwrap();
    let agreement = countersign(
        &offer,
        &request,
        "urn:agreement:1",
        &t("2025-06-02T00:00:01Z"),
        &provider,
    )
    .unwrap();
    let verified = verify_agreement(agreement.as_bytes(), &offer).unwrap();
    assert_eq!(verified.consumer(), request.signer());
    assert_eq!(verified.provider(), offer.signer());
    // Only the provider may countersign; the request must name this offer.
    assert!(
        countersign(
            &offer,
            &request,
            "urn:a",
            &t("2025-06-02T00:00:01Z"),
            &consumer
        )
        .is_err()
    );
    let other = sign_policy(&typical(PolicyKind::Offer, &key(3)), &key(3)).unwrap();
    assert!(verify_agreement(agreement.as_bytes(), &other).is_err());
    // A provider that changes the terms is caught.
    let mut changed = agreement.payload().clone();
    changed.policy.permissions[0].duties.clear();
    let forged = Signed::sign(&changed, &provider).unwrap();
    assert!(verify_agreement(forged.as_bytes(), &offer).is_err());

    // The agreement decides for the assignee only, until revoked.
    let mut compiled = compile([verified.entry()]).unwrap();
    let mut r = Request::new(
        Action::Aggregate,
        "https://muenster.de/dataset/verkehr",
        t("2025-07-01T00:00:00Z").instant(),
    );
    r.principal.org = Some("did:web:bochum.de".into());
    r.purpose = Some("https://w3id.org/dpv#AcademicResearch".into());
    r.query_shape = Some(allmende_policy::QueryShape::Aggregate);
    r.group_size = Some(10);
    let state = allmende_policy::request::NoUse;
    assert_eq!(decide(&compiled, &r, &state).decision, Outcome::Permit);
    // A revocation by a third party is ignored; by the consumer or provider it is honoured.
    let stranger = revoke(&verified.id(), "no", &t("2025-07-01T00:00:00Z"), &key(9)).unwrap();
    compiled.revocations_mut().insert(stranger);
    assert_eq!(decide(&compiled, &r, &state).decision, Outcome::Permit);
    let bytes = revoke(
        &verified.id(),
        "contract ended",
        &t("2025-07-01T00:00:00Z"),
        &consumer,
    )
    .unwrap()
    .to_bytes();
    let statement = Signed::from_bytes(&bytes, MAX_ENVELOPE_BYTES).unwrap();
    assert!(compiled.revocations_mut().insert(statement));
    assert_eq!(
        decide(&compiled, &r, &state).decision,
        Outcome::NotApplicable
    );

    // A signed offer revoked by its signer.
    let mut compiled = compile([PolicyEntry::signed(&offer).unwrap()]).unwrap();
    assert_eq!(decide(&compiled, &r, &state).decision, Outcome::Permit);
    compiled.revocations_mut().insert(
        revoke(
            &policy_id(&offer).unwrap(),
            "withdrawn",
            &t("2025-07-01T00:00:00Z"),
            &provider,
        )
        .unwrap(),
    );
    assert_eq!(
        decide(&compiled, &r, &state).decision,
        Outcome::NotApplicable
    );
}
