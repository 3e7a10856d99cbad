//! Federated queries planned by DataFusion over three members (each a slice of the rows,
//! answering through the provider's own [`Engine::run_subplan`]) answer what the same SQL
//! answers over the union of their rows.
use std::sync::{Arc, Mutex};

use allmende_protocol::plan::{Output, SubPlan};
use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use futures::future::BoxFuture;

use super::{Fanout, FederatedTable, MEMBER_COLUMN, MemberBatches};
use crate::sql::subplan::tests::{batch, lines, schema};
use crate::sql::{Engine, EngineConfig, Source, SqlError, collect};

/// The members: each a name and its rows; every plan asked is recorded.
#[derive(Debug)]
struct Members {
    engine: Engine,
    parts: Vec<(String, RecordBatch)>,
    asked: Arc<Mutex<Vec<SubPlan>>>,
}

impl Fanout for Members {
    fn ask(
        &self,
        plan: SubPlan,
        expected: SchemaRef,
    ) -> BoxFuture<'static, datafusion::error::Result<Vec<MemberBatches>>> {
        self.asked.lock().unwrap().push(plan.clone());
        let (engine, parts) = (self.engine.clone(), self.parts.clone());
        Box::pin(async move {
            let failed = |e: SqlError| DataFusionError::External(Box::new(e));
            let mut answers = Vec::new();
            for (member, rows) in parts {
                let rows = as_views(&rows);
                let source = Source::Batches(rows.schema(), vec![rows]);
                let stream = engine
                    .run_subplan(&plan, source, 64 << 20)
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                let batches = collect(stream).await.map_err(failed)?.1;
                // What the asker checks each member's answer against.
                let conformed: Option<Vec<RecordBatch>> = batches
                    .iter()
                    .map(|b| super::conformed(b, &expected))
                    .collect();
                let batches = conformed.ok_or_else(|| {
                    DataFusionError::Internal(format!(
                        "{member}: answer {:?}, expected {expected:?}",
                        batches.first().map(|b| b.schema())
                    ))
                })?;
                answers.push((member, batches));
            }
            Ok(answers)
        })
    }
}

/// `batch` with its strings as `Utf8View`, as a provider reading Parquet has them.
fn as_views(batch: &RecordBatch) -> RecordBatch {
    let (mut fields, mut columns) = (Vec::new(), Vec::new());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let view = *f.data_type() == DataType::Utf8;
        let to = if view {
            DataType::Utf8View
        } else {
            f.data_type().clone()
        };
        fields.push(f.as_ref().clone().with_data_type(to.clone()));
        columns.push(arrow::compute::cast(c, &to).unwrap());
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// Districts by counter: the asking node's own table.
fn districts() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("counter", DataType::Utf8, false),
        Field::new("district", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["c0", "c1", "c2"])),
            Arc::new(StringArray::from(vec!["Altstadt", "Süd", "Sennestadt"])),
        ],
    )
    .unwrap()
}

struct Setup {
    engine: Engine,
    table: Arc<FederatedTable>,
    union: RecordBatch,
    asked: Arc<Mutex<Vec<SubPlan>>>,
}

fn setup() -> Setup {
    let engine = Engine::new(&EngineConfig {
        threads: 1,
        ..EngineConfig::default()
    })
    .unwrap();
    let all = batch();
    // Unequal thirds, so that groups span members.
    let parts: Vec<(String, RecordBatch)> = [
        ("bielefeld", 0, 20),
        ("muenster", 20, 17),
        ("wuerzburg", 37, 11),
    ]
    .iter()
    .map(|(m, offset, len)| ((*m).to_owned(), all.slice(*offset, *len)))
    .collect();
    let mut fields: Vec<Field> = schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(MEMBER_COLUMN, DataType::Utf8, false));
    let union_schema = Arc::new(Schema::new(fields));
    let unions: Vec<RecordBatch> = parts
        .iter()
        .map(|(m, b)| {
            let mut columns: Vec<ArrayRef> = b.columns().to_vec();
            columns.push(Arc::new(StringArray::from(vec![m.as_str(); b.num_rows()])));
            RecordBatch::try_new(union_schema.clone(), columns).unwrap()
        })
        .collect();
    let union = arrow::compute::concat_batches(&union_schema, &unions).unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let members = Members {
        engine: engine.clone(),
        parts,
        asked: asked.clone(),
    };
    let table = Arc::new(FederatedTable::new(&schema(), Arc::new(members)).unwrap());
    Setup {
        engine,
        table,
        union,
        asked,
    }
}

/// Runs `sql` with `f` the federated table (or, with `union`, the union of the members' rows)
/// and `d` the districts.
async fn run(s: &Setup, sql: &str, union: bool) -> Result<Vec<RecordBatch>, SqlError> {
    let stream = s
        .engine
        .query(sql, 256 << 20, &|t| match t.table() {
            "f" if union => Ok(Source::Batches(s.union.schema(), vec![s.union.clone()])),
            "f" => Ok(Source::Table(s.table.clone())),
            "d" => Ok(Source::Batches(districts().schema(), vec![districts()])),
            other => Err(SqlError::Invalid(format!("no table {other}"))),
        })
        .await?;
    Ok(collect(stream).await?.1)
}

/// Queries of every construct, and whether the members compute an aggregation of each.
const QUERIES: &[(&str, bool)] = &[
    (
        "SELECT date_trunc('day', ts) AS day, sum(n) FROM f GROUP BY 1",
        true,
    ),
    (
        "SELECT _member, count(DISTINCT counter), avg(coalesce(n, 0)) FROM f GROUP BY _member",
        true,
    ),
    (
        "SELECT _member, count(DISTINCT counter) AS c, count(DISTINCT CAST(ts AS DATE)) AS days \
         FROM f GROUP BY _member",
        true,
    ),
    (
        "SELECT _member, corr(n, lane) AS r, stddev_samp(n) AS sd FROM f GROUP BY _member",
        false,
    ),
    (
        "SELECT count(*) FROM f WHERE ts >= TIMESTAMP '2026-01-01 12:00:00' OR lane = 1",
        true,
    ),
    (
        "SELECT EXTRACT(HOUR FROM ts) AS h, sum(CASE WHEN lane = 0 THEN n ELSE 0 END) AS s \
         FROM f GROUP BY 1 HAVING sum(n) > 100 ORDER BY h",
        true,
    ),
    (
        "SELECT CAST(ts AS DATE) AS day, CASE WHEN lane = 0 THEN 'in' ELSE 'out' END AS way, \
         count(*) FILTER (WHERE n > 100), sum(n) FILTER (WHERE lane = 1) FROM f GROUP BY 1, 2",
        true,
    ),
    (
        "SELECT * FROM (SELECT counter, max(n) AS m FROM f GROUP BY counter) s WHERE m > 100",
        true,
    ),
    (
        "SELECT counter, n FROM f WHERE n > (SELECT avg(n) FROM f) ORDER BY n DESC, counter LIMIT 5",
        true,
    ),
    (
        "SELECT f.counter, d.district, sum(f.n) AS n FROM f JOIN d ON f.counter = d.counter \
         GROUP BY 1, 2",
        true,
    ),
    (
        "SELECT d.district, date_trunc('day', f.ts) AS day, count(*), avg(f.n), min(f.ts), \
         max(f.n), count(f.n) FILTER (WHERE f.lane = 1) FROM d JOIN f ON d.counter = f.counter \
         GROUP BY 1, 2",
        true,
    ),
    (
        "SELECT count(*) AS c, sum(f.n) AS s, avg(f.n) AS a FROM f JOIN d \
         ON f.counter = d.counter WHERE d.district = 'nowhere'",
        true,
    ),
    // DataFusion turns the DISTINCT into a grouping by lane, which is split at the join.
    (
        "SELECT d.district, count(DISTINCT f.lane) FROM f JOIN d ON f.counter = d.counter \
         GROUP BY 1",
        true,
    ),
    (
        "SELECT _member, n, rank() OVER (PARTITION BY _member ORDER BY n DESC NULLS LAST) AS r \
         FROM f",
        false,
    ),
    (
        "SELECT counter FROM f WHERE lane = 0 INTERSECT SELECT counter FROM f WHERE lane = 1",
        true,
    ),
    (
        "SELECT counter, lane FROM f WHERE n < 30 EXCEPT SELECT counter, lane FROM f WHERE n < 10",
        true,
    ),
    (
        "WITH x AS (SELECT _member, sum(n) AS s FROM f GROUP BY 1) \
         SELECT * FROM x WHERE s > (SELECT min(s) FROM x)",
        true,
    ),
    ("SELECT count(*) FROM f", true),
    (
        "SELECT v.counter, sum(v.n) AS s FROM f AS v WHERE v.lane = 1 GROUP BY v.counter",
        true,
    ),
    ("SELECT _member, count(*) FROM f GROUP BY 1", true),
    (
        "SELECT a.counter, count(*) FROM f a JOIN f b ON a.ts = b.ts AND a.lane <> b.lane \
         GROUP BY 1",
        false,
    ),
    (
        "SELECT median(n), approx_distinct(counter), min(ts), max(counter), bool_or(n > 400) \
         FROM f",
        true,
    ),
    (
        "SELECT counter, array_agg(n ORDER BY ts) FROM f GROUP BY counter",
        true,
    ),
    (
        "SELECT ts, n FROM f WHERE EXISTS (SELECT 1 FROM d WHERE d.counter = f.counter \
         AND d.district LIKE 'S%') AND n > 400",
        false,
    ),
    (
        "SELECT ts, n FROM f WHERE counter IN (SELECT counter FROM d WHERE district = 'Süd')",
        false,
    ),
    (
        "SELECT lane, n FROM f ORDER BY n DESC NULLS LAST, ts LIMIT 3",
        false,
    ),
    ("SELECT DISTINCT counter, lane FROM f", true),
    ("SELECT _member FROM f WHERE n IS NULL", false),
    (
        "SELECT counter, sum(n) AS s FROM f GROUP BY counter UNION ALL \
         SELECT 'all', sum(n) FROM f",
        true,
    ),
];

#[tokio::test]
async fn federated_queries_answer_what_the_sql_answers_over_the_union() {
    let s = setup();
    for (sql, pushed) in QUERIES {
        s.asked.lock().unwrap().clear();
        let federated = run(&s, sql, false)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let reference = run(&s, sql, true).await.unwrap();
        let ordered = sql.contains(" LIMIT ") || sql.ends_with("ORDER BY h");
        if ordered {
            let unsorted = |b: &[RecordBatch]| {
                arrow::util::pretty::pretty_format_batches(b)
                    .unwrap()
                    .to_string()
            };
            assert_eq!(unsorted(&federated), unsorted(&reference), "{sql}");
        } else {
            assert_eq!(lines(&federated), lines(&reference), "{sql}");
        }
        let asked = s.asked.lock().unwrap();
        assert!(!asked.is_empty(), "{sql}: no member was asked");
        let aggregated = asked
            .iter()
            .any(|p| matches!(p.output, Output::Aggregate { .. }));
        assert_eq!(aggregated, *pushed, "{sql}: {asked:?}");
    }
}
