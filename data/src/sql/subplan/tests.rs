//! The plan language against DataFusion: expressions survive the trip through the language, and
//! a provider's plan answers what the same SQL answers.
use std::sync::Arc;

use allmende_protocol::plan::{
    AggregateCall, BinaryOp, Expr as PlanExpr, Named, Output, PLAN_VERSION, Scalar, SortKey,
    SubPlan,
};
use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::prelude::SessionContext;

use super::*;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("lane", DataType::Int64, true),
        Field::new("n", DataType::Int64, true),
        Field::new("counter", DataType::Utf8, true),
    ]))
}

/// 48 hourly rows over two days, two lanes, three counters, a null count every seventh row.
fn batch() -> RecordBatch {
    let hours: Vec<i64> = (0..48).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(TimestampMicrosecondArray::from(
                hours
                    .iter()
                    .map(|h| 1_767_225_600_000_000 + h * 3_600_000_000)
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                hours.iter().map(|h| Some(h % 2)).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                hours
                    .iter()
                    .map(|h| (h % 7 != 3).then_some(h * 10))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                hours
                    .iter()
                    .map(|h| Some(format!("c{}", h % 3)))
                    .collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

fn context() -> SessionContext {
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema(), vec![vec![batch()]]).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    ctx
}

/// Rows as CSV lines, sorted: the comparison ignores row order, not types or nulls.
fn lines(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(false)
            .build(&mut out);
        for b in batches {
            w.write(b).unwrap();
        }
    }
    let mut lines: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[test]
fn expressions_survive_the_language() {
    let ctx = context();
    let df_schema = DFSchema::try_from(schema().as_ref().clone()).unwrap();
    let state = ctx.state();
    for sql in [
        "date_trunc('day', ts)",
        "date_part('hour', ts)",
        "CASE WHEN lane = 1 THEN n ELSE 0 END",
        "CASE lane WHEN 0 THEN 'even' WHEN 1 THEN 'odd' END",
        "ts >= TIMESTAMP '2026-01-01 00:00:00' OR n IS NULL",
        "n BETWEEN 1 AND 5 AND NOT (lane > 0)",
        "n NOT IN (1, 2, 3)",
        "counter LIKE 'c%' OR counter ILIKE 'C_'",
        "CAST(n AS DOUBLE) / 3.5",
        "TRY_CAST(counter AS INT)",
        "CAST(ts AS DATE)",
        "-n % 2 = 0 IS NOT TRUE",
        "coalesce(n, 0) + lane",
        "counter || '-' || upper(counter)",
        "counter ~ '^c[0-9]$'",
        "n IS DISTINCT FROM NULL",
        "ts + INTERVAL '1 day'",
        "CAST(n AS DECIMAL(20, 2)) > 12.34",
    ] {
        let e = state.create_logical_expr(sql, &df_schema).unwrap();
        let p = expr_from_df(&e).unwrap_or_else(|| panic!("`{sql}` ({e}) is outside the language"));
        let back = expr_to_df(&p, &state).unwrap();
        assert_eq!(back.to_string(), e.to_string(), "{sql}");
    }
    for sql in ["random()", "now()", "n IN (SELECT 1)"] {
        let Ok(e) = state.create_logical_expr(sql, &df_schema) else {
            continue;
        };
        assert!(expr_from_df(&e).is_none(), "`{sql}` is in the language");
    }
}

fn col(c: &str) -> PlanExpr {
    PlanExpr::Column(c.into())
}

async fn run(ctx: &SessionContext, plan: &SubPlan) -> Vec<String> {
    let table = ctx.table_provider("t").await.unwrap();
    let scan = LogicalPlanBuilder::scan("t", provider_as_source(table), None).unwrap();
    let logical = logical_plan(plan, scan, &ctx.state()).unwrap();
    let batches = ctx
        .execute_logical_plan(logical)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    lines(&batches)
}

async fn sql(ctx: &SessionContext, sql: &str) -> Vec<String> {
    lines(&ctx.sql(sql).await.unwrap().collect().await.unwrap())
}

#[tokio::test]
async fn a_providers_plan_answers_what_the_same_sql_answers() {
    let ctx = context();
    let state = ctx.state();
    let df_schema = DFSchema::try_from(schema().as_ref().clone()).unwrap();
    let expr =
        |sql: &str| expr_from_df(&state.create_logical_expr(sql, &df_schema).unwrap()).unwrap();
    let aggregate =
        |name: &str, function: &str, args: Vec<PlanExpr>, distinct, filter| AggregateCall {
            name: name.into(),
            function: function.into(),
            args,
            distinct,
            filter,
            order_by: vec![],
        };
    let daily = SubPlan {
        version: PLAN_VERSION,
        filter: Some(expr("lane = 1 OR n IS NULL")),
        output: Output::Aggregate {
            group_by: vec![Named {
                name: "day".into(),
                expr: expr("date_trunc('day', ts)"),
            }],
            aggregates: vec![
                aggregate(
                    "total",
                    "sum",
                    vec![expr("CASE WHEN n > 100 THEN n ELSE 0 END")],
                    false,
                    None,
                ),
                aggregate("counters", "count", vec![col("counter")], true, None),
                aggregate(
                    "rows",
                    "count",
                    vec![PlanExpr::Literal(Scalar::Int64(1))],
                    false,
                    Some(expr("n > 0")),
                ),
                aggregate("mean", "avg", vec![expr("coalesce(n, 0)")], false, None),
            ],
        },
    };
    assert_eq!(
        run(&ctx, &daily).await,
        sql(
            &ctx,
            "SELECT date_trunc('day', ts) AS day, \
             sum(CASE WHEN n > 100 THEN n ELSE 0 END) AS total, \
             count(DISTINCT counter) AS counters, count(*) FILTER (WHERE n > 0) AS rows, \
             avg(coalesce(n, 0)) AS mean \
             FROM t WHERE lane = 1 OR n IS NULL GROUP BY 1"
        )
        .await
    );
    let rows = SubPlan {
        version: PLAN_VERSION,
        filter: Some(PlanExpr::Binary {
            op: BinaryOp::Gt,
            left: Box::new(col("n")),
            right: Box::new(PlanExpr::Literal(Scalar::Int64(200))),
        }),
        output: Output::Rows {
            columns: vec![
                Named {
                    name: "hour".into(),
                    expr: expr("date_part('hour', ts)"),
                },
                Named {
                    name: "n".into(),
                    expr: col("n"),
                },
            ],
            order_by: vec![SortKey {
                expr: col("n"),
                ascending: false,
                nulls_first: false,
            }],
            limit: Some(5),
        },
    };
    assert_eq!(
        run(&ctx, &rows).await,
        sql(
            &ctx,
            "SELECT date_part('hour', ts) AS hour, n FROM t WHERE n > 200 ORDER BY n DESC LIMIT 5"
        )
        .await
    );
}

#[tokio::test]
async fn a_plan_the_language_or_the_engine_refuses_is_an_error() {
    let ctx = context();
    let state = ctx.state();
    let table = ctx.table_provider("t").await.unwrap();
    let scan = || LogicalPlanBuilder::scan("t", provider_as_source(table.clone()), None).unwrap();
    let plan = |expr| SubPlan {
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
    };
    let now = PlanExpr::Call {
        function: "now".into(),
        args: vec![],
    };
    assert!(matches!(
        logical_plan(&plan(now), scan(), &state),
        Err(SubPlanError::Check(PlanError::UnknownFunction(_)))
    ));
    assert!(matches!(
        logical_plan(&plan(col("no_such_column")), scan(), &state),
        Err(SubPlanError::Planning(_))
    ));
}
