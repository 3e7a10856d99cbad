//! Durable metadata storage in RocksDB.
//!
//! Keys: `dataset/<id>` → the CBOR of a [`StoredDataset`]; `slug/<slug>` → the dataset id.
//! Every change is one synced write batch, so a crash leaves either the old or the new state.

use std::path::{Path, PathBuf};

use allmende_protocol::dcat::DatasetRecord;
use rocksdb::{DB, IteratorMode, Options, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

/// Directory of the RocksDB store inside the data dir.
pub const DB_DIR: &str = "db";

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB failed or refused to open (for example, another process holds its lock).
    #[error("metadata store at `{path}`: {message}")]
    Db {
        /// The store's directory.
        path: PathBuf,
        /// RocksDB's message.
        message: String,
    },
    /// A stored record could not be decoded.
    #[error("stored record `{key}` is corrupt: {message}")]
    Corrupt {
        /// The key.
        key: String,
        /// The decoder's message.
        message: String,
    },
    /// The slug is taken by another dataset.
    #[error("the name `{0}` is already used by another dataset")]
    SlugTaken(String),
    /// A record is larger than the store keeps.
    #[error("the record is {0} bytes; the store keeps records of at most {MAX_RECORD_BYTES} bytes")]
    TooLarge(usize),
}

/// Largest dataset record (metadata and schema) the store keeps. Records are read whole on
/// every lookup, and a large value slows every scan across its storage block.
pub const MAX_RECORD_BYTES: usize = 4 << 20;

/// One column of a dataset's schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The column name as used in SQL.
    pub name: String,
    /// The Arrow data type, e.g. `Int64` or `Utf8`.
    pub data_type: String,
    /// Whether the column may hold nulls.
    pub nullable: bool,
    /// The name in the imported file, where it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
}

/// What was imported to make the current version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// `csv`, `geojson`, `json`, `ndjson` or `parquet`.
    pub format: String,
    /// The uploaded file's name, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// The uploaded file's size in bytes.
    pub bytes: u64,
    /// The detected text encoding (text formats only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// The detected CSV delimiter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
}

/// A dataset as the node stores it: its DCAT-AP.de record plus what the node needs locally.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredDataset {
    /// The DCAT-AP.de description.
    pub record: DatasetRecord,
    /// The Parquet file of the current version, relative to the data dir.
    pub file: String,
    /// Number of rows.
    pub rows: u64,
    /// Columns.
    pub schema: Vec<Field>,
    /// The import that made the current version.
    pub source: SourceInfo,
}

/// Raw key-value pairs read from the store.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The RocksDB-backed metadata store.
pub struct Store {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn dataset_key(id: &str) -> String {
    format!("dataset/{id}")
}

fn slug_key(slug: &str) -> String {
    format!("slug/{slug}")
}

impl Store {
    /// Opens (or, with `create`, creates) the store in `data_dir/db`.
    pub fn open(data_dir: &Path, create: bool) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_DIR);
        let mut opts = Options::default();
        opts.create_if_missing(create);
        opts.set_keep_log_file_num(4);
        let db = DB::open(&opts, &path).map_err(|e| StoreError::Db {
            path: path.clone(),
            message: e.into_string(),
        })?;
        Ok(Self { db, path })
    }

    /// Opens the store in `data_dir/db` read-only; works while a node holds it open.
    pub fn open_read_only(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_DIR);
        let db = DB::open_for_read_only(&Options::default(), &path, false).map_err(|e| {
            StoreError::Db {
                path: path.clone(),
                message: e.into_string(),
            }
        })?;
        Ok(Self { db, path })
    }

    fn err(&self, e: rocksdb::Error) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            message: e.into_string(),
        }
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(|e| self.err(e))
    }

    fn decode(key: &str, bytes: &[u8]) -> Result<StoredDataset, StoreError> {
        ciborium::from_reader(bytes).map_err(|e| StoreError::Corrupt {
            key: key.to_owned(),
            message: e.to_string(),
        })
    }

    /// The dataset with this id.
    pub fn get(&self, id: &str) -> Result<Option<StoredDataset>, StoreError> {
        let key = dataset_key(id);
        match self.db.get(key.as_bytes()).map_err(|e| self.err(e))? {
            Some(bytes) => Ok(Some(Self::decode(&key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// The dataset with this id or slug.
    pub fn find(&self, id_or_slug: &str) -> Result<Option<StoredDataset>, StoreError> {
        if let Some(found) = self.get(id_or_slug)? {
            return Ok(Some(found));
        }
        match self
            .db
            .get(slug_key(id_or_slug).as_bytes())
            .map_err(|e| self.err(e))?
        {
            Some(id) => self.get(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Whether a slug is free, or used by the dataset `id`.
    pub fn slug_free_for(&self, slug: &str, id: &str) -> Result<bool, StoreError> {
        Ok(
            match self
                .db
                .get(slug_key(slug).as_bytes())
                .map_err(|e| self.err(e))?
            {
                Some(owner) => owner == id.as_bytes(),
                None => true,
            },
        )
    }

    /// All datasets, ordered by id.
    pub fn list(&self) -> Result<Vec<StoredDataset>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator(b"dataset/") {
            let (key, value) = item.map_err(|e| self.err(e))?;
            if !key.starts_with(b"dataset/") {
                break;
            }
            out.push(Self::decode(&String::from_utf8_lossy(&key), &value)?);
        }
        Ok(out)
    }

    /// Writes a dataset and its slug index in one synced batch.
    pub fn put(&self, dataset: &StoredDataset) -> Result<(), StoreError> {
        let id = &dataset.record.id;
        let slug = &dataset.record.slug;
        if !self.slug_free_for(slug, id)? {
            return Err(StoreError::SlugTaken(slug.clone()));
        }
        let mut batch = WriteBatch::default();
        if let Some(previous) = self.get(id)?
            && previous.record.slug != *slug
        {
            batch.delete(slug_key(&previous.record.slug).as_bytes());
        }
        let mut bytes = Vec::new();
        ciborium::into_writer(dataset, &mut bytes).map_err(|e| StoreError::Corrupt {
            key: dataset_key(id),
            message: e.to_string(),
        })?;
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(StoreError::TooLarge(bytes.len()));
        }
        batch.put(dataset_key(id).as_bytes(), bytes);
        batch.put(slug_key(slug).as_bytes(), id.as_bytes());
        self.write(batch)
    }

    /// Removes a dataset and its slug index in one synced batch.
    pub fn delete(&self, dataset: &StoredDataset) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete(dataset_key(&dataset.record.id).as_bytes());
        batch.delete(slug_key(&dataset.record.slug).as_bytes());
        self.write(batch)
    }

    /// The value stored under a raw key.
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get(key).map_err(|e| self.err(e))
    }

    /// Keys and values whose key starts with `prefix`, from `start` (inclusive, itself starting
    /// with `prefix`) on, at most `limit`.
    pub fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> Result<Pairs, StoreError> {
        let mut out = Vec::new();
        let mode = IteratorMode::From(start, rocksdb::Direction::Forward);
        for item in self.db.iterator(mode) {
            let (key, value) = item.map_err(|e| self.err(e))?;
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
        }
        Ok(out)
    }

    /// Writes and deletes raw keys in one synced batch (`None` deletes).
    pub fn write_raw(&self, ops: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for (key, value) in ops {
            match value {
                Some(v) => batch.put(key, v),
                None => batch.delete(key),
            }
        }
        self.write(batch)
    }

    /// A numeric RocksDB property such as `rocksdb.estimate-num-keys`.
    pub fn property(&self, name: &str) -> Option<u64> {
        self.db
            .property_value(name)
            .ok()
            .flatten()?
            .trim()
            .parse()
            .ok()
    }

    /// Flushes memtables to disk; called on shutdown.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(id: &str, slug: &str) -> StoredDataset {
        StoredDataset {
            record: DatasetRecord {
                id: id.into(),
                slug: slug.into(),
                version: 1,
                ..DatasetRecord::default()
            },
            file: format!("datasets/{id}/v1.parquet"),
            rows: 3,
            schema: vec![],
            source: SourceInfo {
                format: "csv".into(),
                file_name: None,
                bytes: 10,
                encoding: None,
                delimiter: None,
            },
        }
    }

    #[test]
    fn put_find_list_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), true).unwrap();
            store.put(&dataset("a", "alpha")).unwrap();
            store.put(&dataset("b", "beta")).unwrap();
            assert!(matches!(
                store.put(&dataset("c", "alpha")),
                Err(StoreError::SlugTaken(_))
            ));
            let mut renamed = dataset("b", "gamma");
            renamed.record.version = 2;
            store.put(&renamed).unwrap();
            assert!(store.find("beta").unwrap().is_none());
            assert_eq!(store.find("gamma").unwrap().unwrap().record.version, 2);
            store.delete(&dataset("a", "alpha")).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path(), false).unwrap();
        let all = store.list().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].record.slug, "gamma");
        assert!(store.find("alpha").unwrap().is_none());
    }

    #[test]
    fn refuses_to_open_a_missing_store_without_create() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Store::open(dir.path(), false).is_err());
    }
}
