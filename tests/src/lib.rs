//! Helpers for the black-box tests: real `allmende` processes in temporary data dirs.

pub mod member;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// This package's directory: as cargo gives it to the running test (a test built in another
/// checkout sharing the target dir would otherwise carry that checkout's path), else as compiled.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The `allmende` binary: `$ALLMENDE_BIN`, else the one cargo built beside this test.
pub fn bin() -> PathBuf {
    if let Some(path) = std::env::var_os("ALLMENDE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join("allmende");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p allmende` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// The local admin token of every test node: `allmende` runs with it in `ALLMENDE_TOKEN`, so
/// `init` stores its hash and client commands send it; [`http`] sends it too.
pub const TEST_TOKEN: &str = "allmende_e2e-test-token-not-secret-0123456789";

/// Runs the binary with `args` and returns its output.
pub fn allmende(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("ALLMENDE_API")
        .env_remove("ALLMENDE_DATA_DIR")
        .env("ALLMENDE_TOKEN", TEST_TOKEN)
        .output()
        .expect("run allmende")
}

/// A node's data dir and, while it runs, its process.
pub struct TestNode {
    /// The data dir (removed on drop).
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// The API's base URL while running.
    pub url: String,
}

impl TestNode {
    /// `allmende init` in a fresh directory, listening on an ephemeral loopback port.
    pub fn init(name: &str, district_key: &str) -> Self {
        Self::init_at(name, district_key, "127.0.0.1", &[])
    }

    /// `allmende init` in a fresh directory with the HTTP API and libp2p (QUIC and TCP) bound
    /// to ephemeral ports on the loopback address `ip` (e.g. `127.0.0.3`), plus `extra` flags.
    pub fn init_at(name: &str, district_key: &str, ip: &str, extra: &[&str]) -> Self {
        assert!(ip.starts_with("127."), "tests stay on loopback, not {ip}");
        let dir = tempfile::tempdir().expect("tempdir");
        let listen = format!("{ip}:0");
        let p2p = format!("/ip4/{ip}/udp/0/quic-v1,/ip4/{ip}/tcp/0");
        let mut args = vec![
            "init",
            "--data-dir",
            dir.path().to_str().expect("utf-8 path"),
            "--name",
            name,
            "--district-key",
            district_key,
            "--listen",
            &listen,
            "--p2p-listen",
            &p2p,
        ];
        args.extend_from_slice(extra);
        let out = allmende(&args);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir,
            child: None,
            url: String::new(),
        }
    }

    /// The data dir's path as a string.
    pub fn data_dir(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 path")
    }

    /// Starts `allmende run` and waits until it listens.
    pub fn start(&mut self) {
        let mut child = Command::new(bin())
            .args(["run", "--data-dir", self.data_dir(), "--log-level", "warn"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn allmende run");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("allmende listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("node did not report its address within 20 s");
        self.url = url;
        self.child = Some(child);
    }

    /// The process id while running.
    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .map(|c| c.id() as i32)
            .expect("not running")
    }

    /// Sends `signal` and waits up to `timeout` for the process to exit; returns its status.
    pub fn stop(&mut self, signal: i32, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("not running");
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node did not exit within {timeout:?} after signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a client command against this node.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut all = vec!["--api", self.url.as_str()];
        all.extend_from_slice(args);
        allmende(&all)
    }

    /// Runs a client command that must succeed and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "`allmende {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// `GET path` as JSON.
    pub fn get(&self, path: &str) -> serde_json::Value {
        http()
            .get(format!("{}{path}", self.url))
            .send()
            .and_then(|r| r.json())
            .expect("GET")
    }

    /// `GET path` with query parameters (encoded here) as JSON; panics unless 2xx.
    pub fn get_query(&self, path: &str, query: &[(&str, &str)]) -> serde_json::Value {
        let response = http()
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .expect("GET");
        let status = response.status();
        let body: serde_json::Value = response.json().expect("JSON body");
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    /// `POST path` with a JSON body; returns the status and the JSON body (`null` if none).
    pub fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let response = http()
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .expect("POST");
        let status = response.status().as_u16();
        let text = response.text().expect("body");
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    /// Whether the process is running (started and not stopped).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

/// A blocking HTTP client with a timeout, for the helpers above.
pub fn http() -> reqwest::blocking::Client {
    let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {TEST_TOKEN}"))
        .expect("header value");
    auth.set_sensitive(true);
    reqwest::blocking::Client::builder()
        .default_headers(
            [(reqwest::header::AUTHORIZATION, auth)]
                .into_iter()
                .collect(),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// Calls `check` every 50 ms until it returns `Some`, and returns that; panics naming `what`
/// (and the last value `describe` gives) when `timeout` passes first.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not reached within {timeout:?}; last state: {}",
                describe()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Forms a federation `id` of `nodes` purely through the CLI: every node writes its card
/// ([`TestNode::card`]), the first creates the founding roster from the others' cards, each of
/// the others signs the file in turn, and every node applies it. Returns the roster file
/// (`<id>.roster` in the first node's data dir); does not wait for connections.
pub fn form_federation(nodes: &[&TestNode], id: &str) -> PathBuf {
    let cards: Vec<PathBuf> = nodes.iter().map(|n| n.card()).collect();
    let roster = nodes[0].dir.path().join(format!("{id}.roster"));
    let out = create_roster(nodes[0], &cards[1..], id, &roster);
    assert!(out.contains("1 signatures"), "{out}");
    for n in &nodes[1..] {
        n.ok(&["federation", "sign", path(&roster)]);
    }
    for n in nodes {
        let out = n.ok(&["federation", "apply", path(&roster)]);
        assert!(out.contains("installed roster version 1"), "{out}");
    }
    roster
}

/// `federation create --id id` on `founder` with the members' `cards`, written to `out`;
/// returns the command's output.
pub fn create_roster(founder: &TestNode, cards: &[PathBuf], id: &str, out: &Path) -> String {
    let mut args = vec!["federation", "create", "--id", id];
    for c in cards {
        args.extend(["--card", path(c)]);
    }
    args.extend(["-o", path(out)]);
    founder.ok(&args)
}

/// Forms a federation `id` of `nodes` ([`form_federation`]) and waits until every member is
/// connected to every other.
pub fn federate(nodes: &[&TestNode], id: &str) {
    form_federation(nodes, id);
    poll(
        "every member connected",
        Duration::from_secs(20),
        || {
            nodes
                .iter()
                .all(|n| {
                    n.get("/api/v1/federation")["connected"]
                        .as_array()
                        .map_or(0, Vec::len)
                        >= nodes.len() - 1
                })
                .then_some(())
        },
        String::new,
    );
}

/// A running city node with a generated air-quality dataset `air` (2 days, 3 stations, DCAT-AP.de
/// fields filled, `dct:conformsTo` air_quality_hourly) under the policy file `policy` of
/// `data/policies`; returns the node and the CSV it imported.
pub fn air_city(name: &str, key: &str, ip: &str, policy: &str) -> (TestNode, PathBuf) {
    let mut node = TestNode::init_at(
        name,
        key,
        ip,
        &[
            "--sync-interval-ms",
            "500",
            "--contact-email",
            "daten@example.org",
        ],
    );
    node.start();
    let csv = node.import_air(&AirSample {
        slug: "air",
        title: &format!("Luftqualität {name}"),
        district_key: key,
        days: 2,
        stations: 3,
        conforms: true,
    });
    node.attach_policy("air", policy);
    (node, csv)
}

/// The path as a `&str` (every path of these tests is UTF-8).
pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The policy file `name` of the repository's `data/policies`.
pub fn policy_file(name: &str) -> PathBuf {
    manifest_dir().join("../data/policies").join(name)
}

/// Generated air-quality data to import (`allmende sample air-quality`).
pub struct AirSample<'a> {
    /// The dataset's slug; the CSV is `<slug>.csv` in the node's data dir.
    pub slug: &'a str,
    /// The dataset's title.
    pub title: &'a str,
    /// The district whose stations are generated.
    pub district_key: &'a str,
    /// Days of hourly values.
    pub days: u32,
    /// Measuring stations.
    pub stations: u32,
    /// Whether the dataset declares `dct:conformsTo` the common schema air_quality_hourly.
    pub conforms: bool,
}

impl TestNode {
    /// Generates `sample` and imports it with the DCAT-AP.de fields filled (not published);
    /// returns the CSV.
    pub fn import_air(&self, sample: &AirSample) -> PathBuf {
        let csv = self.dir.path().join(format!("{}.csv", sample.slug));
        let (days, stations) = (sample.days.to_string(), sample.stations.to_string());
        let out = allmende(&[
            "sample",
            "air-quality",
            "--district-key",
            sample.district_key,
            "--days",
            &days,
            "--stations",
            &stations,
            "-o",
            path(&csv),
        ]);
        assert!(out.status.success(), "sample: {out:?}");
        let mut args = vec![
            "dataset",
            "import",
            path(&csv),
            "--slug",
            sample.slug,
            "--title",
            sample.title,
            "--description",
            "Stündliche NO2- und PM10-Werte",
            "--license",
            "dl-by-de/2.0",
            "--theme",
            "ENVI",
        ];
        if sample.conforms {
            args.extend(["--conforms-to", "urn:allmende:schema:air_quality_hourly:1"]);
        }
        self.ok(&args);
        csv
    }

    /// Attaches the policy file `name` of `data/policies` to dataset `slug`.
    pub fn attach_policy(&self, slug: &str, name: &str) {
        self.ok(&["policy", "attach", slug, path(&policy_file(name))]);
    }

    /// Writes this node's member card with `allmende federation card -o` to `card.json` in its
    /// data dir (once libp2p listens, so that the card carries its addresses) and returns the
    /// file.
    pub fn card(&self) -> PathBuf {
        poll(
            "card with listen addresses",
            Duration::from_secs(20),
            || {
                self.get("/api/v1/federation/card")["addresses"]
                    .as_array()
                    .is_some_and(|a| a.len() >= 2)
                    .then_some(())
            },
            || self.get("/api/v1/federation/card").to_string(),
        );
        let card = self.dir.path().join("card.json");
        self.ok(&["federation", "card", "-o", path(&card)]);
        card
    }

    /// `allmende sql` with `--format json`, which must succeed: the rows.
    pub fn sql_json(&self, sql: &str) -> serde_json::Value {
        let out = self.cli(&["sql", sql, "--format", "json"]);
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    }
}

/// The Python of `$ALLMENDE_PYTHON` (the virtualenv `scripts/test.sh` makes; else `python3`) if
/// it imports every one of `modules`. Without it the caller skips what needs it, saying so
/// (`what`); a `$ALLMENDE_PYTHON` that lacks a module is a failure, not a skip.
pub fn python_with(modules: &str, what: &str) -> Option<String> {
    let python = std::env::var("ALLMENDE_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var_os("ALLMENDE_PYTHON").is_none(),
        "$ALLMENDE_PYTHON is set but cannot import {modules}"
    );
    eprintln!(
        "skipping {what}: no Python that imports {modules} (scripts/test.sh installs one and \
         sets ALLMENDE_PYTHON)"
    );
    None
}
