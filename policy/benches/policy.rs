//! Benchmarks for issue 4: decision latency (typical policy; 10 000 policies loaded), signed
//! policy size, single and batched signature verification, audit appends with checkpoints.
//!
//! `cargo bench -p allmende-policy -- --quick` (the latency percentiles are printed too).
#![expect(missing_docs, reason = "criterion's macros define the bench functions")]
use std::hint::black_box;
use std::time::Instant;

use allmende_policy::audit::{AuditLog, MemoryStore};
use allmende_policy::compile::{PolicyEntry, compile};
use allmende_policy::parse::jsonld;
use allmende_policy::request::NoUse;
use allmende_policy::sign::{batch_item, open_policy, sign_policy, verify_batch};
use allmende_policy::values::XsdDateTime;
use allmende_policy::{Action, CompiledPolicies, Policy, QueryShape, Request, decide};
use allmende_protocol::SigningKey;
use allmende_protocol::envelope::{MAX_ENVELOPE_BYTES, did_key_of};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn typical(n: usize, key: &SigningKey) -> Policy {
    let text = format!(
        r#"{{"@context": ["http://www.w3.org/ns/odrl.jsonld", {{"allmende": "urn:allmende:odrl:", "queryShape": "allmende:queryShape", "minGroupSize": "allmende:minGroupSize"}}],
      "@type": "Offer", "uid": "https://muenster.de/policy/{n}", "conflict": "prohibit",
      "assigner": "did:web:muenster.de", "target": "https://muenster.de/dataset/{n}",
      "permission": [{{"action": "use", "constraint": [
          {{"leftOperand": "queryShape", "operator": "eq", "rightOperand": "aggregate"}},
          {{"leftOperand": "minGroupSize", "operator": "gteq", "rightOperand": 10}},
          {{"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": [{{"@id": "https://w3id.org/dpv#AcademicResearch"}}]}}],
        "duty": [{{"action": "attribute"}}]}}]}}"#
    );
    let mut p = jsonld::from_str(&text).expect("typical policy parses");
    p.issuer = Some(did_key_of(&key.verifying_key()));
    p.issued = Some("2025-06-01T00:00:00Z".parse().expect("time"));
    p.expires = Some("2026-06-01T00:00:00Z".parse().expect("time"));
    p.version = Some(1);
    p
}

fn request(n: usize) -> Request {
    let t: XsdDateTime = "2025-07-01T00:00:00Z".parse().expect("time");
    let mut r = Request::new(
        Action::Aggregate,
        format!("https://muenster.de/dataset/{n}"),
        t.instant(),
    );
    r.principal.org = Some("did:web:bochum.de".into());
    r.purpose = Some("https://w3id.org/dpv#AcademicResearch".into());
    r.query_shape = Some(QueryShape::Aggregate);
    r.group_size = Some(12);
    r
}

fn load(count: usize) -> CompiledPolicies {
    let key = SigningKey::from_bytes(&[7; 32]);
    compile((0..count).map(|n| PolicyEntry::unsigned(typical(n, &key)).expect("entry")))
        .expect("compile")
}

fn percentiles(name: &str, compiled: &CompiledPolicies, n: usize) {
    let r = request(n / 2);
    let mut times: Vec<u128> = (0..200_000)
        .map(|_| {
            let t = Instant::now();
            black_box(decide(compiled, black_box(&r), &NoUse));
            t.elapsed().as_nanos()
        })
        .collect();
    times.sort_unstable();
    let p = |q: f64| times[((times.len() as f64) * q) as usize];
    println!(
        "{name}: p50 {} ns, p99 {} ns, p99.9 {} ns (200 000 decisions)",
        p(0.5),
        p(0.99),
        p(0.999)
    );
}

fn decisions(c: &mut Criterion) {
    let one = load(1);
    assert!(decide(&one, &request(0), &NoUse).decision.is_permit());
    percentiles("decide typical policy", &one, 1);
    c.bench_function("decide/typical_1_policy", |b| {
        b.iter(|| decide(&one, black_box(&request(0)), &NoUse))
    });
    let many = load(10_000);
    percentiles("decide with 10 000 policies", &many, 10_000);
    let r = request(5_000);
    c.bench_function("decide/10k_policies", |b| {
        b.iter(|| decide(&many, black_box(&r), &NoUse))
    });
}

fn signatures(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let signed = sign_policy(&typical(1, &key), &key).expect("sign");
    println!(
        "typical signed policy: {} bytes as COSE_Sign1/CBOR",
        signed.as_bytes().len()
    );
    let bytes = signed.to_bytes();
    c.bench_function("verify/single_cose_policy", |b| {
        b.iter(|| open_policy(black_box(&bytes), MAX_ENVELOPE_BYTES).expect("valid"))
    });
    let items: Vec<_> = (0..64u8)
        .map(|n| {
            let k = SigningKey::from_bytes(&[n; 32]);
            batch_item(&sign_policy(&typical(n as usize, &k), &k).expect("sign")).expect("item")
        })
        .collect();
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(64));
    g.bench_function("batch_64_signatures", |b| {
        b.iter(|| verify_batch(black_box(&items)).expect("valid"))
    });
    g.finish();
}

fn audit(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let entry = [0x5a_u8; 160];
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(10_000));
    g.sample_size(10);
    g.bench_function("append_10k_then_checkpoint", |b| {
        b.iter(|| {
            let mut log = AuditLog::open(MemoryStore::default()).expect("open");
            for _ in 0..10_000 {
                log.append(&entry).expect("append");
            }
            log.checkpoint("did:key:node", "2025-06-01T00:00:00Z", &key)
                .expect("checkpoint")
        })
    });
    g.finish();
}

criterion_group!(benches, decisions, signatures, audit);
criterion_main!(benches);
