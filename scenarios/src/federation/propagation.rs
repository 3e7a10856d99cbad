//! `--case propagation`: K publications and updates on random nodes, one at a time; the time
//! until every other node shows the new seq.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::ensure;
use serde_json::{Value, json};

use crate::Args;
use crate::cluster::{Cluster, POLL};
use crate::events::{Events, Rng, ms, pct};
use crate::procs::STOP;
use crate::publishing::seq_of;

/// Measures, for each of `count` publications on random nodes, the time from the request until
/// every other node shows the new seq. Returns the latencies in ms.
pub(crate) fn propagation_run(
    cluster: &mut Cluster,
    events: &Events,
    rng: &mut Rng,
    count: usize,
) -> anyhow::Result<Vec<f64>> {
    let n = cluster.nodes.len();
    let urls: Arc<Vec<String>> = Arc::new(cluster.nodes.iter().map(|x| x.url.clone()).collect());
    let mut latencies = Vec::new();
    let mut local = Vec::new();
    let mut after_ack = Vec::new();
    for k in 0..count {
        let p = rng.below(n);
        let update = !cluster.published[p].is_empty() && rng.below(2) == 0;
        let slug = if update {
            cluster.published[p][rng.below(cluster.published[p].len())].clone()
        } else {
            cluster.upload(p)?
        };
        let want = cluster.seq[p] + 1;
        let publisher = cluster.nodes[p].peer.clone();
        // One poller per other node, in a tight loop on GET /api/v1/federation.
        let (tx, rx) = mpsc::channel::<(usize, Option<Instant>)>();
        let go = Arc::new(AtomicBool::new(false));
        for j in (0..n).filter(|j| *j != p) {
            let (tx, urls, publisher, go) =
                (tx.clone(), urls.clone(), publisher.clone(), go.clone());
            let http = cluster.http.clone();
            std::thread::spawn(move || {
                while !go.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let deadline = Instant::now() + Duration::from_secs(15);
                let url = format!("{}/api/v1/federation", urls[j]);
                let seen = loop {
                    if let Ok(s) = http.get(&url).send().and_then(|r| r.json::<Value>())
                        && seq_of(&s, &publisher) >= want
                    {
                        break Some(Instant::now());
                    }
                    if Instant::now() > deadline || STOP.load(Ordering::SeqCst) {
                        break None;
                    }
                    std::thread::sleep(POLL);
                };
                let _ = tx.send((j, seen));
            });
        }
        drop(tx);
        let t0 = Instant::now();
        go.store(true, Ordering::Release);
        let seq = cluster.publish(p, &slug, update)?;
        let acked = Instant::now();
        ensure!(seq == want, "seq {seq}, expected {want}");
        events.at(
            t0,
            json!({"ev": "publish_sent", "k": k, "node": p, "seq": seq,
            "op": if update { "update" } else { "create" }, "slug": slug}),
        );
        events.at(
            acked,
            json!({"ev": "published", "k": k, "node": p, "seq": seq}),
        );
        let mut last = acked;
        let mut missing = Vec::new();
        for (j, seen) in rx {
            match seen {
                Some(t) => {
                    events.at(
                        t,
                        json!({"ev": "applied", "k": k, "node": j, "publisher": p, "seq": seq}),
                    );
                    last = last.max(t);
                }
                None => missing.push(j),
            }
        }
        ensure!(
            missing.is_empty(),
            "update {k} (node {p} seq {seq}) not seen on nodes {missing:?} within 15 s"
        );
        let total = last - t0;
        events.at(
            last,
            json!({"ev": "visible_everywhere", "k": k, "node": p, "seq": seq, "ms": ms(total)}),
        );
        latencies.push(ms(total));
        local.push(ms(acked - t0));
        after_ack.push(ms(last - acked));
        std::thread::sleep(Duration::from_millis(20));
    }
    for (what, v) in [
        (
            "publishing request itself (local apply + announce)",
            &mut local,
        ),
        ("from the request's answer to the last node", &mut after_ack),
    ] {
        v.sort_by(f64::total_cmp);
        println!(
            "  {what}: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
            pct(v, 50.0),
            pct(v, 95.0),
            pct(v, 99.0)
        );
    }
    events.now(json!({"ev": "parts", "local_p50_ms": pct(&local, 50.0),
        "local_p99_ms": pct(&local, 99.0), "after_ack_p50_ms": pct(&after_ack, 50.0),
        "after_ack_p99_ms": pct(&after_ack, 99.0)}));
    Ok(latencies)
}

pub(crate) fn report_latencies(name: &str, mut v: Vec<f64>, events: &Events) -> Value {
    v.sort_by(f64::total_cmp);
    let (p50, p95, p99, max) = (
        pct(&v, 50.0),
        pct(&v, 95.0),
        pct(&v, 99.0),
        v.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "{name}: {} updates, visible on all nodes after p50 {p50:.1} ms, p95 {p95:.1} ms, \
         p99 {p99:.1} ms, max {max:.1} ms (goal p99 <= 250 ms: {})",
        v.len(),
        if p99 <= 250.0 { "met" } else { "MISSED" }
    );
    let summary = json!({"ev": "summary", "case": name, "updates": v.len(), "p50_ms": p50,
        "p95_ms": p95, "p99_ms": p99, "max_ms": max});
    events.now(summary.clone());
    summary
}

pub(crate) fn case(a: &Args, events: &Events) -> anyhow::Result<Value> {
    let mut cluster = Cluster::start(a, events)?;
    cluster.form(events)?;
    let mut rng = Rng(a.seed | 1);
    // Warm-up (not measured): one dataset per node, so updates have something to change.
    let all: Vec<usize> = (0..a.nodes).collect();
    cluster.publish_on(&all)?;
    cluster.wait_digests(Duration::from_secs(30))?;
    let latencies = propagation_run(&mut cluster, events, &mut rng, a.updates)?;
    let summary = report_latencies("propagation", latencies, events);
    cluster.wait_digests(Duration::from_secs(30))?;
    Ok(summary)
}
