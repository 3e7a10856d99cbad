//! Forming the federation through the HTTP API (cards, the founding roster signed by every
//! member, applied everywhere) and waiting for a full mesh and equal digests.

use std::time::{Duration, Instant};

use allmende_scenarios::wait_for;
use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::cluster::{Cluster, FEDERATION};
use crate::events::{Events, ms};

impl Cluster {
    /// Forms the federation of all nodes; see [`Cluster::form_of`].
    pub(crate) fn form(&self, events: &Events) -> anyhow::Result<Duration> {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.form_of(&all, events)
    }

    /// Forms the federation of `members` through the API: the first creates the founding roster
    /// from every member's card, every other member signs it in turn, and every member applies
    /// it; then waits until each member is connected to all others.
    pub(crate) fn form_of(&self, members: &[usize], events: &Events) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let mut cards = Vec::new();
        for &i in members {
            cards.push(self.card(i)?);
        }
        let created = self.post(
            members[0],
            "/api/v1/federation",
            &json!({"federation": FEDERATION, "members": cards[1..]}),
        )?;
        let mut roster = created["roster"].as_str().context("roster")?.to_owned();
        for &i in &members[1..] {
            let signed = self.post(i, "/api/v1/federation/sign", &json!({"roster": roster}))?;
            roster = signed["roster"].as_str().context("roster")?.to_owned();
        }
        for &i in members {
            self.post(i, "/api/v1/federation/apply", &json!({"roster": roster}))?;
        }
        events.now(json!({"ev": "roster_applied", "nodes": members.len()}));
        self.wait_connected_of(members, Duration::from_secs(60 + members.len() as u64 * 2))?;
        let took = t0.elapsed();
        events.now(json!({"ev": "formed", "ms": ms(took), "nodes": members.len()}));
        println!(
            "federation of {} formed (roster signed by all, full mesh) in {:.1} s",
            members.len(),
            took.as_secs_f64()
        );
        Ok(took)
    }

    /// Node `i`'s member card, once it lists its listen addresses.
    pub(crate) fn card(&self, i: usize) -> anyhow::Result<Value> {
        let listening = if self.p2p == "both" { 2 } else { 1 };
        wait_for(
            &format!("node {i} has no listen addresses"),
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                let card = self.get(i, "/api/v1/federation/card")?;
                Ok(card["addresses"]
                    .as_array()
                    .is_some_and(|a| a.len() >= listening)
                    .then_some(card))
            },
        )
    }

    pub(crate) fn wait_connected(&self, timeout: Duration) -> anyhow::Result<()> {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.wait_connected_of(&all, timeout)
    }

    /// Waits until each of `members` is connected to all the others.
    pub(crate) fn wait_connected_of(
        &self,
        members: &[usize],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for &i in members {
            loop {
                let c = self.connected(i)?;
                let missing: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|&j| j != i && !c.contains(&self.nodes[j].peer))
                    .collect();
                if missing.is_empty() {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "node {i} is not connected to nodes {missing:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// The PeerIds node `i` is connected to.
    pub(crate) fn connected(&self, i: usize) -> anyhow::Result<Vec<String>> {
        Ok(self.status(i)?["connected"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["peer_id"].as_str().map(str::to_owned))
            .collect())
    }

    pub(crate) fn digests_of(&self, members: &[usize]) -> anyhow::Result<Vec<String>> {
        members
            .iter()
            .map(|&i| Ok(self.status(i)?["digest"].as_str().unwrap_or("").to_owned()))
            .collect()
    }

    /// Polls until all digests are equal; returns the time taken.
    pub(crate) fn wait_digests(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.wait_digests_of(&all, timeout)
    }

    /// Polls until the digests of `members` are equal; returns the time taken.
    pub(crate) fn wait_digests_of(
        &self,
        members: &[usize],
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        loop {
            let d = self.digests_of(members)?;
            if d.iter().all(|x| *x == d[0]) {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > timeout {
                let distinct: std::collections::BTreeSet<&String> = d.iter().collect();
                bail!(
                    "digests not equal after {timeout:?}: {} distinct values",
                    distinct.len()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
