//! The plan language's limits and lists.
use super::*;
use crate::cbor;
use crate::query::{MAX_CONDITION_VALUES, MAX_IDENTIFIER_BYTES};

fn col(c: &str) -> Expr {
    Expr::Column(c.into())
}

fn call(f: &str, args: Vec<Expr>) -> Expr {
    Expr::Call {
        function: f.into(),
        args,
    }
}

fn binary(op: BinaryOp, left: Expr, right: Expr) -> Expr {
    Expr::Binary {
        op,
        left: Box::new(left),
        right: Box::new(right),
    }
}

/// `SELECT date_trunc('day', ts) AS day, sum(CASE WHEN lane = 1 THEN n ELSE 0 END),
/// count(DISTINCT counter) FILTER (WHERE n > 0) … WHERE ts >= TIMESTAMP '2026-01-01' OR n IS
/// NULL GROUP BY 1`.
pub(crate) fn daily() -> SubPlan {
    let day = call(
        "date_trunc",
        vec![Expr::Literal(Scalar::Utf8("day".into())), col("ts")],
    );
    let lane_one = Expr::Case {
        operand: None,
        branches: vec![When {
            when: binary(BinaryOp::Eq, col("lane"), Expr::Literal(Scalar::Int64(1))),
            then: col("n"),
        }],
        otherwise: Some(Box::new(Expr::Literal(Scalar::Int64(0)))),
    };
    SubPlan {
        version: PLAN_VERSION,
        filter: Some(binary(
            BinaryOp::Or,
            binary(
                BinaryOp::GtEq,
                col("ts"),
                Expr::Literal(Scalar::Timestamp {
                    value: 1_767_225_600_000_000,
                    unit: TimeUnit::Microsecond,
                    timezone: None,
                }),
            ),
            Expr::Is {
                test: IsTest::Null,
                expr: Box::new(col("n")),
            },
        )),
        output: Output::Aggregate {
            group_by: vec![Named {
                name: "day".into(),
                expr: day,
            }],
            aggregates: vec![
                AggregateCall {
                    name: "lane_one".into(),
                    function: "sum".into(),
                    args: vec![lane_one],
                    distinct: false,
                    filter: None,
                    order_by: vec![],
                },
                AggregateCall {
                    name: "counters".into(),
                    function: "count".into(),
                    args: vec![col("counter")],
                    distinct: true,
                    filter: Some(binary(
                        BinaryOp::Gt,
                        col("n"),
                        Expr::Literal(Scalar::Int64(0)),
                    )),
                    order_by: vec![],
                },
            ],
        },
    }
}

fn rows(expr: Expr) -> SubPlan {
    SubPlan {
        version: PLAN_VERSION,
        filter: None,
        output: Output::Rows {
            columns: vec![Named {
                name: "x".into(),
                expr,
            }],
            order_by: vec![],
            limit: None,
        },
    }
}

#[test]
fn function_lists_are_sorted_and_without_repeats() {
    for list in [SCALAR_FUNCTIONS, AGGREGATE_FUNCTIONS] {
        assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
    }
    assert!(is_scalar("date_trunc"));
    assert!(!is_scalar("now"));
    assert!(!is_scalar("random"));
    assert!(is_aggregate("count"));
    assert!(!is_aggregate("date_trunc"));
}

#[test]
fn a_plan_round_trips_and_names_every_column_it_reads() {
    let p = daily();
    p.check().unwrap();
    let bytes = cbor::to_vec(&p).unwrap();
    let back: SubPlan = cbor::from_slice(&bytes, 1 << 20).unwrap();
    assert_eq!(back, p);
    assert_eq!(p.columns(), ["counter", "lane", "n", "ts"]);
}

#[test]
fn depth_and_size_are_bounded() {
    let mut e = col("a");
    for _ in 1..MAX_EXPR_DEPTH {
        e = Expr::Not(Box::new(e));
    }
    rows(e.clone()).check().unwrap();
    assert_eq!(
        rows(Expr::Not(Box::new(e))).check(),
        Err(PlanError::TooDeep)
    );
    // The deepest plan the language allows also passes the decoder's nesting limit, with
    // the operator that nests most in CBOR (two maps per level).
    let mut e = col("a");
    for _ in 1..MAX_EXPR_DEPTH {
        e = binary(BinaryOp::Plus, e, col("b"));
    }
    let p = rows(e);
    p.check().unwrap();
    let back: SubPlan = cbor::from_slice(&cbor::to_vec(&p).unwrap(), 1 << 20).unwrap();
    assert_eq!(back, p);
    // Wide rather than deep: the node count is over the whole plan.
    let wide = Expr::InList {
        expr: Box::new(col("a")),
        list: vec![Expr::Literal(Scalar::Int64(1)); MAX_CONDITION_VALUES],
        negated: false,
    };
    let mut p = rows(wide.clone());
    let Output::Rows { columns, .. } = &mut p.output else {
        unreachable!()
    };
    for i in 0..2 {
        columns.push(Named {
            name: format!("x{i}"),
            expr: wide.clone(),
        });
    }
    assert_eq!(p.check(), Err(PlanError::TooLarge));
}

#[test]
fn a_deeply_nested_encoding_is_refused_by_the_decoder_not_the_stack() {
    // 100 000 nested `{"not": …}` maps, written by hand (encoding them would recurse too).
    let mut bytes = Vec::new();
    for _ in 0..100_000 {
        bytes.extend([0xa1, 0x63]);
        bytes.extend(b"not");
    }
    bytes.extend([0xa1, 0x66]);
    bytes.extend(b"column");
    bytes.extend([0x61, b'a']);
    assert!(cbor::from_slice::<Expr>(&bytes, 1 << 20).is_err());
}

#[test]
fn unknown_functions_and_bad_names_are_refused_with_a_code() {
    let err = rows(call("now", vec![])).check().unwrap_err();
    assert_eq!(err, PlanError::UnknownFunction("now".into()));
    assert_eq!(err.code(), "plan-unknown-function");
    let mut p = daily();
    let Output::Aggregate { aggregates, .. } = &mut p.output else {
        unreachable!()
    };
    aggregates[0].function = "my_udaf".into();
    assert_eq!(p.check(), Err(PlanError::UnknownFunction("my_udaf".into())));
    let mut p = daily();
    let Output::Aggregate { aggregates, .. } = &mut p.output else {
        unreachable!()
    };
    aggregates[1].name = "day".into();
    assert_eq!(p.check(), Err(PlanError::OutputName("day".into())));
    let mut p = rows(col("a"));
    p.version = PLAN_VERSION + 1;
    assert_eq!(p.check().unwrap_err().code(), "plan-version");
    let p = SubPlan {
        version: PLAN_VERSION,
        filter: None,
        output: Output::Rows {
            columns: vec![],
            order_by: vec![],
            limit: Some(1),
        },
    };
    assert_eq!(p.check(), Err(PlanError::NoColumns));
    let long = "c".repeat(MAX_IDENTIFIER_BYTES + 1);
    assert!(matches!(
        rows(col(&long)).check(),
        Err(PlanError::TooLong { .. })
    ));
}

#[test]
fn decimals_are_canonical_and_within_their_precision() {
    let dec = |unscaled: &str, precision, scale| {
        rows(Expr::Literal(Scalar::Decimal128 {
            unscaled: unscaled.into(),
            precision,
            scale,
        }))
        .check()
    };
    dec("12345", 5, 2).unwrap();
    dec("-7", 1, 0).unwrap();
    dec("0", 1, 0).unwrap();
    for (u, p, s) in [
        ("123456", 5, 2),
        ("007", 5, 2),
        ("-0", 5, 2),
        ("1e3", 5, 2),
        ("", 5, 2),
        ("1", 0, 0),
        ("1", 39, 0),
        ("1", 5, 6),
    ] {
        assert_eq!(
            dec(u, p, s),
            Err(PlanError::Malformed(if p == 0 || p > 38 || s > p as i8 {
                "decimal type"
            } else {
                "decimal literal"
            })),
            "{u} {p} {s}"
        );
    }
}
