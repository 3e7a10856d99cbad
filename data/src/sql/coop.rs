//! Every operator of a plan yields to the scheduler. DataFusion makes the leaves of a plan
//! cooperative (a scan gives the thread back after a budget of batches), but an operator that
//! produces many batches from one batch of its input (a cross join) or drops most of what it
//! reads (a selective filter over such a join) can loop for minutes without reaching a leaf:
//! its query then neither sees its deadline nor notices that its client went away. This rule,
//! run after DataFusion's own, wraps every operator's output in a [`CooperativeExec`], so any
//! loop that pulls batches from a child spends the budget and yields, and a cancelled or timed
//! out query stops at its next batch.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result as DfResult;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;

/// The rule: wraps each operator that is not already cooperative.
#[derive(Debug, Default)]
pub(super) struct YieldEverywhere;

impl PhysicalOptimizerRule for YieldEverywhere {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.name() == "CooperativeExec" || node.children().is_empty() {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(
                Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "YieldEverywhere"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
