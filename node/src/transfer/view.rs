//! The file a provider serves for a transfer: the dataset's stored Parquet file when the view is
//! the whole dataset in Parquet (its size and SHA-256 are in the dataset's record, the same the
//! signed catalog entry announces), else the view written once to `transfers/views/<key>` and
//! kept, so that a resumed transfer gets the same bytes.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use allmende_policy::{Constraint, LeftOperand, Operator, RightOperand};
use allmende_protocol::query::Fragment;
use allmende_protocol::transfer::{TransferFormat, TransferView};
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::query::fragment::fragment_sql;
use crate::serving::Serving;
use allmende_data::sql::{Engine, Source, SqlError};
use allmende_store::StoredDataset;

/// View files kept at most; older ones are removed first.
const KEEP_VIEWS: usize = 16;
/// View files older than this are removed.
const VIEW_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Longest writing one view may take.
const VIEW_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a view's file could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ViewError {
    /// The view cannot be written as SQL.
    #[error(transparent)]
    Sql(#[from] crate::query::fragment::FragmentSqlError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] SqlError),
    /// Writing the view took too long.
    #[error("writing the view took over {VIEW_TIMEOUT:?}")]
    Timeout,
    /// Encoding the batches failed.
    #[error("encoding the view failed: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Writing Parquet failed.
    #[error("writing the view as Parquet failed: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A file of the view could not be written.
    #[error("writing the view's file failed: {0}")]
    Io(#[from] std::io::Error),
    /// The view's facts could not be encoded.
    #[error("recording the view failed: {0}")]
    Facts(#[from] serde_json::Error),
    /// The writer thread died.
    #[error("the view's writer failed: {0}")]
    Writer(#[from] tokio::task::JoinError),
}

/// A file ready to serve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServedFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its length.
    pub size: u64,
    /// SHA-256 of its bytes.
    pub sha256: [u8; 32],
    /// Rows in it.
    pub rows: u64,
}

/// The columns the policy's permissions allow (`allowedColumns` with `isPartOf` or `isAnyOf`),
/// in the dataset's order; every column when some permission does not restrict columns.
pub(crate) fn permitted_columns(
    policy: &allmende_policy::Policy,
    dataset: &StoredDataset,
) -> Vec<String> {
    fn walk(c: &Constraint, out: &mut Option<Vec<String>>) {
        match c {
            Constraint::Atomic(a)
                if a.left == LeftOperand::AllowedColumns
                    && matches!(a.operator, Operator::IsPartOf | Operator::IsAnyOf) =>
            {
                let listed: Vec<String> = match &a.right {
                    RightOperand::List(values) => values
                        .iter()
                        .filter_map(|v| v.as_term().map(str::to_owned))
                        .collect(),
                    other => other.as_term().map(str::to_owned).into_iter().collect(),
                };
                out.get_or_insert_with(Vec::new).extend(listed);
            }
            Constraint::Atomic(_) => {}
            Constraint::Logical(l) => l.operands.iter().for_each(|o| walk(o, out)),
        }
    }
    let all: Vec<String> = dataset.schema.iter().map(|f| f.name.clone()).collect();
    let mut allowed: Vec<String> = Vec::new();
    for permission in &policy.permissions {
        let mut listed = None;
        permission
            .constraints
            .iter()
            .for_each(|c| walk(c, &mut listed));
        match listed {
            None => return all,
            Some(l) => allowed.extend(l),
        }
    }
    all.into_iter().filter(|c| allowed.contains(c)).collect()
}

/// The key naming a view of the dataset's current file.
fn view_key(dataset: &StoredDataset, view: &TransferView, format: TransferFormat) -> String {
    let bytes = allmende_protocol::cbor::to_vec(&(&dataset.file, view, format)).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..16])
}

/// Whether `view` is the whole dataset, unfiltered, in its stored column order.
fn is_whole(dataset: &StoredDataset, view: &TransferView) -> bool {
    view.filter.is_empty()
        && view.columns.len() == dataset.schema.len()
        && view
            .columns
            .iter()
            .zip(&dataset.schema)
            .all(|(c, f)| *c == f.name)
}

/// The file for `view` (columns already resolved and checked) of `dataset`, written if needed;
/// views are written one at a time under `writing`, so a view asked for twice is written once.
pub(crate) async fn prepare(
    ctx: &Serving,
    views_dir: &Path,
    writing: &tokio::sync::Mutex<()>,
    dataset: &StoredDataset,
    view: &TransferView,
    format: TransferFormat,
) -> Result<ServedFile, ViewError> {
    let source = ctx.datasets().file_path(dataset);
    if format == TransferFormat::Parquet
        && is_whole(dataset, view)
        && let Some(d) = dataset.record.distributions.first()
        && let Ok(sha) = hex::decode(&d.checksum.value)
        && let Ok(sha256) = <[u8; 32]>::try_from(sha)
    {
        return Ok(ServedFile {
            path: source,
            size: d.byte_size,
            sha256,
            rows: dataset.rows,
        });
    }
    let key = view_key(dataset, view, format);
    let path = views_dir.join(format!("{key}.{}", format.extension()));
    let facts = views_dir.join(format!("{key}.json"));
    let written = || {
        std::fs::read(&facts)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ServedFile>(&bytes).ok())
            .filter(|s| std::fs::metadata(&path).is_ok_and(|m| m.len() == s.size))
    };
    if let Some(served) = written() {
        return Ok(served);
    }
    let _one_at_a_time = writing.lock().await;
    if let Some(served) = written() {
        return Ok(served);
    }
    std::fs::create_dir_all(views_dir)?;
    let sql_text = fragment_sql(&Fragment {
        columns: view.columns.clone(),
        filter: view.filter.clone(),
        ..Fragment::default()
    })?;
    let tmp = views_dir.join(format!("{key}.tmp-{}", uuid::Uuid::new_v4().simple()));
    // On the engine's threads, within the time limit of a view.
    let engine = ctx.engine().clone();
    let (memory, target) = (ctx.memory_limit(), tmp.clone());
    let written = ctx
        .engine()
        .pool()
        .spawn(
            tokio::time::Instant::now() + VIEW_TIMEOUT,
            VIEW_TIMEOUT,
            async move {
                // The pool's task answers a SqlError; a view's own failure is carried
                // through it and taken out again below.
                Ok(write_view(&engine, &sql_text, source, memory, format, &target).await)
            },
        )
        .await
        .map_err(|e| match e {
            SqlError::Timeout(_) => ViewError::Timeout,
            other => ViewError::Engine(other),
        })
        .and_then(|w| w);
    let (rows, size, sha256) = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &path)?;
    let served = ServedFile {
        path,
        size,
        sha256,
        rows,
    };
    let json = serde_json::to_vec(&served)?;
    std::fs::write(&facts, json)?;
    prune(views_dir, &served.path);
    Ok(served)
}

/// Runs the view's SQL and writes its batches to `out` in `format` on a blocking thread, fed
/// through a small channel so memory stays bounded; returns rows, bytes and SHA-256.
async fn write_view(
    engine: &Engine,
    sql_text: &str,
    source: PathBuf,
    memory_limit: u64,
    format: TransferFormat,
    out: &Path,
) -> Result<(u64, u64, [u8; 32]), ViewError> {
    let mut stream = engine
        .query(sql_text, memory_limit, &|_| {
            Ok(Source::Parquet(source.clone()))
        })
        .await?;
    let schema = stream.schema();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(2);
    let target = out.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || -> Result<u64, ViewError> {
        let file = File::create(&target)?;
        let file = BufWriter::with_capacity(1 << 20, file);
        let mut rows = 0u64;
        let file = match format {
            TransferFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .build();
                let mut w = ArrowWriter::try_new(file, schema, Some(props))?;
                while let Some(b) = rx.blocking_recv() {
                    rows += b.num_rows() as u64;
                    w.write(&b)?;
                }
                w.into_inner()?
            }
            TransferFormat::Arrow => {
                let mut w = arrow::ipc::writer::FileWriter::try_new(file, &schema)?;
                while let Some(b) = rx.blocking_recv() {
                    rows += b.num_rows() as u64;
                    w.write(&b)?;
                }
                w.finish()?;
                w.into_inner()?
            }
        };
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(rows)
    });
    let mut failed = None;
    while let Some(batch) = stream.next().await {
        match batch {
            Ok(b) => {
                if tx.send(b).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let rows = writer.await??;
    if let Some(e) = failed {
        return Err(ViewError::Engine(e.into()));
    }
    let path = out.to_path_buf();
    let (size, sha256) = tokio::task::spawn_blocking(move || hash_file(&path)).await??;
    Ok((rows, size, sha256))
}

/// Length and SHA-256 of a file.
fn hash_file(path: &Path) -> std::io::Result<(u64, [u8; 32])> {
    let (len, hasher) = hasher_of(path, u64::MAX)?;
    Ok((len, hasher.finalize().into()))
}

/// The first `limit` bytes of a file fed to a SHA-256 hasher, and how many there were.
pub(crate) fn hasher_of(path: &Path, limit: u64) -> std::io::Result<(u64, Sha256)> {
    let mut file = File::open(path)?.take(limit);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hasher))
}

/// Removes view files older than a day, and the oldest beyond [`KEEP_VIEWS`]; never `keep`.
fn prune(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    let mut views: Vec<(SystemTime, PathBuf)> = Vec::new();
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        let Some(modified) = std::fs::metadata(&path).and_then(|m| m.modified()).ok() else {
            continue;
        };
        let old = now.duration_since(modified).unwrap_or_default() > VIEW_MAX_AGE;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.contains(".tmp-") || name.ends_with(".json") {
            // Views being written, and the facts files (removed with their views).
            if old {
                let _ = std::fs::remove_file(&path);
            }
        } else if path != keep {
            views.push((modified, path));
        }
    }
    views.sort();
    let excess = views.len().saturating_sub(KEEP_VIEWS - 1);
    for (i, (modified, path)) in views.iter().enumerate() {
        let old = now.duration_since(*modified).unwrap_or_default() > VIEW_MAX_AGE;
        if i < excess || old {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(path.with_extension("json"));
        }
    }
}
