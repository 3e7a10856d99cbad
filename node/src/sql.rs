//! Local SQL over the node's own datasets with Apache DataFusion. Each dataset is a table named
//! by its slug; queries are read-only and run under a memory limit.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::MemTable;
use datafusion::common::TableReference;
use datafusion::config::Dialect;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::{ParquetReadOptions, SQLOptions, SessionConfig, SessionContext};

use crate::datasets::Datasets;

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
    #[error("the query did not finish within {0} s")]
    Timeout(u64),
    /// The node failed while running the query.
    #[error("query failed: {0}")]
    Internal(String),
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        match e.find_root() {
            DataFusionError::SQL(..) => {
                Self::Invalid(format!("SQL syntax error: {}", e.strip_backtrace()))
            }
            DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
                Self::Invalid(e.strip_backtrace())
            }
            DataFusionError::NotImplemented(m) => Self::Invalid(format!("not supported: {m}")),
            DataFusionError::ResourcesExhausted(m) => Self::ResourcesExhausted(m.clone()),
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
}

/// Runs the read-only query `sql`, resolving each table it names with `resolve`, under a
/// memory limit; returns the result as a stream of batches.
pub async fn query_with(
    sql: &str,
    memory_limit: u64,
    resolve: &(dyn Fn(&TableReference) -> Result<Source, SqlError> + Sync),
) -> Result<SendableRecordBatchStream, SqlError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(usize::try_from(memory_limit).unwrap_or(usize::MAX), 1.0)
        .build_arc()?;
    let config = SessionConfig::new().with_target_partitions(2);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    let state = ctx.state();
    let statement = state.sql_to_statement(sql, &Dialect::Generic)?;
    let is_query = matches!(
        &statement,
        datafusion::sql::parser::Statement::Statement(s)
            if matches!(**s, datafusion::sql::sqlparser::ast::Statement::Query(_))
    );
    if !is_query {
        return Err(SqlError::NotAllowed(
            "the statement is not a query (SELECT, WITH or VALUES)".into(),
        ));
    }
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    for table in state.resolve_table_references(&statement)? {
        match resolve(&table)? {
            Source::Parquet(path) => {
                let path = path
                    .to_str()
                    .ok_or_else(|| SqlError::Internal("data dir path is not UTF-8".into()))?;
                ctx.register_parquet(table.clone(), path, ParquetReadOptions::default())
                    .await?;
            }
            Source::Batches(schema, batches) => {
                let mem = MemTable::try_new(schema, vec![batches])?;
                ctx.register_table(table.clone(), Arc::new(mem))?;
            }
        }
    }
    let plan = state.statement_to_plan(statement).await?;
    options
        .verify_plan(&plan)
        .map_err(|e| SqlError::NotAllowed(e.strip_backtrace()))?;
    let frame = ctx.execute_logical_plan(plan).await?;
    Ok(frame.execute_stream().await?)
}

/// Runs `sql` over the node's datasets (each a table named by its slug) and returns the result
/// as a stream of batches.
pub async fn query(
    datasets: &Datasets,
    sql: &str,
    memory_limit: u64,
) -> Result<SendableRecordBatchStream, SqlError> {
    query_with(sql, memory_limit, &|table| {
        if table.schema().is_some() {
            return Err(SqlError::Invalid(format!(
                "table `{table}`: only this node's datasets can be queried here, by their names \
                 (federated tables go to /api/v1/query)"
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

/// Wraps a stream so that it ends with an error once `deadline` has passed.
pub fn with_deadline(
    stream: SendableRecordBatchStream,
    deadline: tokio::time::Instant,
    limit_secs: u64,
) -> SendableRecordBatchStream {
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use futures::StreamExt;
    let schema = stream.schema();
    let timed = futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((
                Err(DataFusionError::Execution(format!(
                    "the query did not finish within {limit_secs} s"
                ))),
                None,
            )),
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, timed))
}
