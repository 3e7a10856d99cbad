//! The provider's decision on a [`SubPlan`] (`/allmende/query/3`): every column the plan reads
//! anywhere must exist and be allowed, and under a minimum group size (k > 1) the plan must be
//! an aggregate the guarantee covers ([`check_under_group_size`]); the group counts that the
//! suppression reads are the provider's own (`count(1)`, column [`GROUP_COUNT`]), never the
//! asker's.

use allmende_data::sql::SqlError;
use allmende_policy::group_size::check_under_group_size;
use allmende_protocol::PeerId;
use allmende_protocol::plan::{Output, SubPlan};
use allmende_protocol::query::{AnswerStatus, UserAssertion};
use allmende_store::StoredDataset;
use arrow::array::{Array, BooleanArray, Int64Array};
use arrow::record_batch::RecordBatch;

use super::provider::{AnswerError, Decided};
use crate::enforce::{self, Ask, Refusal, Shape, Terms, required_group_size};
use crate::policies::Policies;

/// The column of each group's row count in a provider's partial states: the state of the
/// `count(1) AS __n` it adds to every aggregate plan.
pub const GROUP_COUNT: &str = "__n[count]";

/// Decides on `plan` from `peer` (its `organisation` from the roster, its `user` as its node
/// vouches) over `dataset` under `terms`.
pub(super) fn decide(
    policies: &Policies,
    peer: PeerId,
    organisation: Option<String>,
    user: &UserAssertion,
    plan: &SubPlan,
    dataset: &StoredDataset,
    terms: Terms<'_>,
) -> Result<Decided, AnswerError> {
    let columns: Vec<String> = plan.columns().into_iter().map(str::to_owned).collect();
    if let Some(c) = columns
        .iter()
        .find(|c| !dataset.schema.iter().any(|s| s.name == **c))
    {
        return Err(AnswerError::NoColumn {
            dataset: dataset.record.slug.clone(),
            column: c.clone(),
        });
    }
    let k = required_group_size(match terms {
        Terms::Offer(offer) => offer.payload(),
        Terms::Agreement { policy, .. } => policy,
    })
    .unwrap_or(1);
    let aggregate = matches!(plan.output, Output::Aggregate { .. });
    if k > 1
        && let Err(refusal) = check_under_group_size(plan)
    {
        return Ok(Decided::denied(Refusal::GroupSize(refusal), vec![], k));
    }
    let ask = Ask {
        peer,
        organisation,
        user,
        dataset,
        terms,
        shape: if aggregate {
            Shape::Aggregates { min_group: k }
        } else {
            Shape::Rows
        },
        columns,
    };
    let decision = enforce::decide(policies, &ask)?;
    Ok(match decision.outcome {
        Ok(()) => Decided {
            status: AnswerStatus::Ok,
            reason: None,
            code: None,
            rules: decision.rules,
            k,
            counted: decision.counted,
        },
        Err(refusal) => Decided::denied(refusal, decision.rules, k),
    })
}

/// `batch` without the groups of fewer than `k` rows (by [`GROUP_COUNT`]), and how many were
/// dropped.
pub(super) fn suppress(batch: &RecordBatch, k: u64) -> Result<(RecordBatch, u64), SqlError> {
    let counts = batch
        .column_by_name(GROUP_COUNT)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .ok_or_else(|| {
            SqlError::Internal(format!("an aggregate answer without `{GROUP_COUNT}`"))
        })?;
    let keep: BooleanArray = counts
        .iter()
        .map(|n| Some(n.is_some_and(|n| n >= k as i64)))
        .collect();
    let dropped = (keep.len() - keep.true_count()) as u64;
    let kept = arrow::compute::filter_record_batch(batch, &keep)
        .map_err(|e| SqlError::Internal(e.to_string()))?;
    Ok((kept, dropped))
}
