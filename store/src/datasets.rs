//! Dataset records and their names: `dataset/<id>` → the CBOR of a [`StoredDataset`],
//! `slug/<slug>` → the dataset id.

use allmende_protocol::dcat::DatasetRecord;
use serde::{Deserialize, Serialize};

use crate::keys::dataset;
use crate::{Store, StoreError};

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

impl Store {
    /// The dataset with this id.
    pub fn get(&self, id: &str) -> Result<Option<StoredDataset>, StoreError> {
        self.get_cbor(&dataset::record(id))
    }

    /// The dataset with this id or slug.
    pub fn find(&self, id_or_slug: &str) -> Result<Option<StoredDataset>, StoreError> {
        if let Some(found) = self.get(id_or_slug)? {
            return Ok(Some(found));
        }
        match self.get_bytes(&dataset::slug(id_or_slug))? {
            Some(id) => self.get(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Whether a slug is free, or used by the dataset `id`.
    pub fn slug_free_for(&self, slug: &str, id: &str) -> Result<bool, StoreError> {
        Ok(match self.get_bytes(&dataset::slug(slug))? {
            Some(owner) => owner == id.as_bytes(),
            None => true,
        })
    }

    /// All datasets, ordered by id (read page by page).
    pub fn list(&self) -> Result<Vec<StoredDataset>, StoreError> {
        let mut out = Vec::new();
        self.scan_all(&dataset::ALL, |key, value| {
            out.push(crate::db::decode(&key, &value)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Writes a dataset and its slug index in one synced batch.
    pub fn put(&self, stored: &StoredDataset) -> Result<(), StoreError> {
        let id = &stored.record.id;
        let slug = &stored.record.slug;
        if !self.slug_free_for(slug, id)? {
            return Err(StoreError::SlugTaken(slug.clone()));
        }
        let mut ops = Vec::with_capacity(3);
        if let Some(previous) = self.get(id)?
            && previous.record.slug != *slug
        {
            ops.push((dataset::slug(&previous.record.slug), None));
        }
        let bytes = crate::db::encode(&dataset::record(id), stored)?;
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(StoreError::TooLarge(bytes.len()));
        }
        ops.push((dataset::record(id), Some(bytes)));
        ops.push((dataset::slug(slug), Some(id.as_bytes().to_vec())));
        self.write(ops)
    }

    /// Removes a dataset and its slug index in one synced batch.
    pub fn delete(&self, stored: &StoredDataset) -> Result<(), StoreError> {
        self.write(vec![
            (dataset::record(&stored.record.id), None),
            (dataset::slug(&stored.record.slug), None),
        ])
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
