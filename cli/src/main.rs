//! The `allmende` binary: one file per subcommand. `init` and `run` work on the data dir (the
//! node is `allmende_node`); the other commands are clients of a running node's API
//! (`allmende_client`).

mod dataset;
mod federation;
mod fetch;
mod init;
mod policy;
mod query;
mod run;
mod sample;
mod sql;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use allmende_client::Client;
use allmende_node::config::Config;

/// Allmende: a federated data-space node for municipalities.
#[derive(Debug, Parser)]
#[command(name = "allmende", version, about, propagate_version = true)]
struct Cli {
    /// The node's data directory.
    #[arg(
        long,
        global = true,
        env = "ALLMENDE_DATA_DIR",
        default_value = "allmende-data"
    )]
    pub data_dir: PathBuf,
    /// Base URL of the node's API, for client commands; defaults to the data dir's configured
    /// listen address, else http://127.0.0.1:7070.
    #[arg(long, global = true, env = "ALLMENDE_API")]
    pub api: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node: key pair, configuration and an empty store.
    Init(init::InitArgs),
    /// Run the node: serve the API until SIGTERM or SIGINT.
    Run(run::RunArgs),
    /// Import, inspect, update and delete datasets.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// Run SQL over the node's datasets.
    Sql(sql::SqlArgs),
    /// Form and change a federation, and see its status.
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// Search the federation's replicated catalog.
    #[command(subcommand)]
    Catalog(federation::CatalogCommand),
    /// Federated SQL across the members (`<member>.<dataset>`, `federation.<kind>`).
    Query(query::QueryArgs),
    /// Download a member's dataset (the view its agreement permits), verified and resumable.
    Fetch(fetch::FetchArgs),
    /// Signed receipts of federated answers.
    #[command(subcommand)]
    Receipt(query::ReceiptCommand),
    /// Usage policies: attach, show, check and evaluate.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Agreements with other members: negotiate, list, revoke.
    #[command(subcommand)]
    Agreement(policy::AgreementCommand),
    /// The tamper-evident audit log of decisions taken for remote requests.
    #[command(subcommand)]
    Audit(policy::AuditCommand),
    /// Write sample data: district master data or generated hourly series.
    #[command(subcommand)]
    Sample(sample::SampleCommand),
}

impl Cli {
    /// The client for the API this invocation talks to.
    fn client(&self) -> Client {
        let base = self
            .api
            .clone()
            .unwrap_or_else(|| match Config::load(&self.data_dir) {
                Ok(config) => config.public_url(),
                Err(_) => "http://127.0.0.1:7070".to_owned(),
            });
        Client::new(&base).with_token(allmende_node::auth::token::for_cli(&self.data_dir))
    }
}

/// Runs the command line; errors are reported by `main`.
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if !matches!(cli.command, Command::Run(_)) {
        // A client command whose output is piped into `head` or `grep -q` should end quietly
        // when the reader goes away, as command-line tools do; the server keeps Rust's default
        // (SIGPIPE ignored, write errors handled).
        // SAFETY: setting a signal disposition to its default has no memory-safety preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match &cli.command {
        Command::Init(args) => init::run(&cli.data_dir, args),
        Command::Run(args) => run::run(&cli.data_dir, args),
        Command::Sample(cmd) => sample::run(cmd),
        Command::Dataset(cmd) => block_on(dataset::run(cli.client(), cmd)),
        Command::Sql(args) => block_on(sql::run(cli.client(), args)),
        Command::Policy(
            cmd @ (policy::PolicyCommand::Check { .. } | policy::PolicyCommand::Evaluate { .. }),
        ) => policy::run_local(cmd),
        Command::Policy(cmd) => block_on(policy::run(cli.client(), cmd)),
        Command::Query(args) => block_on(query::run(cli.client(), args)),
        Command::Receipt(cmd) => query::receipt(cmd),
        Command::Fetch(args) => block_on(fetch::run(cli.client(), args)),
        Command::Agreement(cmd) => block_on(policy::agreement(cli.client(), cmd)),
        Command::Audit(cmd) => block_on(policy::audit(cli.client(), &cli.data_dir, cmd)),
        Command::Federation(cmd) => block_on(federation::run(cli.client(), cmd)),
        Command::Catalog(cmd) => block_on(federation::search(cli.client(), cmd)),
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    f: F,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("allmende: {err:#}");
            ExitCode::FAILURE
        }
    }
}
