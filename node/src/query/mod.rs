//! Federated SQL: DataFusion plans the query on the asking node over federated tables
//! (`federation.<kind>`, `<member>.<dataset>`) and the node's own datasets; the parts over the
//! members' data are sub-plans of the plan language ([`allmende_protocol::plan`]), fanned out to
//! the members holding each table ([`fanout`]); each member enforces its own policy on the
//! sub-plan ([`provider`], [`subplan`]); DataFusion merges the answers and runs the rest, and
//! the node signs a receipt naming every member asked and what it answered.
//!
//! Every member asked gets a status: `ok`, `denied` (its policy refused, with the reason),
//! `timeout` (no answer before the deadline) or `error`. A provider that never answers costs at
//! most the deadline.

pub mod ask;
pub mod fanout;
pub mod fragment;
pub mod provider;
pub mod providers;
pub mod serve;
pub mod subplan;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use allmende_protocol::query::{
    MAX_ASSERTION_SECS, Receipt, ReceiptLine, UserAssertion, query_hash,
};
use allmende_protocol::{PeerId, Signed, SigningKey};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::Serialize;

use crate::federation::{Federation, FederationError};
use allmende_data::sql::{self, SqlError};
use fanout::{Asking, Settled};
use provider::ProviderContext;

/// Errors of a federated query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No member holds what the query reads.
    #[error("{0}")]
    NoProviders(String),
    /// `require_all` was set and a member did not answer `ok`.
    #[error("not every member answered: {0}")]
    Incomplete(String),
    /// Merging failed.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// The federation failed.
    #[error(transparent)]
    Federation(#[from] FederationError),
}

/// How to ask.
#[derive(Clone, Debug)]
pub struct QueryOptions {
    /// How long to wait for each provider.
    pub deadline: Duration,
    /// Fail unless every member answers `ok`.
    pub require_all: bool,
    /// Why the user asks.
    pub purpose: Option<String>,
    /// The user's roles.
    pub roles: Vec<String>,
    /// A pseudonymous id of the user.
    pub user: Option<String>,
    /// The organisation the user acts for.
    pub organisation: String,
}

/// The short-lived assertion about the user for one provider, signed by this node.
pub(crate) fn assertion(
    key: &SigningKey,
    options: &QueryOptions,
    audience: PeerId,
) -> Result<Vec<u8>, QueryError> {
    let issued = allmende_p2p::clock::now();
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|e| QueryError::Sql(SqlError::Internal(e.to_string())))?;
    let a = UserAssertion {
        subject: options.user.clone().unwrap_or_else(|| "anonymous".into()),
        organisation: options.organisation.clone(),
        roles: options.roles.clone(),
        purpose: options.purpose.clone(),
        audience,
        issued,
        expires: issued + (options.deadline.as_secs() + 60).min(MAX_ASSERTION_SECS),
        nonce,
    };
    Signed::sign(&a, key)
        .map(|s| s.to_bytes())
        .map_err(|e| QueryError::Sql(SqlError::Internal(e.to_string())))
}

/// How a member took part in an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// It answered; its rows are in the result.
    Ok,
    /// Its policy refused the query.
    Denied,
    /// No answer before the deadline, or it could not be reached.
    Timeout,
    /// It failed to answer, or its answer was rejected.
    Error,
}

impl MemberState {
    /// The state's name, as in the answer's JSON and the signed receipt.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }
}

impl std::fmt::Display for MemberState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member's part in an answer.
#[derive(Clone, Debug, Serialize)]
pub struct MemberStatus {
    /// The member's name in queries.
    pub member: String,
    /// Its PeerId.
    pub peer: String,
    /// Its organisation.
    pub organisation: String,
    /// The dataset asked.
    pub dataset: String,
    /// The table of the query it was asked for, as the query names it
    /// (`federation.<kind>` or `<member>.<dataset>`): which side of a join a partial answer
    /// lacks.
    pub table: String,
    /// How it took part.
    pub status: MemberState,
    /// Why, when not `ok`.
    pub reason: Option<String>,
    /// The reason in machine-readable form, when the member gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Rows it contributed.
    pub rows: u64,
    /// Groups it suppressed as smaller than its minimum group size.
    pub suppressed: u64,
    /// Milliseconds until it answered.
    pub latency_ms: u64,
}

/// A merged answer.
pub struct Answer {
    /// The result's schema.
    pub schema: SchemaRef,
    /// The result.
    pub batches: Vec<RecordBatch>,
    /// Every member asked.
    pub members: Vec<MemberStatus>,
    /// The signed receipt.
    pub receipt: Signed<Receipt>,
}

/// The name of a member in queries: its organisation without "Stadt", "Kreis" and the like,
/// lower-case, e.g. `Stadt Münster` → `muenster`, `Würzburg` → `wuerzburg`.
pub fn member_name(organisation: &str) -> String {
    let mut name = organisation
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    for prefix in [
        "Landeshauptstadt ",
        "Hansestadt ",
        "Stadt ",
        "Landkreis ",
        "Kreis ",
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            name = rest.to_owned();
        }
    }
    allmende_data::import::normalize_columns(&[name]).remove(0)
}

/// Runs a federated query: DataFusion plans `sql_text` over the federated tables it names
/// (and this node's own datasets), each member computes the sub-plans over its data its policy
/// allows, and this node runs the rest; the receipt lists every member asked.
#[tracing::instrument(name = "federated_query", skip_all, fields(providers))]
pub async fn run(
    federation: Arc<Federation>,
    local: Arc<ProviderContext>,
    key: SigningKey,
    sql_text: &str,
    options: &QueryOptions,
    memory_limit: u64,
) -> Result<Answer, QueryError> {
    let hash = query_hash(sql_text);
    let asking = Arc::new(Asking {
        federation,
        local: local.clone(),
        key: key.clone(),
        options: options.clone(),
        hash,
        traceparent: crate::telemetry::traceparent(),
        settled: Mutex::new(Vec::new()),
        missing: Mutex::new(None),
    });
    let stream = match local
        .engine()
        .query(sql_text, memory_limit, &|t| asking.resolve(t))
        .await
    {
        Ok(stream) => stream,
        // A table no member holds is said as such (not as a planning error).
        Err(e) => {
            let missing = asking
                .missing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            return Err(missing.map_or(QueryError::Sql(e), QueryError::NoProviders));
        }
    };
    let (schema, batches) = sql::collect(stream).await?;
    let settled = std::mem::take(&mut *asking.settled.lock().unwrap_or_else(|e| e.into_inner()));
    tracing::Span::current().record("providers", settled.len());
    let mut members = Vec::with_capacity(settled.len());
    let mut lines = Vec::with_capacity(settled.len());
    for Settled {
        peer,
        status,
        answer,
        ..
    } in settled
    {
        lines.push(ReceiptLine {
            peer,
            member: status.member.clone(),
            status: status.status.to_string(),
            rows: status.rows,
            latency_ms: status.latency_ms,
            answer,
        });
        members.push(status);
    }
    if options.require_all && members.iter().any(|m| m.status != MemberState::Ok) {
        let list: Vec<String> = members
            .iter()
            .filter(|m| m.status != MemberState::Ok)
            .map(|m| {
                format!(
                    "{} {}{}",
                    m.member,
                    m.status,
                    m.reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )
            })
            .collect();
        return Err(QueryError::Incomplete(list.join("; ")));
    }
    let receipt = Signed::sign(
        &Receipt {
            query_hash: hash,
            sql: sql_text.to_owned(),
            issued: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            providers: lines,
        },
        &key,
    )
    .map_err(|e| QueryError::Sql(SqlError::Internal(e.to_string())))?;
    Ok(Answer {
        schema,
        batches,
        members,
        receipt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names() {
        assert_eq!(member_name("Stadt Münster"), "muenster");
        assert_eq!(member_name("Würzburg"), "wuerzburg");
        assert_eq!(member_name("Mönchengladbach, Stadt"), "moenchengladbach");
        assert_eq!(member_name("Landkreis Bad Kissingen"), "bad_kissingen");
    }
}
