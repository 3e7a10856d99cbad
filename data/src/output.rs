//! Streaming encoders from Arrow record batches to JSON, CSV and Arrow IPC response bodies.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::{Stream, StreamExt};

/// A result format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// A JSON array of row objects.
    Json,
    /// CSV with a header line.
    Csv,
    /// An Arrow IPC stream.
    Arrow,
}

impl OutputFormat {
    /// Parses `json`, `csv` or `arrow`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            "arrow" | "arrows" | "ipc" => Some(Self::Arrow),
            _ => None,
        }
    }

    /// The format asked for by an `Accept` header, if any matches.
    pub fn from_accept(accept: &str) -> Option<Self> {
        if accept.contains("text/csv") {
            Some(Self::Csv)
        } else if accept.contains("application/vnd.apache.arrow") {
            Some(Self::Arrow)
        } else if accept.contains("application/json") {
            Some(Self::Json)
        } else {
            None
        }
    }

    /// The media type of the body.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// Encodes batches one at a time: [`Encoder::begin`], then [`Encoder::batch`] for each batch,
/// then [`Encoder::end`].
pub enum Encoder {
    /// JSON, with the rows written so far.
    Json {
        /// Rows written so far.
        rows: usize,
    },
    /// CSV.
    Csv,
    /// Arrow IPC.
    Arrow(Box<arrow::ipc::writer::StreamWriter<Vec<u8>>>),
}

type EncodeResult = Result<Bytes, arrow::error::ArrowError>;

impl Encoder {
    /// An encoder of batches of `schema` in `format`, and the bytes that open the body.
    pub fn begin(
        format: OutputFormat,
        schema: &SchemaRef,
    ) -> Result<(Self, Bytes), arrow::error::ArrowError> {
        Ok(match format {
            OutputFormat::Json => (Self::Json { rows: 0 }, Bytes::from_static(b"[")),
            OutputFormat::Csv => {
                let mut buf = Vec::new();
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                w.write(&RecordBatch::new_empty(schema.clone()))?;
                drop(w);
                (Self::Csv, Bytes::from(buf))
            }
            OutputFormat::Arrow => {
                let mut w = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema)?;
                let head = std::mem::take(w.get_mut());
                (Self::Arrow(Box::new(w)), Bytes::from(head))
            }
        })
    }

    /// The bytes of one batch.
    pub fn batch(&mut self, batch: &RecordBatch) -> EncodeResult {
        match self {
            Self::Json { rows } => {
                let mut lines = Vec::new();
                let mut w = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::LineDelimited>(&mut lines);
                w.write(batch)?;
                w.finish()?;
                drop(w);
                let mut out = Vec::with_capacity(lines.len() + 8);
                for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    if *rows > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(line);
                    *rows += 1;
                }
                Ok(Bytes::from(out))
            }
            Self::Csv => {
                let mut buf = Vec::new();
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .build(&mut buf);
                w.write(batch)?;
                drop(w);
                Ok(Bytes::from(buf))
            }
            Self::Arrow(w) => {
                w.write(batch)?;
                Ok(Bytes::from(std::mem::take(w.get_mut())))
            }
        }
    }

    /// The bytes that close the body.
    pub fn end(self) -> EncodeResult {
        match self {
            Self::Json { .. } => Ok(Bytes::from_static(b"]")),
            Self::Csv => Ok(Bytes::new()),
            Self::Arrow(mut w) => {
                w.finish()?;
                Ok(Bytes::from(std::mem::take(w.get_mut())))
            }
        }
    }
}

/// Encodes a stream of batches as a stream of body chunks. An error in the middle ends the
/// stream with that error, which aborts the HTTP response.
pub fn encode(
    batches: SendableRecordBatchStream,
    format: OutputFormat,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    enum State {
        Start(SendableRecordBatchStream),
        Body(SendableRecordBatchStream, Encoder),
        Done,
    }
    let io = std::io::Error::other;
    futures::stream::unfold(State::Start(batches), move |state| async move {
        match state {
            State::Start(batches) => match Encoder::begin(format, &batches.schema()) {
                Ok((enc, head)) => Some((Ok(head), State::Body(batches, enc))),
                Err(e) => Some((Err(io(e)), State::Done)),
            },
            State::Body(mut batches, mut enc) => match batches.next().await {
                Some(Ok(batch)) => match enc.batch(&batch) {
                    Ok(bytes) => Some((Ok(bytes), State::Body(batches, enc))),
                    Err(e) => Some((Err(io(e)), State::Done)),
                },
                Some(Err(e)) => Some((Err(std::io::Error::other(e)), State::Done)),
                None => Some((enc.end().map_err(io), State::Done)),
            },
            State::Done => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use std::sync::Arc;

    async fn run(format: OutputFormat, batches: usize) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a,\"b\"\n"), None])),
            ],
        )
        .unwrap();
        let items: Vec<_> = (0..batches).map(|_| Ok(batch.clone())).collect();
        let stream = Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(items),
        ));
        let chunks: Vec<_> = encode(stream, format).collect().await;
        chunks
            .into_iter()
            .flat_map(|c| c.unwrap().to_vec())
            .collect()
    }

    #[tokio::test]
    async fn json_is_one_array_across_batches() {
        let out = run(OutputFormat::Json, 2).await;
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 4);
        assert_eq!(v[0]["s"], "a,\"b\"\n");
        assert!(v[1]["s"].is_null());
        assert_eq!(run(OutputFormat::Json, 0).await, b"[]");
    }

    #[tokio::test]
    async fn csv_has_one_header() {
        let out = String::from_utf8(run(OutputFormat::Csv, 2).await).unwrap();
        assert_eq!(out.matches("n,s").count(), 1);
        assert_eq!(
            String::from_utf8(run(OutputFormat::Csv, 0).await).unwrap(),
            "n,s\n"
        );
    }

    #[tokio::test]
    async fn arrow_ipc_reads_back() {
        let out = run(OutputFormat::Arrow, 3).await;
        let reader = arrow::ipc::reader::StreamReader::try_new(&out[..], None).unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 6);
    }
}
