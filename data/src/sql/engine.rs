//! The query engine: DataFusion's SQL planner, optimizer and operators with the node's caches
//! (Parquet footers, statistics, schemas, parses, kept plans, decoded small files), bounds
//! ([`super::guard`], [`super::bounded`]), spill directory and query threads
//! ([`super::pool`]). One engine per node, owned by the application state and handed to what
//! runs queries; a query gets its own tables, start time and memory pool, and nothing of one
//! query's run is visible to another.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::config::Dialect;
use datafusion::datasource::file_format::options::ReadOptions;
use datafusion::datasource::listing::{ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::execution::context::SessionState;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use datafusion::prelude::{ParquetReadOptions, SQLOptions, SessionConfig};
use datafusion::sql::planner::{ParserOptions, SqlToRel};

use super::batches::{BatchesTable, RunBatches};
use super::context::{Optimizing, QueryContext};
use super::decoded::{DECODE_FILES_UP_TO, DecodedFiles, MAX_DECODED_BYTES};
use super::federated::{FederatedQueryPlanner, PushAggregates, PushAggregatesThroughJoins};
use super::kept::{PlanKey, reads_the_clock, reusable};
use super::pool::QueryPool;
use super::{Source, SqlError};

/// How an engine is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Query threads (0: one per core).
    pub threads: usize,
    /// Local queries (the API's) running at once; more wait for a slot until their deadline.
    pub max_local_queries: usize,
    /// Where operators spill what does not fit their memory limit (`None`: no spilling; a
    /// query over its limit fails).
    pub spill_dir: Option<PathBuf>,
    /// Most bytes of spill files at once, over all queries.
    pub spill_bytes: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            max_local_queries: 8,
            spill_dir: None,
            spill_bytes: 8 << 30,
        }
    }
}

/// The query engine; cloning it shares it.
#[derive(Clone)]
pub struct Engine(pub(super) Arc<Inner>);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("pool", &self.0.pool)
            .finish()
    }
}

/// The DataFusion states every query plans with (functions, planners, optimizer rules, the
/// caches of Parquet footers and statistics, which DataFusion checks against each file's size
/// and modification time), and the Arrow schema of each Parquet file read so far, the physical
/// plans of small queries that do not read the clock, the parses of query texts and the
/// decoded rows of small files.
pub(super) struct Inner {
    /// For inputs of [`SMALL_INPUT`] bytes and more: two partitions.
    pub(super) state: SessionState,
    /// For smaller inputs (a federated fragment, a merge of partial answers): one partition,
    /// no dynamic filters (its plans are kept and run again).
    small: SessionState,
    /// As `state` and `small`, for a provider's partial aggregates: no answers from statistics.
    partial: SessionState,
    small_partial: SessionState,
    schemas: Mutex<HashMap<PathBuf, (FileStamp, SchemaRef)>>,
    /// Physical plans of small queries, for their next run.
    pub(super) plans: Mutex<HashMap<PlanKey, Arc<dyn ExecutionPlan>>>,
    /// Queries parsed so far, by their text.
    pub(super) parsed: Mutex<HashMap<String, Arc<Parsed>>>,
    /// The rows of small Parquet files.
    decoded: Mutex<DecodedFiles>,
    /// The threads queries run on.
    pool: QueryPool,
}

/// A query's statement and the tables it names.
pub(super) struct Parsed {
    statement: datafusion::sql::parser::Statement,
    tables: Vec<TableReference>,
}

/// A table of one query, resolved: a Parquet file with its stamp, batches in memory, or a
/// table of the caller's (a federated one).
pub(super) enum Input {
    Parquet(PathBuf, FileStamp),
    Batches(SchemaRef, Vec<RecordBatch>),
    Table(Arc<dyn TableProvider>),
}

/// What tells one version of a file from another: its size and modification time.
pub(super) type FileStamp = (u64, Option<std::time::SystemTime>);

/// Inputs (Parquet files, batches in memory) below this size run in one partition.
pub(super) const SMALL_INPUT: u64 = 8 << 20;

/// Schemas of at most this many Parquet files are kept.
const SCHEMAS_KEPT: usize = 1024;

/// At most this many physical plans are kept.
const PLANS_KEPT: usize = 256;

/// At most this many parsed queries are kept.
const PARSED_KEPT: usize = 256;

/// Parses are kept only for statements of at most this many operators ([`super::guard`]).
const KEEP_PARSES_UP_TO_OPERATORS: usize = 64;

/// Parses and plans are kept only for query texts up to this length (a fragment's is a few
/// hundred bytes), so that the kept texts stay small.
pub(super) const KEEP_TEXTS_UP_TO: usize = 16 << 10;

impl Engine {
    /// A new engine as `config` says.
    pub fn new(config: &EngineConfig) -> Result<Self, SqlError> {
        let disk = match &config.spill_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    SqlError::Internal(format!("creating the spill dir {}: {e}", dir.display()))
                })?;
                DiskManagerMode::Directories(vec![dir.clone()])
            }
            None => DiskManagerMode::Disabled,
        };
        let runtime = RuntimeEnvBuilder::new()
            // Files are read by path, never by listing a directory, so a listing cache would
            // only keep stale entries.
            .with_object_list_cache_limit(0)
            .with_metadata_cache_limit(16 << 20)
            .with_disk_manager_builder(
                DiskManagerBuilder::default()
                    .with_mode(disk)
                    .with_max_temp_directory_size(config.spill_bytes),
            )
            .build_arc()?;
        let state = |partitions, kept: bool, statistics: bool| -> Result<SessionState, SqlError> {
            // A kept plan runs again: a dynamic filter would carry what one run learnt (the
            // current top k, a join's keys) into the next.
            let config = SessionConfig::new()
                .with_target_partitions(partitions)
                .set_bool("datafusion.optimizer.enable_dynamic_filter_pushdown", !kept);
            // A provider's partial states must come from an aggregation, not from a file's
            // statistics (which answer `count(*)` or `min(x)` without one).
            let physical = PhysicalOptimizer::new()
                .rules
                .into_iter()
                .filter(|r| statistics || r.name() != "aggregate_statistics")
                .collect();
            let mut state = SessionStateBuilder::new()
                .with_config(config)
                .with_runtime_env(runtime.clone())
                .with_default_features()
                .with_physical_optimizer_rules(physical)
                .with_physical_optimizer_rule(Arc::new(super::coop::YieldEverywhere))
                .with_optimizer_rule(Arc::new(PushAggregatesThroughJoins))
                .with_optimizer_rule(Arc::new(PushAggregates))
                .with_query_planner(Arc::new(FederatedQueryPlanner))
                .build();
            super::bounded::bound_functions(&mut state)?;
            Ok(state)
        };
        Ok(Self(Arc::new(Inner {
            state: state(2, false, true)?,
            small: state(1, true, true)?,
            partial: state(2, false, false)?,
            small_partial: state(1, true, false)?,
            schemas: Mutex::new(HashMap::new()),
            plans: Mutex::new(HashMap::new()),
            parsed: Mutex::new(HashMap::new()),
            decoded: Mutex::new(DecodedFiles::default()),
            pool: QueryPool::new(config.threads, config.max_local_queries)?,
        })))
    }

    /// The threads queries run on.
    pub fn pool(&self) -> &QueryPool {
        &self.0.pool
    }

    /// What the engine keeps (for tests of what it keeps).
    #[cfg(test)]
    pub(super) fn inner(&self) -> &Inner {
        &self.0
    }

    /// Where the engine's queries spill (for tests).
    #[cfg(test)]
    pub(super) fn spill_dirs(&self) -> Vec<PathBuf> {
        self.0.state.runtime_env().disk_manager.temp_dir_paths()
    }

    /// Runs the read-only query `sql`, resolving each table it names with `resolve`, under a
    /// memory limit; returns the result as a stream of batches. Called on the query threads
    /// ([`QueryPool::spawn`]).
    pub async fn query(
        &self,
        sql: &str,
        memory_limit: u64,
        resolve: &(dyn Fn(&TableReference) -> Result<Source, SqlError> + Sync),
    ) -> Result<SendableRecordBatchStream, SqlError> {
        let engine = &*self.0;
        let parsed = engine.parse(sql)?;
        let mut inputs = Vec::new();
        let mut bytes = 0u64;
        for table in &parsed.tables {
            let (input, size) = engine.input(table, resolve(table)?).await?;
            bytes = bytes.saturating_add(size);
            inputs.push((table.clone(), input));
        }
        // Small inputs run in one partition: splitting them costs more than it saves.
        let small = bytes < SMALL_INPUT;
        let state = engine.state_for(bytes);
        // A small query is planned once per text and inputs (files and their versions, the
        // schemas of batches).
        let key = (small && sql.len() <= KEEP_TEXTS_UP_TO)
            .then(|| PlanKey::of(sql, &inputs))
            .flatten();
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
            let provider = engine.provider(state, table, input).await?;
            context
                .tables
                .insert(resolved, provider_as_source(provider));
        }
        let options = ParserOptions::from(&state.config_options().sql_parser);
        let plan = SqlToRel::new_with_options(&context, options).statement_to_plan(
            match Arc::try_unwrap(parsed) {
                Ok(only) => only.statement,
                Err(kept) => kept.statement.clone(),
            },
        )?;
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
}

impl Inner {
    /// The state a query over inputs of `bytes` plans with.
    pub(super) fn state_for(&self, bytes: u64) -> &SessionState {
        if bytes < SMALL_INPUT {
            &self.small
        } else {
            &self.state
        }
    }

    /// The state a provider's partial aggregation over inputs of `bytes` plans with.
    pub(super) fn partial_state_for(&self, bytes: u64) -> &SessionState {
        if bytes < SMALL_INPUT {
            &self.small_partial
        } else {
            &self.partial
        }
    }

    /// `source`, the table `table` of a query, resolved: a small Parquet file decoded (once
    /// per version), and the bytes it holds.
    pub(super) async fn input(
        &self,
        table: &TableReference,
        source: Source,
    ) -> Result<(Input, u64), SqlError> {
        Ok(match source {
            Source::Parquet(path) => {
                let meta = std::fs::metadata(&path)
                    .map_err(|e| SqlError::Internal(format!("{}: {e}", path.display())))?;
                let stamp = (meta.len(), meta.modified().ok());
                let decoded = if meta.len() <= DECODE_FILES_UP_TO {
                    self.decoded(&path, stamp, table).await?
                } else {
                    None
                };
                let input = match decoded {
                    Some((schema, batches)) => Input::Batches(schema, batches),
                    None => Input::Parquet(path, stamp),
                };
                (input, meta.len())
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
                (Input::Batches(schema, batches), size as u64)
            }
            // Its size is unknown here; what it reads is the provider's to bound.
            Source::Table(table) => (Input::Table(table), SMALL_INPUT),
        })
    }

    /// The table provider of `input` (batches are read from the run's [`RunBatches`]).
    pub(super) async fn provider(
        &self,
        state: &SessionState,
        table: TableReference,
        input: Input,
    ) -> Result<Arc<dyn TableProvider>, SqlError> {
        Ok(match input {
            Input::Parquet(path, stamp) => self.parquet(state, &path, stamp, table).await?,
            Input::Batches(schema, _) => Arc::new(BatchesTable::new(table, schema)),
            Input::Table(provider) => provider,
        })
    }

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
        let operators = super::guard::check(sql)?;
        super::guard::check_syntax(sql, super::guard::Syntax::Statements)?;
        let statement = self.state.sql_to_statement(sql, &Dialect::Generic)?;
        match &statement {
            datafusion::sql::parser::Statement::Statement(s)
                if matches!(**s, datafusion::sql::sqlparser::ast::Statement::Query(_)) =>
            {
                super::guard::check_statement(s)?;
            }
            _ => {
                return Err(SqlError::NotAllowed(super::guard::NOT_A_QUERY.into()));
            }
        }
        let tables = self.state.resolve_table_references(&statement)?;
        let parsed = Arc::new(Parsed { statement, tables });
        // A kept parse is copied for each plan; copying (as planning and dropping) recurses
        // once per level of the tree, so only shallow statements are kept.
        if sql.len() > KEEP_TEXTS_UP_TO || operators > KEEP_PARSES_UP_TO_OPERATORS {
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

    pub(super) fn kept_plan(&self, key: &PlanKey) -> Option<Arc<dyn ExecutionPlan>> {
        lock(&self.plans).get(key).cloned()
    }

    pub(super) fn keep_plan(&self, key: PlanKey, plan: Arc<dyn ExecutionPlan>) {
        let mut plans = lock(&self.plans);
        if plans.len() >= PLANS_KEPT {
            plans.clear();
        }
        plans.insert(key, plan);
    }
}

/// Starts `plan` with its own memory pool of `memory_limit` bytes, reading `batches`.
pub(super) fn execute(
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

/// Locks `m`; a panic while it was held does not make the kept state wrong, only stale.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
