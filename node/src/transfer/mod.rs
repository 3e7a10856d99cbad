//! Whole-dataset transfer between members, under an agreement, over the libp2p stream protocol
//! [`allmende_protocol::version::TRANSFER`].
//!
//! The consumer ([`Transfers::start`]) names a member's dataset, the agreement it holds for it,
//! the columns and row conditions it wants and the file format. The provider ([`serve`]) checks
//! the agreement (its own countersignature, the consumer's request, revocations), decides with
//! the agreement's terms, the consumer's assertion and the columns read, narrows the view to the
//! columns the terms permit, audits the decision, and streams the file: the dataset's stored
//! Parquet file when the view is the whole dataset, else the view written once ([`view`]). Its
//! signed header states the file's size and SHA-256.
//!
//! The consumer writes the bytes to `transfers/incoming/<id>.part`, hashing as it goes. A broken
//! connection is resumed from the bytes already on disk (the provider serves the same file
//! while it has it; else it starts again from byte 0 and says so). The assembled file must match
//! the signed SHA-256 — and, for a whole dataset in Parquet, the checksum of the owner's signed
//! catalog entry of that version — before it moves to `transfers/complete/` and the transfer is
//! recorded in the consumer's audit log. Transfers in progress survive a restart of the
//! consumer and continue when it comes back.

mod fetch;
mod filter;
mod serve;
mod view;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use allmende_protocol::query::Condition;
use allmende_protocol::transfer::{TransferFormat, TransferView};
use allmende_protocol::{PeerId, SigningKey};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::federation::Federation;
use crate::policies::Policies;
use crate::query::providers::Target;
use crate::serving::Serving;
use allmende_p2p::ratelimit::RateLimiter;
use allmende_store::keys::transfer;
use allmende_store::{Store, StoreError};
use filter::filter_conditions;

/// Transfers served at once by a provider.
const SERVING: usize = 4;
/// Attempts of one transfer before it is given up (each resumes where the last one stopped).
const MAX_ATTEMPTS: u32 = 10;

/// Errors of starting or managing transfers.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// No such transfer, member or dataset.
    #[error("{0}")]
    NotFound(String),
    /// The consumer holds no agreement for the dataset.
    #[error("{0}")]
    NoAgreement(String),
    /// The transfer is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Where a transfer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferState {
    /// Receiving, or waiting to try again.
    Running,
    /// Received and verified.
    Complete,
    /// Given up (denied, invalid, or too many failed attempts); can be resumed.
    Failed,
}

/// A transfer as the consumer keeps it (`transfer/<id>` in the store).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TransferRecord {
    /// The transfer's id.
    pub id: String,
    /// The provider's PeerId.
    pub provider: String,
    /// The provider's member name.
    pub member: String,
    /// The provider's dataset id.
    pub dataset: String,
    /// The agreement it runs under (hex id).
    pub agreement: String,
    /// The columns and row conditions asked for (empty columns: all permitted).
    pub view: TransferView,
    /// The file format.
    pub format: TransferFormat,
    /// Why the user asks.
    pub purpose: Option<String>,
    /// The user (pseudonymous subject), for the assertions of later attempts.
    pub user: Option<String>,
    /// The organisation the user acts for.
    pub organisation: String,
    /// The user's roles.
    pub roles: Vec<String>,
    /// Where it stands.
    pub state: TransferState,
    /// Bytes on disk.
    pub received: u64,
    /// The file's size, once the provider said it.
    pub size: Option<u64>,
    /// The file's SHA-256 (hex), once the provider signed it.
    pub sha256: Option<String>,
    /// The dataset version served.
    pub version: Option<u64>,
    /// Rows in the file.
    pub rows: Option<u64>,
    /// The file's columns (the permitted view).
    pub columns: Vec<String>,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure.
    pub error: Option<String>,
    /// The provider's signed header (hex), the proof of what was served.
    pub header: Option<String>,
    /// When it was asked for, RFC 3339.
    pub created: String,
    /// When it completed or failed, RFC 3339.
    pub finished: Option<String>,
}

/// What a user asks for.
#[derive(Clone, Debug, Default)]
pub struct TransferOrder {
    /// `<member>.<dataset>`.
    pub table: String,
    /// The file format.
    pub format: Option<TransferFormat>,
    /// Columns wanted; empty for every permitted column.
    pub columns: Vec<String>,
    /// A row filter in SQL (`year >= 2024 AND station = 'a'`).
    pub filter: Option<String>,
    /// The agreement to use (hex id); by default the newest with that member for the dataset.
    pub agreement: Option<String>,
    /// Why the user asks.
    pub purpose: Option<String>,
    /// The user (pseudonymous subject).
    pub user: Option<String>,
    /// The organisation the user acts for.
    pub organisation: String,
    /// The user's roles.
    pub roles: Vec<String>,
}

/// The node's transfers, as consumer and as provider.
pub struct Transfers {
    dir: PathBuf,
    store: Arc<Store>,
    federation: Arc<Federation>,
    policies: Arc<Policies>,
    serving: Arc<Serving>,
    key: SigningKey,
    me: PeerId,
    max_bytes: u64,
    rate: u64,
    /// Transfers served at once.
    slots: Arc<Semaphore>,
    limiter: Mutex<RateLimiter>,
    /// Views are written one at a time ([`view::prepare`]).
    writing: tokio::sync::Mutex<()>,
    /// Running downloads, by transfer id.
    tasks: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfers").field("dir", &self.dir).finish()
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Transfers {
    /// Transfers kept under `data_dir/transfers`; a received file may be at most `max_bytes`;
    /// each transfer served is paced to `rate` bytes a second (0: no limit).
    pub fn new(
        data_dir: &std::path::Path,
        store: Arc<Store>,
        federation: Arc<Federation>,
        policies: Arc<Policies>,
        serving: Arc<Serving>,
        max_bytes: u64,
        rate: u64,
    ) -> Self {
        let key = serving.key().clone();
        Self {
            dir: data_dir.join("transfers"),
            store,
            federation,
            policies,
            me: allmende_protocol::peer_id_of(&key.verifying_key()),
            serving,
            key,
            max_bytes,
            rate,
            slots: Arc::new(Semaphore::new(SERVING)),
            limiter: Mutex::new(RateLimiter::new(2, 20)),
            writing: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(HashMap::new()),
        }
    }

    fn incoming_path(&self, id: &str) -> PathBuf {
        self.dir.join("incoming").join(format!("{id}.part"))
    }

    /// The received file of a complete transfer.
    fn complete_path(&self, record: &TransferRecord) -> PathBuf {
        self.dir
            .join("complete")
            .join(format!("{}.{}", record.id, record.format.extension()))
    }

    fn views_dir(&self) -> PathBuf {
        self.dir.join("views")
    }

    fn save(&self, record: &TransferRecord) -> Result<(), TransferError> {
        let bytes =
            serde_json::to_vec(record).map_err(|e| TransferError::Invalid(e.to_string()))?;
        Ok(self
            .store
            .write(vec![(transfer::record(&record.id), Some(bytes))])?)
    }

    fn decode(id: &str, bytes: &[u8]) -> Result<TransferRecord, TransferError> {
        serde_json::from_slice(bytes).map_err(|e| {
            TransferError::Store(StoreError::Corrupt {
                key: format!("transfer/{id}"),
                message: e.to_string(),
            })
        })
    }

    /// One transfer.
    pub fn get(&self, id: &str) -> Result<TransferRecord, TransferError> {
        let bytes = self
            .store
            .get_bytes(&transfer::record(id))?
            .ok_or_else(|| TransferError::NotFound(format!("no transfer `{id}`")))?;
        Self::decode(id, &bytes)
    }

    /// Every transfer this node asked for, newest first.
    pub fn list(&self) -> Result<Vec<TransferRecord>, TransferError> {
        let mut out = Vec::new();
        let mut failed = None;
        self.store.scan_all(&transfer::ALL, |k, v| {
            match Self::decode(transfer::ALL.rest(&k).unwrap_or_default(), &v) {
                Ok(record) => out.push(record),
                Err(e) => failed = Some(e),
            }
            Ok(())
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        out.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(out)
    }

    /// The received file of a complete transfer.
    pub fn file(&self, id: &str) -> Result<(TransferRecord, PathBuf), TransferError> {
        let record = self.get(id)?;
        if record.state != TransferState::Complete {
            return Err(TransferError::Conflict(format!(
                "transfer `{id}` is {:?}, not complete",
                record.state
            )));
        }
        let path = self.complete_path(&record);
        Ok((record, path))
    }

    /// The member and dataset `<member>.<dataset>` names, from the replicated catalog.
    pub fn resolve(&self, table: &str) -> Result<crate::query::providers::Provider, TransferError> {
        let (member, dataset) = table.split_once('.').ok_or_else(|| {
            TransferError::Invalid(format!(
                "`{table}` is not `<member>.<dataset>` (e.g. `wuerzburg.luftqualitaet`)"
            ))
        })?;
        let target = Target::Member {
            member: member.to_owned(),
            dataset: dataset.to_owned(),
        };
        let providers = crate::query::providers::providers(&self.federation, &target)
            .map_err(|e| TransferError::Invalid(e.to_string()))?;
        let provider = match providers.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(TransferError::NotFound(format!(
                    "no member `{member}` publishes a dataset `{dataset}`"
                )));
            }
            _ => {
                return Err(TransferError::Invalid(format!(
                    "`{table}` names more than one dataset; use the dataset id"
                )));
            }
        };
        if provider.peer == self.me {
            return Err(TransferError::Invalid(format!(
                "`{table}` is this node's own dataset; read it with GET /api/v1/datasets/{}/data",
                provider.dataset
            )));
        }
        Ok(provider)
    }

    /// Starts a transfer: resolves the member's dataset, picks the agreement, records the
    /// transfer and starts receiving in the background.
    pub fn start(self: &Arc<Self>, order: TransferOrder) -> Result<TransferRecord, TransferError> {
        // The order's own input is checked before anything is looked up.
        let filter: Vec<Condition> = match order.filter.as_deref().map(str::trim) {
            Some(f) if !f.is_empty() => {
                filter_conditions(f).map_err(|e| TransferError::Invalid(e.to_string()))?
            }
            _ => vec![],
        };
        allmende_protocol::transfer::TransferView {
            columns: order.columns.clone(),
            filter: filter.clone(),
        }
        .check()
        .map_err(|e| TransferError::Invalid(e.to_string()))?;
        let provider = self.resolve(&order.table)?;
        let dataset = order.table.split_once('.').map_or("", |(_, d)| d);
        let agreement = self.agreement_for(&provider, dataset, order.agreement.as_deref())?;
        let record = TransferRecord {
            id: uuid::Uuid::new_v4().simple().to_string(),
            provider: provider.peer.to_string(),
            member: provider.member.clone(),
            dataset: provider.dataset.clone(),
            agreement,
            view: TransferView {
                columns: order.columns,
                filter,
            },
            format: order.format.unwrap_or(TransferFormat::Parquet),
            purpose: order.purpose,
            user: order.user,
            organisation: order.organisation,
            roles: order.roles,
            state: TransferState::Running,
            received: 0,
            size: None,
            sha256: None,
            version: None,
            rows: None,
            columns: vec![],
            attempts: 0,
            error: None,
            header: None,
            created: now_rfc3339(),
            finished: None,
        };
        self.save(&record)?;
        self.spawn(record.clone());
        Ok(record)
    }

    /// The agreement (hex id) this node holds as consumer with `provider` for its dataset.
    fn agreement_for(
        &self,
        provider: &crate::query::providers::Provider,
        asked: &str,
        wanted: Option<&str>,
    ) -> Result<String, TransferError> {
        let agreements = self
            .policies
            .agreements()
            .map_err(|e| TransferError::Invalid(e.to_string()))?;
        let mut mine: Vec<_> = agreements
            .into_iter()
            .filter(|(_, a)| {
                a.role == "consumer"
                    && a.counterpart == provider.peer.to_string()
                    && (a.dataset == provider.dataset || a.dataset == asked)
            })
            .collect();
        mine.sort_by(|a, b| b.1.concluded.cmp(&a.1.concluded));
        match wanted {
            Some(id) => mine
                .into_iter()
                .find(|(k, _)| k == id)
                .map(|(k, _)| k)
                .ok_or_else(|| {
                    TransferError::NoAgreement(format!(
                        "agreement `{id}` is not one this node holds with `{}` for `{asked}`",
                        provider.member
                    ))
                }),
            None => mine.into_iter().next().map(|(k, _)| k).ok_or_else(|| {
                TransferError::NoAgreement(format!(
                    "this node holds no agreement with `{}` for `{asked}`; conclude one first \
                     (`allmende agreement negotiate`, POST /api/v1/agreements, or \
                     `allmende fetch --negotiate`)",
                    provider.member
                ))
            }),
        }
    }

    /// Resumes a failed transfer from the bytes already received.
    pub fn resume(self: &Arc<Self>, id: &str) -> Result<TransferRecord, TransferError> {
        let mut record = self.get(id)?;
        match record.state {
            TransferState::Complete => {
                return Err(TransferError::Conflict(format!(
                    "transfer `{id}` is complete"
                )));
            }
            TransferState::Running if self.is_running(id) => return Ok(record),
            _ => {}
        }
        record.state = TransferState::Running;
        record.attempts = 0;
        record.error = None;
        record.finished = None;
        self.save(&record)?;
        self.spawn(record.clone());
        Ok(record)
    }

    /// Stops a transfer and removes it and its file.
    pub fn remove(&self, id: &str) -> Result<(), TransferError> {
        let record = self.get(id)?;
        if let Some(task) = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        {
            task.abort();
        }
        for path in [self.incoming_path(id), self.complete_path(&record)] {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(self.store.write(vec![(transfer::record(id), None)])?)
    }

    /// Continues the transfers a restart interrupted; run once the network is up.
    pub fn resume_interrupted(self: &Arc<Self>) -> Result<usize, TransferError> {
        let interrupted: Vec<_> = self
            .list()?
            .into_iter()
            .filter(|r| r.state == TransferState::Running)
            .collect();
        let n = interrupted.len();
        for record in interrupted {
            self.spawn(record);
        }
        Ok(n)
    }

    fn is_running(&self, id: &str) -> bool {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .is_some_and(|t| !t.is_finished())
    }

    fn spawn(self: &Arc<Self>, record: TransferRecord) {
        let this = self.clone();
        let id = record.id.clone();
        let span = tracing::info_span!("transfer_fetch", id = %record.id, provider = %record.provider, dataset = %record.dataset);
        let task = tokio::spawn(async move { this.run(record).await }.instrument(span));
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, task.abort_handle());
    }

    /// Attempts the transfer until it completes, is refused, or runs out of attempts.
    async fn run(self: Arc<Self>, mut record: TransferRecord) {
        loop {
            record.attempts += 1;
            let outcome = fetch::attempt(&self, &mut record).await;
            let finished = match outcome {
                Ok(()) => {
                    record.state = TransferState::Complete;
                    record.error = None;
                    true
                }
                Err(fetch::Failure::Final(reason)) => {
                    record.state = TransferState::Failed;
                    record.error = Some(reason);
                    true
                }
                Err(fetch::Failure::Retry(reason)) => {
                    tracing::info!(attempt = record.attempts, %reason, "transfer interrupted");
                    record.error = Some(reason);
                    if record.attempts >= MAX_ATTEMPTS {
                        record.state = TransferState::Failed;
                        true
                    } else {
                        false
                    }
                }
            };
            if finished {
                record.finished = Some(now_rfc3339());
            }
            if let Err(e) = self.save(&record) {
                tracing::error!(error = %e, "saving a transfer failed");
            }
            if finished {
                let (decision, detail) = match record.state {
                    TransferState::Complete => (
                        "complete",
                        format!(
                            "{} bytes, sha256 {}, {} rows, columns {}, agreement {}",
                            record.received,
                            record.sha256.clone().unwrap_or_default(),
                            record.rows.unwrap_or_default(),
                            record.columns.join(","),
                            record.agreement
                        ),
                    ),
                    _ => ("failed", record.error.clone().unwrap_or_default()),
                };
                if let Err(e) = self.policies.record(
                    &record.provider,
                    "transfer-received",
                    &record.dataset,
                    decision,
                    &detail,
                ) {
                    tracing::error!(error = %e, "auditing a transfer failed");
                }
                break;
            }
            let backoff = 250u64 << record.attempts.min(6);
            tokio::time::sleep(std::time::Duration::from_millis(backoff.min(10_000))).await;
        }
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&record.id);
    }

    /// Starts answering transfer requests from members.
    pub fn serve(self: &Arc<Self>) -> Result<(), TransferError> {
        let incoming = self
            .federation
            .accept_streams(allmende_protocol::version::TRANSFER)
            .map_err(|e| TransferError::Invalid(e.to_string()))?;
        let this = self.clone();
        tokio::spawn(async move { serve::accept(this, incoming).await });
        Ok(())
    }
}
