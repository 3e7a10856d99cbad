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
mod idle;
mod join;
mod netns;
mod partition;
mod propagation;
mod query;
mod saturation;
mod smoke;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use serde_json::json;

use cluster::{Events, install_signal_watcher};

// ---------------------------------------------------------------------------------------------
// Arguments

#[derive(Clone, Debug)]
pub(crate) struct Args {
    pub(crate) case: String,
    pub(crate) nodes: usize,
    pub(crate) updates: usize,
    pub(crate) repeats: usize,
    pub(crate) partition_secs: u64,
    pub(crate) idle_secs: u64,
    pub(crate) sync_ms: u64,
    pub(crate) results: Option<PathBuf>,
    pub(crate) work: Option<PathBuf>,
    pub(crate) seed: u64,
    pub(crate) queries: usize,
    pub(crate) deadline_ms: u64,
    pub(crate) blackhole_queries: usize,
    pub(crate) flood_secs: u64,
    pub(crate) flood_clients: usize,
    pub(crate) churn_secs: u64,
    pub(crate) initial: usize,
    /// The libp2p transports the nodes listen on: `both` (QUIC first), `quic` or `tcp`.
    pub(crate) p2p: String,
}

const CASES: [&str; 8] = [
    "smoke",
    "propagation",
    "partition",
    "idle",
    "query",
    "churn",
    "join",
    "saturation",
];

const USAGE: &str = "usage: federation --case smoke|propagation|partition|idle|query|churn|join|saturation \
[--nodes N] [--updates K] [--repeats R] [--partition-secs S] [--idle-secs S] \
[--queries Q] [--deadline-ms MS] [--blackhole-queries B] [--flood-secs S] [--flood-clients C] \
[--churn-secs S] [--initial K] [--sync-interval-ms MS] [--results DIR] [--work DIR] [--seed N] \
[--p2p both|quic|tcp]";

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        case: String::new(),
        nodes: 0,
        updates: 60,
        repeats: 3,
        partition_secs: 10,
        idle_secs: 30,
        sync_ms: 1000,
        results: None,
        work: None,
        seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        queries: 100,
        deadline_ms: 1000,
        blackhole_queries: 10,
        flood_secs: 15,
        flood_clients: 8,
        churn_secs: 60,
        initial: 3,
        p2p: "both".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--case" => a.case = value,
            "--nodes" => a.nodes = value.parse()?,
            "--updates" => a.updates = value.parse()?,
            "--repeats" => a.repeats = value.parse()?,
            "--partition-secs" => a.partition_secs = value.parse()?,
            "--idle-secs" => a.idle_secs = value.parse()?,
            "--sync-interval-ms" => a.sync_ms = value.parse()?,
            "--results" => a.results = Some(value.into()),
            "--work" => a.work = Some(value.into()),
            "--seed" => a.seed = value.parse()?,
            "--queries" => a.queries = value.parse()?,
            "--deadline-ms" => a.deadline_ms = value.parse()?,
            "--blackhole-queries" => a.blackhole_queries = value.parse()?,
            "--flood-secs" => a.flood_secs = value.parse()?,
            "--flood-clients" => a.flood_clients = value.parse()?,
            "--churn-secs" => a.churn_secs = value.parse()?,
            "--initial" => a.initial = value.parse()?,
            "--p2p" if ["both", "quic", "tcp"].contains(&value.as_str()) => a.p2p = value,
            "--p2p" => bail!("--p2p takes both, quic or tcp, not {value}"),
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    if a.nodes == 0 {
        a.nodes = match a.case.as_str() {
            "smoke" => 5,
            "saturation" => 3,
            "churn" | "join" => 50,
            _ => 20,
        };
    }
    ensure!(CASES.contains(&a.case.as_str()), "{USAGE}");
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
