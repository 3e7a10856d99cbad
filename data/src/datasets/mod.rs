//! The node's datasets: importing new data and new versions, describing them in DCAT-AP.de,
//! updating metadata, deleting, and recovering a consistent state after a crash.
//!
//! Durability protocol for an import: convert into `tmp/`, sync, rename into
//! `datasets/<id>/v<version>.parquet`, sync the directory, then commit the metadata in one synced
//! RocksDB batch, and only then remove the previous version's file. A crash at any point leaves
//! the old metadata pointing at a complete file; [`Datasets::recover`] deletes what no record
//! references.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use allmende_protocol::dcat::{
    Agent, Checksum, ContactPoint, DatasetRecord, Distribution, Temporal,
};

use crate::import::{self, Format, ImportError};
use allmende_store::{SourceInfo, Store, StoreError, StoredDataset};

/// Directory of the Parquet files inside the data dir.
pub const DATASETS_DIR: &str = "datasets";
/// Directory of uploads and conversions in progress inside the data dir.
pub const TMP_DIR: &str = "tmp";
/// Directory of queries' spill files inside [`TMP_DIR`].
pub const SPILL_DIR: &str = "spill";

/// Who publishes the node's datasets: what every record says of its publisher and contact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Publisher {
    /// The organisation (`dct:publisher`'s name).
    pub name: String,
    /// Its district key (AGS).
    pub district_key: String,
    /// Its URI, if it has one.
    pub uri: Option<String>,
    /// The default contact e-mail.
    pub contact_email: Option<String>,
    /// The default contact name.
    pub contact_name: Option<String>,
}

/// How the node's datasets are described and imported.
#[derive(Clone, Debug)]
pub struct DatasetSettings {
    /// The publisher.
    pub publisher: Publisher,
    /// The base URL under which the API is reached, for `dcat:accessURL`.
    pub public_url: String,
    /// Bounds on imports.
    pub import: import::ImportLimits,
}

mod metadata;

pub use metadata::{
    MAX_DESCRIPTION_BYTES, MAX_KEYWORD_BYTES, MAX_LIST_ITEMS, MAX_SHORT_BYTES, MAX_SPATIAL_BYTES,
    MAX_TITLE_BYTES, MetadataInput, validate_slug,
};

/// Errors of dataset operations.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// No dataset has this id or name.
    #[error("no dataset `{0}`")]
    NotFound(String),
    /// The metadata given is not acceptable.
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),
    /// The name is taken.
    #[error("the name `{0}` is already used by another dataset")]
    Conflict(String),
    /// The file could not be imported.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The metadata store failed.
    #[error(transparent)]
    Store(StoreError),
    /// A file operation failed on the node's side.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<StoreError> for DatasetError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::SlugTaken(slug) => Self::Conflict(slug),
            e @ StoreError::TooLarge(_) => Self::InvalidMetadata(e.to_string()),
            other => Self::Store(other),
        }
    }
}

/// A file to import.
#[derive(Debug)]
pub struct ImportRequest {
    /// Where the uploaded file lies on the node.
    pub source: PathBuf,
    /// The name the uploader gave the file.
    pub file_name: Option<String>,
    /// An explicit format name; detected when absent.
    pub format: Option<String>,
    /// Metadata to set.
    pub metadata: MetadataInput,
    /// An existing dataset (id or name) of which this is a new version.
    pub version_of: Option<String>,
}

/// The datasets of one node.
pub struct Datasets {
    data_dir: PathBuf,
    store: Arc<Store>,
    settings: DatasetSettings,
    /// Serialises the commit step of imports, updates and deletes.
    commit: Mutex<()>,
}

impl std::fmt::Debug for Datasets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datasets")
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A table name derived from a title or file name.
fn slug_from(text: &str) -> String {
    let mut slug = import::normalize_columns(&[text]).remove(0);
    if slug.starts_with("column_") {
        slug = "dataset".into();
    } else if slug.starts_with("c_") {
        slug.replace_range(..2, "d_");
    }
    slug.truncate(60);
    slug.trim_end_matches('_').to_owned()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl Datasets {
    /// Opens the datasets of the node in `data_dir`.
    pub fn new(data_dir: PathBuf, store: Arc<Store>, settings: DatasetSettings) -> Self {
        Self {
            data_dir,
            store,
            settings,
            commit: Mutex::new(()),
        }
    }

    /// The metadata store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The directory for uploads in progress.
    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir.join(TMP_DIR)
    }

    /// The absolute path of a dataset's current Parquet file.
    pub fn file_path(&self, dataset: &StoredDataset) -> PathBuf {
        self.data_dir.join(&dataset.file)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.commit
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Removes unfinished uploads and Parquet files that no record references; run at start.
    /// Returns the paths removed.
    pub fn recover(&self) -> Result<Vec<PathBuf>, DatasetError> {
        let _guard = self.lock();
        let mut removed = Vec::new();
        let tmp = self.tmp_dir();
        if tmp.exists() {
            for entry in std::fs::read_dir(&tmp)? {
                let path = entry?.path();
                if path.is_dir() && path.file_name().is_some_and(|n| n == SPILL_DIR) {
                    // Spill files of queries an exit interrupted; the directory stays.
                    for spilled in std::fs::read_dir(&path)? {
                        let spilled = spilled?.path();
                        std::fs::remove_dir_all(&spilled)
                            .or_else(|_| std::fs::remove_file(&spilled))?;
                        removed.push(spilled);
                    }
                    continue;
                }
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
                removed.push(path);
            }
        }
        std::fs::create_dir_all(&tmp)?;
        let referenced: HashSet<PathBuf> = self
            .store
            .list()?
            .iter()
            .map(|d| self.file_path(d))
            .collect();
        let root = self.data_dir.join(DATASETS_DIR);
        std::fs::create_dir_all(&root)?;
        for dir in std::fs::read_dir(&root)? {
            let dir = dir?.path();
            if !dir.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&dir)? {
                let file = file?.path();
                if !referenced.contains(&file) {
                    std::fs::remove_file(&file)?;
                    removed.push(file);
                }
            }
            if std::fs::read_dir(&dir)?.next().is_none() {
                std::fs::remove_dir(&dir)?;
            }
        }
        Ok(removed)
    }

    /// All datasets.
    pub fn list(&self) -> Result<Vec<StoredDataset>, DatasetError> {
        Ok(self.store.list()?)
    }

    /// The dataset with this id or name.
    pub fn get(&self, id_or_slug: &str) -> Result<StoredDataset, DatasetError> {
        self.store
            .find(id_or_slug)?
            .ok_or_else(|| DatasetError::NotFound(id_or_slug.to_owned()))
    }

    /// Imports a file as a new dataset or a new version of one. The source file is left in
    /// place; the caller removes it.
    pub fn import(
        &self,
        req: ImportRequest,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<StoredDataset, DatasetError> {
        req.metadata.validate()?;
        if let Some(target) = &req.version_of {
            self.get(target)?;
        }
        let format = Format::detect(req.format.as_deref(), req.file_name.as_deref(), &req.source)?;
        let source_bytes = std::fs::metadata(&req.source)?.len();
        let tmp_out = self
            .tmp_dir()
            .join(format!("{}.parquet", uuid::Uuid::new_v4()));
        let converted = match import::convert(
            format,
            &req.source,
            &tmp_out,
            &self.import_limits(),
            progress,
        ) {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp_out);
                return Err(e.into());
            }
        };
        let result = self.commit_import(&req, format, source_bytes, converted, &tmp_out);
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp_out);
        }
        result
    }

    fn commit_import(
        &self,
        req: &ImportRequest,
        format: Format,
        source_bytes: u64,
        converted: import::Converted,
        tmp_out: &Path,
    ) -> Result<StoredDataset, DatasetError> {
        let _guard = self.lock();
        let previous = match &req.version_of {
            Some(target) => Some(self.get(target)?),
            None => None,
        };
        let timestamp = now();
        let mut record = match &previous {
            Some(p) => p.record.clone(),
            None => DatasetRecord {
                id: uuid::Uuid::new_v4().to_string(),
                version: 0,
                issued: timestamp.clone(),
                ..DatasetRecord::default()
            },
        };
        record.version += 1;
        record.modified = timestamp;
        self.apply_metadata(&mut record, &req.metadata)?;
        if previous.is_none() && req.metadata.slug.is_none() {
            let stem = req
                .file_name
                .as_deref()
                .and_then(|n| Path::new(n).file_stem()?.to_str());
            let base = slug_from(req.metadata.title.as_deref().or(stem).unwrap_or("dataset"));
            record.slug = self.free_slug(&base, &record.id)?;
        }
        if !self.store.slug_free_for(&record.slug, &record.id)? {
            return Err(DatasetError::Conflict(record.slug));
        }

        let relative = format!("{DATASETS_DIR}/{}/v{}.parquet", record.id, record.version);
        let target = self.data_dir.join(&relative);
        let dir = target.parent().map(Path::to_path_buf).unwrap_or_default();
        std::fs::create_dir_all(&dir)?;
        std::fs::rename(tmp_out, &target)?;
        sync_dir(&dir)?;

        record.distributions = vec![Distribution {
            format: "PARQUET".into(),
            media_type: "application/vnd.apache.parquet".into(),
            byte_size: converted.bytes,
            checksum: Checksum {
                algorithm: "sha256".into(),
                value: converted.sha256.clone(),
            },
            access_url: format!(
                "{}/api/v1/datasets/{}/data?format=parquet",
                self.settings.public_url, record.id
            ),
            license: record.license.clone(),
        }];
        let dataset = StoredDataset {
            record,
            file: relative,
            rows: converted.rows,
            schema: converted.schema,
            source: SourceInfo {
                format: format.name().into(),
                file_name: req.file_name.clone(),
                bytes: source_bytes,
                encoding: converted.encoding,
                delimiter: converted.delimiter.map(String::from),
            },
        };
        if let Err(e) = self.store.put(&dataset) {
            let _ = std::fs::remove_file(&target);
            return Err(e.into());
        }
        if let Some(p) = previous
            && p.file != dataset.file
        {
            // The new version is committed; the old file is garbage now (recover() would
            // remove it too if this fails).
            let _ = std::fs::remove_file(self.file_path(&p));
        }
        Ok(dataset)
    }

    /// A free table name starting with `base`.
    fn free_slug(&self, base: &str, id: &str) -> Result<String, DatasetError> {
        let mut candidate = base.to_owned();
        let mut n = 2;
        while !self.store.slug_free_for(&candidate, id)? {
            candidate = format!("{base}_{n}");
            n += 1;
        }
        Ok(candidate)
    }

    /// The bounds on an import.
    fn import_limits(&self) -> import::ImportLimits {
        self.settings.import
    }

    /// Sets the node-wide fields and the given ones on a record.
    fn apply_metadata(
        &self,
        record: &mut DatasetRecord,
        m: &MetadataInput,
    ) -> Result<(), DatasetError> {
        m.validate()?;
        fn set(target: &mut String, v: &Option<String>) {
            if let Some(v) = v {
                v.trim().clone_into(target);
            }
        }
        set(&mut record.title, &m.title);
        set(&mut record.description, &m.description);
        set(&mut record.slug, &m.slug);
        if m.license.is_some() {
            record.license.clone_from(&m.license);
            for d in &mut record.distributions {
                d.license.clone_from(&m.license);
            }
        }
        if let Some(t) = &m.themes {
            record.themes.clone_from(t);
        }
        if let Some(k) = &m.keywords {
            record.keywords = k
                .iter()
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .collect();
        }
        if m.spatial.is_some() {
            record.spatial.clone_from(&m.spatial);
        }
        if m.conforms_to.is_some() {
            record.conforms_to.clone_from(&m.conforms_to);
        }
        if m.temporal_start.is_some() || m.temporal_end.is_some() {
            let t = record.temporal.get_or_insert_with(Temporal::default);
            if m.temporal_start.is_some() {
                t.start.clone_from(&m.temporal_start);
            }
            if m.temporal_end.is_some() {
                t.end.clone_from(&m.temporal_end);
            }
        }
        let publisher = &self.settings.publisher;
        record.publisher = Agent {
            name: publisher.name.clone(),
            uri: publisher.uri.clone(),
        };
        record.district_key = Some(publisher.district_key.clone());
        let contact = record
            .contact_point
            .get_or_insert_with(ContactPoint::default);
        if let Some(e) = m
            .contact_email
            .as_ref()
            .or(publisher.contact_email.as_ref())
            && (m.contact_email.is_some() || contact.email.is_none())
        {
            contact.email = Some(e.clone());
        }
        if let Some(n) = m.contact_name.as_ref().or(publisher.contact_name.as_ref())
            && (m.contact_name.is_some() || contact.name.is_none())
        {
            contact.name = Some(n.clone());
        }
        if *contact == ContactPoint::default() {
            record.contact_point = None;
        }
        Ok(())
    }

    /// Changes a dataset's metadata without a new version of the data.
    pub fn update_metadata(
        &self,
        id_or_slug: &str,
        m: &MetadataInput,
    ) -> Result<StoredDataset, DatasetError> {
        self.update_metadata_checked(id_or_slug, m, |_| Ok(()))
    }

    /// Changes a dataset's metadata if `check` accepts the changed dataset (e.g. that it can
    /// still be published); nothing is stored otherwise.
    pub fn update_metadata_checked(
        &self,
        id_or_slug: &str,
        m: &MetadataInput,
        check: impl FnOnce(&StoredDataset) -> Result<(), DatasetError>,
    ) -> Result<StoredDataset, DatasetError> {
        let _guard = self.lock();
        let mut dataset = self.get(id_or_slug)?;
        self.apply_metadata(&mut dataset.record, m)?;
        dataset.record.modified = now();
        check(&dataset)?;
        self.store.put(&dataset)?;
        Ok(dataset)
    }

    /// Deletes a dataset: first its metadata, then its file.
    pub fn delete(&self, id_or_slug: &str) -> Result<StoredDataset, DatasetError> {
        let _guard = self.lock();
        let dataset = self.get(id_or_slug)?;
        self.store.delete(&dataset)?;
        let path = self.file_path(&dataset);
        let _ = std::fs::remove_file(&path);
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(dataset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_from_titles() {
        assert_eq!(
            slug_from("Verkehrszählung Münster 2024"),
            "verkehrszaehlung_muenster_2024"
        );
        assert_eq!(slug_from("2024 counts"), "d_2024_counts");
        assert_eq!(slug_from("!!!"), "dataset");
        assert!(validate_slug("districts").is_ok());
        assert!(validate_slug("../etc").is_err());
        assert!(validate_slug("Districts").is_err());
    }
}
