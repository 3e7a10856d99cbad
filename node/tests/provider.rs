//! The provider side of federated queries, in-process: malformed or hostile fragments from a
//! peer get a signed error or denial and no data; permitted fragments get exactly what the
//! policy allows.

mod common;

use allmende_protocol::PeerId;
use allmende_protocol::query::{
    Aggregate, AggregateFn, AnswerStatus, CompareOp, Condition, Fragment, Literal,
};
use common::{Provider, ask, assertion, now, provider_peer, provider_with, request};

const CSV: &str = "station,kind,value\na,x,1\na,x,2\na,y,3\na,y,4\na,y,5\nb,x,6\nb,x,7\n";

fn provider(policy: &str) -> Provider {
    provider_with(CSV, policy)
}

const AGGREGATE_K3: &str = r#"{"@context": ["http://www.w3.org/ns/odrl.jsonld", {"allm": "urn:allmende:odrl:"}],
  "@type": "Offer", "uid": "urn:t:k3", "permission": [{"action": "aggregate", "constraint": [
  {"leftOperand": "allm:minGroupSize", "operator": "gteq", "rightOperand": 3}]}]}"#;

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
        (
            "expired",
            assertion(provider_peer(), t - 600, t - 400, u64::MAX - 1),
        ),
        (
            "valid for too long",
            assertion(provider_peer(), t, t + 3600, u64::MAX - 2),
        ),
        (
            "for another provider",
            assertion(PeerId::random(), t, t + 60, u64::MAX - 3),
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
    first.assertion = assertion(provider_peer(), t, t + 60, u64::MAX - 4).into();
    let replay = first.clone();
    assert_eq!(ask(&p, first).await.0.status, AnswerStatus::Ok);
    let (header, _) = ask(&p, replay).await;
    assert_eq!(header.status, AnswerStatus::Error);
    assert!(header.reason.unwrap().contains("replay"));
}
