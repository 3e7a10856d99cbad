//! `--case query`: federated SQL over N members (goal with 20: p50 ≤ 20 ms, p99 ≤ 100 ms,
//! and at most 1.2 × + 2 ms of the same SQL on one local DataFusion over the union), then two
//! providers blackholed (goal: the answer at the deadline ± 100 ms with coverage N−2/N), then
//! a query flood from one member against a trickle from another (fairness, measured).
//!
//! Runs inside the private network namespace (the blackhole is an nftables input-chain drop).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allmende_scenarios::{cpu_ticks, ticks_per_sec};
use anyhow::{Context, ensure};
use serde_json::{Value, json};

use crate::Args;
use crate::cluster::{Cluster, check};
use crate::counts::{self, BIKES_QUERY, QUERIES, local_sql, rows_equal, statuses};
use crate::events::{Events, ms, pct};
use crate::netns::{nft, tcp_port};
use crate::procs::STOP;

/// The asking node.
const ASKER: usize = 0;
/// The member whose policy leaves `bikes` out.
const RESTRICTED: usize = 1;
/// The flooding member and the member with the steady trickle.
const FLOODER: usize = 2;
const TRICKLE: usize = 3;
/// Fewer federated queries a second than the providers' per-peer limit (20/s, burst 100), so
/// the latency run measures queries, not the rate limit.
const PACE: Duration = Duration::from_millis(100);

/// p50, p95, p99, max of `v` (sorted here).
fn dist(v: &mut [f64]) -> (f64, f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (
        pct(v, 50.0),
        pct(v, 95.0),
        pct(v, 99.0),
        v.last().copied().unwrap_or(f64::NAN),
    )
}

fn timed(f: impl FnOnce() -> anyhow::Result<Value>) -> anyhow::Result<(Value, f64)> {
    let t = Instant::now();
    let v = f()?;
    Ok((v, ms(t.elapsed())))
}

pub(crate) fn case(a: &Args, events: &Events) -> anyhow::Result<Value> {
    let n = a.nodes;
    ensure!(n >= 6, "--case query needs at least 6 nodes");
    let mut cluster = Cluster::start(a, events)?;
    cluster.form(events)?;
    for i in 0..n {
        cluster.publish_counts(i, i == RESTRICTED)?;
    }
    cluster.wait_digests(Duration::from_secs(60))?;
    let all: Vec<usize> = (0..n).collect();
    let names = cluster.member_names(ASKER, &all)?;
    counts::upload_union(&cluster, ASKER, &names)?;
    println!(
        "{n} members publish `counts` ({} rows each, schema {}); member {} ({}) leaves `bikes` \
         out; the union is the local dataset `{}` on node {ASKER}",
        24,
        counts::KIND,
        RESTRICTED,
        names[&RESTRICTED],
        counts::UNION
    );

    let mut summary = json!({"ev": "summary", "case": "query", "nodes": n});
    // Invariant violations; the phases go on so that every figure is printed.
    let mut failures = Vec::new();
    latency_phase(&cluster, a, events, &names, &mut summary, &mut failures)?;
    blackhole_phase(&cluster, a, events, &names, &mut summary, &mut failures)?;
    if a.flood_secs > 0 {
        flood_phase(&cluster, a, events, &mut summary)?;
    }
    summary["failures"] = json!(failures);
    events.now(summary.clone());
    ensure!(
        failures.is_empty(),
        "invariants violated: {}",
        failures.join("; ")
    );
    Ok(summary)
}

/// Many small federated queries from one node, each followed by its local twin over the union
/// (node's own `POST /api/v1/sql`, the same HTTP path and DataFusion), both timed at the client.
fn latency_phase(
    cluster: &Cluster,
    a: &Args,
    events: &Events,
    names: &BTreeMap<usize, String>,
    summary: &mut Value,
    failures: &mut Vec<String>,
) -> anyhow::Result<()> {
    let n = cluster.nodes.len();
    // Policy: the restricted member is denied and nothing of it is returned.
    let answer = cluster.query(ASKER, BIKES_QUERY, 3000)?;
    let st = statuses(&answer);
    let restricted = &names[&RESTRICTED];
    ensure!(
        st.get(restricted).map(|s| s.1.as_str()) == Some("denied"),
        "{restricted} should be denied `bikes`: {answer}"
    );
    ensure!(
        st.iter().filter(|(_, s)| s.1 == "ok").count() == n - 1,
        "all but {restricted} should answer: {answer}"
    );
    let want = cluster.sql(
        ASKER,
        &local_sql(BIKES_QUERY, std::slice::from_ref(restricted)),
    )?;
    rows_equal(&answer["rows"], &want).map_err(|e| anyhow::anyhow!("bikes query: {e}"))?;
    println!("policy: {restricted} denied `bikes`, no row of it returned, the rest exact");

    let mut fed_all = Vec::new();
    let mut local_all = Vec::new();
    let mut not_ok = 0usize;
    let mut slowest_member = Vec::new();
    let mut per_query = Vec::new();
    // Warm-up, not measured.
    for (_, sql) in QUERIES {
        cluster.query(ASKER, sql, 3000)?;
        cluster.sql(ASKER, &local_sql(sql, &[]))?;
    }
    let mut fed: Vec<Vec<f64>> = vec![Vec::new(); QUERIES.len()];
    let mut local: Vec<Vec<f64>> = vec![Vec::new(); QUERIES.len()];
    let mut last = Instant::now() - PACE;
    for k in 0..a.queries {
        for (q, (name, sql)) in QUERIES.iter().enumerate() {
            std::thread::sleep(PACE.saturating_sub(last.elapsed()));
            last = Instant::now();
            let (answer, f) = timed(|| cluster.query(ASKER, sql, 3000))?;
            let (want, l) = timed(|| cluster.sql(ASKER, &local_sql(sql, &[])))?;
            let st = statuses(&answer);
            let bad = st.values().filter(|s| s.1 != "ok").count();
            not_ok += bad;
            ensure!(
                st.len() == n,
                "{name}: {} members answered of {n}",
                st.len()
            );
            if bad == 0
                && let Err(e) = rows_equal(&answer["rows"], &want)
            {
                failures.push(format!("{name}, query {k}: rows differ: {e}"));
            }
            slowest_member.push(
                answer["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["latency_ms"].as_f64())
                    .fold(0.0, f64::max),
            );
            events.now(
                json!({"ev": "query", "k": k, "q": name, "fed_ms": f, "local_ms": l,
                "not_ok": bad}),
            );
            fed[q].push(f);
            local[q].push(l);
        }
    }
    println!(
        "federated vs local over the union, {} queries each, from node {ASKER} (client-side, \
         HTTP included; federated paced at <= 10/s):",
        a.queries * QUERIES.len()
    );
    for (q, (name, _)) in QUERIES.iter().enumerate() {
        let (f50, f95, f99, _) = dist(&mut fed[q]);
        let (l50, _, l99, _) = dist(&mut local[q]);
        println!(
            "  {name:<24} federated p50 {f50:.1} / p95 {f95:.1} / p99 {f99:.1} ms; local p50 \
             {l50:.1} / p99 {l99:.1} ms; ratio {:.2}x, +{:.1} ms",
            f50 / l50,
            f50 - l50
        );
        per_query.push(json!({"query": name, "fed_p50_ms": f50, "fed_p95_ms": f95,
            "fed_p99_ms": f99, "local_p50_ms": l50, "local_p99_ms": l99}));
        fed_all.extend_from_slice(&fed[q]);
        local_all.extend_from_slice(&local[q]);
    }
    let (f50, f95, f99, fmax) = dist(&mut fed_all);
    let (l50, l95, l99, _) = dist(&mut local_all);
    let (s50, _, s99, _) = dist(&mut slowest_member);
    let bound = 1.2 * l50 + 2.0;
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "  all: federated p50 {f50:.1} ms, p95 {f95:.1} ms, p99 {f99:.1} ms, max {fmax:.1} ms \
         (goal p50 <= 20 ms: {}, p99 <= 100 ms: {}); local p50 {l50:.1} ms, p95 {l95:.1} ms, \
         p99 {l99:.1} ms",
        verdict(f50 <= 20.0),
        verdict(f99 <= 100.0)
    );
    println!(
        "  overhead at p50: {:.2}x, +{:.1} ms (goal <= 1.2x + 2 ms = {bound:.1} ms: {}); at p99 \
         {:.2}x (<= {:.1} ms: {}); slowest member's own latency p50 {s50:.0} ms, p99 {s99:.0} ms; \
         member answers not ok: {not_ok}",
        f50 / l50,
        f50 - l50,
        verdict(f50 <= bound),
        f99 / l99,
        1.2 * l99 + 2.0,
        verdict(f99 <= 1.2 * l99 + 2.0)
    );
    let cpu = cpu_per_query(cluster)?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "  CPU per federated query ({} back to back, all {n} node processes): {:.1} ms, of \
         which the asker {:.1} ms and the members {:.1} ms ({:.2} ms each); on {cores} cores \
         that alone is {:.1} ms of wall time",
        CPU_QUERIES,
        cpu.0,
        cpu.1,
        cpu.0 - cpu.1,
        (cpu.0 - cpu.1) / (n - 1) as f64,
        cpu.0 / cores as f64
    );
    summary["latency"] = json!({"queries": fed_all.len(), "cpu_ms_per_query": cpu.0,
        "asker_cpu_ms_per_query": cpu.1, "fed_p50_ms": f50, "fed_p95_ms": f95,
        "fed_p99_ms": f99, "fed_max_ms": fmax, "local_p50_ms": l50, "local_p95_ms": l95,
        "local_p99_ms": l99, "ratio_p50": f50 / l50, "overhead_p50_ms": f50 - l50,
        "ratio_p99": f99 / l99, "slowest_member_p50_ms": s50, "slowest_member_p99_ms": s99,
        "member_answers_not_ok": not_ok, "per_query": per_query});
    if not_ok > 0 {
        failures.push(format!(
            "{not_ok} member answers were not ok in the latency run"
        ));
    }
    Ok(())
}

/// Federated queries run back to back to measure the CPU they cost.
const CPU_QUERIES: usize = 60;

/// CPU time (user + system) of all node processes per federated query, and of the asker alone,
/// in ms, over [`CPU_QUERIES`] queries back to back.
fn cpu_per_query(cluster: &Cluster) -> anyhow::Result<(f64, f64)> {
    let ticks = || -> anyhow::Result<(u64, u64)> {
        let each: Vec<u64> = cluster
            .nodes
            .iter()
            .map(|n| cpu_ticks(n.pid()))
            .collect::<anyhow::Result<_>>()?;
        Ok((each.iter().sum(), each[ASKER]))
    };
    let tick_ms = 1000.0 / ticks_per_sec();
    let before = ticks()?;
    for k in 0..CPU_QUERIES {
        cluster.query(ASKER, QUERIES[k % QUERIES.len()].1, 3000)?;
    }
    let after = ticks()?;
    let per = |a: u64, b: u64| (a - b) as f64 * tick_ms / CPU_QUERIES as f64;
    Ok((per(after.0, before.0), per(after.1, before.1)))
}

/// Two providers blackholed (nftables input-chain drop of everything from and to their
/// addresses, and of their TCP connections, which leave from 127.0.0.1 with their listen port).
fn blackhole_phase(
    cluster: &Cluster,
    a: &Args,
    events: &Events,
    names: &BTreeMap<usize, String>,
    summary: &mut Value,
    failures: &mut Vec<String>,
) -> anyhow::Result<()> {
    let n = cluster.nodes.len();
    let holes = [n - 1, n - 2];
    let ips: Vec<&str> = holes
        .iter()
        .map(|&i| cluster.nodes[i].ip.as_str())
        .collect();
    let mut ports = Vec::new();
    for &i in &holes {
        ports.push(tcp_port(&cluster.card(i)?).with_context(|| format!("node {i}"))?);
    }
    for ip in &ips {
        ensure!(ip.starts_with("127."), "refusing a rule for {ip}");
    }
    let (ips, ports) = (
        ips.join(", "),
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    );
    nft(&format!(
        "add table inet blackhole\n\
         add chain inet blackhole input {{ type filter hook input priority 0; policy accept; }}\n\
         add rule inet blackhole input ip saddr {{ {ips} }} drop\n\
         add rule inet blackhole input ip daddr {{ {ips} }} drop\n\
         add rule inet blackhole input ip saddr 127.0.0.1 tcp sport {{ {ports} }} drop\n\
         add rule inet blackhole input ip daddr 127.0.0.1 tcp dport {{ {ports} }} drop\n"
    ))?;
    events.now(json!({"ev": "blackholed", "nodes": holes}));
    let hole_names: Vec<String> = holes.iter().map(|i| names[i].clone()).collect();
    let deadline = a.deadline_ms;
    let sql = QUERIES[0].1;
    let want = cluster.sql(ASKER, &local_sql(sql, &hole_names))?;
    let mut took = Vec::new();
    let mut consistent = 0;
    let mut coverage = Vec::new();
    for k in 0..a.blackhole_queries {
        let (answer, t) = timed(|| cluster.query(ASKER, sql, deadline))?;
        let st = statuses(&answer);
        let ok = st.values().filter(|s| s.1 == "ok").count();
        let holes_timeout = hole_names
            .iter()
            .all(|h| st.get(h).is_some_and(|s| s.1 == "timeout"));
        let others_ok = st
            .iter()
            .filter(|(m, _)| !hole_names.contains(m))
            .all(|(_, s)| s.1 == "ok");
        let rows = rows_equal(&answer["rows"], &want);
        if holes_timeout && others_ok && rows.is_ok() && st.len() == n {
            consistent += 1;
        } else {
            let odd: Vec<String> = answer["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| {
                    let hole = m["member"]
                        .as_str()
                        .is_some_and(|x| hole_names.iter().any(|h| h == x));
                    (m["status"] == "ok") == hole || (hole && m["status"] != "timeout")
                })
                .map(|m| format!("{} {} ({})", m["member"], m["status"], m["reason"]))
                .collect();
            println!(
                "  query {k}: {t:.0} ms, {} members; statuses off: {odd:?}; rows: {rows:?}",
                st.len()
            );
        }
        events.now(json!({"ev": "blackhole_query", "k": k, "ms": t, "ok": ok,
            "members": st.len(), "consistent": holes_timeout && others_ok && rows.is_ok()}));
        took.push(t);
        coverage.push(ok);
    }
    let within = took
        .iter()
        .filter(|t| (*t - deadline as f64).abs() <= 100.0)
        .count();
    let (t50, _, t99, tmax) = dist(&mut took);
    let tmin = took.first().copied().unwrap_or(f64::NAN);
    coverage.sort_unstable();
    println!(
        "blackholed nodes {holes:?} ({}): {} queries with deadline {deadline} ms answered after \
         min {tmin:.0} / p50 {t50:.0} / p99 {t99:.0} / max {tmax:.0} ms; within deadline ± 100 \
         ms: {within}/{} (goal: all: {}); coverage {}..{}/{n} (goal {}/{n}); statuses and rows \
         consistent with the faults: {consistent}/{}",
        hole_names.join(", "),
        took.len(),
        took.len(),
        if within == took.len() {
            "met"
        } else {
            "MISSED"
        },
        coverage.first().copied().unwrap_or(0),
        coverage.last().copied().unwrap_or(0),
        n - 2,
        took.len()
    );
    nft("delete table inet blackhole\n")?;
    let healed = Instant::now();
    events.at(healed, json!({"ev": "unblackholed"}));
    // After the heal: how long until every member answers again.
    let back = loop {
        let answer = cluster.query(ASKER, sql, deadline)?;
        if statuses(&answer).values().all(|s| s.1 == "ok") {
            break Some(healed.elapsed());
        }
        if healed.elapsed() > Duration::from_secs(120) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    match back {
        Some(d) => println!(
            "after the heal, all {n} answer ok again within {:.1} s",
            d.as_secs_f64()
        ),
        None => println!("after the heal, not all {n} answer ok within 120 s"),
    }
    // Settle before the next phase; member answers not ok meanwhile are reported.
    let mut late = BTreeMap::<String, u64>::new();
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(5) {
        let answer = cluster.query(ASKER, sql, 3000)?;
        for (m, (_, s)) in statuses(&answer) {
            if s != "ok" {
                *late.entry(format!("{m} {s}")).or_default() += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    if !late.is_empty() {
        println!("  not ok within 5 s after that: {late:?}");
    }
    summary["blackhole"] = json!({"nodes": holes, "deadline_ms": deadline,
        "queries": took.len(), "p50_ms": t50, "p99_ms": t99, "min_ms": tmin, "max_ms": tmax,
        "within_100ms": within, "consistent": consistent,
        "coverage_min": coverage.first(), "coverage_max": coverage.last(),
        "all_ok_again_ms": back.map(ms), "not_ok_after": late});
    if consistent != took.len() {
        failures.push(format!(
            "{} of {} blackhole answers inconsistent with the faults",
            took.len() - consistent,
            took.len()
        ));
    }
    Ok(())
}

/// Member answers by status, summed over answers.
#[derive(Default)]
struct Tally {
    answers: u64,
    http_errors: u64,
    by_status: BTreeMap<String, u64>,
    latencies: Vec<f64>,
}

impl Tally {
    fn add(&mut self, result: anyhow::Result<Value>, t: f64) {
        match result {
            Ok(answer) => {
                self.answers += 1;
                self.latencies.push(t);
                for (_, (_, s)) in statuses(&answer) {
                    *self.by_status.entry(s).or_default() += 1;
                }
            }
            Err(_) => self.http_errors += 1,
        }
    }

    fn not_ok(&self) -> u64 {
        self.by_status
            .iter()
            .filter(|(s, _)| *s != "ok")
            .map(|(_, c)| c)
            .sum()
    }
}

/// Lines of every node's log saying a query was refused (not a member or over the rate).
fn refusals(cluster: &Cluster) -> u64 {
    cluster
        .nodes
        .iter()
        .filter_map(|n| std::fs::read_to_string(n.dir.with_extension("log")).ok())
        .map(|log| log.matches("query refused").count() as u64)
        .sum()
}

/// A steady trickle from one member for `secs`, with or without a flood from another.
fn trickle(cluster: &Cluster, secs: u64, deadline: u64) -> Tally {
    let mut t = Tally::default();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end && !STOP.load(Ordering::SeqCst) {
        let start = Instant::now();
        let r = cluster.query(TRICKLE, QUERIES[0].1, deadline);
        t.add(r, ms(start.elapsed()));
        std::thread::sleep(Duration::from_millis(250).saturating_sub(start.elapsed()));
    }
    t
}

fn flood_phase(
    cluster: &Cluster,
    a: &Args,
    events: &Events,
    summary: &mut Value,
) -> anyhow::Result<()> {
    let deadline = 3000;
    println!(
        "flood: node {TRICKLE} asks every 250 ms for {} s alone, then again while node \
         {FLOODER} floods with {} concurrent clients",
        a.flood_secs, a.flood_clients
    );
    let mut base = trickle(cluster, a.flood_secs, deadline);
    events.now(json!({"ev": "trickle_alone", "answers": base.answers}));
    let refused_before = refusals(cluster);
    let go = Arc::new(AtomicBool::new(true));
    let flood = Arc::new(Mutex::new(Tally::default()));
    let url = format!("{}/api/v1/query", cluster.nodes[FLOODER].url);
    let mut threads = Vec::new();
    for _ in 0..a.flood_clients {
        let (go, flood, url, http) = (go.clone(), flood.clone(), url.clone(), cluster.http.clone());
        threads.push(std::thread::spawn(move || {
            while go.load(Ordering::Relaxed) && !STOP.load(Ordering::SeqCst) {
                let start = Instant::now();
                let r = http
                    .post(&url)
                    .json(&json!({"sql": QUERIES[1].1, "deadline_ms": deadline}))
                    .send()
                    .map_err(anyhow::Error::from)
                    .and_then(check);
                let t = ms(start.elapsed());
                flood.lock().unwrap_or_else(|p| p.into_inner()).add(r, t);
            }
        }));
    }
    let flood_start = Instant::now();
    events.now(json!({"ev": "flood_started", "clients": a.flood_clients}));
    let mut during = trickle(cluster, a.flood_secs, deadline);
    go.store(false, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let flood_secs = flood_start.elapsed().as_secs_f64();
    events.now(json!({"ev": "flood_stopped"}));
    // Let the nodes write their logs.
    std::thread::sleep(Duration::from_millis(500));
    let refused = refusals(cluster) - refused_before;
    let mut flood = std::mem::take(&mut *flood.lock().unwrap_or_else(|p| p.into_inner()));
    let (b50, _, b99, _) = dist(&mut base.latencies);
    let (d50, _, d99, dmax) = dist(&mut during.latencies);
    let (f50, _, f99, _) = dist(&mut flood.latencies);
    let member_answers: u64 = flood.by_status.values().sum();
    println!(
        "  trickle alone: {} answers, p50 {b50:.1} ms, p99 {b99:.1} ms, member answers not ok \
         {}",
        base.answers,
        base.not_ok()
    );
    println!(
        "  trickle during the flood: {} answers, p50 {d50:.1} ms, p99 {d99:.1} ms, max {dmax:.0} \
         ms, member answers not ok {} ({:?}), HTTP errors {}",
        during.answers,
        during.not_ok(),
        during.by_status,
        during.http_errors
    );
    println!(
        "  flooder: {} queries in {flood_secs:.1} s ({:.1}/s), p50 {f50:.0} ms, p99 {f99:.0} \
         ms; member answers {member_answers}: {:?}; HTTP errors {}; providers refused {refused} \
         of its requests (\"query refused\" in the node logs)",
        flood.answers,
        flood.answers as f64 / flood_secs,
        flood.by_status,
        flood.http_errors
    );
    summary["flood"] = json!({"secs": a.flood_secs, "clients": a.flood_clients,
        "trickle_alone": {"answers": base.answers, "p50_ms": b50, "p99_ms": b99,
            "not_ok": base.not_ok()},
        "trickle_during": {"answers": during.answers, "p50_ms": d50, "p99_ms": d99,
            "max_ms": dmax, "not_ok": during.not_ok(), "by_status": during.by_status,
            "http_errors": during.http_errors},
        "flooder": {"answers": flood.answers, "per_s": flood.answers as f64 / flood_secs,
            "p50_ms": f50, "p99_ms": f99, "by_status": flood.by_status,
            "http_errors": flood.http_errors, "refused_by_providers": refused}});
    Ok(())
}
