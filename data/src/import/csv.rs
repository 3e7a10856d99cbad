//! CSV import: encoding and delimiter detection, type inference on a sample, then a streaming
//! conversion with arrow-csv.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{Field as ArrowField, Schema};
use encoding_rs::WINDOWS_1252;
use encoding_rs_io::DecodeReaderBytesBuilder;

use super::infer::{Kind, classify};
use super::{
    Converted, Format, INFER_ROWS, ImportError, ImportLimits, MAX_SAMPLE_BYTES, ParquetSink,
    arrow_invalid, batch_rows, normalize_columns,
};

/// Longest line read, in bytes.
const MAX_LINE_BYTES: u64 = 16 << 20;

/// A reader that fails with `InvalidData` once a line grows beyond [`MAX_LINE_BYTES`], so that
/// no record is buffered without bound.
struct LineGuard<R> {
    inner: R,
    run: u64,
}

impl<R> LineGuard<R> {
    fn new(inner: R) -> Self {
        Self { inner, run: 0 }
    }
}

impl<R: Read> Read for LineGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        match buf[..n].iter().rposition(|b| *b == b'\n') {
            Some(i) => self.run = (n - 1 - i) as u64,
            None => self.run += n as u64,
        }
        if self.run > MAX_LINE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a line is longer than {MAX_LINE_BYTES} bytes"),
            ));
        }
        Ok(n)
    }
}

/// The detected text encoding of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Utf8,
    /// ISO-8859-1, read as its superset Windows-1252.
    Latin1,
}

/// Reads the whole file once to check whether it is valid UTF-8.
fn detect_encoding(path: &Path) -> Result<Encoding, ImportError> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut carry = 0usize;
    loop {
        let n = file.read(&mut buf[carry..])?;
        if n == 0 {
            return Ok(if carry == 0 {
                Encoding::Utf8
            } else {
                Encoding::Latin1
            });
        }
        let filled = carry + n;
        match std::str::from_utf8(&buf[..filled]) {
            Ok(_) => carry = 0,
            Err(e) if e.error_len().is_none() => {
                // An incomplete sequence at the end: keep it for the next read.
                let valid = e.valid_up_to();
                buf.copy_within(valid..filled, 0);
                carry = filled - valid;
            }
            Err(_) => return Ok(Encoding::Latin1),
        }
    }
}

/// A UTF-8 view of the file's bytes, without a byte-order mark.
fn decoded<R: Read>(reader: R, encoding: Encoding) -> impl Read {
    DecodeReaderBytesBuilder::new()
        .encoding(match encoding {
            Encoding::Utf8 => None,
            Encoding::Latin1 => Some(WINDOWS_1252),
        })
        .build(reader)
}

/// Picks `;`, `,`, tab or `|` by counting them, outside quotes, in the header line.
fn detect_delimiter(header: &str) -> u8 {
    let mut counts = [0usize; 4];
    let candidates = [b';', b',', b'\t', b'|'];
    let mut quoted = false;
    for b in header.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(i) = candidates.iter().position(|c| *c == b) {
            counts[i] += 1;
        }
    }
    let best = (0..4).max_by_key(|i| (counts[*i], 4 - i)).unwrap_or(1);
    if counts[best] == 0 {
        b','
    } else {
        candidates[best]
    }
}

fn csv_error(e: &csv::Error) -> ImportError {
    let line = e.position().map(|p| p.line());
    let message = match (e.kind(), line) {
        (
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            },
            Some(line),
        ) => format!("line {line} has {len} fields, but the header has {expected_len}"),
        (_, Some(line)) => format!("line {line}: {e}"),
        (_, None) => e.to_string(),
    };
    ImportError::invalid(Format::Csv, message)
}

pub(super) fn convert<R: Read>(
    src: &Path,
    reader: R,
    out: &Path,
    limits: &ImportLimits,
) -> Result<Converted, ImportError> {
    let encoding = detect_encoding(src)?;
    let mut head = BufReader::new(decoded(File::open(src)?, encoding)).take(MAX_LINE_BYTES);
    let mut header = String::new();
    head.read_line(&mut header)?;
    if !header.ends_with('\n') && header.len() as u64 >= MAX_LINE_BYTES {
        return Err(ImportError::invalid(
            Format::Csv,
            format!("the header line is longer than {MAX_LINE_BYTES} bytes"),
        ));
    }
    if header.trim().is_empty() {
        return Err(ImportError::Empty("the CSV file has no header line".into()));
    }
    let delimiter = detect_delimiter(&header);

    // Sample the first rows to infer each column's type.
    let mut sample = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .from_reader(LineGuard::new(decoded(File::open(src)?, encoding)));
    let source_names: Vec<String> = sample
        .headers()
        .map_err(|e| csv_error(&e))?
        .iter()
        .map(str::to_owned)
        .collect();
    limits.check_columns(source_names.len())?;
    let mut kinds = vec![Kind::Unknown; source_names.len()];
    let (mut sampled, mut sampled_bytes, mut widest) = (0usize, 0usize, 1usize);
    for record in sample.records().take(INFER_ROWS) {
        let record = record.map_err(|e| csv_error(&e))?;
        for (kind, value) in kinds.iter_mut().zip(record.iter()) {
            *kind = kind.merge(classify(value));
        }
        sampled += 1;
        let bytes = record.as_slice().len() + record.len() * 16;
        widest = widest.max(bytes);
        sampled_bytes += bytes;
        if sampled_bytes > MAX_SAMPLE_BYTES {
            break;
        }
    }
    if sampled == 0 {
        return Err(ImportError::Empty(
            "the CSV file has a header but no rows".into(),
        ));
    }
    let names = normalize_columns(&source_names);
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .zip(&kinds)
            .map(|(n, k)| ArrowField::new(n, k.data_type(), true))
            .collect::<Vec<_>>(),
    ));

    let batches = arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .with_delimiter(delimiter)
        .with_batch_size(batch_rows(widest))
        .build(BufReader::with_capacity(
            1 << 20,
            LineGuard::new(decoded(reader, encoding)),
        ))
        .map_err(|e| arrow_invalid(Format::Csv, e))?;
    let mut sink = ParquetSink::create(out, schema)?;
    for batch in batches {
        sink.write(&batch.map_err(|e| arrow_invalid(Format::Csv, e))?)?;
    }
    let encoding = match encoding {
        Encoding::Utf8 => "UTF-8",
        Encoding::Latin1 => "ISO-8859-1",
    };
    Ok(sink
        .finish(&source_names)?
        .into_converted(Some(encoding.into()), Some(delimiter as char)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_delimiters() {
        assert_eq!(detect_delimiter("a;b;c\n"), b';');
        assert_eq!(detect_delimiter("a,b,c\n"), b',');
        assert_eq!(detect_delimiter("\"x;y\",b,c\n"), b',');
        assert_eq!(detect_delimiter("a\tb\n"), b'\t');
        assert_eq!(detect_delimiter("single\n"), b',');
    }

    #[test]
    fn detects_latin1_even_late_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        let mut bytes = "name;n\n".repeat(300_000).into_bytes();
        bytes.extend_from_slice(b"M\xfcnster;1\n");
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(detect_encoding(&p).unwrap(), Encoding::Latin1);
        std::fs::write(&p, "Münster;1\n".repeat(200_000)).unwrap();
        assert_eq!(detect_encoding(&p).unwrap(), Encoding::Utf8);
    }
}
