//! What one federated member spends answering a small fragment: DataFusion over a 24-row
//! Parquet file (the federation scenario's dataset), from the fragment to the last batch.
//! `cargo bench -p allmende --bench fragment`.
#![expect(missing_docs, reason = "criterion's macros define the bench functions")]

use std::sync::Arc;

use allmende_data::sql::{self, Source};
use allmende_node::query::fragment::fragment_sql;
use allmende_protocol::query::{Aggregate, AggregateFn, CompareOp, Condition, Fragment, Literal};
use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;

fn write_counts(path: &std::path::Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("station", DataType::Utf8, false),
        Field::new("hour", DataType::Int64, false),
        Field::new("bikes", DataType::Int64, true),
        Field::new("cars", DataType::Int64, true),
    ]));
    let n = 24;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("s{}", i % 3)),
            )),
            Arc::new(Int64Array::from_iter_values(0..n)),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| i * 7 % 50))),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| i * 13 % 90))),
        ],
    )
    .expect("batch");
    let file = std::fs::File::create(path).expect("create");
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

fn fragments() -> Vec<(&'static str, Fragment)> {
    let agg = |func, column: &str| Aggregate {
        func,
        column: column.into(),
    };
    vec![
        (
            "sum-max by station",
            Fragment {
                aggregates: vec![
                    agg(AggregateFn::Sum, "bikes"),
                    agg(AggregateFn::Max, "cars"),
                ],
                group_by: vec!["station".into()],
                ..Fragment::default()
            },
        ),
        (
            "filtered rows",
            Fragment {
                columns: vec!["station".into(), "hour".into(), "bikes".into()],
                filter: vec![Condition {
                    column: "hour".into(),
                    op: CompareOp::Gteq,
                    values: vec![Literal::Int(12)],
                }],
                order_by: vec![("hour".into(), true)],
                limit: Some(10),
                ..Fragment::default()
            },
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("counts.parquet");
    write_counts(&path);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let engine = sql::Engine::new(&sql::EngineConfig::default()).expect("engine");
    for (name, fragment) in fragments() {
        let text = fragment_sql(&fragment).expect("sql");
        c.bench_function(&format!("fragment {name}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut stream = engine
                        .query(&text, 64 << 20, &|_| Ok(Source::Parquet(path.clone())))
                        .await
                        .expect("plan");
                    let mut rows = 0;
                    while let Some(batch) = stream.next().await {
                        rows += batch.expect("batch").num_rows();
                    }
                    assert!(rows > 0);
                })
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
