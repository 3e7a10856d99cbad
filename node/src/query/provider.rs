//! The provider's side of a federated query: check what is asked, decide with the dataset's
//! own signed policy, audit the decision, run it with DataFusion under limits, suppress groups
//! below the minimum group size, and sign the answer.
//!
//! What is asked is a structure, never SQL text: a sub-plan of the plan language over exactly
//! one dataset, decided on as it stands ([`super::subplan`]) and planned by the provider's own
//! DataFusion. What a requester can learn is bounded by what the language can express, and
//! every column it touches anywhere is checked against `allowedColumns`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allmende_policy::PolicyId;
use allmende_protocol::plan::{Output, PlanError};
use allmende_protocol::query::{
    AnswerHeader, AnswerStatus, MAX_QUERY_RESPONSE_BYTES, PlanRequest, QueryResponse, batches_hash,
};
use allmende_protocol::{PeerId, Signed};
use futures::StreamExt;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::subplan::suppress;
use crate::enforce::{EnforceError, Refusal, Terms};
use crate::policies::{AgreementRefused, Policies, PolicyError};
use crate::serving::{AssertionRefused, Serving};
use allmende_data::sql::subplan::SubPlanError;
use allmende_data::sql::{Engine, Source, SqlError};
use allmende_store::{StoreError, StoredDataset};

/// Why a provider could not answer a sub-plan (the answer then has status `error` and this,
/// rendered, as its reason; a policy's refusal is a `denied` answer, not an error).
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The sub-plan is outside the plan language or over a bound.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// No dataset with this id here.
    #[error("no dataset `{0}`")]
    NoDataset(String),
    /// The sub-plan names a column the dataset does not have.
    #[error("dataset `{dataset}` has no column `{column}`")]
    NoColumn {
        /// The dataset's slug.
        dataset: String,
        /// The column asked for.
        column: String,
    },
    /// The asker's user assertion was refused.
    #[error(transparent)]
    Assertion(#[from] AssertionRefused),
    /// Reading the dataset's record failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the dataset's policy failed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The decision could not be made (or not audited).
    #[error(transparent)]
    Enforce(#[from] EnforceError),
    /// No slot came free before the asker's deadline.
    #[error("the provider is busy: no query slot came free before the deadline")]
    Busy,
    /// The answer grew past the response bound.
    #[error("the answer exceeds {MAX_QUERY_RESPONSE_BYTES} bytes; ask for less")]
    TooLarge,
    /// The asker closed the stream.
    #[error("the asker went away")]
    AskerGone,
    /// The sub-plan ran out of time.
    #[error("the sub-plan did not finish within {0} ms")]
    Timeout(u128),
    /// The engine failed.
    #[error(transparent)]
    Sql(#[from] SqlError),
}

impl AnswerError {
    /// The machine-readable reason, where there is one.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::Plan(e) => Some(e.code()),
            _ => None,
        }
    }
}

/// What a provider needs to answer sub-plans: what serving any member's request needs, the
/// time one sub-plan may take, and the slots.
pub struct ProviderContext {
    serving: Arc<Serving>,
    timeout: Duration,
    /// Query slots: all askers' and each asker's share.
    slots: Slots,
}

impl ProviderContext {
    /// Sub-plans answered with `serving`, each within `timeout`; at most `concurrent` run at
    /// once, at most half of them (and at least one) for one asker.
    pub fn new(serving: Arc<Serving>, timeout: Duration, concurrent: usize) -> Self {
        Self {
            serving,
            timeout,
            slots: Slots::new(concurrent),
        }
    }

    /// What serving a member's request needs.
    pub fn serving(&self) -> &Arc<Serving> {
        &self.serving
    }

    /// The node's policies (and audit log).
    pub fn policies(&self) -> &Policies {
        self.serving.policies()
    }

    /// The query engine.
    pub fn engine(&self) -> &Engine {
        self.serving.engine()
    }
}

impl std::fmt::Debug for ProviderContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderContext")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A decision on a request, as the answer's header states it.
pub(super) struct Decided {
    pub(super) status: AnswerStatus,
    pub(super) reason: Option<String>,
    pub(super) code: Option<String>,
    pub(super) rules: Vec<String>,
    /// The minimum group size the answer is suppressed to.
    pub(super) k: u64,
    /// The policy or agreement whose use an answer counts.
    pub(super) counted: Option<PolicyId>,
}

impl Decided {
    /// An answer without a policy: the node's own user.
    fn own() -> Self {
        Self {
            status: AnswerStatus::Ok,
            reason: None,
            code: None,
            rules: vec![],
            k: 1,
            counted: None,
        }
    }

    /// A denial for `refusal`, by `rules`.
    pub(super) fn denied(refusal: Refusal, rules: Vec<String>, k: u64) -> Self {
        Self::refused(refusal.to_string(), refusal.code(), rules, k)
    }

    /// A denial with `reason` and `code`.
    fn refused(reason: String, code: &str, rules: Vec<String>, k: u64) -> Self {
        Self {
            status: AnswerStatus::Denied,
            reason: Some(reason),
            code: Some(code.into()),
            rules,
            k,
            counted: None,
        }
    }
}

/// The bound on sub-plans running at once, shared fairly: one asker may hold at most half of
/// the slots (at least one), so that a flood from one member queues behind itself and leaves
/// room for the others.
struct Slots {
    running: Semaphore,
    shares: Mutex<HashMap<PeerId, Arc<Semaphore>>>,
    share: usize,
}

/// A sub-plan's slot, held while it runs.
struct Slot<'a> {
    _share: Option<OwnedSemaphorePermit>,
    _running: SemaphorePermit<'a>,
}

impl Slots {
    fn new(concurrent: usize) -> Self {
        Self {
            running: Semaphore::new(concurrent.max(1)),
            shares: Mutex::new(HashMap::new()),
            share: concurrent.div_ceil(2).max(1),
        }
    }

    /// The semaphore bounding `peer`'s sub-plans running at once.
    fn share_of(&self, peer: &PeerId) -> Arc<Semaphore> {
        let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        if shares.len() >= 256 {
            // Keep only the askers with sub-plans running or waiting.
            shares.retain(|_, s| Arc::strong_count(s) > 1);
        }
        shares
            .entry(*peer)
            .or_insert_with(|| Arc::new(Semaphore::new(self.share)))
            .clone()
    }

    /// Waits for a slot for `asker`'s sub-plan (`None`: this node's own user, not bound by a
    /// share) until `until`; past it, the answer could not reach the asker in time anyway.
    async fn acquire(
        &self,
        asker: Option<&PeerId>,
        until: Instant,
    ) -> Result<Slot<'_>, AnswerError> {
        // The semaphores are never closed, so an acquire fails only at the deadline.
        let share = match asker {
            Some(peer) => Some(
                tokio::time::timeout_at(until, self.share_of(peer).acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .ok_or(AnswerError::Busy)?,
            ),
            None => None,
        };
        let running = tokio::time::timeout_at(until, self.running.acquire())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(AnswerError::Busy)?;
        Ok(Slot {
            _share: share,
            _running: running,
        })
    }
}

/// Bytes of Arrow IPC handed on at once.
const CHUNK: usize = 1 << 20;

/// Where an answer's Arrow IPC bytes go: to the asker as they are produced (`tx`), or into
/// memory; hashed and counted either way.
struct Out<'a> {
    tx: Option<&'a tokio::sync::mpsc::Sender<Vec<u8>>>,
    kept: Vec<u8>,
    hasher: Sha256,
    total: usize,
}

impl Out<'_> {
    async fn push(&mut self, chunk: Vec<u8>) -> Result<(), AnswerError> {
        self.total += chunk.len();
        if self.total > MAX_QUERY_RESPONSE_BYTES {
            return Err(AnswerError::TooLarge);
        }
        self.hasher.update(&chunk);
        match self.tx {
            Some(tx) => tx.send(chunk).await.map_err(|_| AnswerError::AskerGone),
            None => {
                self.kept.extend_from_slice(&chunk);
                Ok(())
            }
        }
    }
}

/// Answers one request from `peer` (a member; `organisation` from the roster): the Arrow IPC
/// bytes go to `tx` in chunks of about 1 MiB as they are produced; returns the signed header,
/// whose hash covers every byte sent.
pub async fn answer(
    ctx: &ProviderContext,
    peer: PeerId,
    organisation: Option<String>,
    req: PlanRequest,
    tx: &tokio::sync::mpsc::Sender<Vec<u8>>,
) -> ByteBuf {
    respond(ctx, Some((peer, organisation)), req, Some(tx))
        .await
        .header
}

/// Answers a request of this node's own user over its own dataset: the owner's data, so no
/// policy applies and nothing is audited; the answer is signed like any other.
pub async fn answer_own(ctx: &ProviderContext, req: PlanRequest) -> QueryResponse {
    respond(ctx, None, req, None).await
}

#[tracing::instrument(name = "query_answer", skip_all, fields(
    peer = remote.as_ref().map(|(p, _)| tracing::field::display(p)),
    dataset = %req.dataset, decision, rows,
))]
async fn respond(
    ctx: &ProviderContext,
    remote: Option<(PeerId, Option<String>)>,
    req: PlanRequest,
    tx: Option<&tokio::sync::mpsc::Sender<Vec<u8>>>,
) -> QueryResponse {
    let peer = remote.as_ref().map(|(p, _)| *p);
    let mut header = AnswerHeader {
        query_hash: req.query_hash,
        dataset: req.dataset.clone(),
        status: AnswerStatus::Error,
        reason: None,
        code: None,
        rules: vec![],
        rows: 0,
        suppressed: 0,
        batches_hash: batches_hash(&[]),
    };
    let mut out = Out {
        tx,
        kept: Vec::new(),
        hasher: Sha256::new(),
        total: 0,
    };
    match run(ctx, remote, &req, &mut out).await {
        Ok((decided, answer)) => {
            header.status = decided.status;
            header.reason = decided.reason;
            header.code = decided.code;
            header.rules = decided.rules;
            if let Some((rows, suppressed)) = answer {
                header.rows = rows;
                header.suppressed = suppressed;
            }
        }
        Err(error) => {
            header.status = AnswerStatus::Error;
            header.reason = Some(error.to_string());
            header.code = error.code().map(Into::into);
        }
    }
    header.batches_hash = out.hasher.finalize().into();
    let bytes = out.kept;
    let decision = match header.status {
        AnswerStatus::Ok => "permit",
        AnswerStatus::Denied => "deny",
        AnswerStatus::Error => "error",
    };
    tracing::Span::current()
        .record("decision", decision)
        .record("rows", header.rows);
    let detail = format!(
        "{} rows, {} groups suppressed; {}{}",
        header.rows,
        header.suppressed,
        header.reason.clone().unwrap_or_default(),
        header.rules.join(" ")
    );
    if let Some(peer) = peer {
        ctx.serving
            .policies()
            .audit(&peer, "query", &req.dataset, decision, detail)
            .await;
    }
    let signed = Signed::sign(&header, ctx.serving.key())
        .map(|s| s.to_bytes())
        .unwrap_or_default();
    QueryResponse {
        header: ByteBuf::from(signed),
        batches: ByteBuf::from(bytes),
    }
}

/// Rows and suppressed groups of an answer that ran.
type Answer = Option<(u64, u64)>;

/// `e`, a sub-plan's failure, as the engine's error.
fn plan_failed(e: SubPlanError) -> SqlError {
    match e {
        SubPlanError::Engine(e) => e,
        SubPlanError::Planning(e) => e.into(),
        other => SqlError::Invalid(other.to_string()),
    }
}

/// Decides `req` from `peer`: under the agreement it names (which must be one this node
/// concluded with `peer` for the dataset), or else under the dataset's offer.
fn decide(
    ctx: &ProviderContext,
    peer: PeerId,
    organisation: Option<String>,
    req: &PlanRequest,
    dataset: &StoredDataset,
) -> Result<Decided, AnswerError> {
    let policies = ctx.serving.policies();
    let Some(offer) = policies.get(&dataset.record.id)? else {
        return Ok(Decided::refused(
            "the dataset has no usage policy, so nothing leaves the node".into(),
            "no-policy",
            vec![],
            1,
        ));
    };
    let user = ctx.serving.assertion(&peer, &req.assertion)?;
    let agreement = match &req.agreement {
        None => None,
        Some(id) => match policies.provider_agreement(peer, &dataset.record.id, id) {
            Ok(a) => Some(a),
            Err(AgreementRefused::Policy(e)) => return Err(e.into()),
            Err(refused) => {
                return Ok(Decided::refused(
                    refused.to_string(),
                    "agreement-unusable",
                    vec![],
                    1,
                ));
            }
        },
    };
    let terms = match &agreement {
        None => Terms::Offer(&offer),
        Some(a) => Terms::Agreement {
            policy: &a.signed.payload().policy,
            id: a.id,
            parties: [ctx.serving.me(), peer],
        },
    };
    super::subplan::decide(
        policies,
        peer,
        organisation,
        &user,
        &req.plan,
        dataset,
        terms,
    )
}

async fn run(
    ctx: &ProviderContext,
    remote: Option<(PeerId, Option<String>)>,
    req: &PlanRequest,
    out: &mut Out<'_>,
) -> Result<(Decided, Answer), AnswerError> {
    req.plan.check()?;
    let dataset = ctx
        .serving
        .datasets()
        .store()
        .get(&req.dataset)?
        .ok_or_else(|| AnswerError::NoDataset(req.dataset.clone()))?;
    let decided = match &remote {
        None => Decided::own(),
        Some((peer, organisation)) => decide(ctx, *peer, organisation.clone(), req, &dataset)?,
    };
    if decided.status != AnswerStatus::Ok {
        return Ok((decided, None));
    }
    let plan = req.plan.clone();
    let path = ctx.serving.datasets().file_path(&dataset);
    // The asker's deadline (or the node's own limit) covers the wait for a slot and the run.
    let timeout = ctx
        .timeout
        .min(Duration::from_millis(req.deadline_ms.max(1)));
    let until = Instant::now() + timeout;
    let _slot = ctx
        .slots
        .acquire(remote.as_ref().map(|(peer, _)| peer), until)
        .await?;
    // Groups are suppressed only under a minimum group size: with none, even an aggregate
    // over no rows (one group of 0) is an answer, which DataFusion's final stage merges as it
    // would merge its own partitions.
    let suppressing = matches!(req.plan.output, Output::Aggregate { .. }) && decided.k > 1;
    // The sub-plan runs on the engine's threads; its Arrow IPC bytes come back in chunks.
    let (chunks, mut produced) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let (engine, memory, k) = (
        ctx.serving.engine().clone(),
        ctx.serving.memory_limit(),
        decided.k,
    );
    let running = ctx
        .serving
        .engine()
        .pool()
        .spawn(until, timeout, async move {
            let mut stream = engine
                .run_subplan(&plan, Source::Parquet(path), memory)
                .await
                .map_err(plan_failed)?;
            let schema = stream.schema();
            let ipc = |e: arrow::error::ArrowError| SqlError::Internal(e.to_string());
            let mut w =
                arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema).map_err(ipc)?;
            let (mut rows, mut suppressed) = (0u64, 0u64);
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let batch = if suppressing {
                    let (kept, dropped) = suppress(&batch, k)?;
                    suppressed += dropped;
                    kept
                } else {
                    batch
                };
                rows += batch.num_rows() as u64;
                w.write(&batch).map_err(ipc)?;
                if w.get_ref().len() >= CHUNK
                    && chunks.send(std::mem::take(w.get_mut())).await.is_err()
                {
                    return Err(SqlError::Cancelled);
                }
            }
            w.finish().map_err(ipc)?;
            if chunks.send(std::mem::take(w.get_mut())).await.is_err() {
                return Err(SqlError::Cancelled);
            }
            Ok((rows, suppressed))
        });
    while let Some(chunk) = produced.recv().await {
        out.push(chunk).await?;
    }
    let (rows, suppressed) = running.await.map_err(|e| match e {
        SqlError::Timeout(_) => AnswerError::Timeout(timeout.as_millis()),
        other => AnswerError::Sql(other),
    })?;
    if let Some(id) = &decided.counted {
        let _ = ctx.serving.policies().count_use(id);
    }
    Ok((decided, Some((rows, suppressed))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sub_plan_waits_for_a_slot_no_longer_than_its_deadline() {
        let slots = Slots::new(4);
        let flooder = PeerId::random();
        let other = PeerId::random();
        let soon = || Instant::now() + Duration::from_millis(50);
        // The flooder gets half of the slots; its third sub-plan waits, and gives up at its
        // deadline with a reason instead of queueing for ever.
        let a = slots.acquire(Some(&flooder), soon()).await.unwrap();
        let _b = slots.acquire(Some(&flooder), soon()).await.unwrap();
        let started = Instant::now();
        let err = slots
            .acquire(Some(&flooder), soon())
            .await
            .err()
            .expect("no third slot for one asker");
        assert!(matches!(err, AnswerError::Busy), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(45));
        assert!(started.elapsed() < Duration::from_millis(1000));
        // Another member still gets the remaining slots, and then waits like anyone.
        let _c = slots.acquire(Some(&other), soon()).await.unwrap();
        let _d = slots.acquire(None, soon()).await.unwrap();
        assert!(slots.acquire(Some(&other), soon()).await.is_err());
        // A slot given back is free again.
        drop(a);
        assert!(slots.acquire(Some(&other), soon()).await.is_ok());
    }
}
