//! Local SQL over the node's own datasets with Apache DataFusion. Each dataset is a table named
//! by its slug; queries are read-only and run under a memory limit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use arrow::datatypes::DataType;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::catalog::cte_worktable::CteWorkTable;
use datafusion::common::alias::AliasGenerator;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ResolvedTableReference, TableReference};
use datafusion::config::{ConfigOptions, Dialect};
use datafusion::datasource::file_format::options::ReadOptions;
use datafusion::datasource::listing::{ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::provider_as_source;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{FunctionRegistry, TaskContext};
use datafusion::logical_expr::planner::{ContextProvider, ExprPlanner, RelationPlanner};
use datafusion::logical_expr::{AggregateUDF, HigherOrderUDF, ScalarUDF, TableSource, WindowUDF};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::optimizer::OptimizerConfig;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use datafusion::prelude::{ParquetReadOptions, SQLOptions, SessionConfig};
use datafusion::sql::planner::{ParserOptions, SqlToRel};

use crate::datasets::Datasets;
use batches::{BatchesTable, RunBatches};
use decoded::{DECODE_FILES_UP_TO, DecodedFiles, MAX_DECODED_BYTES};

mod batches;
mod decoded;

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
    let engine = engine()?;
    let parsed = engine.parse(sql)?;
    let mut inputs = Vec::new();
    let mut bytes = 0u64;
    for table in &parsed.tables {
        let input = match resolve(table)? {
            Source::Parquet(path) => {
                let meta = std::fs::metadata(&path)
                    .map_err(|e| SqlError::Internal(format!("{}: {e}", path.display())))?;
                bytes = bytes.saturating_add(meta.len());
                let stamp = (meta.len(), meta.modified().ok());
                let decoded = if meta.len() <= DECODE_FILES_UP_TO {
                    engine.decoded(&path, stamp, table).await?
                } else {
                    None
                };
                match decoded {
                    Some((schema, batches)) => Input::Batches(schema, batches),
                    None => Input::Parquet(path, stamp),
                }
            }
            Source::Batches(schema, batches) => {
                if let Some(b) = batches.iter().find(|b| !schema.contains(&b.schema())) {
                    return Err(SqlError::Internal(format!(
                        "table `{table}`: a batch's columns {} differ from the table's {}",
                        b.schema(),
                        schema
                    )));
                }
                let size: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
                bytes = bytes.saturating_add(size as u64);
                Input::Batches(schema, batches)
            }
        };
        inputs.push((table.clone(), input));
    }
    // Small inputs run in one partition: splitting them costs more than it saves.
    let small = bytes < SMALL_INPUT;
    let state = if small { &engine.small } else { &engine.state };
    // A small query is planned once per text and inputs (files and their versions, the
    // schemas of batches).
    let key = (small && sql.len() <= KEEP_TEXTS_UP_TO).then(|| PlanKey::of(sql, &inputs));
    let mut run = RunBatches::default();
    for (table, input) in &inputs {
        if let Input::Batches(_, batches) = input {
            run.0.insert(table.clone(), batches.clone());
        }
    }
    if let Some(plan) = key.as_ref().and_then(|k| engine.kept_plan(k)) {
        // Each run gets its own copy of the operators' run state (a top k's filter, metrics).
        return execute(reset_plan_states(plan)?, state, memory_limit, run);
    }
    let mut context = QueryContext {
        state,
        tables: HashMap::new(),
    };
    for (table, input) in inputs {
        let resolved = context.resolve(table.clone());
        let provider: Arc<dyn TableProvider> = match input {
            Input::Parquet(path, stamp) => engine.parquet(state, &path, stamp, table).await?,
            Input::Batches(schema, _) => Arc::new(BatchesTable::new(table, schema)),
        };
        context
            .tables
            .insert(resolved, provider_as_source(provider));
    }
    let options = ParserOptions::from(&state.config_options().sql_parser);
    let plan = SqlToRel::new_with_options(&context, options)
        .statement_to_plan(parsed.statement.clone())?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| SqlError::NotAllowed(e.strip_backtrace()))?;
    let key = key.filter(|_| !reads_the_clock(&plan));
    let optimizing = Optimizing {
        state,
        start: chrono::Utc::now(),
    };
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})?;
    let plan = state.optimizer().optimize(plan, &optimizing, |_, _| {})?;
    let plan = state
        .query_planner()
        .create_physical_plan(&plan, state)
        .await?;
    if let Some(key) = key
        && reusable(plan.as_ref())
    {
        engine.keep_plan(key, plan.clone());
    }
    execute(plan, state, memory_limit, run)
}

/// Starts `plan` with its own memory pool of `memory_limit` bytes, reading `batches`.
fn execute(
    plan: Arc<dyn ExecutionPlan>,
    state: &SessionState,
    memory_limit: u64,
    batches: RunBatches,
) -> Result<SendableRecordBatchStream, SqlError> {
    let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
        .with_memory_limit(usize::try_from(memory_limit).unwrap_or(usize::MAX), 1.0)
        .build_arc()?;
    let mut config = state.config().clone();
    if !batches.0.is_empty() {
        config = config.with_extension(Arc::new(batches));
    }
    // The operators of a physical plan never look functions up by name (only a plan's
    // deserialiser would), so the task gets none: copying the state's hundreds of them was
    // ~3 % of a member's CPU per federated fragment.
    let task = TaskContext::new(
        None,
        state.session_id().to_owned(),
        config,
        HashMap::new(),
        HashMap::new(),
        HashMap::new(),
        HashMap::new(),
        runtime,
    );
    Ok(execute_stream(plan, Arc::new(task))?)
}

/// Whether the query's answer depends on when it runs (`now()`, `random()`, …): such a plan
/// is not kept, as its start time is folded into it.
fn reads_the_clock(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                found |= matches!(e, Expr::ScalarFunction(f)
                    if f.func.signature().volatility != Volatility::Immutable);
                Ok(if found {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            })
        })
    });
    found
}

/// Whether `plan` consists only of operators whose run state DataFusion resets for a new run
/// ([`reset_plan_states`]) and which read nothing but their input: scans, projections,
/// filters, aggregates, sorts and limits. Plans with joins, repartitions, subqueries or
/// recursion are made anew each time.
fn reusable(plan: &dyn ExecutionPlan) -> bool {
    const REUSABLE: &[&str] = &[
        "DataSourceExec",
        "BatchesExec",
        "ProjectionExec",
        "FilterExec",
        "AggregateExec",
        "SortExec",
        "SortExec(TopK)",
        "SortPreservingMergeExec",
        "CoalescePartitionsExec",
        "CoalesceBatchesExec",
        "CooperativeExec",
        "GlobalLimitExec",
        "LocalLimitExec",
        "EmptyExec",
        "PlaceholderRowExec",
        "UnionExec",
    ];
    REUSABLE.contains(&plan.name()) && plan.children().into_iter().all(|c| reusable(c.as_ref()))
}

/// What a kept physical plan is found by: the SQL text and, for each table it reads, the file
/// and its version or the schema of its batches.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PlanKey {
    sql: String,
    inputs: Vec<(TableReference, InputKey)>,
}

/// What of a table a plan depends on.
#[derive(Clone, PartialEq, Eq, Hash)]
enum InputKey {
    File(PathBuf, FileStamp),
    Batches(SchemaRef),
}

impl PlanKey {
    fn of(sql: &str, inputs: &[(TableReference, Input)]) -> Self {
        let inputs = inputs
            .iter()
            .map(|(table, input)| {
                let key = match input {
                    Input::Parquet(path, stamp) => InputKey::File(path.clone(), *stamp),
                    Input::Batches(schema, _) => InputKey::Batches(schema.clone()),
                };
                (table.clone(), key)
            })
            .collect();
        Self {
            sql: sql.to_string(),
            inputs,
        }
    }
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

/// The DataFusion state every query plans with, built once per process (functions, planners,
/// optimizer rules, the caches of Parquet footers and statistics, which DataFusion checks
/// against each file's size and modification time), and the Arrow schema of each Parquet file
/// read so far, the physical plans of small queries that do not read the clock, the parses of
/// query texts and the decoded rows of small files. A query gets its own tables, start time and
/// memory pool; nothing of one query's run is visible to another.
struct Engine {
    /// For inputs of [`SMALL_INPUT`] bytes and more: two partitions.
    state: SessionState,
    /// For smaller inputs (a federated fragment, a merge of partial answers): one partition,
    /// no dynamic filters (its plans are kept and run again).
    small: SessionState,
    schemas: Mutex<HashMap<PathBuf, (FileStamp, SchemaRef)>>,
    /// Physical plans of small queries, for their next run.
    plans: Mutex<HashMap<PlanKey, Arc<dyn ExecutionPlan>>>,
    /// Queries parsed so far, by their text.
    parsed: Mutex<HashMap<String, Arc<Parsed>>>,
    /// The rows of small Parquet files.
    decoded: Mutex<DecodedFiles>,
}

/// A query's statement and the tables it names.
struct Parsed {
    statement: datafusion::sql::parser::Statement,
    tables: Vec<TableReference>,
}

/// A table of one query, resolved: a Parquet file with its stamp, or batches in memory.
enum Input {
    Parquet(PathBuf, FileStamp),
    Batches(SchemaRef, Vec<RecordBatch>),
}

/// What tells one version of a file from another: its size and modification time.
type FileStamp = (u64, Option<std::time::SystemTime>);

/// Inputs (Parquet files, batches in memory) below this size run in one partition.
const SMALL_INPUT: u64 = 8 << 20;

/// Schemas of at most this many Parquet files are kept.
const SCHEMAS_KEPT: usize = 1024;

/// At most this many physical plans are kept.
const PLANS_KEPT: usize = 256;

/// At most this many parsed queries are kept.
const PARSED_KEPT: usize = 256;

/// Parses and plans are kept only for query texts up to this length (a fragment's is a few
/// hundred bytes), so that the kept texts stay small.
const KEEP_TEXTS_UP_TO: usize = 16 << 10;

static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();

fn engine() -> Result<&'static Engine, SqlError> {
    ENGINE
        .get_or_init(|| {
            let runtime = RuntimeEnvBuilder::new()
                // Files are read by path, never by listing a directory, so a listing cache
                // would only keep stale entries.
                .with_object_list_cache_limit(0)
                .with_metadata_cache_limit(16 << 20)
                .build_arc()
                .map_err(|e| e.to_string())?;
            let state = |partitions, kept: bool| {
                // A kept plan runs again: a dynamic filter would carry what one run learnt
                // (the current top k, a join's keys) into the next.
                let config = SessionConfig::new()
                    .with_target_partitions(partitions)
                    .set_bool("datafusion.optimizer.enable_dynamic_filter_pushdown", !kept);
                SessionStateBuilder::new()
                    .with_config(config)
                    .with_runtime_env(runtime.clone())
                    .with_default_features()
                    .build()
            };
            Ok(Engine {
                state: state(2, false),
                small: state(1, true),
                schemas: Mutex::new(HashMap::new()),
                plans: Mutex::new(HashMap::new()),
                parsed: Mutex::new(HashMap::new()),
                decoded: Mutex::new(DecodedFiles::default()),
            })
        })
        .as_ref()
        .map_err(|e| SqlError::Internal(format!("starting the query engine: {e}")))
}

impl Engine {
    /// A table over the Parquet file at `path`, planned for `state`, its schema read once per
    /// version of the file.
    async fn parquet(
        &self,
        state: &SessionState,
        path: &Path,
        stamp: FileStamp,
        table: TableReference,
    ) -> Result<Arc<dyn TableProvider>, SqlError> {
        let text = path
            .to_str()
            .ok_or_else(|| SqlError::Internal("data dir path is not UTF-8".into()))?;
        let url = ListingTableUrl::parse(text)?.with_table_ref(table);
        let options = ParquetReadOptions::default()
            .to_listing_options(state.config(), state.default_table_options());
        let known = lock(&self.schemas)
            .get(path)
            .filter(|(s, _)| *s == stamp)
            .map(|(_, schema)| schema.clone());
        let schema = match known {
            Some(schema) => schema,
            None => {
                let schema = options.infer_schema(state, &url).await?;
                let mut schemas = lock(&self.schemas);
                if schemas.len() >= SCHEMAS_KEPT {
                    schemas.clear();
                }
                schemas.insert(path.to_path_buf(), (stamp, schema.clone()));
                schema
            }
        };
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(schema);
        let statistics = state.runtime_env().cache_manager.get_file_statistic_cache();
        Ok(Arc::new(
            ListingTable::try_new(config)?.with_cache(statistics),
        ))
    }

    /// Parses `sql` (once per text), refusing anything but a query.
    fn parse(&self, sql: &str) -> Result<Arc<Parsed>, SqlError> {
        if let Some(p) = lock(&self.parsed).get(sql) {
            return Ok(p.clone());
        }
        let statement = self.state.sql_to_statement(sql, &Dialect::Generic)?;
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
        let tables = self.state.resolve_table_references(&statement)?;
        let parsed = Arc::new(Parsed { statement, tables });
        if sql.len() > KEEP_TEXTS_UP_TO {
            return Ok(parsed);
        }
        let mut kept = lock(&self.parsed);
        if kept.len() >= PARSED_KEPT {
            kept.clear();
        }
        kept.insert(sql.to_owned(), parsed.clone());
        Ok(parsed)
    }

    /// The rows of the small Parquet file at `path` (read as a table would read it, with the
    /// same column types), decoded once per version of the file; `None` when they take more
    /// than [`MAX_DECODED_BYTES`] in memory (a small file may hold many compressed rows), which
    /// are then read from the file by each query under its memory limit.
    async fn decoded(
        &self,
        path: &Path,
        stamp: FileStamp,
        table: &TableReference,
    ) -> Result<Option<(SchemaRef, Vec<RecordBatch>)>, SqlError> {
        use futures::StreamExt;
        if let Some(rows) = lock(&self.decoded).get(path, stamp) {
            return Ok(Some(rows));
        }
        let provider = self
            .parquet(&self.small, path, stamp, table.clone())
            .await?;
        let scan = provider.scan(&self.small, None, &[], None).await?;
        let mut stream = execute_stream(scan, Arc::new(TaskContext::from(&self.small)))?;
        let (mut batches, mut bytes) = (Vec::new(), 0);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            bytes += batch.get_array_memory_size();
            if bytes > MAX_DECODED_BYTES {
                return Ok(None);
            }
            batches.push(batch);
        }
        let schema = provider.schema();
        lock(&self.decoded).insert(path, stamp, schema.clone(), batches.clone());
        Ok(Some((schema, batches)))
    }

    fn kept_plan(&self, key: &PlanKey) -> Option<Arc<dyn ExecutionPlan>> {
        lock(&self.plans).get(key).cloned()
    }

    fn keep_plan(&self, key: PlanKey, plan: Arc<dyn ExecutionPlan>) {
        let mut plans = lock(&self.plans);
        if plans.len() >= PLANS_KEPT {
            plans.clear();
        }
        plans.insert(key, plan);
    }
}

/// Locks `m`; a panic while it was held does not make the kept state wrong, only stale.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The tables of one query, and the shared state's functions, for DataFusion's SQL planner.
struct QueryContext<'a> {
    state: &'a SessionState,
    tables: HashMap<ResolvedTableReference, Arc<dyn TableSource>>,
}

impl QueryContext<'_> {
    fn resolve(&self, table: TableReference) -> ResolvedTableReference {
        let catalog = &self.state.config_options().catalog;
        table.resolve(&catalog.default_catalog, &catalog.default_schema)
    }
}

impl ContextProvider for QueryContext<'_> {
    fn get_table_source(&self, name: TableReference) -> DfResult<Arc<dyn TableSource>> {
        let name = self.resolve(name);
        self.tables
            .get(&name)
            .cloned()
            .ok_or_else(|| DataFusionError::Plan(format!("table '{name}' not found")))
    }

    fn create_cte_work_table(
        &self,
        name: &str,
        schema: SchemaRef,
    ) -> DfResult<Arc<dyn TableSource>> {
        Ok(provider_as_source(Arc::new(CteWorkTable::new(
            name, schema,
        ))))
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        self.state.expr_planners()
    }

    fn get_relation_planners(&self) -> &[Arc<dyn RelationPlanner>] {
        self.state.relation_planners()
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.state.scalar_functions().get(name).cloned()
    }

    fn get_higher_order_meta(&self, name: &str) -> Option<Arc<HigherOrderUDF>> {
        self.state.higher_order_functions().get(name).cloned()
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.state.aggregate_functions().get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.state.window_functions().get(name).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        self.state.config_options()
    }

    fn udf_names(&self) -> Vec<String> {
        self.state.scalar_functions().keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        self.state
            .higher_order_functions()
            .keys()
            .cloned()
            .collect()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.state.aggregate_functions().keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.state.window_functions().keys().cloned().collect()
    }
}

/// The shared state with this query's start time (what `now()` returns), for the optimizer.
struct Optimizing<'a> {
    state: &'a SessionState,
    start: chrono::DateTime<chrono::Utc>,
}

impl OptimizerConfig for Optimizing<'_> {
    fn query_execution_start_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        Some(self.start)
    }

    fn alias_generator(&self) -> &Arc<AliasGenerator> {
        &self.state.execution_props().alias_generator
    }

    fn options(&self) -> Arc<ConfigOptions> {
        self.state.config_options().clone()
    }

    fn function_registry(&self) -> Option<&dyn FunctionRegistry> {
        Some(self.state)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{Field, Schema};

    fn write(path: &Path, column: &str, values: Vec<i64>) {
        let schema = Arc::new(Schema::new(vec![Field::new(
            column,
            DataType::Int64,
            false,
        )]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap();
        let file = std::fs::File::create(path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    async fn run(sql: &str, path: &Path) -> Result<Vec<RecordBatch>, SqlError> {
        let path = path.to_path_buf();
        let stream = query_with(sql, 64 << 20, &|t| {
            if t.table() == "t" {
                Ok(Source::Parquet(path.clone()))
            } else {
                Err(SqlError::Invalid(format!("table `{t}` not found")))
            }
        })
        .await?;
        Ok(collect(stream).await?.1)
    }

    #[tokio::test]
    async fn a_rewritten_file_is_read_with_its_new_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        write(&path, "a", vec![1, 2, 3]);
        let b = run("SELECT SUM(a) AS s FROM t", &path).await.unwrap();
        assert_eq!(b[0].num_rows(), 1);
        write(&path, "b", vec![10, 20, 30, 40]);
        let err = run("SELECT SUM(a) FROM t", &path).await.unwrap_err();
        assert!(matches!(err, SqlError::Invalid(_)), "{err}");
        let b = run("SELECT SUM(b) AS s FROM t", &path).await.unwrap();
        assert_eq!(sum(&b), 100);
    }

    fn sum(b: &[RecordBatch]) -> i64 {
        let c = b[0].column(0).as_any().downcast_ref::<Int64Array>();
        c.unwrap().value(0)
    }

    /// How the kept plan of `sql` reads its table (`file` or `batches`), if it is kept.
    fn kept(sql: &str) -> Option<&'static str> {
        let plans = lock(&engine().unwrap().plans);
        plans
            .keys()
            .find(|k| k.sql == sql)
            .map(|k| match &k.inputs[..] {
                [(_, InputKey::File(..))] => "file",
                _ => "batches",
            })
    }

    /// `n` distinct values, spread so that the file does not compress below
    /// [`DECODE_FILES_UP_TO`] when `n` is large.
    fn spread(n: i64) -> Vec<i64> {
        (0..n)
            .map(|i| (i * 2_654_435_761) % 1_000_000_007)
            .collect()
    }

    async fn over_batches(sql: &str, values: Vec<i64>) -> Result<Vec<RecordBatch>, SqlError> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Int64, false),
        ]));
        let doubled: Vec<i64> = values.iter().map(|v| v * 2).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(values)),
                Arc::new(Int64Array::from(doubled)),
            ],
        )
        .unwrap();
        let stream = query_with(sql, 64 << 20, &|_| {
            Ok(Source::Batches(schema.clone(), vec![batch.clone()]))
        })
        .await?;
        Ok(collect(stream).await?.1)
    }

    #[tokio::test]
    async fn a_kept_plan_over_batches_reads_each_runs_own_batches() {
        for sql in [
            "SELECT COUNT(*) FROM m",
            "SELECT SUM(b) FROM m WHERE a > 1",
            "SELECT MAX(a) FROM (SELECT a FROM m ORDER BY a DESC LIMIT 2)",
        ] {
            let first = over_batches(sql, vec![1, 2, 3]).await.unwrap();
            assert_eq!(kept(sql), Some("batches"), "{sql} is kept");
            let (a, b) = tokio::join!(
                over_batches(sql, vec![10, 20, 30, 40]),
                over_batches(sql, vec![7])
            );
            let answers = [first, a.unwrap(), b.unwrap()].map(|b| sum(&b));
            let expected = match sql {
                "SELECT COUNT(*) FROM m" => [3, 4, 1],
                "SELECT SUM(b) FROM m WHERE a > 1" => [10, 200, 14],
                _ => [3, 40, 7],
            };
            assert_eq!(answers, expected, "{sql}");
        }
    }

    #[tokio::test]
    async fn batches_unlike_their_table_are_refused() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let other = Arc::new(Schema::new(vec![Field::new("b", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(other, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
        let err = query_with("SELECT * FROM m", 64 << 20, &|_| {
            Ok(Source::Batches(schema.clone(), vec![batch.clone()]))
        })
        .await
        .err()
        .expect("refused");
        assert!(err.to_string().contains("differ from the table's"), "{err}");
    }

    #[tokio::test]
    async fn a_small_query_over_files_is_planned_once_per_version_of_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        write(&path, "a", vec![5, 1, 3, 2]);
        let top = "SELECT SUM(a) FROM (SELECT a FROM t ORDER BY a DESC LIMIT 2)";
        assert_eq!(sum(&run(top, &path).await.unwrap()), 8);
        // A small file is decoded once and read as batches.
        assert_eq!(kept(top), Some("batches"));
        // Run again, twice at once: the kept plan answers the same.
        let (a, b) = tokio::join!(run(top, &path), run(top, &path));
        assert_eq!((sum(&a.unwrap()), sum(&b.unwrap())), (8, 8));
        // A new version of the file is read anew.
        write(&path, "a", vec![10, 20, 30, 40, 50]);
        assert_eq!(sum(&run(top, &path).await.unwrap()), 90);
        // A larger file is read as Parquet each time, by a plan kept per version of the file.
        let large = spread(300_000);
        write(&path, "a", large.clone());
        assert!(std::fs::metadata(&path).unwrap().len() > DECODE_FILES_UP_TO);
        let top2 = "SELECT SUM(a) FROM (SELECT a FROM t ORDER BY a DESC LIMIT 2) AS x";
        let mut sorted = large;
        sorted.sort_unstable();
        let expected: i64 = sorted.iter().rev().take(2).sum();
        assert_eq!(sum(&run(top2, &path).await.unwrap()), expected);
        assert_eq!(kept(top2), Some("file"));
        assert_eq!(sum(&run(top2, &path).await.unwrap()), expected);
        write(&path, "a", vec![10, 20, 30, 40, 50]);
        assert_eq!(sum(&run(top2, &path).await.unwrap()), 90);
        // A small file of many rows (compressed well) is read as Parquet, not kept decoded.
        write(&path, "a", vec![7; 3_000_000]);
        assert!(std::fs::metadata(&path).unwrap().len() <= DECODE_FILES_UP_TO);
        let many = "SELECT SUM(a) FROM t WHERE a > 0";
        assert_eq!(sum(&run(many, &path).await.unwrap()), 21_000_000);
        assert_eq!(kept(many), Some("file"));
        // A long query text is neither kept parsed nor planned.
        let list: Vec<String> = (0..3000).map(|i| i.to_string()).collect();
        let long = format!("SELECT SUM(a) FROM t WHERE a IN ({})", list.join(", "));
        assert!(long.len() > KEEP_TEXTS_UP_TO);
        assert_eq!(sum(&run(&long, &path).await.unwrap()), 21_000_000);
        assert_eq!(kept(&long), None);
        assert!(!lock(&engine().unwrap().parsed).contains_key(&long));
        // A query that reads the clock is not kept.
        let clock = "SELECT COUNT(*) FROM t WHERE now() > to_timestamp(0)";
        run(clock, &path).await.unwrap();
        assert_eq!(kept(clock), None);
    }

    #[tokio::test]
    async fn a_small_file_decoded_has_the_column_types_of_a_file_read_as_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let types = |b: &[RecordBatch]| -> Vec<DataType> {
            let schema = b[0].schema();
            schema
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect()
        };
        let write_text = |values: Vec<String>| {
            let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)]));
            let column = Arc::new(arrow::array::StringArray::from(values));
            let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
            let file = std::fs::File::create(&path).unwrap();
            let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
        };
        let sql = "SELECT s, length(s) AS n FROM t ORDER BY s LIMIT 1";
        write_text(vec!["b".into(), "a".into()]);
        let small = run(sql, &path).await.unwrap();
        write_text(spread(200_000).iter().map(|v| format!("{v:x}")).collect());
        assert!(std::fs::metadata(&path).unwrap().len() > DECODE_FILES_UP_TO);
        let large = run(sql, &path).await.unwrap();
        assert_eq!(types(&small), types(&large));
    }

    #[tokio::test]
    async fn a_join_is_planned_anew_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        write(&path, "a", vec![1, 2, 3]);
        let join = "SELECT SUM(x.a) FROM t x JOIN t y ON x.a = y.a";
        assert_eq!(sum(&run(join, &path).await.unwrap()), 6);
        assert_eq!(kept(join), None);
    }

    #[tokio::test]
    async fn each_query_has_its_own_tables_and_start_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        write(&path, "a", vec![1]);
        run("SELECT * FROM t", &path).await.unwrap();
        // A table of an earlier query is not visible to a later one.
        let err = run("SELECT * FROM u", &path).await.unwrap_err();
        assert!(err.to_string().contains("`u` not found"), "{err}");
        let now = |b: Vec<RecordBatch>| {
            let c = arrow::compute::cast(b[0].column(0), &DataType::Int64).unwrap();
            c.as_any().downcast_ref::<Int64Array>().unwrap().value(0)
        };
        let first = now(run("SELECT now()", &path).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let second = now(run("SELECT now()", &path).await.unwrap());
        assert!(second > first, "now() is the query's own start time");
    }
}
