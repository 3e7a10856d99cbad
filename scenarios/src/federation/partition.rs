//! `--case partition`: nftables input-chain drops split the nodes into two halves; both halves
//! publish; after the heal, the time until all digests are equal.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use crate::Args;
use crate::cluster::Cluster;
use crate::events::{Events, ms, pct};
use crate::netns::{nft, tcp_port};
use crate::publishing::seq_of;

pub(crate) fn case(a: &Args, events: &Events) -> anyhow::Result<Value> {
    let mut cluster = Cluster::start(a, events)?;
    cluster.form(events)?;
    let n = a.nodes;
    let half = n / 2;
    let side_a: Vec<usize> = (0..half).collect();
    let side_b: Vec<usize> = (half..n).collect();
    let set = |s: &[usize]| {
        s.iter()
            .map(|&i| cluster.nodes[i].ip.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (ips_a, ips_b) = (set(&side_a), set(&side_b));
    // Outbound TCP connections leave from 0.0.0.0 with the dialer's listen port (libp2p's port
    // reuse), so on loopback their source is 127.0.0.1, not the node's address; they are told
    // apart by that source port. QUIC dials leave from the node's own address.
    let mut tcp_ports = Vec::new();
    for i in 0..n {
        let card = cluster.get(i, "/api/v1/federation/card")?;
        let port = tcp_port(&card).with_context(|| format!("node {i}"))?;
        tcp_ports.push(port);
    }
    let ports = |s: &[usize]| {
        s.iter()
            .map(|&i| tcp_ports[i].to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (ports_a, ports_b) = (ports(&side_a), ports(&side_b));
    ensure!(
        side_a
            .iter()
            .all(|&i| !side_b.iter().any(|&j| tcp_ports[i] == tcp_ports[j])),
        "two nodes on opposite sides listen on the same TCP port; run again"
    );
    for ip in cluster.nodes.iter().map(|x| &x.ip) {
        ensure!(ip.starts_with("127."), "refusing a rule for {ip}");
    }
    // The remote addresses a node sees: the rules match on source addresses, so connections
    // must come from the members' own addresses.
    let s0 = cluster.status(0)?;
    events.now(json!({"ev": "connections", "node": 0, "connected": s0["connected"]}));
    let mut remote: Vec<String> = s0["connected"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    remote.sort();
    println!("node 0's connections come from: {}", remote.join(" "));
    let all: Vec<usize> = (0..n).collect();
    cluster.publish_on(&all)?;
    cluster.wait_digests(Duration::from_secs(30))?;
    let mut heal_times = Vec::new();
    for r in 0..a.repeats {
        nft(&format!(
            "add table inet part\n\
             add chain inet part input {{ type filter hook input priority 0; policy accept; }}\n\
             add rule inet part input ip saddr {{ {ips_a} }} ip daddr {{ {ips_b} }} drop\n\
             add rule inet part input ip saddr {{ {ips_b} }} ip daddr {{ {ips_a} }} drop\n\
             add rule inet part input ip saddr 127.0.0.1 tcp sport {{ {ports_a} }} ip daddr {{ {ips_b} }} drop\n\
             add rule inet part input ip saddr 127.0.0.1 tcp sport {{ {ports_b} }} ip daddr {{ {ips_a} }} drop\n\
             add rule inet part input ip saddr {{ {ips_b} }} ip daddr 127.0.0.1 tcp dport {{ {ports_a} }} drop\n\
             add rule inet part input ip saddr {{ {ips_a} }} ip daddr 127.0.0.1 tcp dport {{ {ports_b} }} drop\n"
        ))?;
        events.now(json!({"ev": "partitioned", "repeat": r, "a": side_a, "b": side_b}));
        let t_split = Instant::now();
        // Both sides publish while split: new datasets and updates, spread over the partition.
        let rounds = 3;
        for k in 0..rounds {
            let pa = side_a[(r + k) % side_a.len()];
            let pb = side_b[(r + k) % side_b.len()];
            cluster.publish_on(&[pa, pb])?;
            let sa = cluster.published[pa][0].clone();
            cluster.publish(pa, &sa, true)?;
            events.now(json!({"ev": "published_during_partition", "repeat": r, "nodes": [pa, pb]}));
            std::thread::sleep(Duration::from_secs(a.partition_secs) / rounds as u32);
        }
        // The partition holds: a node of B does not have A's newest entry.
        let pa = side_a[(r + rounds - 1) % side_a.len()];
        let b_sees = seq_of(&cluster.status(side_b[0])?, &cluster.nodes[pa].peer);
        let a_sees = seq_of(&cluster.status(side_a[0])?, &cluster.nodes[pa].peer);
        ensure!(
            b_sees < cluster.seq[pa] && a_sees == cluster.seq[pa],
            "partition not effective: side B sees seq {b_sees} of node {pa}, side A {a_sees}, \
             published {}",
            cluster.seq[pa]
        );
        let split_for = t_split.elapsed();
        nft("delete table inet part\n")?;
        let healed = Instant::now();
        events.at(
            healed,
            json!({"ev": "healed", "repeat": r, "split_ms": ms(split_for)}),
        );
        let took = cluster.wait_digests(Duration::from_secs(120))?;
        events.now(json!({"ev": "converged", "repeat": r, "ms": ms(took)}));
        println!(
            "  repeat {}: split {:.1} s, all {n} digests equal {:.0} ms after the heal",
            r + 1,
            split_for.as_secs_f64(),
            ms(took)
        );
        heal_times.push(ms(took));
        std::thread::sleep(Duration::from_secs(2));
    }
    heal_times.sort_by(f64::total_cmp);
    let (p50, max) = (pct(&heal_times, 50.0), heal_times[heal_times.len() - 1]);
    println!(
        "partition {}|{}: convergence after heal over {} repeats: p50 {p50:.0} ms, max {max:.0} ms \
         (goal <= 5 s: {})",
        side_a.len(),
        side_b.len(),
        heal_times.len(),
        if max <= 5000.0 { "met" } else { "MISSED" }
    );
    let summary = json!({"ev": "summary", "case": "partition", "repeats": heal_times.len(),
        "partition_secs": a.partition_secs, "p50_ms": p50, "max_ms": max, "all_ms": heal_times});
    events.now(summary.clone());
    Ok(summary)
}
