//! The asking node's side of a federated query planned by DataFusion: the tables a query names
//! ([`Asking::resolve`]: `federation.<kind>`, `<member>.<dataset>`, this node's own datasets by
//! name), and the [`Fanout`] that asks each member holding a federated table for a sub-plan
//! over `/allmende/query/3`, checks its signed answer, and records how it took part.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allmende_data::sql::federated::{Fanout, FederatedTable, MemberBatches, conformed};
use allmende_data::sql::subplan::type_to_df;
use allmende_data::sql::{Source, SqlError};
use allmende_protocol::catalog::CatalogColumn;
use allmende_protocol::plan::SubPlan;
use allmende_protocol::query::{
    AnswerHeader, AnswerStatus, MAX_QUERY_REQUEST_BYTES, PlanRequest, QueryResponse, batches_hash,
};
use allmende_protocol::{PeerId, Signed, SigningKey};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use datafusion::common::TableReference;
use futures::future::BoxFuture;
use serde_bytes::ByteBuf;

use super::ask::{self, AskError};
use super::provider::{ProviderContext, answer_own};
use super::providers::{Provider, Target, providers};
use super::{MemberState, MemberStatus, QueryError, QueryOptions, assertion};
use crate::federation::Federation;

/// The schema of the federated tables: `federation.<kind>`.
pub const FEDERATION_SCHEMA: &str = "federation";

/// What every member asked for one query shares, and how each took part.
pub(super) struct Asking {
    pub(super) federation: Arc<Federation>,
    pub(super) local: Arc<ProviderContext>,
    pub(super) key: SigningKey,
    pub(super) options: QueryOptions,
    /// The query's hash.
    pub(super) hash: [u8; 32],
    pub(super) traceparent: Option<String>,
    /// Every member's part, as each answered.
    pub(super) settled: Mutex<Vec<Settled>>,
    /// Why a table the query names has no member holding it, if one has none.
    pub(super) missing: Mutex<Option<String>>,
}

impl Asking {
    /// The table `t` names: a federated table over the members holding it, or one of this
    /// node's datasets.
    pub(super) fn resolve(self: &Arc<Self>, t: &TableReference) -> Result<Source, SqlError> {
        let target = match (t.catalog(), t.schema()) {
            (None, None) => {
                let datasets = self.local.serving().datasets();
                let name = t.table();
                return match datasets.store().find(name) {
                    Ok(Some(d)) if d.record.slug == name => {
                        Ok(Source::Parquet(datasets.file_path(&d)))
                    }
                    Ok(_) => Err(SqlError::Invalid(format!(
                        "table `{name}` not found: name a federated table \
                         (`{FEDERATION_SCHEMA}.<schema>` or `<member>.<dataset>`) or one of this \
                         node's datasets"
                    ))),
                    Err(e) => Err(SqlError::Internal(e.to_string())),
                };
            }
            (None, Some(FEDERATION_SCHEMA)) => Target::Federation {
                kind: t.table().to_owned(),
            },
            (None, Some(member)) => Target::Member {
                member: member.to_owned(),
                dataset: t.table().to_owned(),
            },
            (Some(_), _) => {
                return Err(SqlError::Invalid(format!(
                    "table `{t}`: federated tables are `{FEDERATION_SCHEMA}.<schema>` or \
                     `<member>.<dataset>`"
                )));
            }
        };
        let members =
            providers(&self.federation, &target).map_err(|e| SqlError::Internal(e.to_string()))?;
        if members.is_empty() {
            let why = match target {
                Target::Member { member, dataset } => {
                    format!("no member `{member}` publishes a dataset `{dataset}`")
                }
                Target::Federation { kind } => {
                    format!("no member publishes a dataset of the common schema `{kind}`")
                }
            };
            *self.missing.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.clone());
            return Err(SqlError::Invalid(why));
        }
        let columns = shared_columns(&members);
        let fanout = Arc::new(MemberFanout {
            asking: self.clone(),
            table: t.to_string(),
            members,
        });
        let table = FederatedTable::new(&columns, fanout).map_err(SqlError::from)?;
        Ok(Source::Table(Arc::new(table)))
    }

    /// Asks `p` for `plan`: how long it took, and its answer or why none came.
    async fn ask_one(
        &self,
        p: &Provider,
        plan: &SubPlan,
    ) -> (Duration, Result<QueryResponse, NoAnswer>) {
        let started = Instant::now();
        let deadline = self.options.deadline;
        // Made for each attempt: a provider may have read (and so spent) an earlier assertion.
        // Under the newest agreement this node holds with the member for the dataset, if any.
        let agreement = match p.peer == self.federation.peer_id() {
            true => Ok(None),
            false => self.local.policies().consumer_agreement(p.peer, &p.dataset),
        };
        let request = || -> Result<PlanRequest, QueryError> {
            let agreement = agreement
                .as_ref()
                .map_err(|e| QueryError::Sql(SqlError::Internal(e.to_string())))?;
            Ok(PlanRequest {
                query_hash: self.hash,
                dataset: p.dataset.clone(),
                plan: plan.clone(),
                assertion: ByteBuf::from(assertion(&self.key, &self.options, p.peer)?),
                deadline_ms: deadline.as_millis() as u64,
                traceparent: self.traceparent.clone(),
                agreement: *agreement,
            })
        };
        let outcome = if p.peer == self.federation.peer_id() {
            match request() {
                Ok(r) => Ok(answer_own(&self.local, r).await),
                Err(e) => Err(NoAnswer::Error(e.to_string())),
            }
        } else {
            match tokio::time::timeout(deadline, ask::ask(&self.federation, p.peer, request)).await
            {
                Ok(Ok(r)) => Ok(r),
                // A member that cannot be reached gives no answer either.
                Ok(Err(e @ AskError::Unreachable(_))) => {
                    Err(NoAnswer::Timeout(Some(e.to_string())))
                }
                Ok(Err(e)) => Err(NoAnswer::Error(e.to_string())),
                Err(_) => Err(NoAnswer::Timeout(None)),
            }
        };
        (started.elapsed(), outcome)
    }
}

/// The columns every member holding a table declares in its catalog entry, with the same type,
/// in the first member's order.
fn shared_columns(members: &[Provider]) -> Schema {
    let Some((first, rest)) = members.split_first() else {
        return Schema::empty();
    };
    let declared = |p: &Provider, c: &CatalogColumn| p.columns.iter().any(|o| o == c);
    Schema::new(
        first
            .columns
            .iter()
            .filter(|c| rest.iter().all(|p| declared(p, c)))
            .map(|c| Field::new(&c.name, type_to_df(&c.data_type), c.nullable))
            .collect::<Vec<_>>(),
    )
}

/// Asks the members holding one federated table.
struct MemberFanout {
    asking: Arc<Asking>,
    /// The table as the query names it.
    table: String,
    members: Vec<Provider>,
}

impl std::fmt::Debug for MemberFanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberFanout")
            .field("table", &self.table)
            .field("members", &self.members)
            .finish()
    }
}

impl Fanout for MemberFanout {
    fn ask(
        &self,
        plan: SubPlan,
        expected: SchemaRef,
    ) -> BoxFuture<'static, datafusion::error::Result<Vec<MemberBatches>>> {
        let (asking, table, members) = (
            self.asking.clone(),
            self.table.clone(),
            self.members.clone(),
        );
        Box::pin(async move {
            let asks = members.iter().map(|p| asking.ask_one(p, &plan));
            let outcomes = futures::future::join_all(asks).await;
            let mut answers = Vec::with_capacity(members.len());
            let (hash, deadline) = (asking.hash, asking.options.deadline);
            for (p, (latency, outcome)) in members.iter().zip(outcomes) {
                let mut s = settle(p, &table, latency, outcome, &hash, deadline);
                if let Some(batches) = s.data.take() {
                    match batches
                        .iter()
                        .map(|b| conformed(b, &expected))
                        .collect::<Option<Vec<_>>>()
                    {
                        Some(batches) => answers.push((p.member.clone(), batches)),
                        None => {
                            s.status.status = MemberState::Error;
                            s.status.reason =
                                Some("its answer's columns are not those asked for".into());
                            s.status.rows = 0;
                        }
                    }
                }
                asking
                    .settled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(s);
            }
            Ok(answers)
        })
    }
}

/// Why a member's answer was not taken.
#[derive(Debug, thiserror::Error)]
enum Rejected {
    /// The signed header does not open.
    #[error("invalid signed answer: {0}")]
    Signature(#[from] allmende_protocol::envelope::OpenError),
    /// Someone else signed it.
    #[error("the answer is signed by another peer")]
    OtherSigner,
    /// It answers another query.
    #[error("the answer is for another query")]
    OtherQuery,
    /// The data is not what the header signs.
    #[error("the data does not match the signed hash")]
    OtherData,
    /// The data does not decode as Arrow IPC.
    #[error("its data does not decode: {0}")]
    Arrow(#[from] ArrowError),
}

/// Why a member gave no answer.
enum NoAnswer {
    /// None before the deadline, or it could not be reached (with why).
    Timeout(Option<String>),
    /// Asking it failed otherwise.
    Error(String),
}

/// One member's answer, checked and decoded as it arrived (while others were still awaited).
pub(super) struct Settled {
    pub(super) peer: PeerId,
    pub(super) status: MemberStatus,
    /// Its signed answer header, for the receipt.
    pub(super) answer: Option<ByteBuf>,
    /// Its batches, when it answered `ok`.
    data: Option<Vec<RecordBatch>>,
}

/// Checks and decodes what one member gave (or why it gave nothing).
fn settle(
    p: &Provider,
    table: &str,
    latency: Duration,
    outcome: Result<QueryResponse, NoAnswer>,
    hash: &[u8; 32],
    deadline: Duration,
) -> Settled {
    let mut status = MemberStatus {
        member: p.member.clone(),
        peer: p.peer.to_string(),
        organisation: p.organisation.clone(),
        dataset: p.dataset.clone(),
        table: table.to_owned(),
        status: MemberState::Error,
        reason: None,
        code: None,
        rows: 0,
        suppressed: 0,
        latency_ms: latency.as_millis() as u64,
    };
    let mut answer = None;
    let mut data = None;
    match outcome {
        Err(NoAnswer::Timeout(why)) => {
            status.status = MemberState::Timeout;
            status.reason = Some(
                why.unwrap_or_else(|| format!("no answer within {} ms", deadline.as_millis())),
            );
        }
        Err(NoAnswer::Error(e)) => status.reason = Some(e),
        Ok(response) => match check_answer(&response, p.peer, hash) {
            Err(e) => status.reason = Some(e.to_string()),
            Ok(header) => {
                let h = header.payload();
                status.reason = h.reason.clone();
                status.code = h.code.clone();
                status.suppressed = h.suppressed;
                match h.status {
                    AnswerStatus::Denied => status.status = MemberState::Denied,
                    AnswerStatus::Error => status.status = MemberState::Error,
                    AnswerStatus::Ok => match decode(&response.batches) {
                        Ok(batches) => {
                            status.status = MemberState::Ok;
                            status.rows = batches.iter().map(|b| b.num_rows() as u64).sum();
                            data = Some(batches);
                        }
                        Err(e) => status.reason = Some(Rejected::from(e).to_string()),
                    },
                }
                answer = Some(response.header);
            }
        },
    }
    if status.status == MemberState::Error && status.reason.is_none() {
        answer = None;
    }
    Settled {
        peer: p.peer,
        status,
        answer,
        data,
    }
}

/// The batches of an answer's Arrow IPC stream.
fn decode(bytes: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
    arrow::ipc::reader::StreamReader::try_new(bytes, None)?.collect()
}

/// Checks a provider's signed header against the request and the bytes.
fn check_answer(
    response: &QueryResponse,
    peer: PeerId,
    hash: &[u8; 32],
) -> Result<Signed<AnswerHeader>, Rejected> {
    let header: Signed<AnswerHeader> =
        Signed::from_bytes(&response.header, MAX_QUERY_REQUEST_BYTES)?;
    if header.signer() != peer {
        return Err(Rejected::OtherSigner);
    }
    if header.payload().query_hash != *hash {
        return Err(Rejected::OtherQuery);
    }
    if header.payload().batches_hash != batches_hash(&response.batches) {
        return Err(Rejected::OtherData);
    }
    Ok(header)
}
