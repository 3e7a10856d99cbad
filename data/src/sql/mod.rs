//! Local SQL over the node's own datasets with Apache DataFusion. Each dataset is a table named
//! by its slug; queries are read-only and run under bounds on their text ([`guard`]), on what
//! their functions build ([`bounded`]), on their memory and time, on the engine's own threads
//! ([`pool`]).

mod batches;
pub mod bounded;
mod context;
mod coop;
mod decoded;
mod engine;
pub mod federated;
pub mod guard;
mod kept;
pub mod pool;
pub mod subplan;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::SendableRecordBatchStream;

use crate::datasets::Datasets;
pub use engine::{Engine, EngineConfig};

/// Errors of an SQL query.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The query does not parse or plan: syntax errors, unknown tables or columns.
    #[error("{0}")]
    Invalid(String),
    /// The statement is not a read-only query.
    #[error("only read-only queries are allowed: {0}")]
    NotAllowed(String),
    /// The query hit the memory limit.
    #[error("the query needs more memory than allowed: {0}")]
    ResourcesExhausted(String),
    /// The query took longer than allowed.
    #[error("the query did not finish within {0:?}")]
    Timeout(std::time::Duration),
    /// Evaluating the query over the data failed (a division by zero, a value that does not
    /// cast, a function's argument out of range).
    #[error("the query failed on the data: {0}")]
    Evaluation(String),
    /// The query is longer or holds more operators than the engine plans ([`guard`]).
    #[error("the query is too complex: {0}")]
    TooComplex(String),
    /// The query was cancelled: the node is shutting down.
    #[error("the query was cancelled: the node is shutting down")]
    Cancelled,
    /// The node failed while running the query.
    #[error("query failed: {0}")]
    Internal(String),
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        let root = e.find_root();
        let text = root.to_string();
        if text.contains("Regular expression did not compile")
            || text.contains("regex parse error")
            || text.contains("Compiled regex exceeds size limit")
        {
            return Self::Invalid(format!(
                "invalid regular expression: {}",
                e.strip_backtrace()
            ));
        }
        if text.contains("spilling process has exceeded") {
            return Self::ResourcesExhausted(format!(
                "its spill files would exceed the node's limit (limits.spill_bytes): {}",
                e.strip_backtrace()
            ));
        }
        match root {
            DataFusionError::SQL(..) => {
                Self::Invalid(format!("SQL syntax error: {}", e.strip_backtrace()))
            }
            DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
                Self::Invalid(e.strip_backtrace())
            }
            DataFusionError::NotImplemented(m) => Self::Invalid(format!("not supported: {m}")),
            DataFusionError::ResourcesExhausted(m) => Self::ResourcesExhausted(m.clone()),
            DataFusionError::ArrowError(a, _)
                if matches!(
                    a.as_ref(),
                    arrow::error::ArrowError::IoError(..)
                        | arrow::error::ArrowError::ExternalError(_)
                ) =>
            {
                Self::Internal(e.strip_backtrace())
            }
            DataFusionError::ArrowError(..) | DataFusionError::Execution(_) => {
                Self::Evaluation(e.strip_backtrace())
            }
            _ => Self::Internal(e.strip_backtrace()),
        }
    }
}

/// A table a query may read.
pub enum Source {
    /// A Parquet file.
    Parquet(PathBuf),
    /// Batches in memory.
    Batches(SchemaRef, Vec<RecordBatch>),
    /// A table of the caller's: a [`federated::FederatedTable`].
    Table(std::sync::Arc<dyn datafusion::catalog::TableProvider>),
}

/// Runs `sql` over the node's datasets (each a table named by its slug) and returns the result
/// as a stream of batches.
pub async fn query(
    engine: &Engine,
    datasets: &Datasets,
    sql: &str,
    memory_limit: u64,
) -> Result<SendableRecordBatchStream, SqlError> {
    engine
        .query(sql, memory_limit, &|table| {
            if table.schema().is_some() {
                return Err(SqlError::Invalid(format!(
                    "table `{table}`: only this node's datasets can be queried here, by their \
                     names (federated tables go to /api/v1/query)"
                )));
            }
            let name = table.table();
            match datasets.store().find(name) {
                Ok(Some(d)) if d.record.slug == name => Ok(Source::Parquet(datasets.file_path(&d))),
                Ok(_) => Err(SqlError::Invalid(format!("table `{name}` not found"))),
                Err(e) => Err(SqlError::Internal(e.to_string())),
            }
        })
        .await
}

/// Collects a stream into batches.
pub async fn collect(
    stream: SendableRecordBatchStream,
) -> Result<(SchemaRef, Vec<RecordBatch>), SqlError> {
    let schema = stream.schema();
    let batches = datafusion::physical_plan::common::collect(stream).await?;
    Ok((schema, batches))
}
