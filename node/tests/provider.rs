//! The provider side of federated queries, in-process: malformed or hostile fragments from a
//! peer get a signed error or denial and no data; permitted fragments get exactly what the
//! policy allows.

use std::sync::Arc;
use std::time::Duration;

use allmende::config::Config;
use allmende::datasets::{Datasets, ImportRequest, MetadataInput};
use allmende::policies::Policies;
use allmende::query::provider::{ProviderContext, answer};
use allmende::sql::{Engine, EngineConfig};
use allmende::store::Store;
use allmende_protocol::query::{
    Aggregate, AggregateFn, AnswerHeader, AnswerStatus, CompareOp, Condition, Fragment, Literal,
    QueryRequest, UserAssertion, batches_hash,
};
use allmende_protocol::{PeerId, Signed, SigningKey};

const CSV: &str = "station,kind,value\na,x,1\na,x,2\na,y,3\na,y,4\na,y,5\nb,x,6\nb,x,7\n";

struct Provider {
    _dir: tempfile::TempDir,
    ctx: ProviderContext,
    id: String,
}

fn provider(policy: &str) -> Provider {
    let dir = tempfile::tempdir().unwrap();
    let config = Arc::new(Config::new("Stadt Würzburg".into(), "09663".into()));
    let store = Arc::new(Store::open(dir.path(), true).unwrap());
    let datasets = Arc::new(Datasets::new(
        dir.path().to_path_buf(),
        store.clone(),
        config,
    ));
    datasets.recover().unwrap();
    let src = dir.path().join("src.csv");
    std::fs::write(&src, CSV).unwrap();
    let dataset = datasets
        .import(
            ImportRequest {
                source: src,
                file_name: Some("values.csv".into()),
                format: None,
                metadata: MetadataInput {
                    slug: Some("values".into()),
                    ..MetadataInput::default()
                },
                version_of: None,
            },
            &|_| {},
        )
        .unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let policies = Arc::new(Policies::open(store, key.clone()).unwrap());
    policies.attach(&dataset.record.id, policy).unwrap();
    Provider {
        _dir: dir,
        ctx: ProviderContext::new(
            Engine::new(&EngineConfig::default()).unwrap(),
            datasets,
            policies,
            key,
            64 << 20,
            Duration::from_secs(5),
            2,
        ),
        id: dataset.record.id,
    }
}

const AGGREGATE_K3: &str = r#"{"@context": ["http://www.w3.org/ns/odrl.jsonld", {"allm": "urn:allmende:odrl:"}],
  "@type": "Offer", "uid": "urn:t:k3", "permission": [{"action": "aggregate", "constraint": [
  {"leftOperand": "allm:minGroupSize", "operator": "gteq", "rightOperand": 3}]}]}"#;

const ASKER: [u8; 32] = [4; 32];

fn now() -> u64 {
    allmende::federation::now()
}

fn assertion(audience: PeerId, issued: u64, expires: u64, nonce: u8) -> Vec<u8> {
    let a = UserAssertion {
        subject: "pseudonym".into(),
        organisation: "Stadt Münster".into(),
        roles: vec!["researcher".into()],
        purpose: None,
        audience,
        issued,
        expires,
        nonce: [nonce; 32],
    };
    Signed::sign(&a, &SigningKey::from_bytes(&ASKER))
        .unwrap()
        .to_bytes()
}

fn provider_peer() -> PeerId {
    allmende_protocol::peer_id_of(&SigningKey::from_bytes(&[9; 32]).verifying_key())
}

static NONCE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);

fn request(id: &str, fragment: Fragment) -> QueryRequest {
    let nonce = NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    QueryRequest {
        query_hash: [1; 32],
        dataset: id.into(),
        fragment,
        assertion: assertion(provider_peer(), now(), now() + 60, nonce).into(),
        deadline_ms: 3000,
        traceparent: None,
    }
}

async fn ask(p: &Provider, req: QueryRequest) -> (AnswerHeader, Vec<u8>) {
    let asker = allmende_protocol::peer_id_of(&SigningKey::from_bytes(&ASKER).verifying_key());
    // The answer's bytes arrive in chunks while it is produced; the header comes last.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let collect = tokio::spawn(async move {
        let mut bytes = Vec::new();
        while let Some(chunk) = rx.recv().await {
            bytes.extend_from_slice(&chunk);
        }
        bytes
    });
    let header = answer(&p.ctx, asker, None, req, &tx).await;
    drop(tx);
    let bytes: Vec<u8> = collect.await.unwrap();
    let header: Signed<AnswerHeader> = Signed::from_bytes(&header, 1 << 20).unwrap();
    assert_eq!(header.payload().batches_hash, batches_hash(&bytes));
    (header.payload().clone(), bytes)
}

fn count(field: &str) -> Aggregate {
    Aggregate {
        func: AggregateFn::Count,
        column: field.into(),
    }
}

#[tokio::test]
async fn hostile_fragments_get_errors_or_denials_and_no_data() {
    let p = provider(AGGREGATE_K3);
    let cases = [
        (
            "unknown column",
            Fragment {
                aggregates: vec![count("secret")],
                ..Fragment::default()
            },
            AnswerStatus::Error,
        ),
        (
            "rows from an aggregate-only dataset",
            Fragment {
                columns: vec!["value".into()],
                ..Fragment::default()
            },
            AnswerStatus::Denied,
        ),
        ("all rows", Fragment::default(), AnswerStatus::Denied),
        (
            "filter on a non-grouping column",
            Fragment {
                aggregates: vec![count("value")],
                group_by: vec!["station".into()],
                filter: vec![Condition {
                    column: "value".into(),
                    op: CompareOp::Eq,
                    values: vec![Literal::Int(6)],
                }],
                ..Fragment::default()
            },
            AnswerStatus::Denied,
        ),
        (
            "a comparison without a value",
            Fragment {
                aggregates: vec![count("value")],
                group_by: vec!["station".into()],
                filter: vec![Condition {
                    column: "station".into(),
                    op: CompareOp::Eq,
                    values: vec![],
                }],
                ..Fragment::default()
            },
            AnswerStatus::Error,
        ),
        (
            "an injection attempt in a literal",
            Fragment {
                aggregates: vec![count("value")],
                group_by: vec!["station".into()],
                filter: vec![Condition {
                    column: "station".into(),
                    op: CompareOp::Eq,
                    values: vec![Literal::Text("a' OR '1'='1".into())],
                }],
                ..Fragment::default()
            },
            AnswerStatus::Ok,
        ),
    ];
    for (what, fragment, expected) in cases {
        let (header, bytes) = ask(&p, request(&p.id, fragment)).await;
        assert_eq!(header.status, expected, "{what}: {header:?}");
        if expected == AnswerStatus::Ok {
            assert_eq!(header.rows, 0, "{what}: the literal matched something");
        } else {
            assert!(bytes.is_empty(), "{what}: data left the node");
            assert!(header.reason.is_some(), "{what}: no reason given");
        }
    }
    let (header, _) = ask(&p, request("no-such-dataset", Fragment::default())).await;
    assert_eq!(header.status, AnswerStatus::Error);
    assert_eq!(
        p.ctx.policies().audit_head().0,
        7,
        "every decision is audited"
    );
}

#[tokio::test]
async fn groups_below_the_minimum_size_are_suppressed() {
    let p = provider(AGGREGATE_K3);
    let fragment = Fragment {
        aggregates: vec![Aggregate {
            func: AggregateFn::Sum,
            column: "value".into(),
        }],
        group_by: vec!["station".into(), "kind".into()],
        ..Fragment::default()
    };
    // Groups: (a,x) 2 rows, (a,y) 3 rows, (b,x) 2 rows: only (a,y) has at least 3.
    let (header, bytes) = ask(&p, request(&p.id, fragment)).await;
    assert_eq!(
        (header.status, header.rows, header.suppressed),
        (AnswerStatus::Ok, 1, 2)
    );
    let reader = arrow::ipc::reader::StreamReader::try_new(&bytes[..], None).unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&[batch])
        .unwrap()
        .to_string();
    assert!(text.contains("| a       | y    | 12   | 3   |"), "{text}");
}

#[tokio::test]
async fn expired_misdirected_and_replayed_assertions_are_refused() {
    let p = provider(AGGREGATE_K3);
    let fragment = Fragment {
        aggregates: vec![count("value")],
        ..Fragment::default()
    };
    let t = now();
    let cases = [
        ("expired", assertion(provider_peer(), t - 600, t - 400, 201)),
        (
            "valid for too long",
            assertion(provider_peer(), t, t + 3600, 202),
        ),
        (
            "for another provider",
            assertion(PeerId::random(), t, t + 60, 203),
        ),
        ("not an assertion", vec![1, 2, 3]),
    ];
    for (what, bytes) in cases {
        let mut req = request(&p.id, fragment.clone());
        req.assertion = bytes.into();
        let (header, data) = ask(&p, req).await;
        assert_eq!(header.status, AnswerStatus::Error, "{what}: {header:?}");
        assert!(data.is_empty(), "{what}");
    }
    let mut first = request(&p.id, fragment.clone());
    first.assertion = assertion(provider_peer(), t, t + 60, 204).into();
    let replay = first.clone();
    assert_eq!(ask(&p, first).await.0.status, AnswerStatus::Ok);
    let (header, _) = ask(&p, replay).await;
    assert_eq!(header.status, AnswerStatus::Error);
    assert!(header.reason.unwrap().contains("replay"));
}
