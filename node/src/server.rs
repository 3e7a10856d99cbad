//! Opening a node's data dir and serving its API until a shutdown signal.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::api::{self, AppState};
use crate::auth::{Auth, AuthError};
use crate::config::{Config, ConfigError, Overrides};
use crate::federation::{Federation, FederationError};
use crate::identity::{Identity, IdentityError};
use crate::policies::{Policies, PolicyError};
use allmende_data::datasets::{DatasetError, Datasets};
use allmende_data::sql::{Engine, EngineConfig, SqlError};
use allmende_store::{Store, StoreError};

/// Errors starting or running a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data dir has no configuration: it was never initialised.
    #[error("`{0}` is not an initialised data dir; run `allmende init --data-dir {0} ...` first")]
    NotInitialised(String),
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The identity could not be loaded.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The federation state could not be loaded.
    #[error(transparent)]
    Federation(#[from] FederationError),
    /// The peer-to-peer network could not start.
    #[error(transparent)]
    Network(#[from] allmende_p2p::NetworkError),
    /// The network was started twice.
    #[error("the network is already started")]
    NetworkStarted,
    /// The policy store could not be opened.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Authentication could not be set up (e.g. production without an OpenID provider).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Recovery after a crash failed.
    #[error("recovering the data dir failed: {0}")]
    Recover(#[from] DatasetError),
    /// The query engine could not start.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// Transfers could not start.
    #[error(transparent)]
    Transfer(#[from] crate::transfer::TransferError),
    /// Binding or serving failed.
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
}

/// Loads the configuration of `data_dir` with `overrides` applied.
pub fn load_config(data_dir: &Path, overrides: &Overrides) -> Result<Config, NodeError> {
    if !Config::path(data_dir).exists() {
        return Err(NodeError::NotInitialised(data_dir.display().to_string()));
    }
    let mut config = Config::load(data_dir)?;
    config.apply(overrides)?;
    Ok(config)
}

/// A node opened but not yet serving: what every handler reaches, and its network, which
/// [`serve`] (or a test, with [`Opened::start_network`]) starts.
pub struct Opened {
    /// What every handler can reach.
    pub state: AppState,
    network: Option<(
        allmende_p2p::EventLoop,
        tokio::sync::mpsc::Receiver<allmende_p2p::Event>,
    )>,
}

/// The running network: the swarm's event loop and the handling of its events; both stop when
/// this is dropped.
pub struct Network {
    event_loop: tokio::task::JoinHandle<()>,
    handler: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("network_started", &self.network.is_none())
            .finish()
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Network")
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.event_loop.abort();
        self.handler.abort();
    }
}

impl Opened {
    /// Starts listening on the configured addresses and runs the network; its events go to
    /// the federation. Called once.
    pub fn start_network(&mut self) -> Result<Network, NodeError> {
        let (mut event_loop, events) = self.network.take().ok_or(NodeError::NetworkStarted)?;
        event_loop.listen()?;
        let state = &self.state;
        Ok(Network {
            event_loop: tokio::spawn(event_loop.run()),
            handler: crate::federation::spawn(
                state.federation.clone(),
                state.policies.clone(),
                events,
                std::time::Duration::from_millis(state.config.p2p.sync_interval_ms),
            ),
        })
    }
}

/// Opens the identity, the store and the datasets of an initialised data dir, removes what an
/// interrupted import left behind, and builds the network (not yet listening).
pub fn open(data_dir: &Path, config: Config) -> Result<Opened, NodeError> {
    let started = Instant::now();
    let config = Arc::new(config);
    let identity = Arc::new(Identity::load(data_dir)?);
    let auth = Arc::new(Auth::open(&config, data_dir, &identity)?);
    let store = Arc::new(Store::open(data_dir, false)?);
    let datasets = Datasets::new(
        data_dir.to_path_buf(),
        store.clone(),
        config.dataset_settings(),
    );
    for path in datasets.recover()? {
        tracing::warn!(path = %path.display(), "removed a file left by an interrupted import");
    }
    let (client, event_loop, events) = allmende_p2p::new(
        identity.signing_key(),
        &allmende_p2p::Settings {
            listen: config.p2p.listen.clone(),
            mdns: config.p2p.mdns,
            gossip_rate: config.p2p.gossip_rate,
            redial: std::time::Duration::from_millis(config.p2p.sync_interval_ms),
        },
    )?;
    let federation = Federation::open(
        crate::federation::Identity {
            key: identity.signing_key().clone(),
            organisation: config.name.clone(),
            district_key: config.district_key.clone(),
            external: config.p2p.external.clone(),
        },
        store.clone(),
        client,
    )?;
    let policies = Arc::new(Policies::open(
        store.clone(),
        identity.signing_key().clone(),
    )?);
    let datasets = Arc::new(datasets);
    let engine = Engine::new(&EngineConfig {
        threads: config.limits.query_threads,
        max_local_queries: config.limits.max_local_queries,
        spill_dir: Some(
            data_dir
                .join(allmende_data::datasets::TMP_DIR)
                .join(allmende_data::datasets::SPILL_DIR),
        ),
        spill_bytes: config.limits.spill_bytes,
    })?;
    let serving = Arc::new(crate::serving::Serving::new(
        engine.clone(),
        datasets.clone(),
        policies.clone(),
        identity.signing_key().clone(),
        config.limits.sql_memory_bytes,
    ));
    let provider = Arc::new(crate::query::provider::ProviderContext::new(
        serving.clone(),
        std::time::Duration::from_secs(config.limits.sql_timeout_secs),
        4,
    ));
    let federation = Arc::new(federation);
    let transfers = Arc::new(crate::transfer::Transfers::new(
        data_dir,
        store,
        federation.clone(),
        policies.clone(),
        serving,
        config.limits.max_transfer_bytes,
        config.limits.transfer_rate_bytes,
    ));
    let state = AppState {
        config,
        identity,
        engine,
        datasets,
        federation,
        policies,
        provider,
        transfers,
        metrics: Arc::new(crate::metrics::Metrics::new()),
        started,
        auth,
    };
    Ok(Opened {
        state,
        network: Some((event_loop, events)),
    })
}

/// Starts the peer-to-peer network, then serves the API on `listener` until `shutdown`
/// completes; then waits for requests in flight, stops the network and flushes the store.
pub async fn serve(
    mut opened: Opened,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let network = opened.start_network()?;
    let state = opened.state;
    crate::query::serve::serve(state.federation.clone(), state.provider.clone())?;
    state.transfers.serve()?;
    match state.transfers.resume_interrupted() {
        Ok(0) => {}
        Ok(n) => tracing::info!(n, "continuing transfers a restart interrupted"),
        Err(e) => tracing::error!(error = %e, "cannot continue interrupted transfers"),
    }
    let datasets = state.datasets.clone();
    let policies = state.policies.clone();
    let auth = state.auth.clone();
    tokio::spawn(async move { auth.warm_up().await });
    let engine = state.engine.clone();
    let grace = std::time::Duration::from_secs(state.config.http.shutdown_grace_secs);
    let app = api::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Answers are streamed in several writes; without TCP_NODELAY each write after the first
    // waits for the client's delayed ACK, 40 ms on a kept-alive connection.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    // On the signal: stop accepting, cancel every query (their requests end at once with a
    // problem document or a cut-off body), and give the other requests in flight the grace
    // period; past it the node stops regardless.
    let (signalled_tx, signalled) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        engine.pool().cancel_all();
        let _ = signalled_tx.send(());
    };
    let serving = std::future::IntoFuture::into_future(
        axum::serve(listener, app).with_graceful_shutdown(shutdown),
    );
    tokio::pin!(serving);
    tokio::select! {
        served = &mut serving => served?,
        () = async {
            let _ = signalled.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "requests still in flight after the grace period; stopping");
        }
    }
    drop(network);
    if let Err(e) = policies.checkpoint() {
        tracing::error!(error = %e, "final audit checkpoint failed");
    }
    datasets.store().flush()?;
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stop the node with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
    }
}
