//! Aggregations pushed to the members: an optimizer rule that replaces an aggregation directly
//! over a federated scan with a [`FederatedAggregate`], and the physical planner that runs it as
//! the members' partial stage (each member's own) under DataFusion's final stage.
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use allmende_protocol::plan::{
    AggregateCall, Expr as PlanExpr, Named, Output, PLAN_VERSION, SortKey, SubPlan, is_aggregate,
};
use arrow::datatypes::Schema;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchemaRef, internal_datafusion_err};
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Aggregate, Expr, Extension, LogicalPlan, TableScan, UserDefinedLogicalNode,
    UserDefinedLogicalNodeCore,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use super::scan::FederatedScanExec;
use super::{FederatedTable, MEMBER_COLUMN, conjunction, pushable};
use crate::sql::subplan::{final_stage, partial_stage};

/// An aggregation each member computes over its own rows, merged by the final stage.
#[derive(Clone)]
pub struct FederatedAggregate {
    table: Arc<dyn TableProvider>,
    /// The aggregation, its groups on `_member` included, with the scan's filter.
    plan: SubPlan,
    schema: DFSchemaRef,
}

impl fmt::Debug for FederatedAggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FederatedAggregate")
            .field("plan", &self.plan)
            .finish()
    }
}

impl PartialEq for FederatedAggregate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.table, &other.table) && self.plan == other.plan
    }
}

impl Eq for FederatedAggregate {}

impl PartialOrd for FederatedAggregate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (self == other).then_some(Ordering::Equal)
    }
}

impl Hash for FederatedAggregate {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.schema.hash(state);
    }
}

impl UserDefinedLogicalNodeCore for FederatedAggregate {
    fn name(&self) -> &str {
        "FederatedAggregate"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "FederatedAggregate: {:?}", self.plan.output)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

impl FederatedAggregate {
    /// The plan the members are asked for: the aggregation without its groups on `_member`.
    fn members_plan(&self) -> SubPlan {
        let mut plan = self.plan.clone();
        if let Output::Aggregate { group_by, .. } = &mut plan.output {
            group_by.retain(|g| !is_member(&g.expr));
        }
        plan
    }
}

fn is_member(e: &PlanExpr) -> bool {
    matches!(e, PlanExpr::Column(c) if c == MEMBER_COLUMN)
}

/// Replaces an aggregation directly over a federated scan with a [`FederatedAggregate`] when
/// the members can compute every group and aggregate of it.
#[derive(Debug, Default)]
pub struct PushAggregates;

impl OptimizerRule for PushAggregates {
    fn name(&self) -> &str {
        "push_aggregates_to_members"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let Some((scan, table)) = federated_scan(aggregate.input.as_ref()) else {
            return Ok(Transformed::no(plan));
        };
        let Some(pushed) = pushed(aggregate, scan)? else {
            return Ok(Transformed::no(plan));
        };
        Ok(Transformed::yes(LogicalPlan::Extension(Extension {
            node: Arc::new(FederatedAggregate {
                table,
                plan: pushed,
                schema: aggregate.schema.clone(),
            }),
        })))
    }
}

/// The scan of a federated table that `plan` is (through column reorderings and aliases of
/// the table, `FROM t AS v`, which change nothing the members compute), without a limit.
pub(super) fn federated_scan(
    mut plan: &LogicalPlan,
) -> Option<(&TableScan, Arc<dyn TableProvider>)> {
    loop {
        plan = match plan {
            LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
                p.input.as_ref()
            }
            LogicalPlan::SubqueryAlias(a) => a.input.as_ref(),
            _ => break,
        };
    }
    let LogicalPlan::TableScan(scan) = plan else {
        return None;
    };
    let table = source_as_provider(&scan.source).ok()?;
    (scan.fetch.is_none() && table.downcast_ref::<FederatedTable>().is_some())
        .then_some((scan, table))
}

/// `aggregate` over `scan` in the plan language, if the members can compute all of it.
fn pushed(aggregate: &Aggregate, scan: &TableScan) -> Result<Option<SubPlan>> {
    let fields = aggregate.schema.fields();
    let mut group_by = Vec::new();
    for (i, g) in aggregate.group_expr.iter().enumerate() {
        // A grouping expression may carry its output name (as one split at a join does).
        let g = match g {
            Expr::Alias(a) => a.expr.as_ref(),
            other => other,
        };
        let expr = match g {
            Expr::Column(c) if c.name == MEMBER_COLUMN => PlanExpr::Column(MEMBER_COLUMN.into()),
            Expr::GroupingSet(_) => return Ok(None),
            other => match pushable(other) {
                Some(e) => e,
                None => return Ok(None),
            },
        };
        group_by.push(Named {
            name: fields[i].name().clone(),
            expr,
        });
    }
    let mut aggregates = Vec::new();
    for (j, a) in aggregate.aggr_expr.iter().enumerate() {
        let a = match a {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let Expr::AggregateFunction(f) = a else {
            return Ok(None);
        };
        let p = &f.params;
        if !is_aggregate(f.func.name()) || p.null_treatment.is_some() {
            return Ok(None);
        }
        let args: Option<Vec<PlanExpr>> = p.args.iter().map(pushable).collect();
        let filter = match &p.filter {
            Some(e) => match pushable(e) {
                Some(e) => Some(e),
                None => return Ok(None),
            },
            None => None,
        };
        let order_by: Option<Vec<SortKey>> = p
            .order_by
            .iter()
            .map(|s| {
                Some(SortKey {
                    expr: pushable(&s.expr)?,
                    ascending: s.asc,
                    nulls_first: s.nulls_first,
                })
            })
            .collect();
        let (Some(args), Some(order_by)) = (args, order_by) else {
            return Ok(None);
        };
        aggregates.push(AggregateCall {
            name: fields[group_by.len() + j].name().clone(),
            function: f.func.name().to_owned(),
            args,
            distinct: p.distinct,
            filter,
            order_by,
        });
    }
    let plan = SubPlan {
        version: PLAN_VERSION,
        filter: conjunction(&scan.filters)?,
        output: Output::Aggregate {
            group_by,
            aggregates,
        },
    };
    // What the language cannot carry (too large, too deep) stays on the asking node.
    Ok(plan.check().is_ok().then_some(plan))
}

/// Plans a [`FederatedAggregate`]: the members' partial stage (a [`FederatedScanExec`] of
/// their states, with `_member` where the aggregation groups by it) under the final stage.
#[derive(Debug, Default)]
pub struct FederatedPlanner;

#[async_trait]
impl ExtensionPlanner for FederatedPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        _planning: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<FederatedAggregate>() else {
            return Ok(None);
        };
        let state = session
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| internal_datafusion_err!("a session that is not a SessionState"))?;
        let table = node
            .table
            .downcast_ref::<FederatedTable>()
            .ok_or_else(|| internal_datafusion_err!("a federated aggregate of another table"))?;
        let external = |e| DataFusionError::External(Box::new(e));
        let partial = partial_stage(&node.plan, node.table.schema(), state)
            .await
            .map_err(external)?;
        let states = partial.schema();
        let expected = Schema::new(
            states
                .fields()
                .iter()
                .filter(|f| f.name() != MEMBER_COLUMN)
                .cloned()
                .collect::<Vec<_>>(),
        );
        let scan = FederatedScanExec::try_new(
            node.members_plan(),
            Arc::new(expected),
            states,
            table.fanout().clone(),
        )?;
        let last = final_stage(&partial, Arc::new(scan)).map_err(external)?;
        // Everything but the group row count, which the members use to suppress small groups.
        let schema = last.schema();
        let keep = schema.fields().len().saturating_sub(1);
        let columns: Vec<(Arc<dyn PhysicalExpr>, String)> = schema.fields()[..keep]
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    Arc::new(Column::new(f.name(), i)) as Arc<dyn PhysicalExpr>,
                    f.name().clone(),
                )
            })
            .collect();
        Ok(Some(Arc::new(ProjectionExec::try_new(columns, last)?)))
    }
}

/// DataFusion's physical planner with [`FederatedPlanner`].
#[derive(Debug, Default)]
pub struct FederatedQueryPlanner;

#[async_trait]
impl QueryPlanner for FederatedQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical: &LogicalPlan,
        state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(FederatedPlanner)])
            .create_physical_plan(logical, state)
            .await
    }
}
