//! The node processes of one run: initialising and starting them, faults on single processes
//! (kill -9, SIGSTOP), ending them all on exit, and their HTTP API.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use allmende_scenarios::{bin, client_with_token, p2p_listen};
use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::Args;
use crate::events::Events;
use crate::procs::{child_command, register, unregister};

pub(crate) const FEDERATION: &str = "bench";
/// Pause between two status requests of one polling thread (one thread per node).
pub(crate) const POLL: Duration = Duration::from_millis(5);
/// The local admin token every node is initialised with (`ALLMENDE_TOKEN` at `init`; the node
/// keeps its hash) and that the harness sends as `Authorization: Bearer`.
pub(crate) const BENCH_TOKEN: &str = "allmende_federation-bench-token-not-secret-0123";

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
    pub(crate) p2p: String,
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
    Ok(client_with_token(BENCH_TOKEN, Duration::from_secs(10))?
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
                (30000 + i as u16, 20000 + i as u16)
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
                    &p2p_listen(&ip, &a.p2p, p2p, p2p),
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
}
