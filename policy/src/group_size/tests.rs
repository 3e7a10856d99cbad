//! Each way around the minimum group size a sub-plan could try, and the columns it reads.
use allmende_protocol::plan::{
    AGGREGATE_FUNCTIONS, AggregateCall, BinaryOp, Expr, Named, Output, PLAN_VERSION, Scalar,
    SubPlan,
};

use super::*;

fn col(c: &str) -> Expr {
    Expr::Column(c.into())
}

fn lit(v: i64) -> Expr {
    Expr::Literal(Scalar::Int64(v))
}

fn bin(op: BinaryOp, left: Expr, right: Expr) -> Expr {
    Expr::Binary {
        op,
        left: Box::new(left),
        right: Box::new(right),
    }
}

fn day(of: &str) -> Expr {
    Expr::Call {
        function: "date_trunc".into(),
        args: vec![Expr::Literal(Scalar::Utf8("day".into())), col(of)],
    }
}

fn call(function: &str, args: Vec<Expr>) -> AggregateCall {
    AggregateCall {
        name: format!("{function}_of"),
        function: function.into(),
        args,
        distinct: false,
        filter: None,
        order_by: vec![],
    }
}

fn aggregate(filter: Option<Expr>, groups: Vec<Expr>, aggregates: Vec<AggregateCall>) -> SubPlan {
    SubPlan {
        version: PLAN_VERSION,
        filter,
        output: Output::Aggregate {
            group_by: groups
                .into_iter()
                .enumerate()
                .map(|(i, expr)| Named {
                    name: format!("g{i}"),
                    expr,
                })
                .collect(),
            aggregates,
        },
    }
}

#[test]
fn the_summaries_are_sorted_aggregates_of_the_language() {
    assert!(SUMMARIES.windows(2).all(|w| w[0] < w[1]));
    assert!(SUMMARIES.iter().all(|f| AGGREGATE_FUNCTIONS.contains(f)));
}

#[test]
fn every_column_is_read_wherever_it_stands_and_whatever_it_is_called() {
    let mut a = call("sum", vec![col("n")]);
    a.filter = Some(bin(BinaryOp::Gt, col("in_filter"), lit(0)));
    a.order_by = vec![allmende_protocol::plan::SortKey {
        expr: col("in_order"),
        ascending: true,
        nulls_first: false,
    }];
    let plan = aggregate(
        Some(bin(BinaryOp::Eq, col("station"), lit(1))),
        vec![day("ts")],
        vec![a],
    );
    assert_eq!(
        plan.columns(),
        ["in_filter", "in_order", "n", "station", "ts"]
    );
    let rows = SubPlan {
        version: PLAN_VERSION,
        filter: None,
        output: Output::Rows {
            // An alias does not hide the column it reads.
            columns: vec![Named {
                name: "harmless".into(),
                expr: Expr::Cast {
                    expr: Box::new(col("secret")),
                    to: allmende_protocol::plan::DataType::Utf8,
                    safe: false,
                },
            }],
            order_by: vec![],
            limit: None,
        },
    };
    assert_eq!(rows.columns(), ["secret"]);
    assert_eq!(check_under_group_size(&rows), Err(GroupSizeRefusal::Rows));
}

#[test]
fn a_filter_may_select_whole_groups_only() {
    let total = || vec![call("sum", vec![col("n")]), call("count", vec![lit(1)])];
    // On a grouping column, or on a grouping expression as a whole: whole groups.
    let on_lane = aggregate(
        Some(bin(BinaryOp::Eq, col("lane"), lit(1))),
        vec![col("lane")],
        total(),
    );
    assert_eq!(check_under_group_size(&on_lane), Ok(()));
    let on_day = aggregate(
        Some(bin(
            BinaryOp::GtEq,
            day("ts"),
            Expr::Literal(Scalar::Utf8("2026-01-01".into())),
        )),
        vec![day("ts"), col("lane")],
        total(),
    );
    assert_eq!(check_under_group_size(&on_day), Ok(()));
    // On the column under a grouping expression: an hour out of a day's group.
    let on_ts = aggregate(
        Some(bin(
            BinaryOp::Gt,
            col("ts"),
            Expr::Literal(Scalar::Utf8("2026-01-01 13:00".into())),
        )),
        vec![day("ts")],
        total(),
    );
    assert_eq!(
        check_under_group_size(&on_ts),
        Err(GroupSizeRefusal::FilterOutsideGroups("ts".into()))
    );
    // Hidden in one branch of an OR, or with no grouping at all.
    let hidden = aggregate(
        Some(bin(
            BinaryOp::Or,
            bin(BinaryOp::Eq, col("lane"), lit(1)),
            bin(BinaryOp::Eq, col("id"), lit(7)),
        )),
        vec![col("lane")],
        total(),
    );
    assert_eq!(
        check_under_group_size(&hidden),
        Err(GroupSizeRefusal::FilterOutsideGroups("id".into()))
    );
    let ungrouped = aggregate(Some(bin(BinaryOp::Eq, col("id"), lit(7))), vec![], total());
    assert!(check_under_group_size(&ungrouped).is_err());
}

#[test]
fn aggregates_take_plain_columns_and_summarise_them() {
    let by_day = |a: AggregateCall| aggregate(None, vec![day("ts")], vec![a]);
    for ok in [
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "stddev",
        "var",
        "covar_pop",
    ] {
        let args = if ok == "covar_pop" {
            vec![col("n"), col("m")]
        } else {
            vec![col("n")]
        };
        assert_eq!(
            check_under_group_size(&by_day(call(ok, args))),
            Ok(()),
            "{ok}"
        );
    }
    // A cast of a column (the planner's, for `avg` of integers) picks no row; a cast of an
    // expression is an expression.
    let cast = |expr: Expr| Expr::Cast {
        expr: Box::new(expr),
        to: allmende_protocol::plan::DataType::Float64,
        safe: false,
    };
    assert_eq!(
        check_under_group_size(&by_day(call("avg", vec![cast(col("n"))]))),
        Ok(())
    );
    assert_eq!(
        check_under_group_size(&by_day(call(
            "avg",
            vec![cast(bin(BinaryOp::Multiply, col("n"), lit(2)))]
        ))),
        Err(GroupSizeRefusal::Argument("avg_of".into()))
    );
    // One row's value picked out of the group by an expression or a FILTER.
    let picked = Expr::Case {
        operand: None,
        branches: vec![allmende_protocol::plan::When {
            when: bin(BinaryOp::Eq, col("id"), lit(7)),
            then: col("n"),
        }],
        otherwise: None,
    };
    assert_eq!(
        check_under_group_size(&by_day(call("sum", vec![picked]))),
        Err(GroupSizeRefusal::Argument("sum_of".into()))
    );
    let mut filtered = call("sum", vec![col("n")]);
    filtered.filter = Some(bin(BinaryOp::Eq, col("id"), lit(7)));
    assert_eq!(
        check_under_group_size(&by_day(filtered)).map_err(|e| e.code()),
        Err("aggregate-filter-under-group-size")
    );
    // States that list the values.
    let mut distinct = call("count", vec![col("id")]);
    distinct.distinct = true;
    assert_eq!(
        check_under_group_size(&by_day(distinct)),
        Err(GroupSizeRefusal::Distinct("count_of".into()))
    );
    for listing in [
        "median",
        "array_agg",
        "string_agg",
        "first_value",
        "approx_distinct",
        "percentile_cont",
    ] {
        if !AGGREGATE_FUNCTIONS.contains(&listing) {
            continue;
        }
        let err = check_under_group_size(&by_day(call(listing, vec![col("n")]))).unwrap_err();
        assert_eq!(err.code(), "aggregate-of-row-values", "{listing}");
    }
}
