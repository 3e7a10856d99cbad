//! The decoded rows of small Parquet files, kept in memory by path and version: a federated
//! fragment over a small dataset then reads batches instead of opening and decoding its file
//! for every query.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::engine::FileStamp;

/// Files up to this size on disk are decoded and kept.
pub(super) const DECODE_FILES_UP_TO: u64 = 1 << 20;

/// Decoded rows of one file are kept only up to this size in memory.
pub(super) const MAX_DECODED_BYTES: usize = 16 << 20;

/// All decoded rows kept together stay below this size in memory.
const BUDGET_BYTES: usize = 64 << 20;

/// One file's rows.
struct Entry {
    stamp: FileStamp,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    bytes: usize,
}

/// Decoded files, within [`BUDGET_BYTES`].
#[derive(Default)]
pub(super) struct DecodedFiles {
    entries: HashMap<PathBuf, Entry>,
    bytes: usize,
}

impl DecodedFiles {
    /// The rows of `path` in the version `stamp`, if kept.
    pub(super) fn get(
        &self,
        path: &Path,
        stamp: FileStamp,
    ) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        self.entries
            .get(path)
            .filter(|e| e.stamp == stamp)
            .map(|e| (e.schema.clone(), e.batches.clone()))
    }

    /// Keeps the rows of `path` in the version `stamp` (replacing an earlier version), making
    /// room by dropping others; rows larger than [`MAX_DECODED_BYTES`] are not kept.
    pub(super) fn insert(
        &mut self,
        path: &Path,
        stamp: FileStamp,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) {
        let bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
        if let Some(old) = self.entries.remove(path) {
            self.bytes -= old.bytes;
        }
        if bytes > MAX_DECODED_BYTES {
            return;
        }
        while self.bytes + bytes > BUDGET_BYTES {
            let Some(victim) = self.entries.keys().next().cloned() else {
                break;
            };
            if let Some(old) = self.entries.remove(&victim) {
                self.bytes -= old.bytes;
            }
        }
        self.bytes += bytes;
        self.entries.insert(
            path.to_path_buf(),
            Entry {
                stamp,
                schema,
                batches,
                bytes,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn rows(n: usize) -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![1i64; n]))],
        )
        .unwrap();
        (schema, vec![batch])
    }

    #[test]
    fn a_file_is_found_in_the_version_kept_only() {
        let mut d = DecodedFiles::default();
        let (schema, batches) = rows(10);
        d.insert(Path::new("/a"), (1, None), schema, batches);
        assert!(d.get(Path::new("/a"), (1, None)).is_some());
        assert!(d.get(Path::new("/a"), (2, None)).is_none());
        assert!(d.get(Path::new("/b"), (1, None)).is_none());
    }

    #[test]
    fn the_budget_holds() {
        let mut d = DecodedFiles::default();
        // ~8 MiB each: at most 8 fit in the budget.
        for i in 0..20u64 {
            let (schema, batches) = rows(1 << 20);
            d.insert(Path::new(&format!("/f{i}")), (i, None), schema, batches);
            assert!(d.bytes <= BUDGET_BYTES);
            assert_eq!(d.bytes, d.entries.values().map(|e| e.bytes).sum::<usize>());
        }
        assert!(d.get(Path::new("/f19"), (19, None)).is_some());
        // Too large to keep at all.
        let (schema, batches) = rows(3 << 20);
        d.insert(Path::new("/big"), (1, None), schema, batches);
        assert!(d.get(Path::new("/big"), (1, None)).is_none());
    }
}
