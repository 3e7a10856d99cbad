//! Tables of batches in memory whose plans can be kept: the plan names the table and its
//! schema, and each run brings its own batches (in its task context), so a kept plan holds no
//! data and never answers with an earlier run's rows.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{TableReference, internal_datafusion_err, project_schema};
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

/// The batches of one run, by table: what [`BatchesExec`] reads.
#[derive(Debug, Default)]
pub(super) struct RunBatches(pub(super) HashMap<TableReference, Vec<RecordBatch>>);

/// A table whose batches come with each run of the plan.
#[derive(Debug)]
pub(super) struct BatchesTable {
    table: TableReference,
    schema: SchemaRef,
}

impl BatchesTable {
    /// The table `table` of batches of `schema`.
    pub(super) fn new(table: TableReference, schema: SchemaRef) -> Self {
        Self { table, schema }
    }
}

#[async_trait]
impl TableProvider for BatchesTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = project_schema(&self.schema, projection)?;
        Ok(Arc::new(BatchesExec {
            table: self.table.clone(),
            projection: projection.cloned(),
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(schema),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
        }))
    }
}

/// Reads one table's batches from the run's [`RunBatches`], in one partition. It tells the
/// planner nothing of them (no statistics), so nothing of one run's data is folded into the plan.
#[derive(Debug)]
pub(super) struct BatchesExec {
    table: TableReference,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for BatchesExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "BatchesExec: table={}", self.table)
    }
}

impl ExecutionPlan for BatchesExec {
    fn name(&self) -> &str {
        "BatchesExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(internal_datafusion_err!(
                "BatchesExec has one partition, not {partition}"
            ));
        }
        let batches = context
            .session_config()
            .get_extension::<RunBatches>()
            .and_then(|run| run.0.get(&self.table).cloned())
            .ok_or_else(|| internal_datafusion_err!("no batches for table `{}`", self.table))?;
        let schema = self.schema();
        let batches = match &self.projection {
            None => batches,
            Some(columns) => batches
                .iter()
                .map(|b| b.project(columns))
                .collect::<Result<_, _>>()?,
        };
        Ok(Box::pin(MemoryStream::try_new(batches, schema, None)?))
    }
}
