//! The RocksDB handle: point reads, synced write batches, bounded and paged scans.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{DB, IteratorMode, Options, WriteBatch, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;
use crate::keys::{Key, Prefix};

/// Directory of the RocksDB store inside the data dir.
pub const DB_DIR: &str = "db";

/// Most records one [`Store::scan`] returns; [`Store::scan_all`] reads pages of this size.
pub const MAX_PAGE: usize = 1024;

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

/// The CBOR of `value`, for the record under `key`.
pub(crate) fn encode<T: Serialize>(key: &Key, value: &T) -> Result<Vec<u8>, StoreError> {
    let mut bytes = Vec::new();
    ciborium::into_writer(value, &mut bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key.as_bytes()).into_owned(),
        message: e.to_string(),
    })?;
    Ok(bytes)
}

/// The record under `key`, decoded from CBOR.
pub(crate) fn decode<T: DeserializeOwned>(key: &Key, bytes: &[u8]) -> Result<T, StoreError> {
    ciborium::from_reader(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key.as_bytes()).into_owned(),
        message: e.to_string(),
    })
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

    /// The bytes under `key`.
    pub fn get_bytes(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get(key.as_bytes()).map_err(|e| self.err(e))
    }

    /// The record under `key`, decoded from CBOR.
    pub fn get_cbor<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<T>, StoreError> {
        match self.get_bytes(key)? {
            Some(bytes) => Ok(Some(decode(key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// The CBOR of `value`, to write under `key`.
    pub fn cbor<T: Serialize>(key: &Key, value: &T) -> Result<Vec<u8>, StoreError> {
        encode(key, value)
    }

    /// Writes and deletes keys in one synced batch (`None` deletes).
    pub fn write(&self, ops: Vec<(Key, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for (key, value) in ops {
            match value {
                Some(v) => batch.put(key.as_bytes(), v),
                None => batch.delete(key.as_bytes()),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(|e| self.err(e))
    }

    /// The records of `prefix` from `from` on (inclusive; the start of the range when `None`),
    /// at most `limit` of them and never more than [`MAX_PAGE`].
    pub fn scan(
        &self,
        prefix: &Prefix,
        from: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        let start = prefix.bytes();
        let from = from.map_or_else(|| start.clone(), |k| k.as_bytes().to_vec());
        self.run_of(
            IteratorMode::From(&from, rocksdb::Direction::Forward),
            &start,
            limit,
        )
    }

    /// The last records of `prefix`, last first, at most `limit` of them and never more than
    /// [`MAX_PAGE`].
    pub fn scan_back(
        &self,
        prefix: &Prefix,
        limit: usize,
    ) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        let start = prefix.bytes();
        // Keys are text, so every key of the range sorts before the prefix and 0xff.
        let mut end = start.clone();
        end.push(0xff);
        self.run_of(
            IteratorMode::From(&end, rocksdb::Direction::Reverse),
            &start,
            limit,
        )
    }

    /// The records from where `mode` starts, while their keys begin with `start`: at most
    /// `limit` of them and never more than [`MAX_PAGE`].
    fn run_of(
        &self,
        mode: IteratorMode<'_>,
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        let limit = limit.min(MAX_PAGE);
        let mut out = Vec::new();
        for item in self.db.iterator(mode) {
            let (key, value) = item.map_err(|e| self.err(e))?;
            if !key.starts_with(start) || out.len() >= limit {
                break;
            }
            out.push((Key::from_bytes(key.into_vec()), value.into_vec()));
        }
        Ok(out)
    }

    /// Calls `each` with every record of `prefix`, in order, reading [`MAX_PAGE`] at a time;
    /// for rebuilding an in-memory index when the node starts.
    pub fn scan_all(
        &self,
        prefix: &Prefix,
        mut each: impl FnMut(Key, Vec<u8>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut from: Option<Key> = None;
        loop {
            let page = self.scan(prefix, from.as_ref(), MAX_PAGE)?;
            let full = page.len() == MAX_PAGE;
            let mut last = None;
            for (key, value) in page {
                last = Some(key.clone());
                each(key, value)?;
            }
            match last {
                // The next page starts just after the last key.
                Some(mut key) if full => {
                    let mut bytes = key.as_bytes().to_vec();
                    bytes.push(0);
                    key = Key::from_bytes(bytes);
                    from = Some(key);
                }
                _ => return Ok(()),
            }
        }
    }

    /// How many records `prefix` holds (read page by page).
    pub fn count(&self, prefix: &Prefix) -> Result<usize, StoreError> {
        let mut n = 0;
        self.scan_all(prefix, |_, _| {
            n += 1;
            Ok(())
        })?;
        Ok(n)
    }

    /// Runs `work` with the store on a blocking thread, so that an async caller's worker is not
    /// held by RocksDB (synced writes wait for the disk).
    pub async fn blocking<T, F>(self: &Arc<Self>, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| StoreError::Blocking(e.to_string()))?
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
    use crate::keys::audit;

    #[test]
    fn scans_are_bounded_and_scan_all_reads_every_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), true).unwrap();
        let n = MAX_PAGE as u64 * 2 + 7;
        let ops = (0..n)
            .map(|i| (audit::entry(i), Some(i.to_le_bytes().to_vec())))
            .collect();
        store.write(ops).unwrap();
        assert_eq!(
            store.scan(&audit::ENTRIES, None, usize::MAX).unwrap().len(),
            MAX_PAGE
        );
        let from = store
            .scan(&audit::ENTRIES, Some(&audit::entry(n - 3)), 10)
            .unwrap();
        assert_eq!(from.len(), 3);
        let mut seen = Vec::new();
        store
            .scan_all(&audit::ENTRIES, |_, v| {
                seen.push(u64::from_le_bytes(v.try_into().unwrap()));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        assert_eq!(store.count(&audit::LEAVES).unwrap(), 0);
        let last = store.scan_back(&audit::ENTRIES, 2).unwrap();
        assert_eq!(last[0].0, audit::entry(n - 1));
        assert_eq!(last[1].0, audit::entry(n - 2));
        assert!(store.scan_back(&audit::LEAVES, 2).unwrap().is_empty());
    }
}
