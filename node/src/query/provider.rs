//! The provider's side of a federated query: check the fragment, decide with the dataset's own
//! signed policy, audit the decision, run the fragment with DataFusion under limits, suppress
//! groups below the minimum group size, and sign the answer.
//!
//! The fragment is a structure, not SQL text: the provider writes the SQL itself, with quoted
//! identifiers and literals, over exactly one table. What a requester can learn is therefore
//! bounded by what the structure can express — columns, and-ed comparisons with literals,
//! grouping, and COUNT/SUM/MIN/MAX — and every column it touches is checked against
//! `allowedColumns`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allmende_policy::sign::{SignedPolicy, policy_id};
use allmende_policy::{
    Action, Constraint, LeftOperand, Operator, Outcome, PolicyEntry, PolicyId, Principal,
    QueryShape, Request, RightOperand, State, Usage, compile, decide,
};
use allmende_protocol::query::{
    AggregateFn, AnswerHeader, AnswerStatus, CompareOp, Fragment, Literal,
    MAX_QUERY_RESPONSE_BYTES, QueryRequest, QueryResponse, UserAssertion, batches_hash,
};
use allmende_protocol::{PeerId, Signed, SigningKey};
use arrow::array::{Array, BooleanArray, Int64Array};
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::policies::{Policies, dataset_target};
use allmende_data::datasets::Datasets;
use allmende_data::sql::{Engine, Source, SqlError};
use allmende_store::StoredDataset;

/// The column with each group's row count in aggregate answers.
pub const GROUP_ROWS: &str = "__n";

/// What a provider needs to answer.
pub struct ProviderContext {
    engine: Engine,
    datasets: Arc<Datasets>,
    policies: Arc<Policies>,
    key: SigningKey,
    me: PeerId,
    memory_limit: u64,
    timeout: Duration,
    /// Fragment slots: all askers' and each asker's share.
    slots: Slots,
    /// Nonces of the assertions seen, with their expiry, to refuse replays.
    seen: Mutex<HashMap<[u8; 32], u64>>,
}

impl ProviderContext {
    /// What answering needs: the engine, datasets, policies and key, and the limits of one
    /// fragment (memory, time); at most `concurrent` fragments run at once, at most half of them
    /// (and at least one) for one asker.
    pub fn new(
        engine: Engine,
        datasets: Arc<Datasets>,
        policies: Arc<Policies>,
        key: SigningKey,
        memory_limit: u64,
        timeout: Duration,
        concurrent: usize,
    ) -> Self {
        Self {
            me: allmende_protocol::peer_id_of(&key.verifying_key()),
            engine,
            datasets,
            policies,
            key,
            memory_limit,
            timeout,
            slots: Slots::new(concurrent),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The node's policies (and audit log).
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The query engine.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The node's datasets.
    pub(crate) fn datasets(&self) -> &Arc<Datasets> {
        &self.datasets
    }

    /// The node's signing key.
    pub(crate) fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Memory one fragment (or one transfer view) may use.
    pub(crate) fn memory_limit(&self) -> u64 {
        self.memory_limit
    }

    /// Opens the asker's assertion and refuses a replay.
    pub(crate) fn assertion(&self, asker: &PeerId, bytes: &[u8]) -> Result<UserAssertion, String> {
        let now = allmende_p2p::clock::now();
        let a = UserAssertion::open(bytes, asker, &self.me, now).map_err(|e| e.to_string())?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, expires| *expires >= now);
        if seen.len() > 100_000 || seen.insert(a.nonce, a.expires).is_some() {
            return Err("the assertion was used before (replay) or too many are in use".into());
        }
        Ok(a)
    }
}

impl std::fmt::Debug for ProviderContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderContext")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The smallest group size the policy's permissions require (`minGroupSize`), if any.
pub fn required_group_size(policy: &allmende_policy::Policy) -> Option<u64> {
    fn walk(c: &Constraint, out: &mut Option<u64>) {
        match c {
            Constraint::Atomic(a) if a.left == LeftOperand::MinGroupSize => {
                if let RightOperand::Integer(n) = a.right {
                    let k = match a.operator {
                        Operator::Gt => n + 1,
                        _ => n,
                    };
                    *out = Some(out.map_or(k, |o: u64| o.max(k)));
                }
            }
            Constraint::Atomic(_) => {}
            Constraint::Logical(l) => l.operands.iter().for_each(|o| walk(o, out)),
        }
    }
    let mut out = None;
    for p in &policy.permissions {
        p.constraints.iter().for_each(|c| walk(c, &mut out));
    }
    out
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn literal(l: &Literal) -> String {
    match l {
        Literal::Null => "NULL".into(),
        Literal::Bool(b) => b.to_string(),
        Literal::Int(i) => i.to_string(),
        Literal::Float(f) if f.is_finite() => format!("{f:?}"),
        Literal::Float(_) => "NULL".into(),
        Literal::Text(s) => format!("'{}'", s.replace('\'', "''")),
    }
}

/// The SQL a provider runs for a fragment, over the table `t`.
pub fn fragment_sql(f: &Fragment) -> Result<String, String> {
    let mut conds = Vec::new();
    for c in &f.filter {
        let col = quote(&c.column);
        let one = || {
            c.values
                .first()
                .filter(|_| c.values.len() == 1)
                .map(literal)
                .ok_or_else(|| format!("condition on `{}` needs exactly one value", c.column))
        };
        conds.push(match c.op {
            CompareOp::Eq => format!("{col} = {}", one()?),
            CompareOp::Neq => format!("{col} <> {}", one()?),
            CompareOp::Lt => format!("{col} < {}", one()?),
            CompareOp::Lteq => format!("{col} <= {}", one()?),
            CompareOp::Gt => format!("{col} > {}", one()?),
            CompareOp::Gteq => format!("{col} >= {}", one()?),
            CompareOp::IsNull => format!("{col} IS NULL"),
            CompareOp::IsNotNull => format!("{col} IS NOT NULL"),
            CompareOp::In if c.values.is_empty() => "FALSE".into(),
            CompareOp::In => format!(
                "{col} IN ({})",
                c.values.iter().map(literal).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    if f.is_aggregate() {
        let mut items: Vec<String> = f.group_by.iter().map(|g| quote(g)).collect();
        for (i, a) in f.aggregates.iter().enumerate() {
            let func = match a.func {
                AggregateFn::Count => "COUNT",
                AggregateFn::Sum => "SUM",
                AggregateFn::Min => "MIN",
                AggregateFn::Max => "MAX",
            };
            items.push(format!("{func}({}) AS \"__a{i}\"", quote(&a.column)));
        }
        items.push(format!("COUNT(*) AS \"{GROUP_ROWS}\""));
        let group = if f.group_by.is_empty() {
            String::new()
        } else {
            format!(
                " GROUP BY {}",
                f.group_by
                    .iter()
                    .map(|g| quote(g))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Ok(format!("SELECT {} FROM t{filter}{group}", items.join(", ")))
    } else {
        let cols = if f.columns.is_empty() {
            "*".to_owned()
        } else {
            f.columns
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let order = if f.order_by.is_empty() {
            String::new()
        } else {
            let keys: Vec<String> = f
                .order_by
                .iter()
                .map(|(c, asc)| format!("{} {}", quote(c), if *asc { "ASC" } else { "DESC" }))
                .collect();
            format!(" ORDER BY {}", keys.join(", "))
        };
        let limit = f.limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        Ok(format!("SELECT {cols} FROM t{filter}{order}{limit}"))
    }
}

/// Every column the fragment touches.
pub fn columns_used(f: &Fragment, schema: &[allmende_store::Field]) -> Vec<String> {
    let mut cols: Vec<String> = if f.columns.is_empty() && !f.is_aggregate() {
        schema.iter().map(|c| c.name.clone()).collect()
    } else {
        f.columns.clone()
    };
    cols.extend(f.aggregates.iter().map(|a| a.column.clone()));
    cols.extend(f.group_by.iter().cloned());
    cols.extend(f.filter.iter().map(|c| c.column.clone()));
    cols.extend(f.order_by.iter().map(|(c, _)| c.clone()));
    cols.sort();
    cols.dedup();
    cols
}

/// Past use per policy, counted in the store.
/// The policy state (use counts) as the evaluator reads it.
pub(crate) struct UsageCounts<'a>(pub(crate) &'a Policies);

impl State for UsageCounts<'_> {
    fn usage(&self, id: &PolicyId, _uid: &str) -> Usage {
        self.0.usage(id).unwrap_or_default()
    }
}

struct Decided {
    status: AnswerStatus,
    reason: Option<String>,
    rules: Vec<String>,
    k: u64,
}

fn decide_for(
    ctx: &ProviderContext,
    peer: PeerId,
    organisation: Option<String>,
    user: &UserAssertion,
    req: &QueryRequest,
    dataset: &StoredDataset,
    policy: &SignedPolicy,
) -> Result<Decided, String> {
    let f = &req.fragment;
    for c in columns_used(f, &dataset.schema) {
        if !dataset.schema.iter().any(|s| s.name == c) {
            return Err(format!(
                "dataset `{}` has no column `{c}`",
                dataset.record.slug
            ));
        }
    }
    let k = required_group_size(policy.payload()).unwrap_or(1);
    let aggregate = f.is_aggregate();
    if aggregate
        && k > 1
        && let Some(c) = f.filter.iter().find(|c| !f.group_by.contains(&c.column))
    {
        return Ok(Decided {
            status: AnswerStatus::Denied,
            reason: Some(format!(
                "filters on `{}`, which is not a grouping column: with a minimum group size only \
                 whole groups may be selected",
                c.column
            )),
            rules: vec![],
            k,
        });
    }
    let mut compiled = compile([PolicyEntry::signed(policy).map_err(|e| e.to_string())?])
        .map_err(|e| e.to_string())?;
    for r in ctx.policies.revocations().iter() {
        compiled.revocations_mut().insert(r.clone());
    }
    let mut request = Request::new(
        if aggregate {
            Action::Aggregate
        } else {
            Action::Read
        },
        dataset_target(&dataset.record.id),
        chrono::Utc::now(),
    );
    request.principal = Principal {
        peer: Some(peer),
        org: organisation,
        claims: [
            ("sub".to_owned(), user.subject.clone()),
            ("organisation".to_owned(), user.organisation.clone()),
        ]
        .into_iter()
        .collect(),
        roles: user.roles.clone(),
    };
    request.purpose = user.purpose.clone();
    request.query_shape = Some(if aggregate {
        QueryShape::Aggregate
    } else {
        QueryShape::Row
    });
    request.group_size = aggregate.then_some(k);
    request.columns = Some(columns_used(f, &dataset.schema));
    let decision = decide(&compiled, &request, &UsageCounts(&ctx.policies));
    let rules = decision.rules.iter().map(ToString::to_string).collect();
    Ok(match decision.decision {
        Outcome::Permit => Decided {
            status: AnswerStatus::Ok,
            reason: None,
            rules,
            k,
        },
        other => Decided {
            status: AnswerStatus::Denied,
            reason: Some(match other {
                Outcome::Deny => "a prohibition of the dataset's policy applies".into(),
                Outcome::Indeterminate => {
                    "the policy needs a value the request does not carry (e.g. a purpose)".into()
                }
                _ => "no permission of the dataset's policy covers this request".into(),
            }),
            rules,
            k,
        },
    })
}

/// Drops groups with fewer than `k` rows; returns the kept batches and how many were dropped.
fn suppress(batches: Vec<RecordBatch>, k: u64) -> Result<(Vec<RecordBatch>, u64), String> {
    let mut out = Vec::with_capacity(batches.len());
    let mut dropped = 0u64;
    for b in batches {
        let n = b
            .column_by_name(GROUP_ROWS)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or("the group count is missing")?;
        let keep: BooleanArray = n
            .iter()
            .map(|v| Some(v.is_some_and(|v| v >= k as i64)))
            .collect();
        dropped += (keep.len() - keep.true_count()) as u64;
        out.push(arrow::compute::filter_record_batch(&b, &keep).map_err(|e| e.to_string())?);
    }
    Ok((out, dropped))
}

/// The bound on fragments running at once, shared fairly: one asker may hold at most half of
/// the slots (at least one), so that a flood from one member queues behind itself and leaves
/// room for the others.
struct Slots {
    running: Semaphore,
    shares: Mutex<HashMap<PeerId, Arc<Semaphore>>>,
    share: usize,
}

/// A fragment's slot, held while it runs.
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

    /// The semaphore bounding `peer`'s fragments running at once.
    fn share_of(&self, peer: &PeerId) -> Arc<Semaphore> {
        let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        if shares.len() >= 256 {
            // Keep only the askers with fragments running or waiting.
            shares.retain(|_, s| Arc::strong_count(s) > 1);
        }
        shares
            .entry(*peer)
            .or_insert_with(|| Arc::new(Semaphore::new(self.share)))
            .clone()
    }

    /// Waits for a slot for `asker`'s fragment (`None`: this node's own user, not bound by a
    /// share) until `until`; past it, the answer could not reach the asker in time anyway.
    async fn acquire(&self, asker: Option<&PeerId>, until: Instant) -> Result<Slot<'_>, String> {
        let busy = || "the provider is busy: no fragment slot came free before the deadline";
        let share = match asker {
            Some(peer) => Some(
                tokio::time::timeout_at(until, self.share_of(peer).acquire_owned())
                    .await
                    .map_err(|_| busy())?
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let running = tokio::time::timeout_at(until, self.running.acquire())
            .await
            .map_err(|_| busy())?
            .map_err(|e| e.to_string())?;
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
    async fn push(&mut self, chunk: Vec<u8>) -> Result<(), String> {
        self.total += chunk.len();
        if self.total > MAX_QUERY_RESPONSE_BYTES {
            return Err(format!(
                "the answer exceeds {MAX_QUERY_RESPONSE_BYTES} bytes; ask for less"
            ));
        }
        self.hasher.update(&chunk);
        match self.tx {
            Some(tx) => tx
                .send(chunk)
                .await
                .map_err(|_| "the asker went away".to_owned()),
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
    req: QueryRequest,
    tx: &tokio::sync::mpsc::Sender<Vec<u8>>,
) -> ByteBuf {
    respond(ctx, Some((peer, organisation)), req, Some(tx))
        .await
        .header
}

/// Answers a request of this node's own user over its own dataset: the owner's data, so no
/// policy applies and nothing is audited; the answer is signed like any other.
pub async fn answer_own(ctx: &ProviderContext, req: QueryRequest) -> QueryResponse {
    respond(ctx, None, req, None).await
}

#[tracing::instrument(name = "query_answer", skip_all, fields(
    peer = remote.as_ref().map(|(p, _)| tracing::field::display(p)),
    dataset = %req.dataset, decision, rows,
))]
async fn respond(
    ctx: &ProviderContext,
    remote: Option<(PeerId, Option<String>)>,
    req: QueryRequest,
    tx: Option<&tokio::sync::mpsc::Sender<Vec<u8>>>,
) -> QueryResponse {
    let peer = remote.as_ref().map(|(p, _)| *p);
    let mut header = AnswerHeader {
        query_hash: req.query_hash,
        dataset: req.dataset.clone(),
        status: AnswerStatus::Error,
        reason: None,
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
            header.rules = decided.rules;
            if let Some((rows, suppressed)) = answer {
                header.rows = rows;
                header.suppressed = suppressed;
            }
        }
        Err(message) => {
            header.status = AnswerStatus::Error;
            header.reason = Some(message);
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
    if let Some(peer) = peer
        && let Err(e) =
            ctx.policies
                .record(&peer.to_string(), "query", &req.dataset, decision, &detail)
    {
        tracing::error!(error = %e, "auditing a query decision failed");
    }
    let signed = Signed::sign(&header, &ctx.key)
        .map(|s| s.to_bytes())
        .unwrap_or_default();
    QueryResponse {
        header: ByteBuf::from(signed),
        batches: ByteBuf::from(bytes),
    }
}

/// Rows and suppressed groups of an answer that ran.
type Answer = Option<(u64, u64)>;

async fn run(
    ctx: &ProviderContext,
    remote: Option<(PeerId, Option<String>)>,
    req: &QueryRequest,
    out: &mut Out<'_>,
) -> Result<(Decided, Answer), String> {
    req.fragment.check().map_err(|e| e.to_string())?;
    let dataset = ctx
        .datasets
        .store()
        .get(&req.dataset)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no dataset `{}`", req.dataset))?;
    let policy = ctx
        .policies
        .get(&dataset.record.id)
        .map_err(|e| e.to_string())?;
    let decided = match (&remote, &policy) {
        (None, _) => Decided {
            status: AnswerStatus::Ok,
            reason: None,
            rules: vec![],
            k: 1,
        },
        (Some((peer, organisation)), Some(policy)) => {
            let user = ctx.assertion(peer, &req.assertion)?;
            decide_for(
                ctx,
                *peer,
                organisation.clone(),
                &user,
                req,
                &dataset,
                policy,
            )?
        }
        (Some(_), None) => {
            return Ok((
                Decided {
                    status: AnswerStatus::Denied,
                    reason: Some(
                        "the dataset has no usage policy, so nothing leaves the node".into(),
                    ),
                    rules: vec![],
                    k: 1,
                },
                None,
            ));
        }
    };
    if decided.status != AnswerStatus::Ok {
        return Ok((decided, None));
    }
    let sql_text = fragment_sql(&req.fragment)?;
    let path = ctx.datasets.file_path(&dataset);
    // The asker's deadline (or the node's own limit) covers the wait for a slot and the run.
    let timeout = ctx
        .timeout
        .min(Duration::from_millis(req.deadline_ms.max(1)));
    let until = Instant::now() + timeout;
    let _slot = ctx
        .slots
        .acquire(remote.as_ref().map(|(peer, _)| peer), until)
        .await?;
    let aggregate = req.fragment.is_aggregate();
    // The fragment runs on the engine's threads; its Arrow IPC bytes come back in chunks.
    let (chunks, mut produced) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let (engine, memory, k) = (ctx.engine.clone(), ctx.memory_limit, decided.k);
    let running = ctx.engine.pool().spawn(until, timeout, async move {
        let mut stream = engine
            .query(&sql_text, memory, &|_| Ok(Source::Parquet(path.clone())))
            .await?;
        let schema = stream.schema();
        let ipc = |e: arrow::error::ArrowError| SqlError::Internal(e.to_string());
        let mut w = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema).map_err(ipc)?;
        let (mut rows, mut suppressed) = (0u64, 0u64);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let batch = if aggregate {
                let (kept, dropped) = suppress(vec![batch], k).map_err(SqlError::Internal)?;
                suppressed += dropped;
                kept.into_iter()
                    .next()
                    .ok_or_else(|| SqlError::Internal("suppression lost a batch".into()))?
            } else {
                batch
            };
            rows += batch.num_rows() as u64;
            w.write(&batch).map_err(ipc)?;
            if w.get_ref().len() >= CHUNK && chunks.send(std::mem::take(w.get_mut())).await.is_err()
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
        SqlError::Timeout(_) => format!(
            "the fragment did not finish within {} ms",
            timeout.as_millis()
        ),
        other => other.to_string(),
    })?;
    if remote.is_some()
        && let Some(id) = policy.as_ref().and_then(|p| policy_id(p).ok())
    {
        let _ = ctx.policies.count_use(&id);
    }
    Ok((decided, Some((rows, suppressed))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmende_protocol::query::{Aggregate, Condition};

    #[test]
    fn builds_quoted_sql_from_fragments() {
        let f = Fragment {
            aggregates: vec![Aggregate {
                func: AggregateFn::Sum,
                column: "no2".into(),
            }],
            group_by: vec!["station".into()],
            filter: vec![Condition {
                column: "station".into(),
                op: CompareOp::In,
                values: vec![Literal::Text("a'; DROP".into())],
            }],
            ..Fragment::default()
        };
        assert_eq!(
            fragment_sql(&f).unwrap(),
            "SELECT \"station\", SUM(\"no2\") AS \"__a0\", COUNT(*) AS \"__n\" FROM t WHERE \"station\" IN ('a''; DROP') GROUP BY \"station\""
        );
        let rows = Fragment {
            columns: vec!["x\"y".into()],
            order_by: vec![("x\"y".into(), false)],
            limit: Some(3),
            ..Fragment::default()
        };
        assert_eq!(
            fragment_sql(&rows).unwrap(),
            "SELECT \"x\"\"y\" FROM t ORDER BY \"x\"\"y\" DESC LIMIT 3"
        );
    }

    #[tokio::test]
    async fn a_fragment_waits_for_a_slot_no_longer_than_its_deadline() {
        let slots = Slots::new(4);
        let flooder = PeerId::random();
        let other = PeerId::random();
        let soon = || Instant::now() + Duration::from_millis(50);
        // The flooder gets half of the slots; its third fragment waits, and gives up at its
        // deadline with a reason instead of queueing for ever.
        let a = slots.acquire(Some(&flooder), soon()).await.unwrap();
        let _b = slots.acquire(Some(&flooder), soon()).await.unwrap();
        let started = Instant::now();
        let err = slots
            .acquire(Some(&flooder), soon())
            .await
            .err()
            .expect("no third slot for one asker");
        assert!(err.contains("busy"), "{err}");
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
