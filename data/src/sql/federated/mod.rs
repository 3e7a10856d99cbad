//! Federated tables in DataFusion's terms. A [`FederatedTable`] is the union of the members'
//! datasets of one kind (or one member's dataset) with a `_member` column; the asking node
//! plans a query over it with DataFusion's own planner and optimizer, and the parts over the
//! members' data become [`SubPlan`]s each member computes itself:
//!
//! - a scan with the filters and the limit DataFusion pushes into it, and the columns it reads
//!   ([`FederatedTable`]);
//! - an aggregation directly over such a scan ([`PushAggregates`]): each member returns its
//!   groups' partial states and the asking node runs DataFusion's final stage over all of them;
//! - an aggregation above an inner join with such a scan, split at the join
//!   ([`PushAggregatesThroughJoins`]): the members aggregate their side by its join keys first.
//!
//! Everything else (joins, subqueries, windows, set operations, sorting, what the language
//! cannot say) runs on the asking node over the members' answers. How a member is asked (and
//! how each took part) is the [`Fanout`]'s: the node implements it over libp2p.
use std::fmt;
use std::sync::Arc;

use allmende_protocol::plan::{BinaryOp, Expr as PlanExpr, Named, Output, PLAN_VERSION, SubPlan};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::plan_err;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use futures::future::BoxFuture;

use super::subplan::expr_from_df;

mod eager;
mod pushdown;
mod scan;
#[cfg(test)]
mod tests;

pub use eager::PushAggregatesThroughJoins;
pub use pushdown::{FederatedAggregate, FederatedPlanner, FederatedQueryPlanner, PushAggregates};
pub use scan::{FederatedScanExec, conformed};

/// The column naming the member each row comes from.
pub const MEMBER_COLUMN: &str = "_member";

/// One member's answer: its name in queries, and its batches.
pub type MemberBatches = (String, Vec<RecordBatch>);

/// Asks the members holding a federated table for a sub-plan.
pub trait Fanout: fmt::Debug + Send + Sync {
    /// Asks each member for `plan`, whose answers have the columns of `expected` (a string
    /// column in any of Arrow's representations of strings). Only the members that answered
    /// `ok` give batches; how each member took part (and why one gave none) is the fanout's to
    /// record.
    fn ask(
        &self,
        plan: SubPlan,
        expected: SchemaRef,
    ) -> BoxFuture<'static, Result<Vec<MemberBatches>>>;
}

/// The union of the members' datasets of one schema, with the `_member` column last.
#[derive(Debug)]
pub struct FederatedTable {
    schema: SchemaRef,
    fanout: Arc<dyn Fanout>,
}

impl FederatedTable {
    /// The table of the members' `columns`, whose members `fanout` asks.
    pub fn new(columns: &Schema, fanout: Arc<dyn Fanout>) -> Result<Self> {
        if columns.field_with_name(MEMBER_COLUMN).is_ok() {
            return plan_err!("a member's dataset has a column `{MEMBER_COLUMN}` of its own");
        }
        // Any member's value may be missing.
        let mut fields: Vec<Field> = columns
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.push(Field::new(MEMBER_COLUMN, DataType::Utf8, false));
        Ok(Self {
            schema: Arc::new(Schema::new(fields)),
            fanout,
        })
    }

    pub(crate) fn fanout(&self) -> &Arc<dyn Fanout> {
        &self.fanout
    }
}

/// Whether `e` reads the `_member` column (which no member has: the asking node adds it).
fn reads_member(e: &Expr) -> bool {
    e.column_refs().iter().any(|c| c.name == MEMBER_COLUMN)
}

/// `e` in the plan language, if a member can evaluate it.
pub(crate) fn pushable(e: &Expr) -> Option<PlanExpr> {
    if reads_member(e) {
        return None;
    }
    expr_from_df(e)
}

/// The conjunction of `filters` in the plan language (each one [`pushable`]).
pub(crate) fn conjunction(filters: &[Expr]) -> Result<Option<PlanExpr>> {
    let mut all: Option<PlanExpr> = None;
    for f in filters {
        let Some(f) = pushable(f) else {
            return plan_err!("the filter {f} cannot be evaluated by the members");
        };
        all = Some(match all {
            None => f,
            Some(left) => PlanExpr::Binary {
                op: BinaryOp::And,
                left: Box::new(left),
                right: Box::new(f),
            },
        });
    }
    Ok(all)
}

/// The name of the column a rows plan asks for when the query reads no member column (only
/// how many rows there are, or `_member`).
const NO_COLUMN: &str = "__row";

#[async_trait]
impl TableProvider for FederatedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match pushable(f) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let mut columns: Vec<Named> = schema
            .fields()
            .iter()
            .filter(|f| f.name() != MEMBER_COLUMN)
            .map(|f| Named {
                name: f.name().clone(),
                expr: PlanExpr::Column(f.name().clone()),
            })
            .collect();
        let mut expected: Vec<Field> = schema
            .fields()
            .iter()
            .filter(|f| f.name() != MEMBER_COLUMN)
            .map(|f| f.as_ref().clone())
            .collect();
        if columns.is_empty() {
            columns.push(Named {
                name: NO_COLUMN.into(),
                expr: PlanExpr::Literal(allmende_protocol::plan::Scalar::Boolean(true)),
            });
            expected.push(Field::new(NO_COLUMN, DataType::Boolean, false));
        }
        let plan = SubPlan {
            version: PLAN_VERSION,
            filter: conjunction(filters)?,
            output: Output::Rows {
                columns,
                order_by: vec![],
                limit: limit.map(|n| n as u64),
            },
        };
        Ok(Arc::new(FederatedScanExec::try_new(
            plan,
            Arc::new(Schema::new(expected)),
            schema,
            self.fanout.clone(),
        )?))
    }
}
