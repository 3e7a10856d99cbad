//! Conversion of uploaded files (CSV, GeoJSON, JSON, NDJSON, Parquet) into the node's Parquet
//! storage, streaming and in bounded memory.
//!
//! Every converter reads the source once in batches and writes the rows to a Parquet file; the
//! caller decides where that file goes. Column names are normalised to lower-case SQL
//! identifiers (`Einwohner (gesamt)` → `einwohner_gesamt`); the original name is kept in the
//! schema as `source_name`.

mod csv;
mod infer;
mod json;
mod parquet;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use ::parquet::arrow::ArrowWriter;
use ::parquet::basic::Compression;
use ::parquet::file::properties::WriterProperties;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use sha2::{Digest, Sha256};

use allmende_store::Field;

/// Rows per Arrow batch while converting.
pub(crate) const BATCH_ROWS: usize = 8192;
/// Rows per Parquet row group; bounds the writer's memory.
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Rows read to infer column types before conversion starts.
pub(crate) const INFER_ROWS: usize = 20_000;
/// Most bytes of rows held while inferring column types; past it, the rows read so far decide.
pub(crate) const MAX_SAMPLE_BYTES: usize = 64 << 20;
/// Most bytes of source rows converted in one batch; wide or long rows make smaller batches.
pub(crate) const MAX_BATCH_BYTES: usize = 64 << 20;

/// Bounds on what an import may hold.
#[derive(Clone, Copy, Debug)]
pub struct ImportLimits {
    /// Most columns (`limits.max_columns`).
    pub max_columns: usize,
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self { max_columns: 4096 }
    }
}

impl ImportLimits {
    /// Refuses `columns` columns if they are more than the limit.
    pub(crate) fn check_columns(&self, columns: usize) -> Result<(), ImportError> {
        if columns > self.max_columns {
            return Err(ImportError::TooWide {
                columns,
                max: self.max_columns,
            });
        }
        Ok(())
    }
}

/// Rows per batch for rows of about `row_bytes` each: at most [`BATCH_ROWS`], and at most
/// [`MAX_BATCH_BYTES`] together.
pub(crate) fn batch_rows(row_bytes: usize) -> usize {
    (MAX_BATCH_BYTES / row_bytes.max(1)).clamp(1, BATCH_ROWS)
}

/// The source formats the node imports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma- or semicolon-separated values, UTF-8 or Latin-1.
    Csv,
    /// A GeoJSON FeatureCollection.
    GeoJson,
    /// A JSON array of objects.
    Json,
    /// Newline-delimited JSON objects.
    NdJson,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The format's name as used in the API (`csv`, `geojson`, `json`, `ndjson`, `parquet`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::GeoJson => "geojson",
            Self::Json => "json",
            Self::NdJson => "ndjson",
            Self::Parquet => "parquet",
        }
    }

    /// Parses a format name or file extension.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "csv" | "txt" | "tsv" => Self::Csv,
            "geojson" => Self::GeoJson,
            "json" => Self::Json,
            "ndjson" | "jsonl" => Self::NdJson,
            "parquet" | "pq" => Self::Parquet,
            _ => return None,
        })
    }

    /// Determines the format from an explicit name, else the file name's extension, else the
    /// first bytes of the file.
    pub fn detect(
        explicit: Option<&str>,
        file_name: Option<&str>,
        path: &Path,
    ) -> Result<Self, ImportError> {
        if let Some(name) = explicit {
            return Self::from_name(name).ok_or_else(|| ImportError::UnknownFormat(name.into()));
        }
        if let Some(ext) = file_name.and_then(|n| Path::new(n).extension()?.to_str())
            && let Some(format) = Self::from_name(ext)
        {
            if format == Self::Json {
                return sniff(path).map(|s| if s == Self::GeoJson { s } else { format });
            }
            return Ok(format);
        }
        sniff(path)
    }
}

/// Guesses the format from the first bytes.
fn sniff(path: &Path) -> Result<Format, ImportError> {
    let mut head = Vec::with_capacity(4096);
    File::open(path)?.take(4096).read_to_end(&mut head)?;
    if head.starts_with(b"PAR1") {
        return Ok(Format::Parquet);
    }
    let text = String::from_utf8_lossy(&head);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') && trimmed.contains("\"FeatureCollection\"") {
        return Ok(Format::GeoJson);
    }
    if trimmed.starts_with('[') {
        return Ok(Format::Json);
    }
    if trimmed.starts_with('{') {
        return Ok(Format::NdJson);
    }
    let printable = head
        .iter()
        .filter(|b| b.is_ascii_graphic() || b.is_ascii_whitespace() || **b >= 0x80)
        .count();
    if !head.is_empty() && printable == head.len() && (text.contains(';') || text.contains(',')) {
        return Ok(Format::Csv);
    }
    Err(ImportError::UnknownFormat(
        "the file is not CSV, GeoJSON, JSON, NDJSON or Parquet".into(),
    ))
}

/// Errors converting a file. Every variant but `Io` is the uploader's to fix.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The format is not one the node imports.
    #[error("unknown or unsupported format: {0}")]
    UnknownFormat(String),
    /// The content does not parse, or a value does not fit its column's type.
    #[error("invalid {format} data: {message}")]
    Invalid {
        /// The format being read.
        format: &'static str,
        /// What is wrong, naming the line or record where known.
        message: String,
    },
    /// The file has no columns or no rows.
    #[error("the file holds no data: {0}")]
    Empty(String),
    /// The file has more columns than the node imports.
    #[error("the file has {columns} columns; this node imports at most {max} (limits.max_columns)")]
    TooWide {
        /// Columns found (at least).
        columns: usize,
        /// The limit.
        max: usize,
    },
    /// Reading or writing failed on the node's side.
    #[error("i/o error during import: {0}")]
    Io(#[from] std::io::Error),
}

impl ImportError {
    pub(crate) fn invalid(format: Format, message: impl std::fmt::Display) -> Self {
        Self::Invalid {
            format: format.name(),
            message: message.to_string(),
        }
    }
}

/// What a conversion produced.
#[derive(Debug)]
pub struct Converted {
    /// Rows written.
    pub rows: u64,
    /// Columns written.
    pub schema: Vec<Field>,
    /// The text encoding that was detected (text formats).
    pub encoding: Option<String>,
    /// The CSV delimiter that was detected.
    pub delimiter: Option<char>,
    /// Size of the Parquet file written.
    pub bytes: u64,
    /// SHA-256 of the Parquet file written, lower-case hex.
    pub sha256: String,
}

/// The finished Parquet file: rows, columns, size and checksum.
pub(crate) struct Written {
    pub(crate) rows: u64,
    pub(crate) schema: Vec<Field>,
    pub(crate) bytes: u64,
    pub(crate) sha256: String,
}

impl Written {
    pub(crate) fn into_converted(
        self,
        encoding: Option<String>,
        delimiter: Option<char>,
    ) -> Converted {
        Converted {
            rows: self.rows,
            schema: self.schema,
            encoding,
            delimiter,
            bytes: self.bytes,
            sha256: self.sha256,
        }
    }
}

/// A file writer that hashes and counts what goes through it.
pub(crate) struct HashingFile {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Converts `src` in `format` to a Parquet file at `out`, calling `progress` with the number of
/// source bytes read so far.
pub fn convert(
    format: Format,
    src: &Path,
    out: &Path,
    limits: &ImportLimits,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Converted, ImportError> {
    let file = File::open(src)?;
    let reader = ProgressReader {
        inner: file,
        read: 0,
        progress,
    };
    match format {
        Format::Csv => csv::convert(src, reader, out, limits),
        Format::GeoJson | Format::Json | Format::NdJson => {
            json::convert(format, reader, out, limits)
        }
        Format::Parquet => parquet::convert(src, out, limits),
    }
}

/// A reader that reports how many bytes went through it.
pub(crate) struct ProgressReader<'a, R> {
    inner: R,
    read: u64,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let before = self.read >> 20;
        self.read += n as u64;
        if self.read >> 20 != before || n == 0 {
            (self.progress)(self.read);
        }
        Ok(n)
    }
}

/// Writes batches to a Parquet file, counting rows.
pub(crate) struct ParquetSink {
    writer: ArrowWriter<HashingFile>,
    schema: SchemaRef,
    rows: u64,
}

impl ParquetSink {
    pub(crate) fn create(out: &Path, schema: SchemaRef) -> Result<Self, ImportError> {
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let writer = ArrowWriter::try_new(
            HashingFile {
                file: File::create(out)?,
                hasher: Sha256::new(),
                bytes: 0,
            },
            schema.clone(),
            Some(props),
        )
        .map_err(|e| ImportError::Io(std::io::Error::other(e)))?;
        Ok(Self {
            writer,
            schema,
            rows: 0,
        })
    }

    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(), ImportError> {
        self.rows += batch.num_rows() as u64;
        self.writer
            .write(batch)
            .map_err(|e| ImportError::Io(std::io::Error::other(e)))
    }

    /// Finishes the file and syncs it to disk.
    pub(crate) fn finish(self, source_names: &[String]) -> Result<Written, ImportError> {
        let out = self
            .writer
            .into_inner()
            .map_err(|e| ImportError::Io(std::io::Error::other(e)))?;
        out.file.sync_all()?;
        Ok(Written {
            rows: self.rows,
            schema: fields_of(&self.schema, source_names),
            bytes: out.bytes,
            sha256: hex::encode(out.hasher.finalize()),
        })
    }
}

/// The schema as stored metadata, with the source names where they differ.
pub(crate) fn fields_of(schema: &Schema, source_names: &[String]) -> Vec<Field> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| Field {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
            source_name: source_names.get(i).filter(|s| *s != f.name()).cloned(),
        })
        .collect()
}

/// Turns column names into unique lower-case SQL identifiers.
pub fn normalize_columns<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let mut ident = String::new();
        for c in name.as_ref().trim().chars().flat_map(char::to_lowercase) {
            match c {
                'ä' => ident.push_str("ae"),
                'ö' => ident.push_str("oe"),
                'ü' => ident.push_str("ue"),
                'ß' => ident.push_str("ss"),
                c if c.is_ascii_alphanumeric() => ident.push(c),
                _ => {
                    if !ident.ends_with('_') {
                        ident.push('_');
                    }
                }
            }
        }
        let mut ident = ident.trim_matches('_').to_owned();
        if ident.is_empty() {
            ident = format!("column_{}", i + 1);
        } else if ident.starts_with(|c: char| c.is_ascii_digit()) {
            ident.insert_str(0, "c_");
        }
        let base = ident.clone();
        let mut n = 2;
        while out.contains(&ident) {
            ident = format!("{base}_{n}");
            n += 1;
        }
        out.push(ident);
    }
    out
}

/// A schema with the given field names.
pub(crate) fn renamed(schema: &Schema, names: &[String]) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .zip(names)
            .map(|(f, n)| f.as_ref().clone().with_name(n))
            .collect::<Vec<_>>(),
    ))
}

/// Maps an Arrow error raised while reading uploaded data.
pub(crate) fn arrow_invalid(format: Format, e: ArrowError) -> ImportError {
    match e {
        ArrowError::IoError(_, io) if io.kind() == std::io::ErrorKind::InvalidData => {
            ImportError::invalid(format, io)
        }
        ArrowError::IoError(_, io) => ImportError::Io(io),
        other => ImportError::invalid(format, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_column_names() {
        assert_eq!(
            normalize_columns(&["AGS", "Einwohner (gesamt)", "Fläche km²", "", "ags", "2018"]),
            vec![
                "ags",
                "einwohner_gesamt",
                "flaeche_km",
                "column_4",
                "ags_2",
                "c_2018"
            ]
        );
    }

    #[test]
    fn detects_formats() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let cases: [(&[u8], Format); 5] = [
            (b"PAR1....", Format::Parquet),
            (
                b"{\"type\": \"FeatureCollection\", \"features\": []}",
                Format::GeoJson,
            ),
            (b" [{\"a\":1}]", Format::Json),
            (b"{\"a\":1}\n{\"a\":2}\n", Format::NdJson),
            (b"a;b\n1;2\n", Format::Csv),
        ];
        for (bytes, expected) in cases {
            std::fs::write(&p, bytes).unwrap();
            assert_eq!(Format::detect(None, None, &p).unwrap(), expected);
        }
        std::fs::write(&p, [0u8, 1, 2, 3]).unwrap();
        assert!(matches!(
            Format::detect(None, None, &p),
            Err(ImportError::UnknownFormat(_))
        ));
        assert!(matches!(
            Format::detect(Some("xlsx"), None, &p),
            Err(ImportError::UnknownFormat(_))
        ));
        std::fs::write(&p, b"a,b\n1,2\n").unwrap();
        assert_eq!(
            Format::detect(None, Some("data.csv"), &p).unwrap(),
            Format::Csv
        );
    }
}
