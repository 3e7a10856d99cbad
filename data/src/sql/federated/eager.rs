//! Aggregations above a join, split at the join (eager aggregation). When an aggregation over
//! an inner equi-join reads only one side in its aggregate arguments and that side is a
//! federated scan, the members first aggregate their rows by that side's join keys and
//! grouping expressions (a [`super::FederatedAggregate`], as [`super::PushAggregates`] makes
//! it), and the asking node joins those groups and merges them:
//!
//! ```sql
//! SELECT d.district, sum(c.n) FROM federation.counts c JOIN districts d
//!   ON c.station = d.station GROUP BY d.district
//! -- is answered as
//! SELECT d.district, sum(c.s) FROM (SELECT station, sum(n) AS s FROM federation.counts
//!   GROUP BY station) c JOIN districts d ON c.station = d.station GROUP BY d.district
//! ```
//!
//! This is exact for an inner join: all rows of one group of the federated side meet the same
//! rows of the other side, so each group's sum or count stands for its rows as often as they
//! would have been joined. A sum is the sum of the groups' sums, a count the sum of their
//! counts (0 over no rows), a minimum or maximum that of the groups', an average the sum of
//! sums over the sum of counts. Anything else (`DISTINCT`, ordered aggregates, other
//! functions, outer joins, join filters, groups over both sides) keeps its plan: the asking
//! node joins the members' rows.
use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, DFSchemaRef};
use datafusion::error::Result;
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Aggregate, AggregateUDF, Expr, ExprSchemable, Join, JoinConstraint, JoinType, LogicalPlan,
    Projection, cast, lit,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use arrow::datatypes::DataType;

use super::pushdown::federated_scan;

/// Splits an aggregation above an inner join with a federated table at the join, so that the
/// members aggregate their own side (see the module's documentation). Runs before
/// [`super::PushAggregates`], which then hands the new aggregation to the members.
#[derive(Debug, Default)]
pub struct PushAggregatesThroughJoins;

impl OptimizerRule for PushAggregatesThroughJoins {
    fn name(&self) -> &str {
        "push_aggregates_through_joins"
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
        // The optimizer puts a projection of the columns the aggregation reads between it and
        // the join; the columns keep their names through it.
        let mut input = aggregate.input.as_ref();
        while let LogicalPlan::Projection(p) = input
            && p.expr.iter().all(|e| matches!(e, Expr::Column(_)))
        {
            input = p.input.as_ref();
        }
        let LogicalPlan::Join(join) = input else {
            return Ok(Transformed::no(plan));
        };
        if join.join_type != JoinType::Inner
            || join.filter.is_some()
            || join.on.is_empty()
            || join.null_aware
        {
            return Ok(Transformed::no(plan));
        }
        for federated_left in [true, false] {
            if let Some(split) = split(aggregate, join, federated_left)? {
                return Ok(Transformed::yes(split));
            }
        }
        Ok(Transformed::no(plan))
    }
}

/// The groups and aggregates of the federated side's own aggregation, under generated names.
#[derive(Default)]
struct Partial {
    groups: Vec<Expr>,
    aggregates: Vec<Expr>,
}

impl Partial {
    /// Groups by `e` (once); the column the plan above reads it by.
    fn group(&mut self, e: &Expr) -> Expr {
        let e = e.clone().unalias();
        if matches!(e, Expr::Column(_)) {
            if !self.groups.contains(&e) {
                self.groups.push(e.clone());
            }
            return e;
        }
        let found = self.groups.iter().find_map(|g| match g {
            Expr::Alias(a) if *a.expr == e => Some(a.name.clone()),
            _ => None,
        });
        let name = found.unwrap_or_else(|| {
            let name = format!("__eager_g{}", self.groups.len());
            self.groups.push(e.alias(&name));
            name
        });
        Expr::Column(Column::from_name(name))
    }

    /// Computes `call` per group; the column the plan above reads it by.
    fn aggregate(&mut self, call: Expr) -> Expr {
        let name = format!("__eager_a{}", self.aggregates.len());
        self.aggregates.push(call.alias(&name));
        Expr::Column(Column::from_name(name))
    }
}

/// The merging aggregates of the plan above the join, under generated names.
#[derive(Default)]
struct Merge {
    aggregates: Vec<Expr>,
}

impl Merge {
    fn add(&mut self, call: Expr) -> Expr {
        let name = format!("__eager_m{}", self.aggregates.len());
        self.aggregates.push(call.alias(&name));
        Expr::Column(Column::from_name(name))
    }
}

/// `aggregate` over `join` split at the join with the federated table on the left (or the
/// right) side, if it can be.
fn split(aggregate: &Aggregate, join: &Join, federated_left: bool) -> Result<Option<LogicalPlan>> {
    let (side, other) = if federated_left {
        (&join.left, &join.right)
    } else {
        (&join.right, &join.left)
    };
    if federated_scan(side).is_none() {
        return Ok(None);
    }
    let reads_only =
        |schema: &DFSchemaRef, e: &Expr| e.column_refs().iter().all(|c| schema.has_column(c));
    let (side_schema, other_schema) = (side.schema(), other.schema());
    let mut partial = Partial::default();
    let mut on = Vec::new();
    for (l, r) in &join.on {
        let (key, other_key) = if federated_left { (l, r) } else { (r, l) };
        if !reads_only(side_schema, key) {
            return Ok(None);
        }
        let key = partial.group(key);
        on.push(if federated_left {
            (key, other_key.clone())
        } else {
            (other_key.clone(), key)
        });
    }
    let mut groups = Vec::new();
    for g in &aggregate.group_expr {
        if matches!(g, Expr::GroupingSet(_)) {
            return Ok(None);
        }
        if !g.column_refs().is_empty() && reads_only(side_schema, g) {
            groups.push(partial.group(g));
        } else if reads_only(other_schema, g) {
            groups.push(g.clone());
        } else {
            return Ok(None);
        }
    }
    let fields = aggregate.schema.fields();
    let mut merge = Merge::default();
    // Per aggregate of the query: its value over the merged columns.
    let mut values = Vec::new();
    for (j, a) in aggregate.aggr_expr.iter().enumerate() {
        let call = match a {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let Expr::AggregateFunction(f) = call else {
            return Ok(None);
        };
        let p = &f.params;
        if p.distinct
            || !p.order_by.is_empty()
            || p.null_treatment.is_some()
            || !p
                .args
                .iter()
                .chain(p.filter.as_deref())
                .all(|e| reads_only(side_schema, e))
        {
            return Ok(None);
        }
        let with = |func: Arc<AggregateUDF>, args: Vec<Expr>| {
            Expr::AggregateFunction(AggregateFunction::new_udf(
                func,
                args,
                false,
                p.filter.clone(),
                vec![],
                None,
            ))
        };
        let value = match f.func.name() {
            "sum" => merge.add(sum(partial.aggregate(call.clone()))),
            "count" => coalesce(vec![
                merge.add(sum(partial.aggregate(call.clone()))),
                lit(0i64),
            ]),
            "min" => merge.add(min(partial.aggregate(call.clone()))),
            "max" => merge.add(max(partial.aggregate(call.clone()))),
            "avg" if *fields[aggregate.group_expr.len() + j].data_type() == DataType::Float64 => {
                // The count of the value before its cast to a float (the same count), so
                // that the two share no expression that the optimizer would take out into
                // a projection, which members are not asked for.
                let counted: Vec<Expr> = p
                    .args
                    .iter()
                    .map(|a| match a {
                        Expr::Cast(c) => c.expr.as_ref().clone(),
                        other => other.clone(),
                    })
                    .collect();
                let total = merge.add(sum(partial.aggregate(with(sum_udaf(), p.args.clone()))));
                let n = merge.add(sum(partial.aggregate(with(count_udaf(), counted))));
                cast(total, DataType::Float64) / cast(n, DataType::Float64)
            }
            _ => return Ok(None),
        };
        values.push(value);
    }
    let below = Arc::new(LogicalPlan::Aggregate(Aggregate::try_new(
        side.clone(),
        partial.groups,
        partial.aggregates,
    )?));
    let (left, right) = if federated_left {
        (below, other.clone())
    } else {
        (other.clone(), below)
    };
    let joined = LogicalPlan::Join(Join::try_new(
        left,
        right,
        on,
        None,
        JoinType::Inner,
        JoinConstraint::On,
        join.null_equality,
        false,
    )?);
    let above = Aggregate::try_new(Arc::new(joined), groups, merge.aggregates)?;
    // The query's own column names and types, in its order.
    let merged = above.schema.clone();
    let n_groups = aggregate.group_expr.len();
    let mut exprs = Vec::new();
    for (i, (qualifier, field)) in aggregate.schema.iter().enumerate() {
        let value = if i < n_groups {
            Expr::Column(Column::from(merged.qualified_field(i)))
        } else {
            values[i - n_groups].clone()
        };
        let value = if value.get_type(&merged)? == *field.data_type() {
            value
        } else {
            cast(value, field.data_type().clone())
        };
        exprs.push(value.alias_qualified(qualifier.cloned(), field.name()));
    }
    Ok(Some(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(LogicalPlan::Aggregate(above)),
    )?)))
}
