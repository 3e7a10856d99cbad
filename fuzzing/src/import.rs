//! The importers ([`allmende_data::import::convert`]): CSV, JSON, NDJSON and GeoJSON, with the
//! type inference over their first rows. They read files, so each input is written to a file in
//! a temporary directory (under `/dev/shm` where it exists).
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use allmende_data::import::{Format, ImportError, ImportLimits, convert};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Most columns an import may have here (the node's default is 4096; fewer keep runs fast).
const MAX_COLUMNS: usize = 256;

/// Imports `data` as CSV.
pub fn import_csv(data: &[u8]) {
    import(Format::Csv, data);
}

/// Imports the rest of `data` as a JSON array of objects (first byte even) or as NDJSON (odd).
pub fn import_json(data: &[u8]) {
    let Some((selector, rest)) = crate::support::split(data) else {
        return;
    };
    let format = if selector % 2 == 0 {
        Format::Json
    } else {
        Format::NdJson
    };
    import(format, rest);
}

/// Imports `data` as a GeoJSON FeatureCollection.
pub fn import_geojson(data: &[u8]) {
    import(Format::GeoJson, data);
}

/// The directory the inputs and outputs go to, for the life of the process.
fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let made = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("allmende-fuzz")
                .tempdir_in(shm)
        } else {
            tempfile::tempdir()
        };
        made.expect("a temporary directory")
    })
    .path()
}

/// Converts `data` in `format`; checks that the result is a typed error or a Parquet file that
/// holds the rows and columns the conversion reports.
fn import(format: Format, data: &[u8]) {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    let src = dir().join(format!("in-{thread}"));
    let out: PathBuf = dir().join(format!("out-{thread}.parquet"));
    std::fs::write(&src, data).expect("writing the input");
    let _ = std::fs::remove_file(&out);
    let _ = Format::detect(None, None, &src);
    let limits = ImportLimits {
        max_columns: MAX_COLUMNS,
    };
    match convert(format, &src, &out, &limits, &|_| {}) {
        Ok(c) => {
            let file = File::open(&out).expect("the converted file exists");
            assert_eq!(
                file.metadata().expect("its metadata").len(),
                c.bytes,
                "size differs"
            );
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("the converted file is Parquet");
            let schema = reader.schema().clone();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let reported: Vec<&str> = c.schema.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(names, reported, "the columns differ from those reported");
            assert!(names.len() <= MAX_COLUMNS, "more columns than the limit");
            let mut rows = 0u64;
            for batch in reader.build().expect("a reader of the converted file") {
                rows += batch.expect("the converted file reads").num_rows() as u64;
            }
            assert_eq!(rows, c.rows, "the row count differs from the one reported");
        }
        Err(ImportError::Io(e)) => panic!("an i/o error on a well-behaved disk: {e}"),
        Err(_) => {}
    }
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&out);
}
