//! `--case join`: a founding federation of `--initial` members (default 3), then every other
//! node joins, one at a time, up to N: node 0 proposes the roster that adds it
//! (`POST /api/v1/federation/proposals`), members sign in turn (`POST /api/v1/federation/sign`)
//! until the current roster's threshold (default a majority) is reached, and the newcomer
//! installs the signed roster (`POST /api/v1/federation/apply`). Measured per join: the time
//! to gather the signatures, to the newcomer's install, until the newcomer holds the whole
//! catalog (its digest equals node 0's and its catalog has every dataset), and until every
//! member has the new roster and is connected to the newcomer. Each newcomer then publishes one
//! dataset (not timed), so the catalog grows with the federation.

use std::collections::BTreeSet;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use crate::Args;
use crate::audit::audit_log;
use crate::cluster::Cluster;
use crate::events::{Events, ms, pct};
use crate::procs::STOP;

/// One join's times, ms from the proposal.
struct Join {
    members_before: usize,
    signatures: usize,
    signed: f64,
    applied: f64,
    catalog: f64,
    seen: f64,
}

/// Polls `url` until `done` holds for its status; the time since `t0`, or `None` after 120 s.
fn poll_until(
    http: &reqwest::blocking::Client,
    url: &str,
    t0: Instant,
    every: Duration,
    done: impl Fn(&Value) -> bool,
) -> Option<Instant> {
    let deadline = t0 + Duration::from_secs(120);
    loop {
        if let Ok(s) = http.get(url).send().and_then(|r| r.json::<Value>())
            && done(&s)
        {
            return Some(Instant::now());
        }
        if Instant::now() > deadline || STOP.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        std::thread::sleep(every);
    }
}

pub(crate) fn case(a: &Args, events: &Events) -> anyhow::Result<Value> {
    let n = a.nodes;
    let k0 = a.initial;
    ensure!(
        (2..n).contains(&k0),
        "--initial must be at least 2 and below --nodes"
    );
    let mut cluster = Cluster::start_some(a, events, k0, false)?;
    let founders: Vec<usize> = (0..k0).collect();
    cluster.form_of(&founders, events)?;
    cluster.publish_on(&founders)?;
    cluster.wait_digests_of(&founders, Duration::from_secs(60))?;
    let mut members = founders;
    let mut joins = Vec::new();
    println!(
        "{} joins, one at a time (poll: newcomer every 20 ms, members every 100 ms):",
        n - k0
    );
    for new in k0..n {
        cluster.launch(new, events)?;
        let card = cluster.card(new)?;
        let version = cluster.status(0)?["roster"]["version"]
            .as_u64()
            .context("roster version")?
            + 1;
        let t0 = Instant::now();
        let proposal = cluster.post(0, "/api/v1/federation/proposals", &json!({"add": [card]}))?;
        let required = proposal["required"].as_u64().context("required")? as usize;
        let mut roster = proposal["roster"].as_str().context("roster")?.to_owned();
        let mut signers = proposal["signers"].as_array().map_or(0, Vec::len);
        for &m in &members[1..] {
            if signers >= required {
                break;
            }
            let s = cluster.post(m, "/api/v1/federation/sign", &json!({"roster": roster}))?;
            roster = s["roster"].as_str().context("roster")?.to_owned();
            signers = s["signers"].as_array().map_or(0, Vec::len);
        }
        ensure!(
            signers >= required,
            "join of node {new}: {signers} of {required} signatures"
        );
        let signed = t0.elapsed();
        // Pollers start before the newcomer installs the roster.
        let expected: u64 = cluster.published.iter().map(|p| p.len() as u64).sum();
        let peer = Arc::new(cluster.nodes[new].peer.clone());
        let (tx, rx) = mpsc::channel::<(usize, Option<Instant>)>();
        for &m in &members {
            let (tx, peer, http) = (tx.clone(), peer.clone(), cluster.http.clone());
            let url = format!("{}/api/v1/federation", cluster.nodes[m].url);
            std::thread::spawn(move || {
                let seen = poll_until(&http, &url, t0, Duration::from_millis(100), |s| {
                    s["roster"]["version"].as_u64() == Some(version)
                        && s["connected"]
                            .as_array()
                            .is_some_and(|c| c.iter().any(|p| p["peer_id"] == peer.as_str()))
                });
                let _ = tx.send((m, seen));
            });
        }
        drop(tx);
        cluster.post(new, "/api/v1/federation/apply", &json!({"roster": roster}))?;
        let applied = t0.elapsed();
        let own = format!("{}/api/v1/federation", cluster.nodes[new].url);
        let first = format!("{}/api/v1/federation", cluster.nodes[0].url);
        let http = cluster.http.clone();
        let catalog = poll_until(&cluster.http, &own, t0, Duration::from_millis(20), |s| {
            s["catalog_size"].as_u64() == Some(expected)
                && s["connected"].as_array().map_or(0, Vec::len) >= members.len()
                && http
                    .get(&first)
                    .send()
                    .and_then(|r| r.json::<Value>())
                    .is_ok_and(|f| f["digest"] == s["digest"])
        })
        .with_context(|| format!("node {new} did not get the whole catalog within 120 s"))?;
        let mut seen = t0;
        for (m, t) in rx {
            let t = t.with_context(|| {
                format!("member {m} did not see node {new} connected within 120 s")
            })?;
            seen = seen.max(t);
        }
        let j = Join {
            members_before: members.len(),
            signatures: signers,
            signed: ms(signed),
            applied: ms(applied),
            catalog: ms(catalog - t0),
            seen: ms(seen - t0),
        };
        events.now(
            json!({"ev": "joined", "node": new, "members_before": j.members_before,
            "signatures": j.signatures, "signed_ms": j.signed, "applied_ms": j.applied,
            "catalog_ms": j.catalog, "seen_ms": j.seen}),
        );
        if j.members_before <= 5 || j.members_before.is_multiple_of(10) || new == n - 1 {
            println!(
                "  {:>3} -> {:>3} members: {} signatures {:.0} ms, installed by the newcomer \
                 {:.0} ms, whole catalog {:.0} ms, connected to and seen by all {:.0} ms",
                j.members_before,
                j.members_before + 1,
                j.signatures,
                j.signed,
                j.applied,
                j.catalog,
                j.seen
            );
        }
        joins.push(j);
        members.push(new);
        cluster.publish_on(&[new])?;
    }
    cluster.wait_digests(Duration::from_secs(120))?;
    cluster.wait_connected(Duration::from_secs(120))?;
    let stat = |f: fn(&Join) -> f64, joins: &[Join]| {
        let mut v: Vec<f64> = joins.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (pct(&v, 50.0), pct(&v, 99.0))
    };
    let mut summary = json!({"ev": "summary", "case": "join", "nodes": n, "initial": k0});
    println!("per join (p50 / p99 over {} joins):", joins.len());
    for (name, f) in [
        (
            "signatures gathered",
            (|j: &Join| j.signed) as fn(&Join) -> f64,
        ),
        ("installed by the newcomer", |j: &Join| j.applied),
        ("newcomer has the whole catalog", |j: &Join| j.catalog),
        (
            "every member has the roster and sees it connected",
            |j: &Join| j.seen,
        ),
    ] {
        let (p50, p99) = stat(f, &joins);
        println!("  {name}: p50 {p50:.0} ms, p99 {p99:.0} ms");
        summary[name.replace(' ', "_")] = json!({"p50_ms": p50, "p99_ms": p99});
    }
    // Growth: the same figures over the first and the last third of the joins.
    let third = (joins.len() / 3).max(1);
    for (label, part) in [
        ("first third", &joins[..third]),
        ("last third", &joins[joins.len() - third..]),
    ] {
        let (s50, _) = stat(|j| j.signed, part);
        let (a50, _) = stat(|j| j.applied, part);
        let (c50, _) = stat(|j| j.catalog, part);
        let (e50, _) = stat(|j| j.seen, part);
        println!(
            "  {label} ({}..{} members): p50 signatures {s50:.0} ms, install {a50:.0} ms, \
             catalog {c50:.0} ms, seen by all {e50:.0} ms",
            part[0].members_before,
            part[part.len() - 1].members_before
        );
    }
    summary["joins"] = json!(
        joins
            .iter()
            .map(|j| json!([
                j.members_before,
                j.signatures,
                j.signed,
                j.applied,
                j.catalog,
                j.seen
            ]))
            .collect::<Vec<_>>()
    );
    let peers: BTreeSet<String> = cluster.nodes.iter().map(|x| x.peer.clone()).collect();
    cluster.stop_all();
    for (i, node) in cluster.nodes.iter().enumerate() {
        audit_log(&node.dir, &peers).map_err(|e| anyhow::anyhow!("node {i}'s log: {e:#}"))?;
    }
    println!("all {n} digests equal, full mesh; every log checked offline");
    events.now(summary.clone());
    Ok(summary)
}
