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

pub(crate) fn schema() -> Arc<Schema> {
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
pub(crate) fn batch() -> RecordBatch {
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

/// Rows as lines of displayed values, sorted: the comparison ignores row order, not values,
/// nulls or the result's column types.
pub(crate) fn lines(batches: &[RecordBatch]) -> Vec<String> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("NULL");
    let mut lines = Vec::new();
    for b in batches {
        let types: Vec<String> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().to_string())
            .collect();
        let formatters: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..b.num_rows() {
            let values: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            lines.push(format!("{} :: {}", values.join(","), types.join(",")));
        }
    }
    lines.sort();
    lines
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
             avg(coalesce(n, 0)) AS mean, count(*) AS __n \
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

/// Rows of the final aggregation, by a provider's plan, of the states three members computed
/// over their thirds of the rows.
async fn merged(plan: &SubPlan) -> Vec<String> {
    use crate::sql::{Engine, EngineConfig, Source, collect};
    use datafusion::datasource::memory::MemorySourceConfig;
    let engine = Engine::new(&EngineConfig {
        threads: 1,
        ..EngineConfig::default()
    })
    .unwrap();
    let all = batch();
    let mut states = Vec::new();
    for (offset, len) in [(0, 16), (16, 16), (32, 16)] {
        let member = Source::Batches(schema(), vec![all.slice(offset, len)]);
        let stream = engine.run_subplan(plan, member, 64 << 20).await.unwrap();
        let (_, batches) = collect(stream).await.unwrap();
        states.extend(batches);
    }
    let state_schema = states[0].schema();
    let states = MemorySourceConfig::try_new_exec(&[states], state_schema, None).unwrap();
    let last = engine
        .final_aggregate(plan, schema(), states)
        .await
        .unwrap();
    let ctx = SessionContext::new();
    lines(
        &datafusion::physical_plan::collect(last, ctx.task_ctx())
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn members_partial_states_merge_to_the_aggregate_over_their_union() {
    let ctx = context();
    let state = ctx.state();
    let df_schema = DFSchema::try_from(schema().as_ref().clone()).unwrap();
    let expr =
        |sql: &str| expr_from_df(&state.create_logical_expr(sql, &df_schema).unwrap()).unwrap();
    let call = |name: &str, function: &str, args: &[&str], distinct| AggregateCall {
        name: name.into(),
        function: function.into(),
        args: args.iter().map(|a| expr(a)).collect(),
        distinct,
        filter: None,
        order_by: vec![],
    };
    let by = |groups: &[(&str, &str)], aggregates| SubPlan {
        version: PLAN_VERSION,
        filter: Some(expr("n IS NULL OR n <> 50")),
        output: Output::Aggregate {
            group_by: groups
                .iter()
                .map(|(name, e)| Named {
                    name: (*name).into(),
                    expr: expr(e),
                })
                .collect(),
            aggregates,
        },
    };
    let ordered = AggregateCall {
        order_by: vec![SortKey {
            expr: col("ts"),
            ascending: false,
            nulls_first: false,
        }],
        ..call("latest", "array_agg", &["counter"], false)
    };
    let cases = [
        (
            by(
                &[("day", "date_trunc('day', ts)")],
                vec![
                    call(
                        "total",
                        "sum",
                        &["CASE WHEN n > 100 THEN n ELSE 0 END"],
                        false,
                    ),
                    call("counters", "count", &["counter"], true),
                    call("lanes", "sum", &["lane"], true),
                    call("mean", "avg", &["coalesce(n, 0)"], false),
                    call("middle", "median", &["n"], false),
                    call("low", "min", &["counter"], false),
                    call("all_big", "bool_and", &["n > 5"], false),
                ],
            ),
            "SELECT date_trunc('day', ts) AS day, \
             sum(CASE WHEN n > 100 THEN n ELSE 0 END) AS total, \
             count(DISTINCT counter) AS counters, sum(DISTINCT lane) AS lanes, \
             avg(coalesce(n, 0)) AS mean, median(n) AS middle, min(counter) AS low, \
             bool_and(n > 5) AS all_big, count(*) AS __n \
             FROM t WHERE n IS NULL OR n <> 50 GROUP BY 1",
        ),
        (
            by(
                &[("hour", "date_part('hour', ts)"), ("lane", "lane")],
                vec![call("n", "max", &["n"], false), ordered],
            ),
            "SELECT date_part('hour', ts) AS hour, lane, max(n) AS n, \
             array_agg(counter ORDER BY ts DESC) AS latest, count(*) AS __n \
             FROM t WHERE n IS NULL OR n <> 50 GROUP BY 1, 2",
        ),
        (
            by(
                &[],
                vec![
                    call("distinct_counters", "approx_distinct", &["counter"], false),
                    call("rows", "count", &["1"], false),
                    call("spread", "max", &["n - lane"], false),
                ],
            ),
            "SELECT approx_distinct(counter) AS distinct_counters, count(*) AS rows, \
             max(n - lane) AS spread, count(*) AS __n FROM t WHERE n IS NULL OR n <> 50",
        ),
    ];
    for (plan, reference) in cases {
        assert_eq!(
            merged(&plan).await,
            sql(&ctx, reference).await,
            "{reference}"
        );
    }
}
