//! The node processes of one run: starting, forming a federation through the HTTP API,
//! publishing, polling digests, faults on single processes, and ending them all on exit;
//! JSONL events on one monotonic clock and percentiles.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use allmende_scenarios::bin;
use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::Args;

pub(crate) const FEDERATION: &str = "bench";
/// Pause between two status requests of one polling thread (one thread per node).
pub(crate) const POLL: Duration = Duration::from_millis(5);
/// The local admin token every node is initialised with (`ALLMENDE_TOKEN` at `init`; the node
/// keeps its hash) and that the harness sends as `Authorization: Bearer`.
pub(crate) const BENCH_TOKEN: &str = "allmende_federation-bench-token-not-secret-0123";

// ---------------------------------------------------------------------------------------------
// Process bookkeeping: every child's pid is registered so a signal can end them all.

pub(crate) static PIDS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub(crate) fn register(pid: u32) {
    PIDS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(pid as i32);
}

pub(crate) fn unregister(pid: u32) {
    PIDS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|p| *p != pid as i32);
}

/// On SIGINT/SIGTERM: SIGKILL every registered child and exit 130.
pub(crate) fn install_signal_watcher() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    std::thread::spawn(|| {
        loop {
            if STOP.load(Ordering::SeqCst) {
                let pids = PIDS.lock().unwrap_or_else(|p| p.into_inner()).clone();
                for pid in pids {
                    // SAFETY: signalling our own children by pid.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                eprintln!(
                    "interrupted: ended {} child processes",
                    PIDS.lock().map_or(0, |p| p.len())
                );
                std::process::exit(130);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

/// A command whose process is SIGKILLed when the harness dies.
pub(crate) fn child_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    // SAFETY: prctl in the forked child before exec; no allocation, async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

// ---------------------------------------------------------------------------------------------
// Events and statistics

/// JSONL events with one monotonic clock (`t_ns` since the run's start).
pub(crate) struct Events {
    start: Instant,
    file: Mutex<std::io::BufWriter<File>>,
}

impl Events {
    pub(crate) fn new(path: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            start: Instant::now(),
            file: Mutex::new(std::io::BufWriter::new(File::create(path)?)),
        })
    }

    pub(crate) fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_nanos() as u64
    }

    pub(crate) fn at(&self, t: Instant, mut v: Value) {
        v["t_ns"] = json!(self.ns(t));
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(f, "{v}");
    }

    pub(crate) fn now(&self, v: Value) {
        self.at(Instant::now(), v);
    }

    pub(crate) fn flush(&self) {
        let _ = self.file.lock().unwrap_or_else(|p| p.into_inner()).flush();
    }
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// Nodes

pub(crate) struct Node {
    pub(crate) ip: String,
    pub(crate) dir: PathBuf,
    pub(crate) url: String,
    pub(crate) peer: String,
    pub(crate) child: Option<Child>,
}

impl Node {
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }
}

pub(crate) struct Cluster {
    pub(crate) bin: PathBuf,
    pub(crate) nodes: Vec<Node>,
    pub(crate) http: reqwest::blocking::Client,
    pub(crate) _work: tempfile::TempDir,
    /// Each node's latest seq (this harness is the only publisher).
    pub(crate) seq: Vec<u64>,
    /// Slugs each node has published.
    pub(crate) published: Vec<Vec<String>>,
    pub(crate) counter: usize,
    /// Nodes not to be asked now: killed (until restarted) or stopped (SIGSTOP).
    pub(crate) down: Vec<bool>,
    /// The libp2p transports the nodes listen on (`--p2p`).
    p2p: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &self.nodes {
            if let Some(c) = &n.child {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                loop {
                    match c.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if Instant::now() > deadline => {
                            let _ = c.kill();
                            let _ = c.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
                unregister(c.id());
            }
        }
    }
}

pub(crate) fn client() -> anyhow::Result<reqwest::blocking::Client> {
    let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {BENCH_TOKEN}"))?;
    auth.set_sensitive(true);
    Ok(reqwest::blocking::Client::builder()
        .default_headers(
            [(reqwest::header::AUTHORIZATION, auth)]
                .into_iter()
                .collect(),
        )
        .timeout(Duration::from_secs(10))
        // Without it, a request body or a streamed answer written in two parts waits for the
        // peer's delayed ACK: 40 ms on every `POST /api/v1/sql` (measured).
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4)
        .build()?)
}

pub(crate) fn check(resp: reqwest::blocking::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let text = resp.text()?;
    if !status.is_success() {
        bail!("HTTP {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

impl Cluster {
    /// Inits and starts `a.nodes` nodes on 127.0.0.2.. and waits until each serves its API.
    pub(crate) fn start(a: &Args, events: &Events) -> anyhow::Result<Self> {
        Self::start_some(a, events, a.nodes, false)
    }

    /// Inits `a.nodes` nodes on 127.0.0.2.. and starts the first `running` of them (the others
    /// with [`Cluster::launch`]). With `fixed_ports` (only inside the private namespace, where
    /// no other process binds), node *i* listens on API port 30000+i and P2P port 20000+i, so
    /// a restarted node comes back at the addresses in the roster, as a real one would.
    pub(crate) fn start_some(
        a: &Args,
        events: &Events,
        running: usize,
        fixed_ports: bool,
    ) -> anyhow::Result<Self> {
        let (n, sync_ms) = (a.nodes, a.sync_ms);
        let bin = bin()?;
        let mut builder = tempfile::Builder::new();
        builder.prefix("allmende-federation-");
        let work = match &a.work {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                builder.tempdir_in(dir)?
            }
            None => builder.tempdir()?,
        };
        let mut cluster = Self {
            bin,
            nodes: Vec::new(),
            http: client()?,
            _work: work,
            seq: vec![0; n],
            published: vec![Vec::new(); n],
            counter: 0,
            down: vec![false; n],
            p2p: a.p2p.clone(),
        };
        let sync = sync_ms.to_string();
        for i in 0..n {
            let ip = format!("127.0.0.{}", i + 2);
            let dir = cluster._work.path().join(format!("n{i:02}"));
            let (api, p2p) = if fixed_ports {
                (30000 + i, 20000 + i)
            } else {
                (0, 0)
            };
            let out = Command::new(&cluster.bin)
                .env("ALLMENDE_TOKEN", BENCH_TOKEN)
                .args(["init", "--data-dir"])
                .arg(&dir)
                .args([
                    "--name",
                    &format!("Kommune {i:02}"),
                    "--district-key",
                    "05515",
                    "--listen",
                    &format!("{ip}:{api}"),
                    "--p2p-listen",
                    &match a.p2p.as_str() {
                        "quic" => format!("/ip4/{ip}/udp/{p2p}/quic-v1"),
                        "tcp" => format!("/ip4/{ip}/tcp/{p2p}"),
                        _ => format!("/ip4/{ip}/udp/{p2p}/quic-v1,/ip4/{ip}/tcp/{p2p}"),
                    },
                    "--contact-email",
                    "open-data@example.de",
                    "--sync-interval-ms",
                    &sync,
                ])
                .output()?;
            ensure!(
                out.status.success(),
                "init node {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            cluster.nodes.push(Node {
                ip,
                dir,
                url: String::new(),
                peer: String::new(),
                child: None,
            });
        }
        let t0 = Instant::now();
        let mut waiting = Vec::new();
        for i in 0..running {
            waiting.push(cluster.spawn(i)?);
        }
        for (i, rx) in waiting.into_iter().enumerate() {
            cluster.await_api(i, &rx, events)?;
        }
        println!(
            "started {running} of {n} nodes on 127.0.0.2..127.0.0.{} in {:.1} s",
            running + 1,
            t0.elapsed().as_secs_f64()
        );
        Ok(cluster)
    }

    /// Waits for node `i`'s API address on `rx`, then asks for its PeerId.
    fn await_api(
        &mut self,
        i: usize,
        rx: &mpsc::Receiver<String>,
        events: &Events,
    ) -> anyhow::Result<()> {
        let url = rx
            .recv_timeout(Duration::from_secs(120))
            .with_context(|| format!("node {i} did not report its address"))?;
        self.nodes[i].url = url;
        let info = check(
            self.http
                .get(format!("{}/api/v1/node", self.nodes[i].url))
                .send()?,
        )?;
        self.nodes[i].peer = info["peer_id"].as_str().context("peer_id")?.to_owned();
        self.down[i] = false;
        events.now(
            json!({"ev": "node_started", "node": i, "ip": self.nodes[i].ip,
            "pid": self.nodes[i].pid(), "peer": self.nodes[i].peer}),
        );
        Ok(())
    }

    /// Starts node `i` (not running) and waits until it serves its API.
    pub(crate) fn launch(&mut self, i: usize, events: &Events) -> anyhow::Result<()> {
        ensure!(self.nodes[i].child.is_none(), "node {i} is running");
        let rx = self.spawn(i)?;
        self.await_api(i, &rx, events)
    }

    /// `kill -9` of node `i`; it stays down until [`Cluster::launch`].
    pub(crate) fn kill9(&mut self, i: usize, events: &Events) -> anyhow::Result<()> {
        let mut child = self.nodes[i].child.take().context("node not running")?;
        child.kill()?;
        child.wait()?;
        unregister(child.id());
        self.down[i] = true;
        events.now(json!({"ev": "killed", "node": i, "pid": child.id()}));
        Ok(())
    }

    /// SIGSTOP (`stop`) or SIGCONT of node `i`.
    pub(crate) fn pause(&mut self, i: usize, stop: bool, events: &Events) {
        let sig = if stop { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.nodes[i].pid() as i32, sig) };
        self.down[i] = stop;
        events.now(json!({"ev": if stop { "sigstop" } else { "sigcont" }, "node": i}));
    }

    /// Ends every node with SIGTERM and waits for them (the data dirs stay until drop).
    pub(crate) fn stop_all(&mut self) {
        for n in &self.nodes {
            if let Some(c) = &n.child {
                // SAFETY: signalling our own child (SIGCONT first, in case it is stopped).
                unsafe {
                    libc::kill(c.id() as i32, libc::SIGCONT);
                    libc::kill(c.id() as i32, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                while matches!(c.try_wait(), Ok(None)) {
                    if Instant::now() > deadline {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                unregister(c.id());
            }
        }
    }

    /// Spawns `allmende run` for node `i`; the receiver gets its API URL.
    pub(crate) fn spawn(&mut self, i: usize) -> anyhow::Result<mpsc::Receiver<String>> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.with_extension("log"))?;
        let mut child = child_command(&self.bin)
            .args(["run", "--data-dir"])
            .arg(&node.dir)
            .args(["--log-level", "warn"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?;
        register(child.id());
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("allmende listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        node.child = Some(child);
        Ok(rx)
    }

    pub(crate) fn get(&self, i: usize, path: &str) -> anyhow::Result<Value> {
        check(
            self.http
                .get(format!("{}{path}", self.nodes[i].url))
                .send()?,
        )
    }

    pub(crate) fn post(&self, i: usize, path: &str, body: &Value) -> anyhow::Result<Value> {
        check(
            self.http
                .post(format!("{}{path}", self.nodes[i].url))
                .json(body)
                .send()?,
        )
    }

    /// Imports a dataset on node `i` from a multipart form (`POST /api/v1/datasets`).
    pub(crate) fn import_form(
        &self,
        i: usize,
        form: reqwest::blocking::multipart::Form,
    ) -> anyhow::Result<Value> {
        check(
            self.http
                .post(format!("{}/api/v1/datasets", self.nodes[i].url))
                .multipart(form)
                .send()?,
        )
    }

    pub(crate) fn status(&self, i: usize) -> anyhow::Result<Value> {
        self.get(i, "/api/v1/federation")
    }

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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let card = self.get(i, "/api/v1/federation/card")?;
            let listening = if self.p2p == "both" { 2 } else { 1 };
            if card["addresses"]
                .as_array()
                .is_some_and(|a| a.len() >= listening)
            {
                return Ok(card);
            }
            ensure!(
                Instant::now() < deadline,
                "node {i} has no listen addresses"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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

    /// Uploads a small CSV as a new dataset on node `i` with complete metadata (not published).
    pub(crate) fn upload(&mut self, i: usize) -> anyhow::Result<String> {
        self.counter += 1;
        let slug = format!("ds_{i:02}_{:04}", self.counter);
        let csv = format!("station;fahrzeuge\nA{0};{0}\nB{0};{1}\n", self.counter, i);
        let form = reqwest::blocking::multipart::Form::new()
            .part(
                "file",
                reqwest::blocking::multipart::Part::bytes(csv.into_bytes())
                    .file_name(format!("{slug}.csv")),
            )
            .text(
                "title",
                format!("Verkehrszählung {} von Kommune {i:02}", self.counter),
            )
            .text("description", "Stündliche Zählungen an Messstellen")
            .text("license", "dl-by-de/2.0")
            .text("themes", "TRAN")
            .text("keywords", "Verkehr,Zählung")
            .text("slug", slug.clone());
        self.import_form(i, form)?;
        Ok(slug)
    }

    /// Publishes (create) `slug` on node `i`, or re-publishes it after a metadata change
    /// (update) when `update`; returns the new seq. Only the publishing request is timed by the
    /// caller.
    pub(crate) fn publish(&mut self, i: usize, slug: &str, update: bool) -> anyhow::Result<u64> {
        if update {
            let r = self
                .http
                .patch(format!("{}/api/v1/datasets/{slug}", self.nodes[i].url))
                .json(
                    &json!({"title": format!("Verkehrszählung {slug}, geändert {}", self.counter)}),
                )
                .send()?;
            check(r)?;
        } else {
            let v = self.post(i, &format!("/api/v1/datasets/{slug}/publish"), &json!({}))?;
            ensure!(
                v["seq"].as_u64() == Some(self.seq[i] + 1),
                "unexpected seq: {v}"
            );
            self.published[i].push(slug.to_owned());
        }
        self.seq[i] += 1;
        Ok(self.seq[i])
    }

    /// Publishes one new dataset on every node in `nodes`.
    pub(crate) fn publish_on(&mut self, nodes: &[usize]) -> anyhow::Result<()> {
        for &i in nodes {
            let slug = self.upload(i)?;
            self.publish(i, &slug, false)?;
        }
        Ok(())
    }
}

/// The seq of `publisher` in a status document.
pub(crate) fn seq_of(status: &Value, publisher: &str) -> u64 {
    status["publishers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["peer_id"] == publisher)
        .and_then(|p| p["seq"].as_u64())
        .unwrap_or(0)
}

pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
