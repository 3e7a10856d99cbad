//! Parquet import: the file is read batch by batch and written again, which both checks it
//! completely and normalises its column names and compression.

use std::fs::File;
use std::path::Path;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{
    Converted, Format, ImportError, ImportLimits, ParquetSink, arrow_invalid, batch_rows,
    normalize_columns, renamed,
};

pub(super) fn convert(
    src: &Path,
    out: &Path,
    limits: &ImportLimits,
) -> Result<Converted, ImportError> {
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
    limits.check_columns(source_names.len())?;
    // Rows of a batch by the file's own largest row group, so that wide or long rows make
    // smaller batches.
    let widest = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|g| usize::try_from(g.total_byte_size() / g.num_rows().max(1)).unwrap_or(usize::MAX))
        .max()
        .unwrap_or(1);
    let schema = renamed(builder.schema(), &normalize_columns(&source_names));
    let reader = builder
        .with_batch_size(batch_rows(widest))
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
