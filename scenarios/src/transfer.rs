//! Whole-dataset transfer throughput between two node processes on loopback, side by side with
//! fetching the same file over HTTP from a local web server in the same run (issue 5, item 11:
//! the transfer should reach at least 60 % of the HTTP throughput).
//!
//! The run writes a Parquet file of about `--size-mb` MB of incompressible data, imports it on
//! the provider (Münster, 127.0.0.41) under an open policy, forms a two-member federation with
//! the consumer (Mönchengladbach, 127.0.0.42), and concludes an agreement. Then, `--runs`
//! times and interleaved:
//!
//! - **transfer**: `POST /api/v1/transfers` on the consumer until the transfer is `complete`
//!   (the consumer node's own `created` → `finished` times): libp2p stream, written to the
//!   consumer's disk while hashed, checked against the signed SHA-256;
//! - **http (axum)**: `curl -o` of the provider's stored Parquet file from an axum server in
//!   this process (tokio file → response body stream, 1 MiB reads), written to the same disk;
//! - **http (python)**: the same from `python3 -m http.server`, for reference.
//!
//! Run: `cargo build --release -p allmende -p allmende-scenarios &&
//! target/release/transfer [--size-mb 1024] [--runs 3] [--work DIR] [--p2p both|quic|tcp]`

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allmende_scenarios::{bin, client_with_token, cpu_ticks, p2p_listen, ticks_per_sec, wait_for};
use anyhow::{Context, bail};
use arrow::array::{Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use clap::Parser;
use serde_json::{Value, json};

const TOKEN: &str = "allmende_transfer-bench-token-0123456789";

/// Whole-dataset transfer between two nodes against HTTP (`curl`) from a local server.
#[derive(Parser)]
#[command(name = "transfer")]
struct Args {
    /// Size of the generated Parquet file in MB.
    #[arg(long, default_value_t = 1024)]
    size_mb: u64,
    /// Timed runs (after one warm-up run that concludes the agreement).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where the file and the nodes' data dirs go; removed at the start and the end
    /// [default: $TMPDIR/allmende-transfer-bench].
    #[arg(long, default_value_os_t = std::env::temp_dir().join("allmende-transfer-bench"), hide_default_value = true)]
    work: PathBuf,
    /// The libp2p transports the nodes listen on: both (QUIC first), quic or tcp.
    #[arg(long, default_value = "both", value_parser = ["both", "quic", "tcp"])]
    p2p: String,
}

/// A node process with its data dir and API URL.
struct Node {
    dir: PathBuf,
    url: String,
    child: Option<Child>,
}

impl Node {
    fn init(work: &Path, name: &str, key: &str, ip: &str, p2p: &str) -> anyhow::Result<Self> {
        let dir = work.join(key);
        let tcp = std::net::TcpListener::bind((ip, 0))?.local_addr()?.port();
        let udp = std::net::UdpSocket::bind((ip, 0))?.local_addr()?.port();
        let out = Command::new(bin()?)
            .env("ALLMENDE_TOKEN", TOKEN)
            .args(["init", "--data-dir"])
            .arg(&dir)
            .args(["--name", name, "--district-key", key])
            .args(["--listen", &format!("{ip}:0")])
            .args(["--p2p-listen", &p2p_listen(ip, p2p, udp, tcp)])
            .args(["--contact-email", "daten@example.org"])
            .output()?;
        if !out.status.success() {
            bail!("init: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut node = Node {
            dir,
            url: String::new(),
            child: None,
        };
        node.start()?;
        Ok(node)
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let mut child = Command::new(bin()?)
            .env("ALLMENDE_TOKEN", TOKEN)
            .args(["run", "--log-level", "warn", "--data-dir"])
            .arg(&self.dir)
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines.next().context("node exited")??;
            if let Some(url) = line.strip_prefix("allmende listening on ") {
                break url.to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        self.url = url;
        self.child = Some(child);
        Ok(())
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(bin()?)
            .env("ALLMENDE_TOKEN", TOKEN)
            .args(["--data-dir"])
            .arg(&self.dir)
            .args(["--api", &self.url])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "allmende {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(http()
            .get(format!("{}{path}", self.url))
            .send()?
            .error_for_status()?
            .json()?)
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = http()
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()?;
        let status = r.status();
        let v: Value = r.json().unwrap_or_default();
        if !status.is_success() {
            bail!("POST {path}: {status} {v}");
        }
        Ok(v)
    }

    /// CPU seconds (user + system) the node process has used so far.
    fn cpu_secs(&self) -> anyhow::Result<f64> {
        let pid = self.child.as_ref().context("not running")?.id();
        Ok(cpu_ticks(pid)? as f64 / ticks_per_sec())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

fn http() -> reqwest::blocking::Client {
    client_with_token(TOKEN, Duration::from_secs(600))
        .and_then(|b| Ok(b.build()?))
        .expect("client")
}

/// Writes a Parquet file of about `mb` MB of random numbers and strings (incompressible).
fn write_parquet(path: &Path, mb: u64) -> anyhow::Result<u64> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("value", DataType::Float64, false),
        Field::new("code", DataType::Utf8, false),
    ]));
    let file = std::fs::File::create(path)?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))?;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut id = 0i64;
    let rows = 65_536;
    while w.bytes_written() as u64 + w.in_progress_size() as u64 <= mb << 20 {
        let ids: Int64Array = (0..rows)
            .map(|_| {
                id += 1;
                id
            })
            .collect();
        let values: Float64Array = (0..rows)
            .map(|_| f64::from_bits(next() >> 12 | 0x3ff0_0000_0000_0000))
            .collect();
        let codes: StringArray = (0..rows)
            .map(|_| Some(format!("{:016x}", next())))
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(ids), Arc::new(values), Arc::new(codes)],
        )?;
        w.write(&batch)?;
    }
    w.close()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Serves `file` at `/file` over HTTP from a tokio runtime in this process; returns the URL.
fn serve_axum(file: PathBuf) -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.43:0")?;
    listener.set_nonblocking(true)?;
    let url = format!("http://{}/file", listener.local_addr()?);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/file",
                axum::routing::get(move || {
                    let file = file.clone();
                    async move {
                        let f = tokio::fs::File::open(&file).await.expect("open");
                        let len = f.metadata().await.expect("metadata").len();
                        axum::response::Response::builder()
                            .header("content-length", len)
                            .body(axum::body::Body::from_stream(
                                tokio_util::io::ReaderStream::with_capacity(f, 1 << 20),
                            ))
                            .expect("response")
                    }
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    Ok(url)
}

/// `curl -o out url`; returns the seconds it took.
fn curl(url: &str, out: &Path) -> anyhow::Result<f64> {
    let t = Instant::now();
    let status = Command::new("curl")
        .args(["-sS", "--fail", "-o"])
        .arg(out)
        .arg(url)
        .status()?;
    if !status.success() {
        bail!("curl {url} failed");
    }
    let secs = t.elapsed().as_secs_f64();
    std::fs::remove_file(out)?;
    Ok(secs)
}

fn millis_between(a: &str, b: &str) -> anyhow::Result<f64> {
    let a = chrono::DateTime::parse_from_rfc3339(a)?;
    let b = chrono::DateTime::parse_from_rfc3339(b)?;
    Ok((b - a).num_milliseconds() as f64 / 1000.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let _ = std::fs::remove_dir_all(&a.work);
    std::fs::create_dir_all(&a.work)?;
    let source = a.work.join("big.parquet");
    let t = Instant::now();
    let size = write_parquet(&source, a.size_mb)?;
    println!(
        "wrote {} ({:.0} MB) in {:.1} s",
        source.display(),
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let provider = Node::init(&a.work, "Stadt Münster", "05515", "127.0.0.41", &a.p2p)?;
    let consumer = Node::init(
        &a.work,
        "Stadt Mönchengladbach",
        "05116",
        "127.0.0.42",
        &a.p2p,
    )?;
    let card = |n: &Node, f: &str| -> anyhow::Result<String> {
        let p = a.work.join(f);
        n.cli(&["federation", "card", "-o", p.to_str().context("path")?])?;
        Ok(p.to_string_lossy().into_owned())
    };
    let roster = a.work.join("roster.hex").to_string_lossy().into_owned();
    let c1 = card(&consumer, "card1.json")?;
    provider.cli(&[
        "federation",
        "create",
        "--id",
        "bench",
        "-o",
        &roster,
        "--card",
        &c1,
    ])?;
    consumer.cli(&["federation", "sign", &roster])?;
    provider.cli(&["federation", "apply", &roster])?;
    consumer.cli(&["federation", "apply", &roster])?;

    let t = Instant::now();
    provider.cli(&[
        "dataset",
        "import",
        source.to_str().context("path")?,
        "--slug",
        "big",
        "--title",
        "Große Messreihe",
        "--description",
        "Zufallszahlen für die Durchsatzmessung",
        "--license",
        "dl-by-de/2.0",
        "--theme",
        "ENVI",
    ])?;
    println!(
        "imported on the provider in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/policies/offer-open.jsonld");
    provider.cli(&["policy", "attach", "big", policy.to_str().context("path")?])?;
    provider.cli(&["dataset", "publish", "big"])?;
    let stored = provider.get("/api/v1/datasets/big")?;
    let stored_size = stored["record"]["distributions"][0]["byte_size"]
        .as_u64()
        .context("size")?;
    // The node keeps version v of a dataset at `datasets/<id>/v<v>.parquet`.
    let stored_path = provider.dir.join(format!(
        "datasets/{}/v{}.parquet",
        stored["id"].as_str().unwrap_or_default(),
        stored["version"]
    ));
    if !stored_path.is_file() {
        bail!("{} is not the stored file", stored_path.display());
    }
    wait_for(
        "catalog replicated",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            Ok(consumer
                .get("/api/v1/catalog?q=messreihe")
                .ok()
                .filter(|v| v["total"] == 1))
        },
    )?;

    let axum_url = serve_axum(stored_path.clone())?;
    let mut python = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.44", "0"])
        .current_dir(stored_path.parent().context("dir")?)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let python_url = match &mut python {
        Ok(child) => {
            let mut line = String::new();
            BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
            // "Serving HTTP on 127.0.0.44 port 41234 (http://127.0.0.44:41234/) ..."
            line.split("(http://")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .map(|host| {
                    format!(
                        "http://{host}/{}",
                        stored_path
                            .file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                    )
                })
        }
        Err(_) => None,
    };

    let out = a.work.join("download.parquet");
    let mut transfer_secs = Vec::new();
    let mut axum_secs = Vec::new();
    let mut python_secs = Vec::new();
    for run in 0..=a.runs {
        let body = json!({ "dataset": "muenster.big", "negotiate": run == 0 });
        let cpu_before = (provider.cpu_secs()?, consumer.cpu_secs()?);
        let started = consumer.post("/api/v1/transfers", &body)?;
        let id = started["id"].as_str().context("id")?.to_owned();
        let done = wait_for(
            "transfer complete",
            Duration::from_secs(600),
            Duration::from_millis(20),
            || {
                Ok(consumer
                    .get(&format!("/api/v1/transfers/{id}"))
                    .ok()
                    .filter(|r| r["state"] != "running"))
            },
        )?;
        if done["state"] != "complete" {
            bail!("transfer failed: {done}");
        }
        let cpu = (
            provider.cpu_secs()? - cpu_before.0,
            consumer.cpu_secs()? - cpu_before.1,
        );
        let secs = millis_between(
            done["created"].as_str().unwrap_or_default(),
            done["finished"].as_str().unwrap_or_default(),
        )?;
        http()
            .delete(format!("{}/api/v1/transfers/{id}", consumer.url))
            .send()?
            .error_for_status()?;
        let a_secs = curl(&axum_url, &out)?;
        let p_secs = match &python_url {
            Some(u) => Some(curl(u, &out)?),
            None => None,
        };
        if run == 0 {
            println!("warm-up run done (agreement concluded)");
            continue;
        }
        let mbps = |s: f64| stored_size as f64 / 1e6 / s;
        println!(
            "run {run}: transfer {:.2} s ({:.0} MB/s, CPU provider {:.2} s, consumer {:.2} s); http axum {:.2} s ({:.0} MB/s){}",
            secs,
            mbps(secs),
            cpu.0,
            cpu.1,
            a_secs,
            mbps(a_secs),
            p_secs.map_or(String::new(), |p| format!(
                "; http python {p:.2} s ({:.0} MB/s)",
                mbps(p)
            ))
        );
        transfer_secs.push(secs);
        axum_secs.push(a_secs);
        if let Some(p) = p_secs {
            python_secs.push(p);
        }
    }
    if let Ok(mut child) = python {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mbps = |s: f64| stored_size as f64 / 1e6 / s;
    let (t, h) = (mbps(median(transfer_secs)), mbps(median(axum_secs)));
    println!(
        "\n{:.0} MB file, libp2p over {}, median of {} runs: transfer {:.0} MB/s, http (axum) {:.0} MB/s, ratio {:.0} % (goal ≥ 60 %){}",
        stored_size as f64 / 1e6,
        a.p2p,
        a.runs,
        t,
        h,
        100.0 * t / h,
        if python_secs.is_empty() {
            String::new()
        } else {
            format!(
                "; http (python http.server) {:.0} MB/s",
                mbps(median(python_secs))
            )
        }
    );
    drop(provider);
    drop(consumer);
    let _ = std::fs::remove_dir_all(&a.work);
    Ok(())
}
