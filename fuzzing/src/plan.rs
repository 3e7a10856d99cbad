//! The plan language of federated queries ([`allmende_protocol::plan`]).
use allmende_protocol::plan::{MAX_EXPR_DEPTH, MAX_PLAN_NODES, SubPlan, walk};
use allmende_protocol::query::MAX_QUERY_REQUEST_BYTES;

use crate::support::round_trip;

/// Decodes `data` as a [`SubPlan`], checks its round trip and runs [`SubPlan::check`], which a
/// provider runs before anything else. A plan the check accepts is within the depth and node
/// limits the check states, and its columns are sorted without repeats.
pub fn plan(data: &[u8]) {
    let Some(p) = round_trip::<SubPlan>(data, MAX_QUERY_REQUEST_BYTES) else {
        return;
    };
    match p.check() {
        Ok(()) => {
            let (mut nodes, mut deepest) = (0, 0);
            for root in p.roots() {
                walk(root, |_, depth| {
                    nodes += 1;
                    deepest = deepest.max(depth);
                });
            }
            assert!(nodes <= MAX_PLAN_NODES, "{nodes} nodes passed the check");
            assert!(
                deepest <= MAX_EXPR_DEPTH,
                "depth {deepest} passed the check"
            );
            let columns = p.columns();
            assert!(columns.windows(2).all(|w| w[0] < w[1]), "{columns:?}");
        }
        Err(e) => assert!(!e.code().is_empty()),
    }
}
