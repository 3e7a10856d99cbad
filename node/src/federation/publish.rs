//! Publishing this node's datasets: a signed entry appended to its own log, indexed, and
//! gossiped; and offering the entries others gossip to the replicated log.

use allmende_p2p::Topic;
use allmende_protocol::PolicyRef;
use allmende_protocol::catalog::{EntryOp, SignedCatalogEntry};
use allmende_store::StoredDataset;
use allmende_store::keys::fed;

use super::{Federation, FederationError, Outcome, Rejection, now};

impl Federation {
    /// Publishes (or re-publishes, or withdraws) one of this node's datasets: appends a signed
    /// entry to the local log, indexes it and gossips it.
    pub async fn publish(
        &self,
        dataset: &StoredDataset,
        policy: Option<PolicyRef>,
        withdraw: bool,
    ) -> Result<SignedCatalogEntry, FederationError> {
        let id = &dataset.record.id;
        let marker = fed::published(id);
        let published = self.store.get_bytes(&marker)?.is_some();
        let op = match (withdraw, published) {
            (true, false) => return Err(FederationError::NotPublished(id.clone())),
            (true, true) => EntryOp::Withdraw,
            (false, true) => EntryOp::Update,
            (false, false) => EntryOp::Create,
        };
        let entry = self
            .log
            .publish(&self.key, op, dataset.record.clone(), policy, now())?;
        self.store
            .write(vec![(marker, (!withdraw).then(|| b"1".to_vec()))])?;
        self.index.apply(&[(entry.clone(), now())])?;
        self.client
            .publish(Topic::Catalog, entry.to_bytes())
            .await?;
        Ok(entry)
    }

    /// Checks that `dataset` can be re-published as it is (its signed entry fits the limits).
    pub fn check_publishable(
        &self,
        dataset: &StoredDataset,
        policy: Option<PolicyRef>,
    ) -> Result<(), FederationError> {
        Ok(self
            .log
            .check_publishable(&self.key, dataset.record.clone(), policy, now())?)
    }

    /// Whether a dataset of this node is published.
    pub fn is_published(&self, id: &str) -> Result<bool, FederationError> {
        Ok(self.store.get_bytes(&fed::published(id))?.is_some())
    }

    /// Offers an entry received from the network; indexes it when applied.
    pub(crate) fn offer(&self, bytes: &[u8]) -> Result<Outcome, Rejection> {
        let roster = self.roster();
        let outcome = self.log.offer(bytes, roster.as_ref(), now())?;
        if let Outcome::Applied(entry) = &outcome
            && let Err(e) = self.index.apply(&[((**entry).clone(), now())])
        {
            tracing::error!(error = %e, "indexing a received entry failed");
        }
        Ok(outcome)
    }
}
