//! A provider runs a [`SubPlan`] over its dataset: the plan's rows, or each group's partial
//! aggregate states reduced over all of the dataset's partitions, so that the asking node can
//! merge the members' states with DataFusion's final aggregation.
use std::sync::Arc;

use allmende_protocol::plan::{Output, SubPlan};
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::common::TableReference;
use datafusion::datasource::provider_as_source;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::optimizer::simplify_expressions::SimplifyExpressions;
use datafusion::optimizer::{Optimizer, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::reset_plan_states;

use super::{GROUP_ROWS, SubPlanError, logical_plan};
use crate::sql::batches::{BatchesTable, RunBatches};
use crate::sql::context::Optimizing;
use crate::sql::engine::{Input, SMALL_INPUT, execute};
use crate::sql::kept::{PlanKey, reads_the_clock, reusable};
use crate::sql::{Engine, Source, SqlError};

/// The table a sub-plan reads: the provider's dataset.
pub const SUBPLAN_TABLE: &str = "t";

impl Engine {
    /// Runs `plan` over `source` (the provider's dataset) under a memory limit of
    /// `memory_limit` bytes. Rows come as the plan's columns; aggregates as one row per group
    /// over the whole dataset: the grouping values, then each aggregate's state columns as
    /// DataFusion's partial aggregation writes them, then the group's row count (the state
    /// of `count(1) AS __n`, column `__n[count]`). Called on the query threads.
    pub async fn run_subplan(
        &self,
        plan: &SubPlan,
        source: Source,
        memory_limit: u64,
    ) -> Result<SendableRecordBatchStream, SubPlanError> {
        let inner = &*self.0;
        let table = TableReference::bare(SUBPLAN_TABLE);
        let (input, bytes) = inner.input(&table, source).await?;
        let aggregate = matches!(plan.output, Output::Aggregate { .. });
        let state = if aggregate {
            inner.partial_state_for(bytes)
        } else {
            inner.state_for(bytes)
        };
        let mut run = RunBatches::default();
        if let Input::Batches(_, batches) = &input {
            run.0.insert(table.clone(), batches.clone());
        }
        // A sub-plan over a small input is planned once per plan and version of the input (as
        // a small local query is: members ask the same few plans again and again). The key's
        // text starts with a NUL, which no SQL text does.
        let inputs = [(table.clone(), input)];
        let key = (bytes < SMALL_INPUT)
            .then(|| PlanKey::of(&format!("\0subplan {plan:?}"), &inputs))
            .flatten();
        if let Some(kept) = key.as_ref().and_then(|k| inner.kept_plan(k)) {
            return Ok(execute(reset_plan_states(kept)?, state, memory_limit, run)?);
        }
        let [(_, input)] = inputs;
        let provider = inner.provider(state, table.clone(), input).await?;
        let scan = LogicalPlanBuilder::scan(table, provider_as_source(provider), None)?;
        let logical = logical_plan(plan, scan, state)?;
        let key = key.filter(|_| !reads_the_clock(&logical));
        let optimizing = Optimizing {
            state,
            start: chrono::Utc::now(),
        };
        let logical =
            state
                .analyzer()
                .execute_and_check(logical, state.config_options(), |_, _| {})?;
        let optimize = |p| state.optimizer().optimize(p, &optimizing, |_, _| {});
        let logical = match logical {
            // The aggregation stays as the asker plans it (rewrites may change what its partial
            // states mean: a `count(DISTINCT x)` made a count over a grouping by `x`, shared
            // subexpressions); only its input is optimized.
            LogicalPlan::Aggregate(a) if aggregate => {
                let input = optimize(a.input.as_ref().clone())?;
                let a = LogicalPlan::Aggregate(a);
                simplified(a.with_new_exprs(a.expressions(), vec![input])?, &optimizing)?
            }
            _other_plan if aggregate => {
                return Err(
                    SqlError::Internal("an aggregate plan without an aggregate".into()).into(),
                );
            }
            other => optimize(other)?,
        };
        let physical = state
            .query_planner()
            .create_physical_plan(&logical, state)
            .await?;
        let physical = if aggregate {
            partial_states(physical)?
        } else {
            physical
        };
        if let Some(key) = key
            && reusable(physical.as_ref())
        {
            inner.keep_plan(key, physical.clone());
        }
        Ok(execute(physical, state, memory_limit, run)?)
    }
}

/// `plan` with its expressions simplified (what the physical planner expects: `coalesce` as a
/// `CASE`), and nothing else rewritten.
fn simplified(plan: LogicalPlan, optimizing: &Optimizing) -> Result<LogicalPlan, SubPlanError> {
    let rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> =
        vec![Arc::new(SimplifyExpressions::new())];
    Ok(Optimizer::with_rules(rules).optimize(plan, optimizing, |_, _| {})?)
}

/// `count(1) AS __n`: the row count of each group.
pub(super) fn group_rows(registry: &dyn FunctionRegistry) -> Result<Expr, SubPlanError> {
    let count = registry.udaf("count")?;
    Ok(Expr::AggregateFunction(AggregateFunction::new_udf(
        count,
        vec![Expr::Literal(ScalarValue::Int64(Some(1)), None)],
        false,
        None,
        vec![],
        None,
    ))
    .alias(GROUP_ROWS))
}

/// The partial aggregation of `plan`'s top aggregate (made from a single-stage one if the
/// planner combined the stages).
fn partial_of(plan: &Arc<dyn ExecutionPlan>) -> Result<Arc<AggregateExec>, SubPlanError> {
    let top = first_aggregate(plan, |_| true)
        .ok_or_else(|| SqlError::Internal("an aggregate plan without an aggregate".into()))?;
    Ok(match top.mode() {
        AggregateMode::Final | AggregateMode::FinalPartitioned => {
            first_aggregate(top.input(), |a| *a.mode() == AggregateMode::Partial).ok_or_else(
                || SqlError::Internal("a final aggregate without its partial one".into()),
            )?
        }
        AggregateMode::Single | AggregateMode::SinglePartitioned => {
            Arc::new(AggregateExec::try_new(
                AggregateMode::Partial,
                top.group_expr().clone(),
                top.aggr_expr().to_vec(),
                top.filter_expr().to_vec(),
                top.input().clone(),
                top.input_schema(),
            )?)
        }
        AggregateMode::Partial | AggregateMode::PartialReduce => {
            return Err(SqlError::Internal("a partial aggregate at the top".into()).into());
        }
    })
}

/// `partial`'s aggregation continued over `states` (plans yielding `partial`'s output) in
/// `mode`: reduced to partial states again, or final.
fn continued(
    partial: &AggregateExec,
    mode: AggregateMode,
    states: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>, SubPlanError> {
    Ok(Arc::new(AggregateExec::try_new(
        mode,
        partial.group_expr().as_final(),
        partial.aggr_expr().to_vec(),
        partial.filter_expr().to_vec(),
        Arc::new(CoalescePartitionsExec::new(states)),
        partial.input_schema(),
    )?))
}

/// The plan of the partial states of `plan`'s top aggregate, reduced to one row per group:
/// its partial aggregation over every partition, then a partial reduction of all of them.
fn partial_states(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>, SubPlanError> {
    let partial = partial_of(&plan)?;
    continued(&partial, AggregateMode::PartialReduce, partial.clone())
}

impl Engine {
    /// The asking node's merge of the providers' answers to the aggregate `plan` over tables of
    /// `schema`: DataFusion's final aggregation over `states`, a plan yielding the partial
    /// states as [`Engine::run_subplan`] writes them (refused when their columns differ).
    /// Its output is the plan's groups and aggregates, then `__n`.
    pub async fn final_aggregate(
        &self,
        plan: &SubPlan,
        schema: SchemaRef,
        states: Arc<dyn ExecutionPlan>,
    ) -> Result<Arc<dyn ExecutionPlan>, SubPlanError> {
        let partial = partial_stage(plan, schema, self.0.state_for(0)).await?;
        final_stage(&partial, states)
    }
}

/// The partial stage of the aggregate `plan` over a table of `schema`, as `state` plans it
/// (over no rows): what each provider computes, and what the final stage continues.
pub(crate) async fn partial_stage(
    plan: &SubPlan,
    schema: SchemaRef,
    state: &SessionState,
) -> Result<Arc<AggregateExec>, SubPlanError> {
    if !matches!(plan.output, Output::Aggregate { .. }) {
        return Err(SqlError::Internal("a final aggregation of rows".into()).into());
    }
    let template = SubPlan {
        filter: None,
        ..plan.clone()
    };
    // A table that tells the planner nothing (an empty one would answer from its statistics).
    let table = TableReference::bare(SUBPLAN_TABLE);
    let nothing = Arc::new(BatchesTable::new(table.clone(), schema));
    let scan = LogicalPlanBuilder::scan(table, provider_as_source(nothing), None)?;
    let logical = logical_plan(&template, scan, state)?;
    let logical = state
        .analyzer()
        .execute_and_check(logical, state.config_options(), |_, _| {})?;
    let optimizing = Optimizing {
        state,
        start: chrono::Utc::now(),
    };
    let logical = simplified(logical, &optimizing)?;
    let physical = state
        .query_planner()
        .create_physical_plan(&logical, state)
        .await?;
    partial_of(&physical)
}

/// The final stage of `partial`'s aggregation over `states` (refused when their columns are
/// not `partial`'s output).
pub(crate) fn final_stage(
    partial: &AggregateExec,
    states: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>, SubPlanError> {
    if states.schema().fields() != partial.schema().fields() {
        return Err(SqlError::Invalid(format!(
            "the partial states' columns {} are not the expected {}",
            states.schema(),
            partial.schema()
        ))
        .into());
    }
    continued(partial, AggregateMode::Final, states)
}

/// The first aggregate in `plan` (itself, then its inputs, breadth first) that `pick` takes.
fn first_aggregate(
    plan: &Arc<dyn ExecutionPlan>,
    pick: impl Fn(&AggregateExec) -> bool,
) -> Option<Arc<AggregateExec>> {
    let mut queue = std::collections::VecDeque::from([plan.clone()]);
    while let Some(p) = queue.pop_front() {
        if let Some(a) = p.downcast_ref::<AggregateExec>()
            && pick(a)
        {
            return Some(Arc::new(a.clone()));
        }
        queue.extend(p.children().into_iter().cloned());
    }
    None
}
