//! The node's durable metadata in RocksDB: datasets and their names, the federation's state and
//! catalog logs, policies, agreements, revocations, the audit log and transfers. [`keys`] owns
//! every key layout; nothing outside this crate spells a key. Every change is one synced write
//! batch, so a crash leaves either the old or the new state; every scan is bounded (at most
//! [`MAX_PAGE`] records) or paged ([`Store::scan_all`]); [`Store::blocking`] runs store work
//! on a blocking thread for async callers.

use std::path::PathBuf;

mod datasets;
mod db;
pub mod keys;

pub use datasets::{Field, MAX_RECORD_BYTES, SourceInfo, StoredDataset};
pub use db::{DB_DIR, MAX_PAGE, Store};

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
    /// Store work on a blocking thread did not finish (a panic, or the runtime stopping).
    #[error("store work failed: {0}")]
    Blocking(String),
    /// A record is larger than the store keeps.
    #[error("the record is {0} bytes; the store keeps records of at most {MAX_RECORD_BYTES} bytes")]
    TooLarge(usize),
}
