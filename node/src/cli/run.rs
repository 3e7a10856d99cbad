//! `allmende run`: serve the node until SIGTERM or SIGINT.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat, Overrides};
use crate::server;

/// Arguments of `allmende run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Settings that replace the configuration file's for this run.
    #[command(flatten)]
    pub settings: Overrides,
}

fn init_tracing(config: &Config) -> anyhow::Result<()> {
    // libp2p's Kademlia warns about bootstrapping before any peer is known, which is the
    // normal state of a node outside a federation; keep that out of the log unless asked for.
    let mut level = config.log.level.clone();
    if !level.contains("libp2p_kad") {
        level.push_str(",libp2p_kad=error");
    }
    let filter = EnvFilter::try_new(&level)
        .with_context(|| format!("invalid log filter `{}`", config.log.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.log.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

pub(super) fn run(data_dir: &Path, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = server::load_config(data_dir, &args.settings)?;
    init_tracing(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listen = config.http.listen;
        let state = server::open(data_dir, config)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, peer_id = %state.identity.peer_id(), name = %state.config.name,
            "node started in {:?}", state.started.elapsed());
        // One machine-readable line on stdout, for scripts and tests.
        println!("allmende listening on http://{addr}");
        std::io::stdout().flush()?;
        server::serve(state, listener, server::shutdown_signal()).await?;
        tracing::info!("node stopped; store flushed");
        Ok(ExitCode::SUCCESS)
    })
}
