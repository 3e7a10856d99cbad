//! `--case smoke`: the quick check CI runs.

use std::time::{Duration, Instant};

use anyhow::ensure;
use serde_json::Value;

use crate::Args;
use crate::cluster::{Cluster, check};
use crate::counts::{self, BIKES_QUERY, QUERIES, local_sql, rows_equal, statuses};
use crate::events::{Events, Rng, ms};
use crate::propagation::{propagation_run, report_latencies};

pub(crate) fn case(a: &Args, events: &Events) -> anyhow::Result<Value> {
    let mut cluster = Cluster::start(a, events)?;
    cluster.form(events)?;
    let all: Vec<usize> = (0..a.nodes).collect();
    let t0 = Instant::now();
    cluster.publish_on(&all)?;
    let took = cluster.wait_digests(Duration::from_secs(20))?;
    println!(
        "smoke: {} datasets published on {} nodes; digests equal {:.0} ms after the last publish",
        a.nodes,
        a.nodes,
        ms(took)
    );
    // Every node's search finds every dataset (the index follows the log within moments).
    let mut want: Vec<String> = cluster.published.iter().flatten().cloned().collect();
    want.sort();
    for i in 0..a.nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = check(
                cluster
                    .http
                    .get(format!("{}/api/v1/catalog", cluster.nodes[i].url))
                    .query(&[("q", "zählungen"), ("limit", "100")])
                    .send()?,
            )?;
            let mut got: Vec<String> = v["hits"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|h| h["dataset"]["slug"].as_str().map(str::to_owned))
                .collect();
            got.sort();
            if got == want {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "node {i}: search finds {got:?}, want {want:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut rng = Rng(a.seed | 1);
    let latencies = propagation_run(&mut cluster, events, &mut rng, 10)?;
    let summary = report_latencies("smoke propagation", latencies, events);
    federated_queries(&mut cluster, events)?;
    println!("smoke passed in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(summary)
}

/// Federated queries over every member equal the same SQL over the union on one local
/// DataFusion; a member whose policy leaves a column out is `denied` a query on it and none of
/// its rows are returned; a stopped member (SIGSTOP) is `timeout` and the others still answer.
/// Correctness is asserted; times are only printed.
fn federated_queries(cluster: &mut Cluster, events: &Events) -> anyhow::Result<()> {
    let n = cluster.nodes.len();
    let restricted = 1;
    for i in 0..n {
        cluster.publish_counts(i, i == restricted)?;
    }
    cluster.wait_digests(Duration::from_secs(20))?;
    let all: Vec<usize> = (0..n).collect();
    let names = cluster.member_names(0, &all)?;
    counts::upload_union(cluster, 0, &names)?;
    for (name, sql) in QUERIES {
        let answer = cluster.query(0, sql, 5000)?;
        let st = statuses(&answer);
        ensure!(
            st.len() == n && st.values().all(|s| s.1 == "ok"),
            "{name}: not every member answered ok: {answer}"
        );
        let want = cluster.sql(0, &local_sql(sql, &[]))?;
        rows_equal(&answer["rows"], &want).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    }
    let answer = cluster.query(0, BIKES_QUERY, 5000)?;
    let st = statuses(&answer);
    let denied = &names[&restricted];
    ensure!(
        st.get(denied).map(|s| s.1.as_str()) == Some("denied")
            && st
                .iter()
                .filter(|(m, s)| *m != denied && s.1 == "ok")
                .count()
                == n - 1,
        "bikes query: {denied} should be denied, the rest ok: {answer}"
    );
    let want = cluster.sql(0, &local_sql(BIKES_QUERY, std::slice::from_ref(denied)))?;
    rows_equal(&answer["rows"], &want).map_err(|e| anyhow::anyhow!("bikes query: {e}"))?;
    let stopped = n - 1;
    cluster.pause(stopped, true, events);
    let deadline = 3000;
    let t0 = Instant::now();
    let answer = cluster.query(0, QUERIES[0].1, deadline);
    let took = t0.elapsed();
    cluster.pause(stopped, false, events);
    let answer = answer?;
    let st = statuses(&answer);
    let gone = &names[&stopped];
    ensure!(
        st.get(gone).map(|s| s.1.as_str()) == Some("timeout")
            && st.iter().filter(|(m, s)| *m != gone && s.1 == "ok").count() == n - 1,
        "with {gone} stopped: it should be timeout, the rest ok: {answer}"
    );
    let want = cluster.sql(0, &local_sql(QUERIES[0].1, std::slice::from_ref(gone)))?;
    rows_equal(&answer["rows"], &want).map_err(|e| anyhow::anyhow!("partial answer: {e}"))?;
    println!(
        "smoke queries: {} federated queries equal the local union; {denied} denied `bikes`, \
         none of its rows returned; {gone} stopped: `timeout`, {}/{n} answered, {:.0} ms with a \
         {deadline} ms deadline",
        QUERIES.len(),
        n - 1,
        ms(took)
    );
    Ok(())
}
