//! Federation figures with N real `allmende` node processes on loopback (node *i* bound to
//! `127.0.0.(i+2)`), formed into one federation through the HTTP API:
//!
//! - `--case propagation`: K publications and updates on random nodes, one at a time; for each,
//!   the time from the publishing request until every other node's `GET /api/v1/federation`
//!   shows the publisher's new seq (p50/p95/p99; goal p99 ≤ 250 ms);
//! - `--case partition`: inside a private network namespace (`unshare -n`), nftables input-chain
//!   drops split the nodes into two halves; both halves publish; after the heal (table deleted),
//!   the time until all digests are equal (p50/max over repeats; goal ≤ 5 s);
//! - `--case idle`: after formation and a quiet period, RSS (`/proc/PID/status`) and CPU %
//!   (`/proc/PID/stat` deltas) per node, mean and max;
//! - `--case query`: federated SQL latency beside the same SQL on one local DataFusion over the
//!   union, two providers blackholed (answer at the deadline, coverage, statuses), and a query
//!   flood from one member against a trickle from another (`query.rs`);
//! - `--case churn`: kill -9 + restart and SIGSTOP/SIGCONT while nodes publish; convergence
//!   after the faults and the log invariants, checked offline (`churn.rs`, `audit.rs`);
//! - `--case join`: from a small founding federation, members join one at a time (`join.rs`);
//! - `--case scan`: scan-heavy federated queries over millions of rows per member beside DuckDB
//!   over the same Parquet files (`scan.rs`);
//! - `--case smoke`: a quick check (5 nodes by default): form, publish on every node, all digests
//!   equal and every dataset found by search on every node, a federated query equal to the
//!   local union and a stopped member reported as `timeout`; exit status 1 on failure.
//!
//! Figures are printed as lines; every event goes as JSONL (`t_ns` since the run's start, one
//! `Instant` clock) to `--results DIR` (default `$TMPDIR/allmende-federation/<case>-<unix time>`).
//! All node processes are ended on exit, on panic (drop), on SIGINT/SIGTERM (a watcher thread),
//! and if the harness itself dies (`PR_SET_PDEATHSIG`).
//!
//! Run: `cargo build --release -p allmende -p allmende-scenarios` then
//! `target/release/federation --case propagation --nodes 20 [--updates 60]`.

mod audit;
mod churn;
mod cluster;
mod counts;
mod events;
mod forming;
mod idle;
mod join;
mod netns;
mod partition;
mod procs;
mod propagation;
mod publishing;
mod query;
mod saturation;
mod scan;
mod smoke;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::ensure;
use clap::Parser;
use clap::builder::PossibleValuesParser;
use serde_json::json;

use events::Events;
use procs::install_signal_watcher;

// ---------------------------------------------------------------------------------------------
// Arguments

/// Federation figures with N real `allmende` node processes on loopback; the cases are
/// described in scenarios/README.md.
#[derive(Clone, Debug, Parser)]
#[command(name = "federation")]
pub(crate) struct Args {
    /// What to run and measure.
    #[arg(long, value_parser = PossibleValuesParser::new(CASES))]
    pub(crate) case: String,
    /// Node processes, 2 to 250 [default: 5 for smoke, 3 for saturation and scan, 50 for churn
    /// and join, 20 for the others].
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pub(crate) nodes: usize,
    /// propagation: publications and updates, one at a time on random nodes.
    #[arg(long, default_value_t = 60)]
    pub(crate) updates: usize,
    /// partition: how many times the nodes are split and healed.
    #[arg(long, default_value_t = 3)]
    pub(crate) repeats: usize,
    /// partition: seconds the split lasts while both halves publish.
    #[arg(long, default_value_t = 10)]
    pub(crate) partition_secs: u64,
    /// idle: seconds of the quiet period over which RSS and CPU are sampled.
    #[arg(long, default_value_t = 30)]
    pub(crate) idle_secs: u64,
    /// Anti-entropy interval of the nodes in ms (at least 100).
    #[arg(long = "sync-interval-ms", default_value_t = 1000)]
    pub(crate) sync_ms: u64,
    /// Where events.jsonl and summary.json go [default:
    /// $TMPDIR/allmende-federation/<case>-<unix time>].
    #[arg(long)]
    pub(crate) results: Option<PathBuf>,
    /// Where the node data dirs go (e.g. /dev/shm) [default: $TMPDIR].
    #[arg(long)]
    pub(crate) work: Option<PathBuf>,
    /// Seed of the choice of publishing nodes and faults [default: from the clock].
    #[arg(long, default_value_t = seed_from_clock(), hide_default_value = true)]
    pub(crate) seed: u64,
    /// query: small federated queries per kind (three kinds), each with its local twin.
    #[arg(long, default_value_t = 100)]
    pub(crate) queries: usize,
    /// query: the deadline of the blackholed queries, in ms.
    #[arg(long, default_value_t = 1000)]
    pub(crate) deadline_ms: u64,
    /// query: queries while two providers are blackholed.
    #[arg(long, default_value_t = 10)]
    pub(crate) blackhole_queries: usize,
    /// query: seconds of the trickle, alone and then again under the flood.
    #[arg(long, default_value_t = 15)]
    pub(crate) flood_secs: u64,
    /// query: concurrent clients of the flooding member.
    #[arg(long, default_value_t = 8)]
    pub(crate) flood_clients: usize,
    /// churn: seconds of kills, restarts, SIGSTOPs and publications.
    #[arg(long, default_value_t = 60)]
    pub(crate) churn_secs: u64,
    /// scan: rows of hourly traffic each member holds.
    #[arg(long, default_value_t = 10_000_000)]
    pub(crate) rows: u64,
    /// scan: rounds of each query, federated and on DuckDB alternating.
    #[arg(long, default_value_t = 5)]
    pub(crate) scan_rounds: usize,
    /// join: members of the founding federation.
    #[arg(long, default_value_t = 3)]
    pub(crate) initial: usize,
    /// The libp2p transports the nodes listen on: both (QUIC first), quic or tcp.
    #[arg(long, default_value = "both", value_parser = ["both", "quic", "tcp"])]
    pub(crate) p2p: String,
}

const CASES: [&str; 9] = [
    "smoke",
    "propagation",
    "partition",
    "idle",
    "query",
    "churn",
    "join",
    "saturation",
    "scan",
];

fn seed_from_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args::parse();
    if a.nodes == 0 {
        a.nodes = match a.case.as_str() {
            "smoke" => 5,
            "saturation" | "scan" => 3,
            "churn" | "join" => 50,
            _ => 20,
        };
    }
    ensure!((2..=250).contains(&a.nodes), "--nodes must be 2 to 250");
    ensure!(a.sync_ms >= 100, "--sync-interval-ms must be at least 100");
    Ok(a)
}

fn main() -> ExitCode {
    install_signal_watcher();
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("federation: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let a = args()?;
    if ["partition", "query", "churn"].contains(&a.case.as_str())
        && let Some(code) = netns::in_netns_or_reexec()?
    {
        return Ok(code);
    }
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let results = a.results.clone().unwrap_or_else(|| {
        std::env::temp_dir()
            .join("allmende-federation")
            .join(format!("{}-{stamp}", a.case))
    });
    std::fs::create_dir_all(&results)?;
    let events = Events::new(&results.join("events.jsonl"))?;
    events.now(
        json!({"ev": "start", "case": a.case, "nodes": a.nodes, "sync_interval_ms": a.sync_ms,
        "seed": a.seed, "cores": std::thread::available_parallelism().map_or(0, |n| n.get())}),
    );
    println!(
        "case {} with {} nodes (sync interval {} ms, {} cores); events in {}",
        a.case,
        a.nodes,
        a.sync_ms,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        results.display()
    );
    let wall = Instant::now();
    let summary = match a.case.as_str() {
        "propagation" => propagation::case(&a, &events),
        "partition" => partition::case(&a, &events),
        "idle" => idle::case(&a, &events),
        "query" => query::case(&a, &events),
        "churn" => churn::case(&a, &events),
        "join" => join::case(&a, &events),
        "saturation" => saturation::case(&a, &events),
        "scan" => scan::case(&a, &events),
        _ => smoke::case(&a, &events),
    };
    events.flush();
    let mut summary = summary?;
    summary["wall_s"] = json!(wall.elapsed().as_secs_f64());
    std::fs::write(
        results.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    println!("wall time {:.1} s", wall.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}
