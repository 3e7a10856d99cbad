//! Publishing this node's datasets: a signed entry appended to its own log, indexed, and
//! gossiped; and offering the entries others gossip to the replicated log.

use allmende_p2p::Topic;
use allmende_protocol::PolicyRef;
use allmende_protocol::catalog::{CatalogColumn, EntryOp, SignedCatalogEntry};
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
        // A withdrawal offers nothing to read.
        let columns = if withdraw {
            vec![]
        } else {
            catalog_columns(&dataset.schema)
        };
        let entry = self.log.publish(
            &self.key,
            op,
            dataset.record.clone(),
            policy,
            columns,
            now(),
        )?;
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
        Ok(self.log.check_publishable(
            &self.key,
            dataset.record.clone(),
            policy,
            catalog_columns(&dataset.schema),
            now(),
        )?)
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

/// The columns of a dataset as its catalog entry publishes them: each stored column whose Arrow
/// type the plan language names (a federated query can read no other).
pub fn catalog_columns(schema: &[allmende_store::Field]) -> Vec<CatalogColumn> {
    schema
        .iter()
        .filter_map(|f| {
            let arrow: arrow::datatypes::DataType = f.data_type.parse().ok()?;
            Some(CatalogColumn {
                name: f.name.clone(),
                data_type: allmende_data::sql::subplan::type_from_df(&arrow)?,
                nullable: f.nullable,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use allmende_protocol::plan::{DataType, TimeUnit};
    use allmende_store::Field;

    use super::*;

    #[test]
    fn the_catalog_names_each_column_the_plan_language_can_read() {
        let field = |name: &str, data_type: &str| Field {
            name: name.into(),
            data_type: data_type.into(),
            nullable: true,
            source_name: None,
        };
        let schema = [
            field(
                "zeit",
                &arrow::datatypes::DataType::Timestamp(
                    arrow::datatypes::TimeUnit::Microsecond,
                    Some("UTC".into()),
                )
                .to_string(),
            ),
            field("zaehlstelle", "Utf8"),
            field("anzahl", "Int64"),
            field("liste", "List(Int64)"),
        ];
        let columns = catalog_columns(&schema);
        let named: Vec<(&str, &DataType)> = columns
            .iter()
            .map(|c| (c.name.as_str(), &c.data_type))
            .collect();
        assert_eq!(
            named,
            [
                (
                    "zeit",
                    &DataType::Timestamp {
                        unit: TimeUnit::Microsecond,
                        timezone: Some("UTC".into())
                    }
                ),
                ("zaehlstelle", &DataType::Utf8),
                ("anzahl", &DataType::Int64),
            ]
        );
    }
}
