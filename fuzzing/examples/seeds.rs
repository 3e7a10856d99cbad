//! Writes seed inputs for every fuzz target into `fuzz/corpus/<target>/seed-*`: real encodings
//! of real values, made with the same code the node uses, plus small sample files.
//!
//! Run with `cargo run -p allmende-fuzzing --example seeds`.
use std::path::{Path, PathBuf};

use allmende_fuzzing::support::{key, signer};
use allmende_policy::agreement::{countersign, request_agreement, revoke};
use allmende_policy::audit::{AuditLog, MemoryStore, cosign};
use allmende_policy::parse::{cbor as policy_cbor, jsonld};
use allmende_policy::sign::{sign_jsonld, sign_policy};
use allmende_policy::{Policy, PolicyId};
use allmende_protocol::catalog::{CatalogEntry, EntryOp, PolicyRef};
use allmende_protocol::dcat::{Agent, DatasetRecord};
use allmende_protocol::negotiate::{NegotiateRequest, NegotiateResponse};
use allmende_protocol::plan::{
    AggregateCall, BinaryOp, DataType, Expr, Named, Output, PLAN_VERSION, Scalar, SubPlan, TimeUnit,
};
use allmende_protocol::query::{
    Aggregate, AggregateFn, AnswerFrame, AnswerHeader, AnswerStatus, CompareOp, Condition,
    Fragment, Literal, PlanRequest, QueryResponse, Receipt, ReceiptLine, UserAssertion, query_hash,
};
use allmende_protocol::roster::{Member, Roster, SignedRoster};
use allmende_protocol::sync::{Digest, Head, SyncRequest, SyncResponse};
use allmende_protocol::transfer::{
    TransferFormat, TransferHeader, TransferReply, TransferRequest, TransferView,
};
use allmende_protocol::{Signed, SigningKey, cbor, did_key_of, peer_id_of};
use serde::Serialize;
use serde_bytes::ByteBuf;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = root().join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    cbor::to_vec(v).unwrap()
}

fn with(selector: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![selector];
    out.extend_from_slice(bytes);
    out
}

fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

fn policy(text: &str) -> Policy {
    let mut p = jsonld::from_str(text).unwrap();
    p.issuer = Some(did_key_of(&key().verifying_key()));
    p.issued = "2025-06-01T00:00:00Z".parse().ok();
    p.expires = "2027-06-01T00:00:00Z".parse().ok();
    p.version = Some(1);
    p
}

const TYPICAL: &str = r#"{
  "@context": ["http://www.w3.org/ns/odrl.jsonld", {"allmende": "urn:allmende:odrl:", "queryShape": "allmende:queryShape", "minGroupSize": "allmende:minGroupSize"}],
  "@type": "Offer", "uid": "https://muenster.de/policy/verkehr", "conflict": "prohibit",
  "assigner": "did:web:muenster.de", "target": "https://muenster.de/dataset/verkehr",
  "permission": [{"action": "use", "constraint": [
      {"leftOperand": "queryShape", "operator": "eq", "rightOperand": "aggregate"},
      {"leftOperand": "minGroupSize", "operator": "gteq", "rightOperand": 10},
      {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": [{"@id": "https://w3id.org/dpv#AcademicResearch"}]}],
    "duty": [{"action": "attribute"}]}]
}"#;

/// `SELECT date_trunc('day', ts) AS day, sum(CAST(n AS DECIMAL(20, 0))) FILTER (WHERE n > 0),
/// count(DISTINCT counter) WHERE ts >= TIMESTAMP '2026-01-01 00:00:00' GROUP BY 1`.
fn plan() -> SubPlan {
    let col = |c: &str| Expr::Column(c.into());
    SubPlan {
        version: PLAN_VERSION,
        filter: Some(Expr::Binary {
            op: BinaryOp::GtEq,
            left: Box::new(col("ts")),
            right: Box::new(Expr::Literal(Scalar::Timestamp {
                value: 1_767_225_600_000_000,
                unit: TimeUnit::Microsecond,
                timezone: None,
            })),
        }),
        output: Output::Aggregate {
            group_by: vec![Named {
                name: "day".into(),
                expr: Expr::Call {
                    function: "date_trunc".into(),
                    args: vec![Expr::Literal(Scalar::Utf8("day".into())), col("ts")],
                },
            }],
            aggregates: vec![
                AggregateCall {
                    name: "vehicles".into(),
                    function: "sum".into(),
                    args: vec![Expr::Cast {
                        expr: Box::new(col("n")),
                        to: DataType::Decimal128 {
                            precision: 20,
                            scale: 0,
                        },
                        safe: false,
                    }],
                    distinct: false,
                    filter: Some(Expr::Binary {
                        op: BinaryOp::Gt,
                        left: Box::new(col("n")),
                        right: Box::new(Expr::Literal(Scalar::Int64(0))),
                    }),
                    order_by: vec![],
                },
                AggregateCall {
                    name: "counters".into(),
                    function: "count".into(),
                    args: vec![col("counter")],
                    distinct: true,
                    filter: None,
                    order_by: vec![],
                },
            ],
        },
    }
}

fn fragment() -> Fragment {
    Fragment {
        columns: vec!["district_key".into(), "no2".into()],
        aggregates: vec![Aggregate {
            func: AggregateFn::Sum,
            column: "no2".into(),
        }],
        group_by: vec!["district_key".into()],
        filter: vec![
            Condition {
                column: "no2".into(),
                op: CompareOp::Gt,
                values: vec![Literal::Float(1.5)],
            },
            Condition {
                column: "station".into(),
                op: CompareOp::In,
                values: vec![Literal::Text("a".into()), Literal::Int(-3), Literal::Null],
            },
            Condition {
                column: "ok".into(),
                op: CompareOp::IsNull,
                values: vec![],
            },
        ],
        order_by: vec![("no2".into(), true)],
        limit: Some(10),
        count_only: false,
    }
}

fn main() {
    let k = key();
    let me = signer();

    // Policies.
    let mut jsonld_texts: Vec<(String, String)> = vec![("typical".into(), TYPICAL.into())];
    for dir in ["data/policies", "tests/data"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "jsonld") {
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                jsonld_texts.push((name, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    for e in std::fs::read_dir(root().join("policy/tests/corpus")).unwrap() {
        let p = e.unwrap().path();
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        for (i, pol) in doc["policies"].as_array().into_iter().flatten().enumerate() {
            jsonld_texts.push((format!("{name}-{i}"), pol.to_string()));
        }
    }
    let mut policies = Vec::new();
    for (name, text) in &jsonld_texts {
        write("policy_jsonld", name, text.as_bytes());
        if let Ok(p) = jsonld::from_str(text) {
            write("policy_cbor", name, &policy_cbor::to_vec(&p).unwrap());
            policies.push(p);
        }
    }
    let offer_policy = policy(TYPICAL);
    let offer = sign_policy(&offer_policy, &k).unwrap();
    write("policy_cbor", "signed-offer", offer.as_bytes());
    write(
        "policy_cbor",
        "signed-payload",
        &policy_cbor::to_vec(&offer_policy).unwrap(),
    );
    let created = "2025-06-02T00:00:00Z".parse().unwrap();
    let proofed = sign_jsonld(&offer_policy, &k, &created).unwrap();
    write(
        "policy_jsonld",
        "data-integrity",
        proofed.to_string().as_bytes(),
    );

    // Envelopes.
    let request =
        request_agreement(&offer, "did:web:uni-muenster.de", &created, &other_key()).unwrap();
    let agreement = countersign(&offer, &request, "urn:agreement:1", &created, &k).unwrap();
    let revocation = revoke(&PolicyId::of(&offer_policy).unwrap(), "ended", &created, &k).unwrap();
    let record = DatasetRecord {
        id: "urn:ds:1".into(),
        slug: "luft".into(),
        version: 1,
        title: "Luftqualität".into(),
        description: "NO2".into(),
        publisher: Agent {
            name: "Stadt Münster".into(),
            uri: None,
        },
        issued: "2025-06-01T00:00:00Z".into(),
        modified: "2025-06-01T00:00:00Z".into(),
        ..DatasetRecord::default()
    };
    let entry = CatalogEntry {
        publisher: me,
        seq: 1,
        prev: None,
        op: EntryOp::Create,
        dataset: record,
        policy: Some(PolicyRef {
            id: [3; 32],
            uri: Some("https://muenster.de/policy/verkehr".into()),
        }),
        issued: "2025-06-01T00:00:00Z".into(),
        columns: vec![],
    };
    let signed_entry = Signed::sign(&entry, &k).unwrap();
    let mut log = AuditLog::open(MemoryStore::default()).unwrap();
    for i in 0..5u8 {
        log.append(&[i; 8]).unwrap();
    }
    let checkpoint = log
        .checkpoint("did:key:log", "2025-06-01T00:00:00Z", &k)
        .unwrap();
    let cosignature = cosign(&checkpoint, None, "2025-06-01T00:00:00Z", &other_key()).unwrap();
    let header = AnswerHeader {
        query_hash: query_hash("SELECT 1"),
        dataset: "luft".into(),
        status: AnswerStatus::Ok,
        reason: None,
        code: None,
        rules: vec!["urn:r:1".into()],
        rows: 3,
        suppressed: 1,
        batches_hash: [5; 32],
    };
    let signed_header = Signed::sign(&header, &k).unwrap();
    let transfer_header = TransferHeader {
        consumer: peer_id_of(&other_key().verifying_key()),
        dataset: "luft".into(),
        version: 2,
        agreement: [4; 32],
        columns: vec!["a".into()],
        rows: 10,
        format: TransferFormat::Parquet,
        size: 1234,
        sha256: [6; 32],
        offset: 0,
        issued: 1_750_000_000,
    };
    let signed_transfer = Signed::sign(&transfer_header, &k).unwrap();
    let assertion = UserAssertion {
        subject: "alice".into(),
        organisation: "did:web:uni-muenster.de".into(),
        roles: vec!["researcher".into()],
        purpose: Some("https://w3id.org/dpv#AcademicResearch".into()),
        audience: me,
        issued: 1_750_000_000 - 10,
        expires: 1_750_000_000 + 100,
        nonce: [1; 32],
    };
    let signed_assertion = Signed::sign(&assertion, &k).unwrap();
    let receipt = Receipt {
        query_hash: query_hash("SELECT 1"),
        sql: "SELECT 1".into(),
        issued: "2025-06-01T00:00:00Z".into(),
        providers: vec![ReceiptLine {
            peer: me,
            member: "muenster".into(),
            status: "ok".into(),
            rows: 3,
            latency_ms: 12,
            answer: Some(ByteBuf::from(signed_header.to_bytes())),
        }],
    };
    let signed_receipt = Signed::sign(&receipt, &k).unwrap();
    let value = ciborium::Value::Map(vec![(
        ciborium::Value::Text("a".into()),
        ciborium::Value::Array(vec![
            1.into(),
            ciborium::Value::Float(1.5),
            ciborium::Value::Null,
        ]),
    )]);
    for (name, bytes) in [
        ("entry", signed_entry.as_bytes()),
        ("revocation", revocation.as_bytes()),
        ("request", request.as_bytes()),
        ("agreement", agreement.as_bytes()),
        ("checkpoint", checkpoint.as_bytes()),
        ("cosignature", cosignature.as_bytes()),
        ("offer", offer.as_bytes()),
        ("receipt", signed_receipt.as_bytes()),
    ] {
        write("envelope", name, bytes);
    }
    write("envelope", "value", &cbor::encode_value(value).unwrap());
    write("envelope", "payload-entry", &enc(&entry));

    // Roster.
    let mut members: Vec<Member> = [&k, &other_key()]
        .iter()
        .map(|key| Member {
            peer_id: peer_id_of(&key.verifying_key()),
            organisation: "did:web:muenster.de".into(),
            district_key: "05515".into(),
            roles: vec!["publisher".into()],
            addresses: vec!["/ip4/127.0.0.1/udp/4001/quic-v1".into()],
        })
        .collect();
    members.sort_by_key(|m| m.peer_id.to_bytes());
    let roster = Roster {
        federation: "nrw".into(),
        version: 1,
        prev: None,
        members,
        threshold: None,
        valid_from: 1_700_000_000,
        valid_until: None,
    };
    let mut signed_roster = SignedRoster::new(roster.clone()).unwrap();
    signed_roster.sign(&k);
    signed_roster.sign(&other_key());
    write("roster", "founding", &signed_roster.to_bytes().unwrap());
    write("roster", "payload", &roster.payload().unwrap());
    let mut second = roster.clone();
    second.version = 2;
    second.prev = Some(signed_roster.hash());
    second.threshold = Some(1);
    second.valid_until = Some(1_800_000_000);
    write("roster", "payload-2", &second.payload().unwrap());

    // Plans.
    write("plan", "daily", &enc(&plan()));

    // Fragments.
    write("fragment", "aggregate", &enc(&fragment()));
    write(
        "fragment",
        "count",
        &enc(&Fragment {
            count_only: true,
            ..Fragment::default()
        }),
    );
    let view = TransferView {
        columns: vec!["a".into()],
        filter: fragment().filter,
    };
    write("fragment", "view", &enc(&view));

    // Messages: selector (see `messages::TYPES`) followed by the encoding.
    let digest = Digest {
        roster_version: 1,
        heads: vec![Head {
            publisher: me,
            seq: 1,
            hash: signed_entry.hash(),
        }],
    };
    let query_request = PlanRequest {
        query_hash: query_hash("SELECT 1"),
        dataset: "luft".into(),
        plan: plan(),
        assertion: ByteBuf::from(signed_assertion.to_bytes()),
        deadline_ms: 5000,
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        agreement: Some([7; 32]),
    };
    let transfer_request = TransferRequest {
        dataset: "luft".into(),
        agreement: [7; 32],
        view,
        format: TransferFormat::Arrow,
        offset: 42,
        resume: Some([9; 32]),
        assertion: ByteBuf::from(signed_assertion.to_bytes()),
        traceparent: None,
    };
    let seeds: Vec<(u8, &str, Vec<u8>)> = vec![
        (0, "sync-digest", enc(&SyncRequest::Digest(digest.clone()))),
        (
            0,
            "sync-range",
            enc(&SyncRequest::Range {
                publisher: me,
                from: 1,
                limit: 256,
            }),
        ),
        (
            0,
            "sync-cosign",
            enc(&SyncRequest::Cosign {
                checkpoint: ByteBuf::from(checkpoint.to_bytes()),
                from: 2,
                proof: log
                    .consistency_proof(2, 5)
                    .unwrap()
                    .iter()
                    .map(|h| ByteBuf::from(h.to_vec()))
                    .collect(),
            }),
        ),
        (
            1,
            "sync-digest",
            enc(&SyncResponse::Digest {
                digest: digest.clone(),
                roster: Some(ByteBuf::from(signed_roster.to_bytes().unwrap())),
            }),
        ),
        (
            1,
            "sync-entries",
            enc(&SyncResponse::Entries(vec![ByteBuf::from(
                signed_entry.to_bytes(),
            )])),
        ),
        (
            1,
            "sync-cosignature",
            enc(&SyncResponse::Cosignature(ByteBuf::from(
                cosignature.to_bytes(),
            ))),
        ),
        (
            1,
            "sync-refused",
            enc(&SyncResponse::Refused("rate".into())),
        ),
        (
            2,
            "negotiate-offer",
            enc(&NegotiateRequest::Offer {
                dataset: "luft".into(),
            }),
        ),
        (
            2,
            "negotiate-agree",
            enc(&NegotiateRequest::Agree {
                dataset: "luft".into(),
                request: ByteBuf::from(request.to_bytes()),
            }),
        ),
        (
            3,
            "negotiate-offer",
            enc(&NegotiateResponse::Offer(ByteBuf::from(offer.to_bytes()))),
        ),
        (
            3,
            "negotiate-agreement",
            enc(&NegotiateResponse::Agreement(ByteBuf::from(
                agreement.to_bytes(),
            ))),
        ),
        (4, "query-request", enc(&query_request)),
        (
            5,
            "answer-data",
            enc(&AnswerFrame::Data(ByteBuf::from(vec![1, 2, 3]))),
        ),
        (
            5,
            "answer-header",
            enc(&AnswerFrame::Header(ByteBuf::from(
                signed_header.to_bytes(),
            ))),
        ),
        (
            5,
            "answer-refused",
            enc(&AnswerFrame::Refused("busy".into())),
        ),
        (6, "transfer-request", enc(&transfer_request)),
        (
            7,
            "transfer-header",
            enc(&TransferReply::Header(ByteBuf::from(
                signed_transfer.to_bytes(),
            ))),
        ),
        (
            7,
            "transfer-denied",
            enc(&TransferReply::Denied("no".into())),
        ),
        (8, "entry", enc(&entry)),
        (8, "entry-signed", signed_entry.to_bytes()),
        (9, "revocation", revocation.to_bytes()),
        (9, "revocation-payload", enc(revocation.payload())),
        (10, "request", request.to_bytes()),
        (10, "request-payload", enc(request.payload())),
        (11, "agreement", agreement.to_bytes()),
        (11, "agreement-payload", enc(agreement.payload())),
        (12, "checkpoint", checkpoint.to_bytes()),
        (12, "checkpoint-payload", enc(checkpoint.payload())),
        (13, "cosignature", cosignature.to_bytes()),
        (13, "cosignature-payload", enc(cosignature.payload())),
        (14, "answer-header", signed_header.to_bytes()),
        (14, "answer-header-payload", enc(&header)),
        (15, "transfer-header", signed_transfer.to_bytes()),
        (15, "transfer-header-payload", enc(&transfer_header)),
        (16, "assertion", signed_assertion.to_bytes()),
        (16, "assertion-payload", enc(&assertion)),
        (17, "receipt", signed_receipt.to_bytes()),
        (17, "receipt-payload", enc(&receipt)),
        (18, "policy", offer.to_bytes()),
        (
            18,
            "policy-payload",
            policy_cbor::to_vec(&offer_policy).unwrap(),
        ),
        (
            19,
            "query-response",
            enc(&QueryResponse {
                header: ByteBuf::from(signed_header.to_bytes()),
                batches: ByteBuf::from(vec![0xff, 0xff]),
            }),
        ),
        (20, "digest", enc(&digest)),
        (21, "roster", signed_roster.to_bytes().unwrap()),
    ];
    assert_eq!(allmende_fuzzing::messages::type_count(), 22);
    for (selector, name, bytes) in seeds {
        write(
            "messages",
            &format!("{selector:02}-{name}"),
            &with(selector, &bytes),
        );
    }

    // Audit proofs: sizes (little-endian), two hashes, the proof.
    let mut inclusion = Vec::new();
    inclusion.extend_from_slice(&2u64.to_le_bytes());
    inclusion.extend_from_slice(&5u64.to_le_bytes());
    inclusion.extend_from_slice(&allmende_policy::audit::leaf_hash(&[2; 8]));
    inclusion.extend_from_slice(&log.root());
    for h in log.inclusion_proof(2, 5).unwrap() {
        inclusion.extend_from_slice(&h);
    }
    write("audit", "inclusion", &inclusion);
    let mut consistency = Vec::new();
    consistency.extend_from_slice(&2u64.to_le_bytes());
    consistency.extend_from_slice(&5u64.to_le_bytes());
    consistency.extend_from_slice(&log.root_at(2).unwrap());
    consistency.extend_from_slice(&log.root());
    for h in log.consistency_proof(2, 5).unwrap() {
        consistency.extend_from_slice(&h);
    }
    write("audit", "consistency", &consistency);

    // Importers.
    let districts = std::fs::read_to_string(root().join("data/districts-de-2018.csv")).unwrap();
    let head: String = districts
        .lines()
        .take(25)
        .map(|l| format!("{l}\n"))
        .collect();
    write("import_csv", "districts", head.as_bytes());
    write(
        "import_csv",
        "comma",
        b"a,b,c\n1,2.5,x\n2,,\"y, z\"\n3,4e3,\n",
    );
    write(
        "import_csv",
        "latin1",
        b"Stadt;Einwohner (gesamt)\nM\xfcnster;315293\nK\xf6ln;1083498\n",
    );
    write("import_csv", "types", b"d;t;b;n\n2024-01-31;2024-01-31T12:00:00Z;true;-1\n2024-02-01;2024-02-01T00:00:00+01:00;false;\n");
    write(
        "import_csv",
        "bom",
        "\u{feff}id,name\n1,\"a\"\"b\"\n".as_bytes(),
    );
    write(
        "import_json",
        "array",
        &with(0, br#"[{"a": 1, "b": "x", "c": 1.5, "d": true, "e": null, "f": {"g": [1, 2]}}, {"a": 2, "b": "y", "c": 2, "d": false}]"#),
    );
    write(
        "import_json",
        "ndjson",
        &with(1, b"{\"id\": 1, \"name\": \"M\xc3\xbcnster\", \"t\": \"2024-01-31T12:00:00Z\"}\n{\"id\": 2, \"name\": null}\n"),
    );
    write(
        "import_geojson",
        "points",
        br#"{"type": "FeatureCollection", "features": [
  {"type": "Feature", "geometry": {"type": "Point", "coordinates": [7.62, 51.96]}, "properties": {"name": "M\u00fcnster", "no2": 21.5, "ags": "05515"}},
  {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[7, 51], [8, 51], [8, 52], [7, 51]]]}, "properties": {"name": "Kreis", "no2": null}},
  {"type": "Feature", "geometry": null, "properties": {}}
]}"#,
    );

    // SQL.
    for (i, q) in [
        "SELECT * FROM t",
        "SELECT a, SUM(b) AS s FROM t WHERE c LIKE 'M%' GROUP BY a HAVING COUNT(*) > 0 ORDER BY s DESC LIMIT 3",
        "SELECT c, COUNT(DISTINCT a) FROM p GROUP BY c",
        "WITH x AS (SELECT a, ts FROM p) SELECT date_trunc('day', ts), a FROM x JOIN t USING (a)",
        "SELECT regexp_replace(c, '[a-z]+', 'x'), CAST(a AS VARCHAR) || 'x', b::int FROM t",
        "SELECT * FROM t UNION ALL SELECT * FROM p",
        "VALUES (1, 'a'), (2, 'b')",
        "SELECT repeat('x', 1000), lpad(c, 20, '*'), array_agg(a) OVER (PARTITION BY d ORDER BY a) FROM t",
        "SELECT a / 0, sqrt(-1.0), to_timestamp(a) FROM t WHERE a IN (1, 2, 3) AND b BETWEEN 0 AND 1",
        "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM p WHERE p.a = t.a)",
    ]
    .iter()
    .enumerate()
    {
        write("sql", &format!("{i:02}"), q.as_bytes());
    }
    println!("seeds written to {}", root().join("fuzz/corpus").display());
}
