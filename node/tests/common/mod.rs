//! What the node's integration tests share: setting up a node's data dir in-process, the
//! package's directory, listing files; a provider with one imported dataset under a policy,
//! requests signed by a fixed asker, and asking (also through DataFusion's planner over a
//! federated table, [`federated_table`]); the HTTP API through the router ([`api`]);
//! a test OpenID provider and a node that trusts it ([`auth`]).

#![allow(
    dead_code,
    unused_imports,
    unused_macros,
    reason = "each test crate uses a part of it"
)]

pub mod api;
pub mod auth;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use allmende_data::datasets::{Datasets, ImportRequest, MetadataInput};
use allmende_data::sql::federated::{Fanout, FederatedTable, MemberBatches, conformed};
use allmende_data::sql::{Engine, EngineConfig};
use allmende_node::config::Config;
use allmende_node::identity::Identity;
use allmende_node::policies::Policies;
use allmende_node::query::provider::{ProviderContext, answer};
use allmende_node::serving::Serving;
use allmende_protocol::plan::SubPlan;
use allmende_protocol::query::{
    AnswerHeader, AnswerStatus, PlanRequest, UserAssertion, batches_hash,
};
use allmende_protocol::{PeerId, Signed, SigningKey};
use allmende_store::Store;
use futures::future::BoxFuture;

/// The package's directory: as cargo gives it to the running test (a test built in another
/// checkout sharing the target dir would otherwise carry that checkout's path), else as compiled.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// What `allmende init` does, in-process: saves `config` in `dir`, creates the node's identity,
/// its store and the local admin token; returns the token.
pub fn init(dir: &Path, config: &Config) -> String {
    config.save(dir).unwrap();
    Identity::create(dir).unwrap();
    Store::open(dir, true).unwrap();
    allmende_node::auth::token::create(dir, None)
        .unwrap()
        .reveal()
        .to_owned()
}

/// Every file below `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out.sort();
    out
}

/// A provider and the id of its one dataset.
pub struct Provider {
    _dir: tempfile::TempDir,
    /// What answers.
    pub ctx: ProviderContext,
    /// The dataset's id.
    pub id: String,
}

impl Provider {
    /// The provider's one dataset, as stored.
    pub fn stored(&self) -> allmende_store::StoredDataset {
        self.ctx
            .serving()
            .datasets()
            .store()
            .get(&self.id)
            .unwrap()
            .unwrap()
    }
}

/// A provider whose dataset `values` is `csv`, under `policy`.
pub fn provider_with(csv: &str, policy: &str) -> Provider {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new("Stadt Würzburg".into(), "09663".into());
    let store = Arc::new(Store::open(dir.path(), true).unwrap());
    let datasets = Arc::new(Datasets::new(
        dir.path().to_path_buf(),
        store.clone(),
        config.dataset_settings(),
    ));
    datasets.recover().unwrap();
    let src = dir.path().join("src.csv");
    std::fs::write(&src, csv).unwrap();
    let dataset = datasets
        .import(
            ImportRequest {
                source: src,
                file_name: Some("values.csv".into()),
                format: None,
                metadata: MetadataInput {
                    slug: Some("values".into()),
                    ..MetadataInput::default()
                },
                version_of: None,
            },
            &|_| {},
        )
        .unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let policies = Arc::new(Policies::open(store, key.clone()).unwrap());
    policies.attach(&dataset.record.id, policy).unwrap();
    Provider {
        _dir: dir,
        ctx: ProviderContext::new(
            Arc::new(Serving::new(
                Engine::new(&EngineConfig {
                    threads: 2,
                    ..EngineConfig::default()
                })
                .unwrap(),
                datasets,
                policies,
                key,
                64 << 20,
            )),
            Duration::from_secs(5),
            4,
        ),
        id: dataset.record.id,
    }
}

/// The asker's key.
pub const ASKER: [u8; 32] = [4; 32];

/// The current time in Unix seconds.
pub fn now() -> u64 {
    allmende_node::federation::now()
}

/// An assertion of the asker for `audience`, valid from `issued` to `expires`, with `nonce`.
pub fn assertion(audience: PeerId, issued: u64, expires: u64, nonce: u64) -> Vec<u8> {
    let mut n = [0u8; 32];
    n[..8].copy_from_slice(&nonce.to_le_bytes());
    let a = UserAssertion {
        subject: "pseudonym".into(),
        organisation: "Stadt Münster".into(),
        roles: vec!["researcher".into()],
        purpose: None,
        audience,
        issued,
        expires,
        nonce: n,
    };
    Signed::sign(&a, &SigningKey::from_bytes(&ASKER))
        .unwrap()
        .to_bytes()
}

/// The provider's PeerId.
pub fn provider_peer() -> PeerId {
    allmende_protocol::peer_id_of(&SigningKey::from_bytes(&[9; 32]).verifying_key())
}

static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A request for `plan` over dataset `id`, with a fresh assertion.
pub fn plan_request(id: &str, plan: SubPlan) -> PlanRequest {
    let nonce = NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    PlanRequest {
        query_hash: [1; 32],
        dataset: id.into(),
        plan,
        assertion: assertion(provider_peer(), now(), now() + 60, nonce).into(),
        deadline_ms: 3000,
        traceparent: None,
        agreement: None,
    }
}

/// Asks the provider; its signed header (checked against the bytes) and the answer's bytes.
pub async fn ask(p: &Provider, req: PlanRequest) -> (AnswerHeader, Vec<u8>) {
    let asker = allmende_protocol::peer_id_of(&SigningKey::from_bytes(&ASKER).verifying_key());
    // The answer's bytes arrive in chunks while it is produced; the header comes last.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let collect = tokio::spawn(async move {
        let mut bytes = Vec::new();
        while let Some(chunk) = rx.recv().await {
            bytes.extend_from_slice(&chunk);
        }
        bytes
    });
    let header = answer(&p.ctx, asker, None, req, &tx).await;
    drop(tx);
    let bytes: Vec<u8> = collect.await.unwrap();
    let header: Signed<AnswerHeader> = Signed::from_bytes(&header, 1 << 20).unwrap();
    assert_eq!(header.payload().batches_hash, batches_hash(&bytes));
    (header.payload().clone(), bytes)
}

/// What an [`InProcess`] fanout is told of each answer: the plan, the signed header's payload
/// and the answer's bytes.
pub type Seen = dyn Fn(&SubPlan, &AnswerHeader, &[u8]) + Send + Sync;

/// Asks one provider in-process (as member `m`) for each sub-plan DataFusion's planner makes
/// over a federated table, as the asking node's fanout does over the network; tells `seen`
/// of every answer.
pub struct InProcess {
    /// The provider.
    pub provider: Arc<Provider>,
    /// Told of every answer.
    pub seen: Arc<Seen>,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InProcess")
    }
}

impl Fanout for InProcess {
    fn ask(
        &self,
        plan: SubPlan,
        expected: arrow::datatypes::SchemaRef,
    ) -> BoxFuture<'static, datafusion::error::Result<Vec<MemberBatches>>> {
        let (provider, seen) = (self.provider.clone(), self.seen.clone());
        Box::pin(async move {
            let (header, bytes) = ask(&provider, plan_request(&provider.id, plan.clone())).await;
            seen(&plan, &header, &bytes);
            if header.status != AnswerStatus::Ok {
                return Ok(vec![]);
            }
            let reader = arrow::ipc::reader::StreamReader::try_new(&bytes[..], None)?;
            let mut batches = Vec::new();
            for b in reader {
                let b = conformed(&b?, &expected).ok_or_else(|| {
                    datafusion::error::DataFusionError::Execution(
                        "the answer's columns differ".into(),
                    )
                })?;
                batches.push(b);
            }
            Ok(vec![("m".to_owned(), batches)])
        })
    }
}

/// The provider's dataset as a federated table of one member, `m`, asked through
/// [`InProcess`].
pub fn federated_table(provider: &Arc<Provider>, seen: Arc<Seen>) -> Arc<FederatedTable> {
    let stored = provider.stored();
    let columns = arrow::datatypes::Schema::new(
        stored
            .schema
            .iter()
            .map(|f| {
                arrow::datatypes::Field::new(&f.name, f.data_type.parse().unwrap(), f.nullable)
            })
            .collect::<Vec<_>>(),
    );
    let fanout = Arc::new(InProcess {
        provider: provider.clone(),
        seen,
    });
    Arc::new(FederatedTable::new(&columns, fanout).unwrap())
}
