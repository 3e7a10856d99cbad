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
use allmende_protocol::query::{
    AggregateFn, AnswerHeader, AnswerStatus, CompareOp, Fragment, Literal,
    MAX_QUERY_RESPONSE_BYTES, QueryRequest, QueryResponse, UserAssertion, batches_hash,
};
use allmende_protocol::{PeerId, Signed};
use arrow::array::{Array, BooleanArray, Int64Array};
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::enforce::{self, Ask, Refusal, Shape, Terms, required_group_size};
use crate::policies::Policies;
use crate::serving::Serving;
use allmende_data::sql::{Engine, Source, SqlError};
use allmende_store::StoredDataset;

/// The column with each group's row count in aggregate answers.
pub const GROUP_ROWS: &str = "__n";

/// What a provider needs to answer fragments: what serving any member's request needs, the
/// time one fragment may take, and the fragment slots.
pub struct ProviderContext {
    serving: Arc<Serving>,
    timeout: Duration,
    /// Fragment slots: all askers' and each asker's share.
    slots: Slots,
}

impl ProviderContext {
    /// Fragments answered with `serving`, each within `timeout`; at most `concurrent` run at
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
    let columns = columns_used(f, &dataset.schema);
    if let Some(c) = columns
        .iter()
        .find(|c| !dataset.schema.iter().any(|s| s.name == **c))
    {
        return Err(format!(
            "dataset `{}` has no column `{c}`",
            dataset.record.slug
        ));
    }
    let k = required_group_size(policy.payload()).unwrap_or(1);
    let denied = |refusal: Refusal, rules| Decided {
        status: AnswerStatus::Denied,
        reason: Some(refusal.to_string()),
        rules,
        k,
    };
    let aggregate = f.is_aggregate();
    if aggregate
        && k > 1
        && let Some(c) = f.filter.iter().find(|c| !f.group_by.contains(&c.column))
    {
        return Ok(denied(
            Refusal::FilterOutsideGroups(c.column.clone()),
            vec![],
        ));
    }
    let ask = Ask {
        peer,
        organisation,
        user,
        dataset,
        terms: Terms::Offer(policy),
        shape: if aggregate {
            Shape::Aggregates { min_group: k }
        } else {
            Shape::Rows
        },
        columns,
    };
    let decision = enforce::decide(ctx.serving.policies(), &ask).map_err(|e| e.to_string())?;
    Ok(match decision.outcome {
        Ok(()) => Decided {
            status: AnswerStatus::Ok,
            reason: None,
            rules: decision.rules,
            k,
        },
        Err(refusal) => denied(refusal, decision.rules),
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
        && let Err(e) = ctx.serving.policies().record(
            &peer.to_string(),
            "query",
            &req.dataset,
            decision,
            &detail,
        )
    {
        tracing::error!(error = %e, "auditing a query decision failed");
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

async fn run(
    ctx: &ProviderContext,
    remote: Option<(PeerId, Option<String>)>,
    req: &QueryRequest,
    out: &mut Out<'_>,
) -> Result<(Decided, Answer), String> {
    req.fragment.check().map_err(|e| e.to_string())?;
    let dataset = ctx
        .serving
        .datasets()
        .store()
        .get(&req.dataset)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no dataset `{}`", req.dataset))?;
    let policy = ctx
        .serving
        .policies()
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
            let user = ctx
                .serving
                .assertion(peer, &req.assertion)
                .map_err(|e| e.to_string())?;
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
    let aggregate = req.fragment.is_aggregate();
    // The fragment runs on the engine's threads; its Arrow IPC bytes come back in chunks.
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
                .query(&sql_text, memory, &|_| Ok(Source::Parquet(path.clone())))
                .await?;
            let schema = stream.schema();
            let ipc = |e: arrow::error::ArrowError| SqlError::Internal(e.to_string());
            let mut w =
                arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema).map_err(ipc)?;
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
        SqlError::Timeout(_) => format!(
            "the fragment did not finish within {} ms",
            timeout.as_millis()
        ),
        other => other.to_string(),
    })?;
    if remote.is_some()
        && let Some(id) = policy.as_ref().and_then(|p| policy_id(p).ok())
    {
        let _ = ctx.serving.policies().count_use(&id);
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
