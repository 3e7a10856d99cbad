//! The members' answers to one sub-plan as one partition of batches, with the `_member`
//! column where the plan's output has it.
use std::fmt;
use std::sync::Arc;

use allmende_protocol::plan::SubPlan;
use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, plan_datafusion_err};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;

use super::{Fanout, MEMBER_COLUMN};

/// Where a column of the output comes from.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// The member's name.
    Member,
    /// This column of the member's answer.
    Answer(usize),
}

/// Asks the members for a sub-plan when run, and yields their answers in one partition.
#[derive(Debug)]
pub struct FederatedScanExec {
    plan: SubPlan,
    expected: SchemaRef,
    slots: Vec<Slot>,
    fanout: Arc<dyn Fanout>,
    properties: Arc<PlanProperties>,
}

impl FederatedScanExec {
    /// Asks for `plan`, whose answers have the columns of `expected`; yields `schema`: each of
    /// its columns an answer's column of the same name, or the member's name (`_member`).
    pub fn try_new(
        plan: SubPlan,
        expected: SchemaRef,
        schema: SchemaRef,
        fanout: Arc<dyn Fanout>,
    ) -> Result<Self> {
        let slots = schema
            .fields()
            .iter()
            .map(|f| {
                if f.name() == MEMBER_COLUMN {
                    Ok(Slot::Member)
                } else {
                    expected
                        .index_of(f.name())
                        .map(Slot::Answer)
                        .map_err(|_| plan_datafusion_err!("no column {} in the answers", f.name()))
                }
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            plan,
            expected,
            slots,
            fanout,
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(schema),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Final,
                Boundedness::Bounded,
            )),
        })
    }

    /// The sub-plan each member is asked for.
    pub fn plan(&self) -> &SubPlan {
        &self.plan
    }
}

/// `batch`, a member's answer, with the columns of `expected`: the same names and types in
/// order (nullability aside), where strings and binaries, at any depth (a `count(DISTINCT …)`
/// state is a list of them), may come in another of Arrow's representations (a provider reading
/// Parquet yields `Utf8View` for `Utf8`) and are cast; `None` for any other difference.
pub fn conformed(batch: &RecordBatch, expected: &Schema) -> Option<RecordBatch> {
    let fields = batch.schema_ref().fields();
    if fields.len() != expected.fields().len() {
        return None;
    }
    let mut columns = Vec::with_capacity(fields.len());
    for ((got, want), column) in fields.iter().zip(expected.fields()).zip(batch.columns()) {
        if got.name() != want.name() {
            return None;
        }
        let (from, to) = (got.data_type(), want.data_type());
        columns.push(if from == to {
            column.clone()
        } else if representations(from, to) {
            arrow::compute::cast(column, to).ok()?
        } else {
            return None;
        });
    }
    let schema = Arc::new(Schema::new(
        fields
            .iter()
            .zip(expected.fields())
            .map(|(got, want)| {
                want.as_ref()
                    .clone()
                    .with_nullable(got.is_nullable() || want.is_nullable())
            })
            .collect::<Vec<_>>(),
    ));
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema, columns, &options).ok()
}

/// Whether `from` and `to` are the same type but for Arrow's representations of strings and
/// binaries (and of lists), at any depth.
fn representations(from: &DataType, to: &DataType) -> bool {
    use DataType::{
        Binary, BinaryView, LargeBinary, LargeList, LargeUtf8, List, Struct, Utf8, Utf8View,
    };
    match (from, to) {
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View)
        | (Binary | LargeBinary | BinaryView, Binary | LargeBinary | BinaryView) => true,
        (List(a) | LargeList(a), List(b) | LargeList(b)) => {
            representations(a.data_type(), b.data_type())
        }
        (Struct(a), Struct(b)) => {
            a.len() == b.len()
                && a.iter().zip(b.iter()).all(|(x, y)| {
                    x.name() == y.name() && representations(x.data_type(), y.data_type())
                })
        }
        _ => from == to,
    }
}

/// `batch`, a member's answer, as a batch of `schema` by `slots`.
fn placed(
    batch: &RecordBatch,
    member: &str,
    slots: &[Slot],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let columns: Vec<ArrayRef> = slots
        .iter()
        .map(|slot| match slot {
            Slot::Member => Arc::new(StringArray::from(vec![member; rows])) as ArrayRef,
            Slot::Answer(i) => batch.column(*i).clone(),
        })
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &options,
    )?)
}

impl DisplayAs for FederatedScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "FederatedScanExec")
    }
}

impl ExecutionPlan for FederatedScanExec {
    fn name(&self) -> &str {
        "FederatedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("FederatedScanExec has one partition, not {partition}");
        }
        let schema = self.schema();
        let (slots, expected) = (self.slots.clone(), self.expected.clone());
        let asked = self.fanout.ask(self.plan.clone(), expected.clone());
        let out = schema.clone();
        let batches = futures::stream::once(asked).flat_map(move |answers| {
            let placed: Vec<Result<RecordBatch>> = match answers {
                Err(e) => vec![Err(e)],
                Ok(answers) => {
                    let mut all = Vec::new();
                    for (member, batches) in &answers {
                        for b in batches {
                            all.push(if let Some(b) = conformed(b, &expected) {
                                placed(&b, member, &slots, &out)
                            } else {
                                internal_err!(
                                    "member {member} answered columns {} for {}",
                                    b.schema(),
                                    expected
                                )
                            });
                        }
                    }
                    all
                }
            };
            futures::stream::iter(placed)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}
