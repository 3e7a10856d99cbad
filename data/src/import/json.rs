//! JSON, NDJSON and GeoJSON import. The parser streams: each array element, line or feature is
//! turned into one flat row (nested values become JSON text, a feature's geometry becomes
//! GeoJSON text in the `geometry` column) and handed to a [`RowSink`], which infers the schema
//! from the first rows and then writes Parquet in batches.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{Field as ArrowField, Schema};
use arrow::json::reader::Decoder;
use serde::de::{DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::infer::{Kind, classify};
use super::{
    BATCH_ROWS, Converted, Format, INFER_ROWS, ImportError, ImportLimits, MAX_BATCH_BYTES,
    MAX_SAMPLE_BYTES, ParquetSink, arrow_invalid, normalize_columns,
};

type Row = Map<String, Value>;

/// Collects rows, infers the schema from the first [`INFER_ROWS`], then writes batches.
struct RowSink<'a> {
    format: Format,
    out: &'a Path,
    /// Column order and kinds, by source name, while sampling.
    columns: Vec<(String, Kind)>,
    index: HashMap<String, usize>,
    pending: Vec<Row>,
    /// About how many bytes the pending rows hold.
    pending_bytes: usize,
    writer: Option<(Decoder, ParquetSink, Vec<String>)>,
    count: u64,
    limits: ImportLimits,
}

/// About how many bytes a row holds in memory.
fn row_bytes(row: &Row) -> usize {
    row.iter()
        .map(|(k, v)| {
            k.len()
                + 32
                + match v {
                    Value::String(s) => s.len(),
                    _ => 8,
                }
        })
        .sum()
}

fn kind_of(value: &Value) -> Kind {
    match value {
        Value::Null => Kind::Unknown,
        Value::Bool(_) => Kind::Bool,
        Value::Number(n) if n.is_i64() => Kind::Int,
        Value::Number(_) => Kind::Float,
        Value::String(s) => match classify(s) {
            k @ (Kind::Date | Kind::Timestamp | Kind::TimestampTz) => k,
            Kind::Unknown => Kind::Unknown,
            _ => Kind::Text,
        },
        Value::Array(_) | Value::Object(_) => Kind::Text,
    }
}

impl<'a> RowSink<'a> {
    fn new(format: Format, out: &'a Path, limits: ImportLimits) -> Self {
        Self {
            format,
            out,
            columns: Vec::new(),
            index: HashMap::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            writer: None,
            count: 0,
            limits,
        }
    }

    /// Flattens one record into a row and queues it.
    fn push(&mut self, record: Value) -> Result<(), ImportError> {
        let Value::Object(object) = record else {
            return Err(ImportError::invalid(
                self.format,
                format!("record {} is not a JSON object", self.count + 1),
            ));
        };
        let mut row = Map::with_capacity(object.len());
        for (key, value) in object {
            let value = match value {
                nested @ (Value::Array(_) | Value::Object(_)) => Value::String(nested.to_string()),
                scalar => scalar,
            };
            row.insert(key, value);
        }
        self.push_row(row)
    }

    fn push_row(&mut self, row: Row) -> Result<(), ImportError> {
        self.count += 1;
        self.pending_bytes += row_bytes(&row);
        if self.writer.is_none() {
            for (key, value) in &row {
                let kind = kind_of(value);
                match self.index.get(key) {
                    Some(&i) => self.columns[i].1 = self.columns[i].1.merge(kind),
                    None => {
                        self.limits.check_columns(self.columns.len() + 1)?;
                        self.index.insert(key.clone(), self.columns.len());
                        self.columns.push((key.clone(), kind));
                    }
                }
            }
            self.pending.push(row);
            if self.pending.len() >= INFER_ROWS || self.pending_bytes > MAX_SAMPLE_BYTES {
                self.start()?;
            }
        } else {
            self.pending.push(row);
            if self.pending.len() >= BATCH_ROWS || self.pending_bytes > MAX_BATCH_BYTES {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Fixes the schema from the sampled rows and opens the Parquet writer.
    fn start(&mut self) -> Result<(), ImportError> {
        if self.columns.is_empty() {
            return Err(ImportError::Empty("the records have no fields".into()));
        }
        let source_names: Vec<String> = self.columns.iter().map(|(n, _)| n.clone()).collect();
        let names = normalize_columns(&source_names);
        let fields: Vec<ArrowField> = names
            .iter()
            .zip(&self.columns)
            .map(|(n, (_, k))| ArrowField::new(n, k.data_type(), true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let decoder = arrow::json::ReaderBuilder::new(schema.clone())
            .with_batch_size(BATCH_ROWS)
            .with_coerce_primitive(true)
            .with_strict_mode(true)
            .build_decoder()
            .map_err(|e| arrow_invalid(self.format, e))?;
        let sink = ParquetSink::create(self.out, schema)?;
        self.writer = Some((decoder, sink, source_names));
        self.flush()
    }

    /// Renames the queued rows' keys to column names and writes them as one or more batches.
    fn flush(&mut self) -> Result<(), ImportError> {
        let format = self.format;
        let Some((decoder, sink, source_names)) = self.writer.as_mut() else {
            return Ok(());
        };
        let names = normalize_columns(source_names);
        let rename: HashMap<&str, &str> = source_names
            .iter()
            .map(String::as_str)
            .zip(names.iter().map(String::as_str))
            .collect();
        let first = self.count - self.pending.len() as u64 + 1;
        self.pending_bytes = 0;
        let rows: Vec<Row> = self
            .pending
            .drain(..)
            .enumerate()
            .map(|(i, row)| {
                row.into_iter()
                    .map(|(k, v)| match rename.get(k.as_str()) {
                        Some(name) => Ok(((*name).to_owned(), v)),
                        None => Err(ImportError::invalid(
                            format,
                            format!(
                                "record {} has field `{k}`, which none of the records read to \
                                 infer the columns (the first {INFER_ROWS}, or fewer when they \
                                 hold more than {MAX_SAMPLE_BYTES} bytes) has",
                                first + i as u64
                            ),
                        )),
                    })
                    .collect()
            })
            .collect::<Result<_, _>>()?;
        for chunk in rows.chunks(BATCH_ROWS) {
            decoder.serialize(chunk).map_err(|e| {
                ImportError::invalid(
                    format,
                    format!("in records {first}..{}: {e}", first + rows.len() as u64 - 1),
                )
            })?;
            if let Some(batch) = decoder.flush().map_err(|e| arrow_invalid(format, e))? {
                sink.write(&batch)?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Converted, ImportError> {
        if self.count == 0 {
            return Err(ImportError::Empty("no records".into()));
        }
        if self.writer.is_none() {
            self.start()?;
        }
        self.flush()?;
        let Some((_, sink, source_names)) = self.writer.take() else {
            return Err(ImportError::Empty("no records".into()));
        };
        Ok(sink
            .finish(&source_names)?
            .into_converted(Some("UTF-8".into()), None))
    }
}

/// Feeds every element of a JSON array to the sink, one at a time.
struct Elements<'s, 'a> {
    sink: &'s mut RowSink<'a>,
    /// An error raised by the sink, kept to report it as it was.
    failed: &'s mut Option<ImportError>,
    geojson: bool,
}

impl<'de> Visitor<'de> for Elements<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            let result = if self.geojson {
                feature_row(value, self.sink.count + 1).and_then(|row| self.sink.push_row(row))
            } else {
                self.sink.push(value)
            };
            if let Err(e) = result {
                *self.failed = Some(e);
                return Err(serde::de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Elements<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

/// Walks a GeoJSON FeatureCollection, streaming its `features` array.
struct Collection<'s, 'a>(Elements<'s, 'a>);

impl<'de> Visitor<'de> for Collection<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a GeoJSON FeatureCollection object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut elements = Some(self.0);
        let mut seen_features = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" => {
                    let kind: String = map.next_value()?;
                    if kind != "FeatureCollection" {
                        return Err(serde::de::Error::custom(format!(
                            "`type` is `{kind}`, expected `FeatureCollection`"
                        )));
                    }
                }
                "features" => match elements.take() {
                    Some(e) => {
                        map.next_value_seed(e)?;
                        seen_features = true;
                    }
                    None => return Err(serde::de::Error::custom("`features` appears twice")),
                },
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !seen_features {
            return Err(serde::de::Error::custom("no `features` array"));
        }
        Ok(())
    }
}

/// One GeoJSON feature as a row: its properties, `feature_id` and `geometry` as GeoJSON text.
fn feature_row(feature: Value, n: u64) -> Result<Row, ImportError> {
    let invalid = |m: &str| ImportError::invalid(Format::GeoJson, format!("feature {n}: {m}"));
    let Value::Object(mut feature) = feature else {
        return Err(invalid("not an object"));
    };
    if feature.get("type").and_then(Value::as_str) != Some("Feature") {
        return Err(invalid("`type` is not `Feature`"));
    }
    let mut row = Row::new();
    match feature.remove("properties") {
        Some(Value::Object(props)) => {
            for (k, v) in props {
                let v = match v {
                    nested @ (Value::Array(_) | Value::Object(_)) => {
                        Value::String(nested.to_string())
                    }
                    scalar => scalar,
                };
                row.insert(k, v);
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => return Err(invalid("`properties` is not an object")),
    }
    if let Some(id) = feature.remove("id") {
        row.insert(
            "feature_id".into(),
            Value::String(match id {
                Value::String(s) => s,
                other => other.to_string(),
            }),
        );
    }
    let geometry = match feature.remove("geometry") {
        Some(Value::Null) | None => Value::Null,
        Some(g @ Value::Object(_)) => {
            if g.get("type").and_then(Value::as_str).is_none() {
                return Err(invalid("geometry has no `type`"));
            }
            Value::String(g.to_string())
        }
        Some(_) => return Err(invalid("`geometry` is not an object")),
    };
    row.insert("geometry".into(), geometry);
    Ok(row)
}

pub(super) fn convert<R: Read>(
    format: Format,
    reader: R,
    out: &Path,
    limits: &ImportLimits,
) -> Result<Converted, ImportError> {
    let reader = BufReader::with_capacity(1 << 20, reader);
    let mut sink = RowSink::new(format, out, *limits);
    let mut failed = None;
    let parse_error = |e: serde_json::Error| {
        if e.is_io() {
            ImportError::Io(e.into())
        } else {
            ImportError::invalid(format, e)
        }
    };
    let result = if format == Format::NdJson {
        for value in serde_json::Deserializer::from_reader(reader).into_iter::<Value>() {
            sink.push(value.map_err(parse_error)?)?;
        }
        Ok(())
    } else {
        let mut de = serde_json::Deserializer::from_reader(reader);
        let elements = Elements {
            sink: &mut sink,
            failed: &mut failed,
            geojson: format == Format::GeoJson,
        };
        let walked = if format == Format::GeoJson {
            de.deserialize_map(Collection(elements))
        } else {
            elements.deserialize(&mut de)
        };
        walked.and_then(|()| de.end())
    };
    if let Some(e) = failed {
        return Err(e);
    }
    result.map_err(parse_error)?;
    sink.finish()
}
