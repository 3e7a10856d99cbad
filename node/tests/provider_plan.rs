//! The provider side of federated queries (`/allmende/query/3`), in-process over a real stored
//! dataset: every way around a minimum group size gets a denial with its machine-readable code
//! and no data; plans outside the language get an error with its code; expired, misdirected and
//! replayed assertions get an error; permitted plans get exactly what the policy allows, and
//! DataFusion's own planner, asking the provider through a federated table, merges its answer
//! to what the same SQL gives.

mod common;

use std::sync::{Arc, Mutex};

use allmende_data::sql::{Engine, EngineConfig, Source, SqlError, collect};
use allmende_protocol::plan::{
    AggregateCall, BinaryOp, Expr, Named, Output, PLAN_VERSION, Scalar, SubPlan,
};
use allmende_protocol::query::{AnswerHeader, AnswerStatus};

use allmende_protocol::PeerId;
use common::{
    Provider, ask, assertion, federated_table, now, plan_request, provider_peer, provider_with,
};

const CSV: &str = "station,kind,value\na,x,1\na,x,2\na,y,3\na,y,4\na,y,5\nb,x,6\nb,x,7\n";

const AGGREGATE_K3: &str = r#"{"@context": ["http://www.w3.org/ns/odrl.jsonld", {"allm": "urn:allmende:odrl:"}],
  "@type": "Offer", "uid": "urn:t:k3", "permission": [{"action": "aggregate", "constraint": [
  {"leftOperand": "allm:minGroupSize", "operator": "gteq", "rightOperand": 3}]}]}"#;

const OPEN: &str = r#"{"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Offer",
  "uid": "urn:t:open", "permission": [{"action": "use"}]}"#;

fn col(name: &str) -> Expr {
    Expr::Column(name.into())
}

fn int(v: i64) -> Expr {
    Expr::Literal(Scalar::Int64(v))
}

fn text(v: &str) -> Expr {
    Expr::Literal(Scalar::Utf8(v.into()))
}

fn eq(left: Expr, right: Expr) -> Expr {
    Expr::Binary {
        op: BinaryOp::Eq,
        left: Box::new(left),
        right: Box::new(right),
    }
}

fn call(function: &str, args: Vec<Expr>) -> AggregateCall {
    AggregateCall {
        name: function.into(),
        function: function.into(),
        args,
        distinct: false,
        filter: None,
        order_by: vec![],
    }
}

/// An aggregate plan grouped by `station`.
fn by_station(aggregates: Vec<AggregateCall>, filter: Option<Expr>) -> SubPlan {
    SubPlan {
        version: PLAN_VERSION,
        filter,
        output: Output::Aggregate {
            group_by: vec![Named {
                name: "station".into(),
                expr: col("station"),
            }],
            aggregates,
        },
    }
}

fn rows(columns: &[&str]) -> SubPlan {
    SubPlan {
        version: PLAN_VERSION,
        filter: None,
        output: Output::Rows {
            columns: columns
                .iter()
                .map(|c| Named {
                    name: (*c).into(),
                    expr: col(c),
                })
                .collect(),
            order_by: vec![],
            limit: None,
        },
    }
}

#[tokio::test]
async fn every_way_around_a_minimum_group_size_is_denied_with_its_code() {
    let p = provider_with(CSV, AGGREGATE_K3);
    let sum = || call("sum", vec![col("value")]);
    let distinct = AggregateCall {
        distinct: true,
        ..call("count", vec![col("value")])
    };
    let filtered = AggregateCall {
        filter: Some(eq(col("value"), int(6))),
        ..sum()
    };
    let picked = call(
        "sum",
        vec![Expr::Case {
            operand: None,
            branches: vec![allmende_protocol::plan::When {
                when: eq(col("value"), int(6)),
                then: col("value"),
            }],
            otherwise: None,
        }],
    );
    let cases = [
        ("rows", rows(&["value"]), "rows-under-group-size"),
        (
            "a filter on a column outside the groups",
            by_station(vec![sum()], Some(eq(col("value"), int(6)))),
            "filter-outside-groups",
        ),
        (
            "DISTINCT states list the values",
            by_station(vec![distinct], None),
            "distinct-under-group-size",
        ),
        (
            "a FILTER picks rows out of a group",
            by_station(vec![filtered], None),
            "aggregate-filter-under-group-size",
        ),
        (
            "an argument that picks one row",
            by_station(vec![picked], None),
            "aggregate-of-an-expression",
        ),
        (
            "states that hold the rows' values",
            by_station(vec![call("array_agg", vec![col("value")])], None),
            "aggregate-of-row-values",
        ),
    ];
    for (what, plan, code) in cases {
        let (header, bytes) = ask(&p, plan_request(&p.id, plan)).await;
        assert_eq!(header.status, AnswerStatus::Denied, "{what}: {header:?}");
        assert_eq!(header.code.as_deref(), Some(code), "{what}: {header:?}");
        assert!(header.reason.is_some(), "{what}: no reason");
        assert!(bytes.is_empty(), "{what}: data left the node");
    }
    // A plan over a column the dataset lacks, or outside the language, is an error.
    let (header, bytes) = ask(
        &p,
        plan_request(
            &p.id,
            by_station(vec![call("sum", vec![col("secret")])], None),
        ),
    )
    .await;
    assert_eq!(header.status, AnswerStatus::Error, "{header:?}");
    assert!(header.reason.unwrap().contains("secret"));
    assert!(bytes.is_empty());
    let outside = by_station(
        vec![call("sum", vec![col("value")])],
        Some(Expr::Call {
            function: "read_csv".into(),
            args: vec![text("/etc/passwd")],
        }),
    );
    let (header, _) = ask(&p, plan_request(&p.id, outside)).await;
    assert_eq!(header.status, AnswerStatus::Error, "{header:?}");
    assert!(header.code.is_some(), "{header:?}");
    let later = SubPlan {
        version: PLAN_VERSION + 1,
        ..by_station(vec![sum()], None)
    };
    let (header, _) = ask(&p, plan_request(&p.id, later)).await;
    assert_eq!(header.status, AnswerStatus::Error, "{header:?}");
    assert!(header.code.is_some(), "{header:?}");
    let (header, _) = ask(
        &p,
        plan_request("no-such-dataset", by_station(vec![sum()], None)),
    )
    .await;
    assert_eq!(header.status, AnswerStatus::Error, "{header:?}");
    assert_eq!(
        p.ctx.policies().audit_head().0,
        10,
        "every decision is audited"
    );
}

#[tokio::test]
async fn expired_misdirected_and_replayed_assertions_are_refused() {
    let p = provider_with(CSV, AGGREGATE_K3);
    let plan = by_station(vec![call("count", vec![col("value")])], None);
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
        let mut req = plan_request(&p.id, plan.clone());
        req.assertion = bytes.into();
        let (header, data) = ask(&p, req).await;
        assert_eq!(header.status, AnswerStatus::Error, "{what}: {header:?}");
        assert!(data.is_empty(), "{what}");
    }
    let mut first = plan_request(&p.id, plan.clone());
    first.assertion = assertion(provider_peer(), t, t + 60, u64::MAX - 4).into();
    let replay = first.clone();
    assert_eq!(ask(&p, first).await.0.status, AnswerStatus::Ok);
    let (header, _) = ask(&p, replay).await;
    assert_eq!(header.status, AnswerStatus::Error);
    assert!(header.reason.unwrap().contains("replay"));
}

#[tokio::test]
async fn groups_below_the_minimum_size_are_suppressed_by_the_providers_own_count() {
    let p = provider_with(CSV, AGGREGATE_K3);
    let plan = SubPlan {
        version: PLAN_VERSION,
        // A filter on the grouping columns keeps or drops whole groups.
        filter: Some(Expr::Not(Box::new(eq(col("kind"), text("z"))))),
        output: Output::Aggregate {
            group_by: vec![
                Named {
                    name: "station".into(),
                    expr: col("station"),
                },
                Named {
                    name: "kind".into(),
                    expr: col("kind"),
                },
            ],
            aggregates: vec![call("sum", vec![col("value")])],
        },
    };
    // Groups: (a,x) 2 rows, (a,y) 3 rows, (b,x) 2 rows: only (a,y) has at least 3.
    let (header, bytes) = ask(&p, plan_request(&p.id, plan)).await;
    assert_eq!(
        (header.status, header.rows, header.suppressed),
        (AnswerStatus::Ok, 1, 2),
        "{header:?}"
    );
    let reader = arrow::ipc::reader::StreamReader::try_new(&bytes[..], None).unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let columns: Vec<String> = batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(columns, ["station", "kind", "sum[sum]", "__n[count]"]);
    assert_eq!(cells(&batches), [["a", "y", "12", "3"]]);
}

/// The cells of `batches`' rows, as text.
fn cells(batches: &[arrow::record_batch::RecordBatch]) -> Vec<Vec<String>> {
    let text = arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string();
    text.lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// Runs `sql` over the provider's dataset as the federated table `f`, and as a local table.
async fn both(
    p: &Arc<Provider>,
    sql: &str,
) -> (Vec<Vec<String>>, Vec<Vec<String>>, Vec<AnswerStatus>) {
    let engine = Engine::new(&EngineConfig::default()).unwrap();
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let seen = statuses.clone();
    let table = federated_table(
        p,
        Arc::new(move |_: &SubPlan, h: &AnswerHeader, _: &[u8]| {
            seen.lock().unwrap().push(h.status)
        }),
    );
    let stream = engine
        .query(sql, 64 << 20, &|_| Ok(Source::Table(table.clone())))
        .await
        .unwrap();
    let federated = collect(stream).await.unwrap().1;
    let path = p.ctx.serving().datasets().file_path(&p.stored());
    let local_sql = sql.replace("FROM f", "FROM (SELECT *, 'm' AS _member FROM t)");
    let stream = engine
        .query(&local_sql, 64 << 20, &|t| {
            if t.table() == "t" {
                Ok(Source::Parquet(path.clone()))
            } else {
                Err(SqlError::Invalid(format!("no table {t}")))
            }
        })
        .await
        .unwrap();
    let local = collect(stream).await.unwrap().1;
    let statuses = statuses.lock().unwrap().clone();
    (cells(&federated), cells(&local), statuses)
}

#[tokio::test]
async fn datafusion_plans_over_a_provider_answer_what_the_same_sql_answers() {
    let open = Arc::new(provider_with(CSV, OPEN));
    for sql in [
        "SELECT station, kind, value FROM f ORDER BY value",
        "SELECT kind, sum(value) AS s, count(*) AS n, avg(value) AS mean FROM f \
         GROUP BY kind ORDER BY kind",
        "SELECT upper(station) AS s, count(DISTINCT kind) AS kinds FROM f \
         WHERE value BETWEEN 2 AND 6 GROUP BY upper(station) ORDER BY s",
        "SELECT _member, max(value) AS top FROM f GROUP BY _member",
        "SELECT station FROM f WHERE value > (SELECT avg(value) FROM f) ORDER BY value",
    ] {
        let (federated, local, statuses) = both(&open, sql).await;
        assert_eq!(federated, local, "{sql}");
        assert!(statuses.iter().all(|s| *s == AnswerStatus::Ok), "{sql}");
    }
    // Under k = 3 the same planner's aggregate is answered, suppressed by the provider; a
    // query that needs its rows gets nothing from it (the provider denied).
    let k3 = Arc::new(provider_with(CSV, AGGREGATE_K3));
    let (federated, _, statuses) = both(
        &k3,
        "SELECT kind, sum(value) AS s FROM f GROUP BY kind ORDER BY kind",
    )
    .await;
    assert_eq!(statuses, [AnswerStatus::Ok]);
    assert_eq!(federated, [["x", "16"], ["y", "12"]]);
    let (federated, _, statuses) = both(&k3, "SELECT value FROM f").await;
    assert_eq!(statuses, [AnswerStatus::Denied]);
    assert!(federated.is_empty(), "{federated:?}");
}
