//! `--case saturation`: one member's query threads kept busy by hostile local queries (four-way
//! cross joins, each client giving up after a few seconds and sending it again), side by side
//! with the same minutes without them. Measured on that member: `/healthz` latency (goal: p99
//! ≤ 50 ms while saturated), a small federated query it asks, and one another member asks,
//! which it answers as a provider (goal: still answered), and its CPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use allmende_scenarios::{cpu_ticks, ticks_per_sec};
use anyhow::ensure;
use serde_json::{Value, json};

use crate::Args;
use crate::cluster::{Cluster, client};
use crate::counts::QUERIES;
use crate::events::{Events, ms, pct};

/// The member whose threads are saturated.
const TARGET: usize = 0;
/// The member that asks it as a provider.
const OTHER: usize = 1;
/// Hostile clients at once.
const HOSTILE: usize = 4;
/// How long a hostile client waits before it gives up and sends its query again.
const GIVE_UP: Duration = Duration::from_secs(4);
const HEAVY: &str = "SELECT count(*) FROM big x, big y, big z, big w \
    WHERE x.c || y.c || z.c || w.c = 'no'";

/// What one phase measured.
struct Phase {
    healthz: Vec<f64>,
    own: Vec<f64>,
    own_ok: usize,
    remote: Vec<f64>,
    remote_ok: usize,
    asked: usize,
    cpu: f64,
}

fn phase(cluster: &Cluster, secs: u64, hostile: bool) -> anyhow::Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    if hostile {
        for _ in 0..HOSTILE {
            let (stop, sent) = (stop.clone(), sent.clone());
            let url = format!("{}/api/v1/sql", cluster.nodes[TARGET].url);
            let http = client()?;
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    sent.fetch_add(1, Ordering::Relaxed);
                    let _ = http
                        .post(&url)
                        .timeout(GIVE_UP)
                        .json(&json!({ "sql": HEAVY }))
                        .send();
                }
            }));
        }
        // Let them fill the threads first.
        std::thread::sleep(Duration::from_millis(500));
    }
    let pid = cluster.nodes[TARGET].pid();
    let cpu0 = cpu_ticks(pid)?;
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(secs);
    let (mut healthz, mut own, mut remote) = (Vec::new(), Vec::new(), Vec::new());
    let (mut own_ok, mut remote_ok, mut asked) = (0, 0, 0);
    let sql = QUERIES[0].1;
    let mut next_query = Instant::now();
    while Instant::now() < until {
        let started = Instant::now();
        let ok = cluster
            .http
            .get(format!("{}/healthz", cluster.nodes[TARGET].url))
            .send()
            .is_ok_and(|r| r.status().is_success());
        ensure!(ok, "the saturated member did not answer /healthz");
        healthz.push(ms(started.elapsed()));
        if Instant::now() >= next_query {
            next_query = Instant::now() + Duration::from_millis(250);
            asked += 1;
            for (node, lat, oks) in [
                (TARGET, &mut own, &mut own_ok),
                (OTHER, &mut remote, &mut remote_ok),
            ] {
                let started = Instant::now();
                let answer = cluster.query(node, sql, 3000);
                lat.push(ms(started.elapsed()));
                // The saturated member's own answer (asked by it, or by the other member).
                let all_ok = answer.is_ok_and(|v: Value| {
                    v["members"]
                        .as_array()
                        .is_some_and(|m| m.iter().all(|m| m["status"] == "ok"))
                });
                *oks += usize::from(all_ok);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu = (cpu_ticks(pid)? - cpu0) as f64 / ticks_per_sec() / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    if hostile {
        println!(
            "  {} hostile queries sent by {HOSTILE} clients, each given up after {GIVE_UP:?}",
            sent.load(Ordering::Relaxed)
        );
    }
    Ok(Phase {
        healthz,
        own,
        own_ok,
        remote,
        remote_ok,
        asked,
        cpu,
    })
}

fn report(name: &str, p: &mut Phase, events: &Events) -> Value {
    for v in [&mut p.healthz, &mut p.own, &mut p.remote] {
        v.sort_by(f64::total_cmp);
    }
    let summary = json!({
        "phase": name,
        "healthz_p50_ms": pct(&p.healthz, 50.0),
        "healthz_p99_ms": pct(&p.healthz, 99.0),
        "healthz_max_ms": p.healthz.last(),
        "healthz_requests": p.healthz.len(),
        "own_query_p50_ms": pct(&p.own, 50.0),
        "own_query_p99_ms": pct(&p.own, 99.0),
        "own_query_all_ok": format!("{}/{}", p.own_ok, p.asked),
        "remote_query_p50_ms": pct(&p.remote, 50.0),
        "remote_query_p99_ms": pct(&p.remote, 99.0),
        "remote_query_all_ok": format!("{}/{}", p.remote_ok, p.asked),
        "target_cpu_cores": p.cpu,
    });
    println!(
        "{name:>10}: healthz p50 {:.1} ms p99 {:.1} ms (n={}); federated query asked by the \
         member p50 {:.1} ms p99 {:.1} ms, all ok {}/{}; asked by another member p50 {:.1} ms \
         p99 {:.1} ms, all ok {}/{}; the member's CPU {:.2} cores",
        pct(&p.healthz, 50.0),
        pct(&p.healthz, 99.0),
        p.healthz.len(),
        pct(&p.own, 50.0),
        pct(&p.own, 99.0),
        p.own_ok,
        p.asked,
        pct(&p.remote, 50.0),
        pct(&p.remote, 99.0),
        p.remote_ok,
        p.asked,
        p.cpu
    );
    events.now(json!({"ev": "saturation_phase", "summary": summary}));
    summary
}

pub(crate) fn case(a: &Args, events: &Events) -> anyhow::Result<Value> {
    let mut cluster = Cluster::start(a, events)?;
    cluster.form(events)?;
    for i in 0..a.nodes {
        cluster.publish_counts(i, false)?;
    }
    cluster.wait_digests(Duration::from_secs(30))?;
    let rows: String = (0..1000).map(|i| format!("{i},s{i}\n")).collect();
    cluster.upload_local(TARGET, "big", format!("a,c\n{rows}"))?;
    // Both askers see every member before measuring.
    for node in [TARGET, OTHER] {
        let answer = cluster.query(node, QUERIES[0].1, 3000)?;
        ensure!(
            answer["members"].as_array().map_or(0, Vec::len) == a.nodes,
            "not every member answers yet: {answer}"
        );
    }
    let secs = a.idle_secs.clamp(5, 120);
    println!("{secs} s quiet, then {secs} s with the member's query threads saturated");
    let mut quiet = phase(&cluster, secs, false)?;
    let mut busy = phase(&cluster, secs, true)?;
    let quiet = report("quiet", &mut quiet, events);
    let busy = report("saturated", &mut busy, events);
    Ok(json!({ "quiet": quiet, "saturated": busy }))
}
