//! Federated SQL: plan on the asking node ([`plan`]), fan the fragment out to the members
//! holding matching datasets, let each enforce its own policy ([`provider`]), merge the partial
//! answers with DataFusion, and sign a receipt naming every member asked and what it answered.
//!
//! Every member asked gets a status: `ok`, `denied` (its policy refused, with the reason),
//! `timeout` (no answer before the deadline) or `error`. A provider that never answers costs at
//! most the deadline.

pub mod ask;
pub mod fragment;
pub mod plan;
pub mod provider;
pub mod providers;
pub mod serve;

use std::sync::Arc;
use std::time::{Duration, Instant};

use allmende_protocol::query::{
    AnswerHeader, AnswerStatus, MAX_ASSERTION_SECS, MAX_QUERY_REQUEST_BYTES, QueryRequest,
    QueryResponse, Receipt, ReceiptLine, UserAssertion, batches_hash, query_hash,
};
use allmende_protocol::{PeerId, Signed, SigningKey};
use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use serde::Serialize;
use serde_bytes::ByteBuf;

use crate::federation::{Federation, FederationError};
use allmende_data::sql::{self, Source, SqlError};
use ask::AskError;
use plan::{MEMBER_COLUMN, MERGED_TABLE, Plan, PlanError};
use provider::ProviderContext;
use providers::Provider;

/// Errors of a federated query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query cannot be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
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
    Arrow(#[from] arrow::error::ArrowError),
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
    /// How it took part.
    pub status: MemberState,
    /// Why, when not `ok`.
    pub reason: Option<String>,
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

fn with_member(batch: &RecordBatch, member: &str) -> Result<RecordBatch, ArrowError> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(MEMBER_COLUMN, DataType::Utf8, false));
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec![member; batch.num_rows()])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

fn decode(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>), ArrowError> {
    let reader = arrow::ipc::reader::StreamReader::try_new(bytes, None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

/// Why a member gave no answer.
enum NoAnswer {
    /// None before the deadline, or it could not be reached (with why).
    Timeout(Option<String>),
    /// Asking it failed otherwise.
    Error(String),
}

/// One member's answer, checked and decoded as it arrived (while others were still awaited).
struct Settled {
    peer: PeerId,
    status: MemberStatus,
    /// Its signed answer header, for the receipt.
    answer: Option<ByteBuf>,
    /// Its rows with the `_member` column, when it answered `ok`.
    data: Option<(SchemaRef, Vec<RecordBatch>)>,
}

/// Checks and decodes what one member gave (or why it gave nothing).
fn settle(
    p: &Provider,
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
        status: MemberState::Error,
        reason: None,
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
                status.suppressed = h.suppressed;
                match h.status {
                    AnswerStatus::Denied => status.status = MemberState::Denied,
                    AnswerStatus::Error => status.status = MemberState::Error,
                    AnswerStatus::Ok => match with_members(&response.batches, &p.member) {
                        Ok((schema, batches)) => {
                            status.status = MemberState::Ok;
                            status.rows = batches.iter().map(|b| b.num_rows() as u64).sum();
                            data = Some((schema, batches));
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

/// Longest the merge of the members' answers may take.
const MERGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a federated query.
#[tracing::instrument(name = "federated_query", skip_all, fields(providers))]
pub async fn run(
    federation: &Federation,
    local: &ProviderContext,
    key: &SigningKey,
    sql_text: &str,
    options: &QueryOptions,
    memory_limit: u64,
) -> Result<Answer, QueryError> {
    let planned = plan::plan(sql_text)?;
    let Plan {
        target,
        fragment,
        local_sql,
    } = planned.clone();
    let providers = providers::providers(federation, &target)?;
    tracing::Span::current().record("providers", providers.len());
    if providers.is_empty() {
        return Err(QueryError::NoProviders(match target {
            plan::Target::Member { member, dataset } => {
                format!("no member `{member}` publishes a dataset `{dataset}`")
            }
            plan::Target::Federation { kind } => {
                format!("no member publishes a dataset of the common schema `{kind}`")
            }
        }));
    }
    let hash = query_hash(sql_text);
    let me = federation.peer_id();
    let traceparent = crate::telemetry::traceparent();
    let mut asks = Vec::with_capacity(providers.len());
    for p in providers {
        let traceparent = traceparent.clone();
        let (fragment, peer, dataset) = (&fragment, p.peer, p.dataset.clone());
        // Made for each attempt: a provider may have read (and so spent) an earlier assertion.
        let request = move || -> Result<QueryRequest, QueryError> {
            Ok(QueryRequest {
                query_hash: hash,
                dataset: dataset.clone(),
                fragment: fragment.clone(),
                assertion: ByteBuf::from(assertion(key, options, peer)?),
                deadline_ms: options.deadline.as_millis() as u64,
                traceparent: traceparent.clone(),
            })
        };
        let deadline = options.deadline;
        asks.push(Box::pin(async move {
            let started = Instant::now();
            let outcome = if p.peer == me {
                match request() {
                    Ok(r) => Ok(provider::answer_own(local, r).await),
                    Err(e) => Err(NoAnswer::Error(e.to_string())),
                }
            } else {
                match tokio::time::timeout(deadline, ask::ask(federation, p.peer, request)).await {
                    Ok(Ok(r)) => Ok(r),
                    // A member that cannot be reached gives no answer either.
                    Ok(Err(e @ AskError::Unreachable(_))) => {
                        Err(NoAnswer::Timeout(Some(e.to_string())))
                    }
                    Ok(Err(e)) => Err(NoAnswer::Error(e.to_string())),
                    Err(_) => Err(NoAnswer::Timeout(None)),
                }
            };
            settle(&p, started.elapsed(), outcome, &hash, deadline)
        }));
    }
    let settled = futures::future::join_all(asks).await;

    let mut members = Vec::with_capacity(settled.len());
    let mut lines = Vec::with_capacity(settled.len());
    let mut merged: Option<(SchemaRef, Vec<RecordBatch>)> = None;
    for Settled {
        peer,
        mut status,
        answer,
        data,
    } in settled
    {
        if let Some((schema, batches)) = data {
            match &mut merged {
                None => merged = Some((schema, batches)),
                Some((known, list)) if known.fields() == schema.fields() => list.extend(batches),
                Some(_) => {
                    status.status = MemberState::Error;
                    status.reason =
                        Some("its answer's columns differ from the other members'".into());
                    status.rows = 0;
                }
            }
        }
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
        key,
    )
    .map_err(|e| QueryError::Sql(SqlError::Internal(e.to_string())))?;
    let (schema, batches) = match merged {
        Some((schema, batches)) => {
            let engine = local.engine().clone();
            let limit = MERGE_TIMEOUT;
            let merge = async move {
                let stream = engine
                    .query(&local_sql, memory_limit, &|t| {
                        if t.table() == MERGED_TABLE && t.schema().is_none() {
                            Ok(Source::Batches(schema.clone(), batches.clone()))
                        } else {
                            Err(SqlError::Invalid(format!(
                                "table `{t}` is not part of this federated query"
                            )))
                        }
                    })
                    .await?;
                sql::collect(stream).await
            };
            local
                .engine()
                .pool()
                .spawn(tokio::time::Instant::now() + limit, limit, merge)
                .await
                .map_err(|e| humanized(&planned, e))?
        }
        None => (Arc::new(Schema::empty()), Vec::new()),
    };
    Ok(Answer {
        schema,
        batches,
        members,
        receipt,
    })
}

/// `e`, an error of the merge, in the query's own names.
fn humanized(plan: &Plan, e: SqlError) -> SqlError {
    match e {
        SqlError::Invalid(m) => SqlError::Invalid(plan.humanize(&m)),
        SqlError::Evaluation(m) => SqlError::Evaluation(plan.humanize(&m)),
        SqlError::ResourcesExhausted(m) => SqlError::ResourcesExhausted(plan.humanize(&m)),
        other => other,
    }
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

/// Decodes one provider's batches and adds the `_member` column to each.
fn with_members(bytes: &[u8], member: &str) -> Result<(SchemaRef, Vec<RecordBatch>), ArrowError> {
    let (schema, batches) = decode(bytes)?;
    let schema = with_member(&RecordBatch::new_empty(schema), member)?.schema();
    let batches = batches
        .iter()
        .map(|b| with_member(b, member))
        .collect::<Result<_, _>>()?;
    Ok((schema, batches))
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
