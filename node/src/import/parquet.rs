//! Parquet import: the file is read batch by batch and written again, which both checks it
//! completely and normalises its column names and compression.

use std::fs::File;
use std::path::Path;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{
    BATCH_ROWS, Converted, Format, ImportError, ParquetSink, arrow_invalid, normalize_columns,
    renamed,
};

pub(super) fn convert(src: &Path, out: &Path) -> Result<Converted, ImportError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(src)?)
        .map_err(|e| ImportError::invalid(Format::Parquet, e))?;
    let source_names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    if source_names.is_empty() {
        return Err(ImportError::Empty("the Parquet file has no columns".into()));
    }
    let schema = renamed(builder.schema(), &normalize_columns(&source_names));
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| ImportError::invalid(Format::Parquet, e))?;
    let mut sink = ParquetSink::create(out, schema.clone())?;
    for batch in reader {
        let batch = batch.map_err(|e| arrow_invalid(Format::Parquet, e))?;
        let batch = batch
            .with_schema(schema.clone())
            .map_err(|e| arrow_invalid(Format::Parquet, e))?;
        sink.write(&batch)?;
    }
    if sink.rows == 0 {
        return Err(ImportError::Empty("the Parquet file has no rows".into()));
    }
    Ok(sink.finish(&source_names)?.into_converted(None, None))
}
