//! Which members hold what a federated query reads: one member's dataset, or every visible
//! dataset that declares a common schema (this node's own included), from the replicated
//! catalog.

use allmende_protocol::PeerId;
use allmende_protocol::catalog::EntryOp;

use super::member_name;
use crate::federation::{Federation, FederationError};

/// What a federated table reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One member's dataset.
    Member {
        /// The member's name (organisation without "Stadt"/"Kreis", lower-case, e.g. `wuerzburg`).
        member: String,
        /// The dataset's name or id.
        dataset: String,
    },
    /// Every member's dataset that declares the common schema `kind`.
    Federation {
        /// The schema name, e.g. `air_quality_hourly`.
        kind: String,
    },
}

/// A member holding a dataset a federated query reads.
#[derive(Clone, Debug)]
pub struct Provider {
    /// The member's PeerId.
    pub peer: PeerId,
    /// Its name in queries.
    pub member: String,
    /// Its organisation.
    pub organisation: String,
    /// The dataset's id.
    pub dataset: String,
    /// The dataset's columns, as its catalog entry names them.
    pub columns: Vec<allmende_protocol::catalog::CatalogColumn>,
}

/// The members (with dataset ids) that hold what a federated query reads: one member's
/// dataset, or every visible dataset declaring a common schema (this node's own included).
pub fn providers(fed: &Federation, target: &Target) -> Result<Vec<Provider>, FederationError> {
    let roster = fed.roster();
    let member_of = |p: &PeerId| -> Option<(String, String)> {
        if *p == fed.peer_id() {
            return Some((fed.organisation().to_owned(), fed.district_key().to_owned()));
        }
        roster
            .as_ref()?
            .member(p)
            .map(|m| (m.organisation.clone(), m.district_key.clone()))
    };
    let mut out = Vec::new();
    for (entry, _) in fed.log().latest_entries()?.iter() {
        let e = entry.payload();
        if e.op == EntryOp::Withdraw {
            continue;
        }
        let Some((organisation, district)) = member_of(&e.publisher) else {
            continue;
        };
        let member = member_name(&organisation);
        let matches = match target {
            Target::Member { member: m, dataset } => {
                (*m == member || *m == format!("d{district}"))
                    && (e.dataset.slug == *dataset || e.dataset.id == *dataset)
            }
            Target::Federation { kind } => e.dataset.conforms_to.as_deref().is_some_and(|c| {
                c == kind || c.ends_with(&format!(":{kind}")) || c.contains(&format!(":{kind}:"))
            }),
        };
        if matches {
            out.push(Provider {
                peer: e.publisher,
                member,
                organisation,
                dataset: e.dataset.id.clone(),
                columns: e.columns.clone(),
            });
        }
    }
    out.sort_by(|a, b| a.member.cmp(&b.member));
    Ok(out)
}
