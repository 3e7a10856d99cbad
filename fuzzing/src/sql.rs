//! The SQL entry point of `/api/v1/sql` without HTTP: [`guard::check`], then parsing, planning
//! and running on the engine's own threads under a deadline and a memory limit, over one table
//! in memory (`t`) and one Parquet file (`p`).
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use allmende_data::sql::{Engine, EngineConfig, Source, SqlError, collect, guard};
use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

/// How long one query may run.
const LIMIT: Duration = Duration::from_secs(2);
/// The memory one query may use.
const MEMORY: u64 = 64 << 20;

struct Tables {
    engine: Engine,
    schema: SchemaRef,
    batch: RecordBatch,
    parquet: PathBuf,
    _dir: tempfile::TempDir,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let engine = Engine::new(&EngineConfig {
            threads: 1,
            ..EngineConfig::default()
        })
        .expect("an engine");
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Float64, true),
            Field::new("c", DataType::Utf8, true),
            Field::new("d", DataType::Boolean, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1, 2, 3, -4, i64::MAX])),
            Arc::new(Float64Array::from(vec![
                Some(0.5),
                None,
                Some(-1e300),
                Some(f64::NAN),
                Some(3.0),
            ])),
            Arc::new(StringArray::from(vec![
                Some("Münster"),
                Some(""),
                None,
                Some("05515"),
                Some("a%b_c"),
            ])),
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
                None,
            ])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(0),
                    Some(1_700_000_000_000_000),
                    None,
                    Some(-1),
                    Some(i64::MAX),
                ])
                .with_timezone("UTC"),
            ),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).expect("a batch");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let parquet = dir.path().join("p.parquet");
        let file = std::fs::File::create(&parquet).expect("creating the Parquet file");
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None)
            .expect("a Parquet writer");
        w.write(&batch).expect("writing the Parquet file");
        w.close().expect("closing the Parquet file");
        Tables {
            engine,
            schema,
            batch,
            parquet,
            _dir: dir,
        }
    })
}

/// Runs `data` (as UTF-8) as a local query.
///
/// Invariants: the guard and the engine answer with a typed error or a result, never a panic
/// (the query threads turn a panic into [`SqlError::Internal`], which counts as one here).
pub fn sql(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if guard::check(text).is_err() {
        return;
    }
    let t = tables();
    let engine = t.engine.clone();
    let (schema, batch, parquet) = (t.schema.clone(), t.batch.clone(), t.parquet.clone());
    let text = text.to_owned();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let running = t.engine.pool().spawn(deadline, LIMIT, async move {
        let stream = engine
            .query(&text, MEMORY, &|table| {
                if table.schema().is_some() {
                    return Err(SqlError::Invalid(format!(
                        "table `{table}`: only this node's datasets"
                    )));
                }
                match table.table() {
                    "t" => Ok(Source::Batches(schema.clone(), vec![batch.clone()])),
                    "p" => Ok(Source::Parquet(parquet.clone())),
                    name => Err(SqlError::Invalid(format!("table `{name}` not found"))),
                }
            })
            .await?;
        collect(stream).await.map(|(_, batches)| batches.len())
    });
    match futures::executor::block_on(running) {
        Err(SqlError::Internal(m)) if m.contains("panicked") => panic!("{m}"),
        Ok(_) | Err(_) => {}
    }
}
