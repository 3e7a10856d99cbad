//! `allmende run`: serve the node until SIGTERM or SIGINT.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use allmende_node::config::{Config, LogFormat, Overrides};
use allmende_node::identity::Identity;
use allmende_node::server;
use allmende_node::telemetry::{self, Telemetry};

/// Arguments of `allmende run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Settings that replace the configuration file's for this run.
    #[command(flatten)]
    pub settings: Overrides,
}

/// Installs the log on stderr (filtered by `log.level`) and, when given, the OpenTelemetry
/// layer (filtered by its own `telemetry.filter`).
fn init_tracing(
    config: &Config,
    otel: Option<impl Layer<Registry> + Send + Sync + 'static>,
) -> anyhow::Result<()> {
    // libp2p's Kademlia warns about bootstrapping before any peer is known, which is the
    // normal state of a node outside a federation; keep that out of the log unless asked for.
    let mut level = config.log.level.clone();
    if !level.contains("libp2p_kad") {
        level.push_str(",libp2p_kad=error");
    }
    let filter = EnvFilter::try_new(&level)
        .with_context(|| format!("invalid log filter `{}`", config.log.level))?;
    let pretty = (config.log.format == LogFormat::Pretty)
        .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    let json = (config.log.format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
    });
    let log = Layer::and_then(pretty, json).with_filter(filter);
    tracing_subscriber::registry()
        .with(otel)
        .with(log)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

pub(super) fn run(data_dir: &Path, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = server::load_config(data_dir, &args.settings)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (telemetry, otel) = match telemetry::endpoint(&config.telemetry, |v| std::env::var(v).ok())
    {
        Some(endpoint) => {
            let origin = telemetry::Origin {
                peer_id: Identity::load(data_dir)?.peer_id(),
                name: &config.name,
                district_key: &config.district_key,
            };
            let (telemetry, layer) = Telemetry::start(
                &config.telemetry,
                endpoint,
                &origin,
                runtime.handle().clone(),
            )?;
            (Some(telemetry), Some(layer))
        }
        None => (None, None),
    };
    init_tracing(&config, otel)?;
    if let Some(t) = &telemetry {
        tracing::info!(endpoint = t.endpoint(), "exporting spans over OTLP/HTTP");
    }
    let result = runtime.block_on(serve(data_dir, config));
    // The runtime still runs the exporter's last requests; this thread is none of its workers.
    if let Some(t) = telemetry {
        t.shutdown();
    }
    // Blocking work still running (an import's conversion) is not waited for: its files are
    // removed as leftovers at the next start.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn serve(data_dir: &Path, mut config: Config) -> anyhow::Result<ExitCode> {
    let listen = config.http.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    // The address actually bound (port 0 picks one), so that the URLs the node writes without
    // `http.public_url` (dataset distributions, the DSP endpoint) name the right port.
    config.http.listen = addr;
    let opened = server::open(data_dir, config)?;
    let state = &opened.state;
    tracing::info!(%addr, peer_id = %state.identity.peer_id(), name = %state.config.name,
        "node started in {:?}", state.started.elapsed());
    // One machine-readable line on stdout, for scripts and tests.
    println!("allmende listening on http://{addr}");
    std::io::stdout().flush()?;
    server::serve(opened, listener, server::shutdown_signal()).await?;
    tracing::info!("node stopped; store flushed");
    Ok(ExitCode::SUCCESS)
}
