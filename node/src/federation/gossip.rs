//! Judging the gossip members send: catalog entries (offered to the replicated log; a gap
//! starts a sync with the sender), roster proposals and revocations. The verdict decides
//! whether gossipsub forwards the message and whether its sender is penalised.

use std::sync::Arc;

use allmende_p2p::{Topic, Verdict};
use allmende_policy::Revocation;
use allmende_protocol::roster::SignedRoster;
use allmende_protocol::sync::MAX_RANGE_ENTRIES;
use allmende_protocol::{MAX_ENVELOPE_BYTES, PeerId, Signed};

use super::sync::Syncing;
use super::{Federation, Outcome, Rejection};
use crate::policies::Policies;

/// The verdict on one message from `source`, and what it started (a sync after a gap).
pub(super) async fn judge(
    fed: &Arc<Federation>,
    policies: &Arc<Policies>,
    syncing: &Arc<Syncing>,
    topic: Topic,
    source: PeerId,
    data: Vec<u8>,
) -> Verdict {
    fed.peer_seen(source, None);
    match topic {
        Topic::Catalog => catalog(fed, syncing, source, data).await,
        Topic::Roster => roster(fed, &data).await,
        Topic::Revocation => revocation(policies, &data).await,
    }
}

async fn catalog(
    fed: &Arc<Federation>,
    syncing: &Arc<Syncing>,
    source: PeerId,
    data: Vec<u8>,
) -> Verdict {
    let offering = fed.clone();
    let outcome = tokio::task::spawn_blocking(move || offering.offer(&data)).await;
    match outcome {
        Ok(Ok(Outcome::Applied(entry))) => {
            tracing::debug!(publisher = %entry.payload().publisher, seq = entry.payload().seq, "entry applied");
            Verdict::Accept
        }
        Ok(Ok(Outcome::Duplicate)) => Verdict::Ignore,
        Ok(Ok(Outcome::Gap { publisher, have })) => {
            tracing::debug!(%publisher, have, "gap; syncing with the sender");
            let (fed, syncing) = (fed.clone(), syncing.clone());
            tokio::spawn(async move {
                syncing
                    .pull(&fed, source, publisher, have + 1, MAX_RANGE_ENTRIES)
                    .await;
            });
            Verdict::Accept
        }
        Ok(Err(Rejection::Store(e))) => {
            tracing::error!(error = %e, "store failed while applying an entry");
            Verdict::Ignore
        }
        Ok(Err(e)) => {
            tracing::warn!(%source, error = %e, "catalog entry rejected");
            Verdict::Reject
        }
        Err(e) => {
            tracing::error!(error = %e, "applying an entry failed");
            Verdict::Ignore
        }
    }
}

async fn roster(fed: &Arc<Federation>, data: &[u8]) -> Verdict {
    match SignedRoster::from_bytes(data) {
        Ok(proposal) => {
            if proposal.roster().version <= fed.roster_version() {
                return Verdict::Ignore;
            }
            if let Err(e) = fed.receive_roster(proposal).await {
                tracing::warn!(error = %e, "roster proposal not kept");
            }
            Verdict::Accept
        }
        Err(e) => {
            tracing::warn!(error = %e, "invalid roster proposal rejected");
            Verdict::Reject
        }
    }
}

async fn revocation(policies: &Arc<Policies>, data: &[u8]) -> Verdict {
    match Signed::<Revocation>::from_bytes(data, MAX_ENVELOPE_BYTES) {
        Ok(statement) => {
            let policies = policies.clone();
            match tokio::task::spawn_blocking(move || policies.keep_revocation(&statement)).await {
                Ok(Ok(())) => Verdict::Accept,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "storing a revocation failed");
                    Verdict::Ignore
                }
                Err(e) => {
                    tracing::error!(error = %e, "storing a revocation failed");
                    Verdict::Ignore
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "invalid revocation rejected");
            Verdict::Reject
        }
    }
}
