//! `--case churn`: N members; for a period, random `kill -9` + restart (same data dir, same
//! addresses) of a few nodes at a time and SIGSTOP/SIGCONT of others, while the live nodes
//! publish and update; then every fault is lifted and the harness measures the time until all
//! digests are equal and the mesh is whole again, and checks the invariants: equal digests;
//! every node holds every publisher's seq the harness published, no equivocation evidence, no
//! flagged publisher; and, offline from each stopped node's store, every entry signed by its
//! publisher, a member, with no seq gap (see `audit.rs`).
//!
//! Runs inside the private network namespace, with fixed ports per node.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::ensure;
use serde_json::{Value, json};

use crate::Args;
use crate::audit::audit_log;
use crate::cluster::Cluster;
use crate::events::{Events, Rng, ms};

enum Fault {
    Killed,
    Stopped,
}

/// The nodes that are neither killed nor stopped.
fn healthy(cluster: &Cluster) -> Vec<usize> {
    (0..cluster.nodes.len())
        .filter(|&i| !cluster.down[i])
        .collect()
}

pub(crate) fn case(a: &Args, events: &Events) -> anyhow::Result<Value> {
    let n = a.nodes;
    ensure!(n >= 5, "--case churn needs at least 5 nodes");
    let mut cluster = Cluster::start_some(a, events, n, true)?;
    let formed = cluster.form(events)?;
    let all: Vec<usize> = (0..n).collect();
    cluster.publish_on(&all)?;
    cluster.wait_digests(Duration::from_secs(120))?;
    let mut rng = Rng(a.seed | 1);
    let max_each = (n / 10).max(1);
    let mut faults: Vec<(usize, Fault, Instant)> = Vec::new();
    let (mut kills, mut stops, mut creates, mut updates) = (0, 0, 0, 0);
    let mut restart_ms = Vec::new();
    println!(
        "churn for {} s: up to {max_each} nodes killed (kill -9, restarted after 1-4 s) and up \
         to {max_each} stopped (SIGSTOP, SIGCONT after 1-5 s) at a time; the live nodes publish \
         and update",
        a.churn_secs
    );
    let end = Instant::now() + Duration::from_secs(a.churn_secs);
    while Instant::now() < end {
        ensure!(
            !crate::procs::STOP.load(std::sync::atomic::Ordering::SeqCst),
            "interrupted"
        );
        let now = Instant::now();
        let (due, rest): (Vec<_>, Vec<_>) = faults.into_iter().partition(|f| f.2 <= now);
        faults = rest;
        for (i, fault, _) in due {
            match fault {
                Fault::Killed => {
                    let t = Instant::now();
                    cluster.launch(i, events)?;
                    restart_ms.push(ms(t.elapsed()));
                }
                Fault::Stopped => cluster.pause(i, false, events),
            }
        }
        let killed = faults
            .iter()
            .filter(|f| matches!(f.1, Fault::Killed))
            .count();
        let stopped = faults.len() - killed;
        let ok = healthy(&cluster);
        if killed < max_each && rng.below(2) == 0 {
            let i = ok[rng.below(ok.len())];
            cluster.kill9(i, events)?;
            kills += 1;
            let back = Duration::from_millis(1000 + rng.below(3000) as u64);
            faults.push((i, Fault::Killed, Instant::now() + back));
        }
        let ok = healthy(&cluster);
        if stopped < max_each && rng.below(2) == 0 {
            let i = ok[rng.below(ok.len())];
            cluster.pause(i, true, events);
            stops += 1;
            let back = Duration::from_millis(1000 + rng.below(4000) as u64);
            faults.push((i, Fault::Stopped, Instant::now() + back));
        }
        let ok = healthy(&cluster);
        let p = ok[rng.below(ok.len())];
        if !cluster.published[p].is_empty() && rng.below(2) == 0 {
            let slug = cluster.published[p][rng.below(cluster.published[p].len())].clone();
            cluster.publish(p, &slug, true)?;
            updates += 1;
        } else {
            cluster.publish_on(&[p])?;
            creates += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for (i, fault, _) in faults {
        match fault {
            Fault::Killed => cluster.launch(i, events)?,
            Fault::Stopped => cluster.pause(i, false, events),
        }
    }
    let lifted = Instant::now();
    events.at(lifted, json!({"ev": "faults_lifted"}));
    restart_ms.sort_by(f64::total_cmp);
    println!(
        "faults: {kills} kill -9 + restart (restart until the API answers: p50 {:.0} ms), \
         {stops} SIGSTOP/SIGCONT; {creates} publications and {updates} updates during churn",
        crate::events::pct(&restart_ms, 50.0)
    );
    let converged = cluster.wait_digests(Duration::from_secs(600))?;
    let conv_ms = ms(lifted.elapsed());
    events.now(json!({"ev": "converged", "ms": conv_ms}));
    let mesh = cluster
        .wait_connected(Duration::from_secs(300))
        .map(|()| ms(lifted.elapsed()));
    events.now(json!({"ev": "mesh", "ms": mesh.as_ref().ok()}));
    println!(
        "after the last fault was lifted: all {n} digests equal after {conv_ms:.0} ms \
         (polling {:.0} ms); full mesh again after {}",
        ms(converged),
        match &mesh {
            Ok(t) => format!("{t:.0} ms"),
            Err(e) => format!("-: {e:#}"),
        }
    );
    // Invariants the API shows.
    let mut expected_entries = 0;
    for i in 0..n {
        let s = cluster.status(i)?;
        for j in 0..n {
            let seq = crate::publishing::seq_of(&s, &cluster.nodes[j].peer);
            ensure!(
                seq == cluster.seq[j],
                "node {i} holds seq {seq} of node {j}, which published {}",
                cluster.seq[j]
            );
        }
        ensure!(
            s["evidence"].as_u64() == Some(0),
            "node {i} keeps evidence of equivocation: {}",
            s["evidence"]
        );
        let flagged = s["publishers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| !p["flagged"].is_null())
            .count();
        ensure!(flagged == 0, "node {i} flags {flagged} publishers");
    }
    for j in 0..n {
        expected_entries += cluster.seq[j] as usize;
    }
    let members: BTreeSet<String> = cluster.nodes.iter().map(|x| x.peer.clone()).collect();
    // Offline: each node's log from its store, after a clean stop.
    cluster.stop_all();
    let mut entries = 0;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let audit =
            audit_log(&node.dir, &members).map_err(|e| anyhow::anyhow!("node {i}'s log: {e:#}"))?;
        ensure!(
            audit.entries == expected_entries && audit.publishers == n && audit.evidence == 0,
            "node {i} holds {} entries of {} publishers ({} evidence), expected {expected_entries} of {n}",
            audit.entries,
            audit.publishers,
            audit.evidence
        );
        entries += audit.entries;
    }
    println!(
        "invariants hold: digests equal; every node holds seq 1..head of every publisher as \
         published ({expected_entries} entries each, {entries} checked offline: signatures, \
         signer = publisher = member, no seq gap, prev hashes chain); no evidence, no flags"
    );
    let summary = json!({"ev": "summary", "case": "churn", "nodes": n,
        "formed_ms": ms(formed), "churn_secs": a.churn_secs, "kills": kills, "stops": stops,
        "creates": creates, "updates": updates, "converged_ms": conv_ms,
        "mesh_ms": mesh.ok(), "entries_per_node": expected_entries});
    events.now(summary.clone());
    Ok(summary)
}
