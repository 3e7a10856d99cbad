//! Physical plans kept for their next run: which plans may be kept, and what finds them.

use std::path::PathBuf;

use arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::ExecutionPlan;
#[cfg(doc)]
use datafusion::physical_plan::execution_plan::reset_plan_states;

use super::engine::{FileStamp, Input};

/// Whether the query's answer depends on when it runs (`now()`, `random()`, …): such a plan
/// is not kept, as its start time is folded into it.
pub(super) fn reads_the_clock(plan: &LogicalPlan) -> bool {
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
pub(super) fn reusable(plan: &dyn ExecutionPlan) -> bool {
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
pub(super) struct PlanKey {
    pub(super) sql: String,
    pub(super) inputs: Vec<(TableReference, InputKey)>,
}

/// What of a table a plan depends on.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) enum InputKey {
    File(PathBuf, FileStamp),
    Batches(SchemaRef),
}

impl PlanKey {
    pub(super) fn of(sql: &str, inputs: &[(TableReference, Input)]) -> Option<Self> {
        let inputs = inputs
            .iter()
            .map(|(table, input)| {
                let key = match input {
                    Input::Parquet(path, stamp) => InputKey::File(path.clone(), *stamp),
                    Input::Batches(schema, _) => InputKey::Batches(schema.clone()),
                    // A plan over a caller's table may hold that run's own state.
                    Input::Table(_) => return None,
                };
                Some((table.clone(), key))
            })
            .collect::<Option<_>>()?;
        Some(Self {
            sql: sql.to_string(),
            inputs,
        })
    }
}
