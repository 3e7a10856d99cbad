//! `--case idle`: RSS and CPU per node over a quiet period.

use std::time::{Duration, Instant};

use allmende_scenarios::{cpu_ticks, rss_kb, ticks_per_sec};
use serde_json::{Value, json};

use crate::Args;
use crate::cluster::{Cluster, Node};
use crate::events::Events;

pub(crate) fn case(a: &Args, events: &Events) -> anyhow::Result<Value> {
    let mut cluster = Cluster::start(a, events)?;
    cluster.form(events)?;
    let all: Vec<usize> = (0..a.nodes).collect();
    cluster.publish_on(&all)?;
    cluster.wait_digests(Duration::from_secs(30))?;
    let tick = ticks_per_sec();
    let pids: Vec<u32> = cluster.nodes.iter().map(Node::pid).collect();
    println!("quiet for {} s ...", a.idle_secs);
    let before: Vec<u64> = pids
        .iter()
        .map(|p| cpu_ticks(*p))
        .collect::<anyhow::Result<_>>()?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(a.idle_secs));
    let after: Vec<u64> = pids
        .iter()
        .map(|p| cpu_ticks(*p))
        .collect::<anyhow::Result<_>>()?;
    let secs = t0.elapsed().as_secs_f64();
    let mut rss = Vec::new();
    let mut cpu = Vec::new();
    for (i, pid) in pids.iter().enumerate() {
        let r = rss_kb(*pid)? as f64 / 1024.0;
        let c = (after[i] - before[i]) as f64 / tick / secs * 100.0;
        events.now(json!({"ev": "idle_sample", "node": i, "pid": pid, "rss_mib": r, "cpu_pct": c}));
        rss.push(r);
        cpu.push(c);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let max = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
    println!(
        "idle with {} nodes over {secs:.0} s: RSS per node mean {:.1} MiB, max {:.1} MiB; \
         CPU per node mean {:.2} %, max {:.2} % (of one core); all nodes {:.1} MiB, {:.2} %",
        a.nodes,
        mean(&rss),
        max(&rss),
        mean(&cpu),
        max(&cpu),
        rss.iter().sum::<f64>(),
        cpu.iter().sum::<f64>()
    );
    // Still one federation after the quiet period.
    cluster.wait_connected(Duration::from_secs(5))?;
    let summary = json!({"ev": "summary", "case": "idle", "nodes": a.nodes, "secs": secs,
        "rss_mib_mean": mean(&rss), "rss_mib_max": max(&rss),
        "cpu_pct_mean": mean(&cpu), "cpu_pct_max": max(&cpu)});
    events.now(summary.clone());
    Ok(summary)
}
