//! Federation figures with N real `allmende` node processes on loopback (node *i* bound to
//! `127.0.0.(i+2)`), formed into one federation through the HTTP API:
//!
//! - `--case propagation`: K publications and updates on random nodes, one at a time; for each,
//!   the time from the publishing request until every other node's `GET /api/v1/federation`
//!   shows the publisher's new seq (p50/p95/p99; goal p99 ≤ 250 ms);
//! - `--case partition`: inside a private network namespace (`unshare -n`), nftables input-chain
//!   drops split the nodes into two halves; both halves publish; after the heal (table deleted),
//!   the time until all digests are equal (p50/max over repeats; goal ≤ 5 s);
//! - `--case idle`: after formation and a quiet period, RSS (`/proc/PID/status`) and CPU %
//!   (`/proc/PID/stat` deltas) per node, mean and max;
//! - `--case smoke`: a quick check (5 nodes by default): form, publish on every node, all digests
//!   equal and every dataset found by search on every node; exit status 1 on failure.
//!
//! Figures are printed as lines; every event goes as JSONL (`t_ns` since the run's start, one
//! `Instant` clock) to `--results DIR` (default `$TMPDIR/allmende-federation/<case>-<unix time>`).
//! All node processes are ended on exit, on panic (drop), on SIGINT/SIGTERM (a watcher thread),
//! and if the harness itself dies (`PR_SET_PDEATHSIG`).
//!
//! Run: `cargo build --release -p allmende -p allmende-scenarios` then
//! `target/release/federation --case propagation --nodes 20 [--updates 60]`.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

/// Set in the re-executed harness that runs inside `unshare -n`.
const NETNS_ENV: &str = "ALLMENDE_FEDSIM_NETNS";
const FEDERATION: &str = "bench";
/// Pause between two status requests of one polling thread (one thread per node).
const POLL: Duration = Duration::from_millis(5);
/// The local admin token every node is initialised with (`ALLMENDE_TOKEN` at `init`; the node
/// keeps its hash) and that the harness sends as `Authorization: Bearer`.
const BENCH_TOKEN: &str = "allmende_federation-bench-token-not-secret-0123";

// ---------------------------------------------------------------------------------------------
// Arguments

#[derive(Clone, Debug)]
struct Args {
    case: String,
    nodes: usize,
    updates: usize,
    repeats: usize,
    partition_secs: u64,
    idle_secs: u64,
    sync_ms: u64,
    results: Option<PathBuf>,
    work: Option<PathBuf>,
    seed: u64,
}

const USAGE: &str = "usage: federation --case smoke|propagation|partition|idle [--nodes N] \
[--updates K] [--repeats R] [--partition-secs S] [--idle-secs S] [--sync-interval-ms MS] \
[--results DIR] [--work DIR] [--seed N]";

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        case: String::new(),
        nodes: 0,
        updates: 60,
        repeats: 3,
        partition_secs: 10,
        idle_secs: 30,
        sync_ms: 1000,
        results: None,
        work: None,
        seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--case" => a.case = value,
            "--nodes" => a.nodes = value.parse()?,
            "--updates" => a.updates = value.parse()?,
            "--repeats" => a.repeats = value.parse()?,
            "--partition-secs" => a.partition_secs = value.parse()?,
            "--idle-secs" => a.idle_secs = value.parse()?,
            "--sync-interval-ms" => a.sync_ms = value.parse()?,
            "--results" => a.results = Some(value.into()),
            "--work" => a.work = Some(value.into()),
            "--seed" => a.seed = value.parse()?,
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    if a.nodes == 0 {
        a.nodes = if a.case == "smoke" { 5 } else { 20 };
    }
    ensure!(
        ["smoke", "propagation", "partition", "idle"].contains(&a.case.as_str()),
        "{USAGE}"
    );
    ensure!((2..=250).contains(&a.nodes), "--nodes must be 2 to 250");
    ensure!(a.sync_ms >= 100, "--sync-interval-ms must be at least 100");
    Ok(a)
}

// ---------------------------------------------------------------------------------------------
// Process bookkeeping: every child's pid is registered so a signal can end them all.

static PIDS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn register(pid: u32) {
    PIDS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(pid as i32);
}

fn unregister(pid: u32) {
    PIDS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|p| *p != pid as i32);
}

/// On SIGINT/SIGTERM: SIGKILL every registered child and exit 130.
fn install_signal_watcher() {
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
fn child_command(program: &Path) -> Command {
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
struct Events {
    start: Instant,
    file: Mutex<std::io::BufWriter<File>>,
}

impl Events {
    fn new(path: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            start: Instant::now(),
            file: Mutex::new(std::io::BufWriter::new(File::create(path)?)),
        })
    }

    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_nanos() as u64
    }

    fn at(&self, t: Instant, mut v: Value) {
        v["t_ns"] = json!(self.ns(t));
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(f, "{v}");
    }

    fn now(&self, v: Value) {
        self.at(Instant::now(), v);
    }

    fn flush(&self) {
        let _ = self.file.lock().unwrap_or_else(|p| p.into_inner()).flush();
    }
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// Nodes

struct Node {
    ip: String,
    dir: PathBuf,
    url: String,
    peer: String,
    child: Option<Child>,
}

impl Node {
    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }
}

struct Cluster {
    bin: PathBuf,
    nodes: Vec<Node>,
    http: reqwest::blocking::Client,
    _work: tempfile::TempDir,
    /// Each node's latest seq (this harness is the only publisher).
    seq: Vec<u64>,
    /// Slugs each node has published.
    published: Vec<Vec<String>>,
    counter: usize,
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

fn bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("exe dir")?.join("allmende");
    if !path.exists() {
        bail!(
            "{} missing: cargo build --release -p allmende",
            path.display()
        );
    }
    Ok(path)
}

fn client() -> anyhow::Result<reqwest::blocking::Client> {
    let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {BENCH_TOKEN}"))?;
    auth.set_sensitive(true);
    Ok(reqwest::blocking::Client::builder()
        .default_headers(
            [(reqwest::header::AUTHORIZATION, auth)]
                .into_iter()
                .collect(),
        )
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(4)
        .build()?)
}

fn check(resp: reqwest::blocking::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let text = resp.text()?;
    if !status.is_success() {
        bail!("HTTP {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

impl Cluster {
    /// Inits and starts `n` nodes on 127.0.0.2.. and waits until each serves its API.
    fn start(a: &Args, events: &Events) -> anyhow::Result<Self> {
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
        };
        let sync = sync_ms.to_string();
        for i in 0..n {
            let ip = format!("127.0.0.{}", i + 2);
            let dir = cluster._work.path().join(format!("n{i:02}"));
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
                    &format!("{ip}:0"),
                    "--p2p-listen",
                    &format!("/ip4/{ip}/udp/0/quic-v1,/ip4/{ip}/tcp/0"),
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
        for i in 0..n {
            waiting.push(cluster.spawn(i)?);
        }
        for (i, rx) in waiting.into_iter().enumerate() {
            let url = rx
                .recv_timeout(Duration::from_secs(60))
                .with_context(|| format!("node {i} did not report its address"))?;
            cluster.nodes[i].url = url;
        }
        for i in 0..n {
            let info = check(
                cluster
                    .http
                    .get(format!("{}/api/v1/node", cluster.nodes[i].url))
                    .send()?,
            )?;
            cluster.nodes[i].peer = info["peer_id"].as_str().context("peer_id")?.to_owned();
            events.now(
                json!({"ev": "node_started", "node": i, "ip": cluster.nodes[i].ip,
                "pid": cluster.nodes[i].pid(), "peer": cluster.nodes[i].peer}),
            );
        }
        println!(
            "started {n} nodes on 127.0.0.2..127.0.0.{} in {:.1} s",
            n + 1,
            t0.elapsed().as_secs_f64()
        );
        Ok(cluster)
    }

    /// Spawns `allmende run` for node `i`; the receiver gets its API URL.
    fn spawn(&mut self, i: usize) -> anyhow::Result<mpsc::Receiver<String>> {
        let node = &mut self.nodes[i];
        let log = File::create(node.dir.with_extension("log"))?;
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

    fn get(&self, i: usize, path: &str) -> anyhow::Result<Value> {
        check(
            self.http
                .get(format!("{}{path}", self.nodes[i].url))
                .send()?,
        )
    }

    fn post(&self, i: usize, path: &str, body: &Value) -> anyhow::Result<Value> {
        check(
            self.http
                .post(format!("{}{path}", self.nodes[i].url))
                .json(body)
                .send()?,
        )
    }

    fn status(&self, i: usize) -> anyhow::Result<Value> {
        self.get(i, "/api/v1/federation")
    }

    /// Forms the federation through the API: node 0 creates the founding roster from every
    /// node's card, every other node signs it in turn, and every node applies it; then waits
    /// until each node is connected to all others.
    fn form(&self, events: &Events) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let mut cards = Vec::new();
        for i in 0..self.nodes.len() {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let card = self.get(i, "/api/v1/federation/card")?;
                if card["addresses"].as_array().is_some_and(|a| a.len() >= 2) {
                    cards.push(card);
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "node {i} has no listen addresses"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let created = self.post(
            0,
            "/api/v1/federation",
            &json!({"federation": FEDERATION, "members": cards[1..]}),
        )?;
        let mut roster = created["roster"].as_str().context("roster")?.to_owned();
        for i in 1..self.nodes.len() {
            let signed = self.post(i, "/api/v1/federation/sign", &json!({"roster": roster}))?;
            roster = signed["roster"].as_str().context("roster")?.to_owned();
        }
        for i in 0..self.nodes.len() {
            self.post(i, "/api/v1/federation/apply", &json!({"roster": roster}))?;
        }
        events.now(json!({"ev": "roster_applied", "nodes": self.nodes.len()}));
        self.wait_connected(Duration::from_secs(60))?;
        let took = t0.elapsed();
        events.now(json!({"ev": "formed", "ms": ms(took)}));
        println!(
            "federation of {} formed (roster signed by all, full mesh) in {:.1} s",
            self.nodes.len(),
            took.as_secs_f64()
        );
        Ok(took)
    }

    fn wait_connected(&self, timeout: Duration) -> anyhow::Result<()> {
        let n = self.nodes.len();
        let deadline = Instant::now() + timeout;
        for i in 0..n {
            loop {
                let s = self.status(i)?;
                let c = s["connected"].as_array().map_or(0, Vec::len);
                if c == n - 1 {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "node {i} connected to {c} of {} peers",
                    n - 1
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    fn digests(&self) -> anyhow::Result<Vec<String>> {
        (0..self.nodes.len())
            .map(|i| Ok(self.status(i)?["digest"].as_str().unwrap_or("").to_owned()))
            .collect()
    }

    /// Polls until all digests are equal; returns the time taken.
    fn wait_digests(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        loop {
            let d = self.digests()?;
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
    fn upload(&mut self, i: usize) -> anyhow::Result<String> {
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
        check(
            self.http
                .post(format!("{}/api/v1/datasets", self.nodes[i].url))
                .multipart(form)
                .send()?,
        )?;
        Ok(slug)
    }

    /// Publishes (create) `slug` on node `i`, or re-publishes it after a metadata change
    /// (update) when `update`; returns the new seq. Only the publishing request is timed by the
    /// caller.
    fn publish(&mut self, i: usize, slug: &str, update: bool) -> anyhow::Result<u64> {
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
    fn publish_on(&mut self, nodes: &[usize]) -> anyhow::Result<()> {
        for &i in nodes {
            let slug = self.upload(i)?;
            self.publish(i, &slug, false)?;
        }
        Ok(())
    }
}

/// The seq of `publisher` in a status document.
fn seq_of(status: &Value, publisher: &str) -> u64 {
    status["publishers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["peer_id"] == publisher)
        .and_then(|p| p["seq"].as_u64())
        .unwrap_or(0)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// Cases

/// Measures, for each of `count` publications on random nodes, the time from the request until
/// every other node shows the new seq. Returns the latencies in ms.
fn propagation_run(
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

fn report_latencies(name: &str, mut v: Vec<f64>, events: &Events) -> Value {
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

fn case_propagation(a: &Args, events: &Events) -> anyhow::Result<Value> {
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

fn nft(script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .context("nft (apt-get install nftables)")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(script.as_bytes())?;
    let status = child.wait()?;
    ensure!(status.success(), "nft failed on:\n{script}");
    Ok(())
}

fn in_netns_or_reexec() -> anyhow::Result<Option<ExitCode>> {
    if std::env::var_os(NETNS_ENV).is_some() {
        let status = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()?;
        ensure!(status.success(), "cannot bring lo up in the namespace");
        if Command::new("nft").arg("--version").output().is_err() {
            bail!("`nft` is missing: apt-get install nftables");
        }
        return Ok(None);
    }
    if Command::new("nft").arg("--version").output().is_err() {
        println!("`nft` missing; installing nftables with apt-get");
        let ok = Command::new("apt-get")
            .args(["install", "-y", "nftables"])
            .status()?
            .success();
        ensure!(ok, "apt-get install nftables failed");
    }
    println!("re-executing inside a private network namespace (unshare -n)");
    let exe = std::env::current_exe()?;
    let mut child = child_command(Path::new("unshare"))
        .arg("-n")
        .arg("--")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(NETNS_ENV, "1")
        .spawn()
        .context("unshare -n (needs root or user namespaces)")?;
    register(child.id());
    let status = child.wait()?;
    unregister(child.id());
    if STOP.load(Ordering::SeqCst) {
        return Ok(Some(ExitCode::from(130)));
    }
    Ok(Some(ExitCode::from(status.code().unwrap_or(1) as u8)))
}

fn case_partition(a: &Args, events: &Events) -> anyhow::Result<Value> {
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
        let port = card["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find_map(|a| {
                a.split("/tcp/")
                    .nth(1)?
                    .split('/')
                    .next()?
                    .parse::<u16>()
                    .ok()
            })
            .with_context(|| format!("node {i} has no TCP address"))?;
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

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

fn case_idle(a: &Args, events: &Events) -> anyhow::Result<Value> {
    let mut cluster = Cluster::start(a, events)?;
    cluster.form(events)?;
    let all: Vec<usize> = (0..a.nodes).collect();
    cluster.publish_on(&all)?;
    cluster.wait_digests(Duration::from_secs(30))?;
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
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

fn case_smoke(a: &Args, events: &Events) -> anyhow::Result<Value> {
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
    println!("smoke passed in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(summary)
}

fn main() -> ExitCode {
    install_signal_watcher();
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("federation: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let a = args()?;
    if a.case == "partition"
        && let Some(code) = in_netns_or_reexec()?
    {
        return Ok(code);
    }
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let results = a.results.clone().unwrap_or_else(|| {
        std::env::temp_dir()
            .join("allmende-federation")
            .join(format!("{}-{stamp}", a.case))
    });
    std::fs::create_dir_all(&results)?;
    let events = Events::new(&results.join("events.jsonl"))?;
    events.now(
        json!({"ev": "start", "case": a.case, "nodes": a.nodes, "sync_interval_ms": a.sync_ms,
        "seed": a.seed, "cores": std::thread::available_parallelism().map_or(0, |n| n.get())}),
    );
    println!(
        "case {} with {} nodes (sync interval {} ms, {} cores); events in {}",
        a.case,
        a.nodes,
        a.sync_ms,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        results.display()
    );
    let wall = Instant::now();
    let summary = match a.case.as_str() {
        "propagation" => case_propagation(&a, &events),
        "partition" => case_partition(&a, &events),
        "idle" => case_idle(&a, &events),
        _ => case_smoke(&a, &events),
    };
    events.flush();
    let mut summary = summary?;
    summary["wall_s"] = json!(wall.elapsed().as_secs_f64());
    std::fs::write(
        results.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    println!("wall time {:.1} s", wall.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}
