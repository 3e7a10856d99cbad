//! Foundation figures for one node, printed as a table (record them in BENCHMARKS.md):
//!
//! - start-up: process spawn until the first `GET /healthz` is answered;
//! - idle RSS of a freshly started node;
//! - CSV → Parquet import throughput on a generated ~1 GB CSV, in-process (the converter alone)
//!   and end to end through the HTTP API, with peak memory, side by side with DuckDB's
//!   `COPY (SELECT * FROM read_csv(...)) TO '...parquet'` on the same file (DuckDB from PyPI,
//!   run through `python3`; skipped with a note when it is not installed).
//!
//! Run: `cargo run --release -p allmende-scenarios --bin foundation -- [--size-mb 1024] [--work DIR]`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use allmende_scenarios::{bin, rss_kb};
use anyhow::{Context, bail};
use clap::Parser;

/// One node's start-up time, idle RSS and CSV → Parquet import throughput.
#[derive(Parser)]
#[command(name = "foundation")]
struct Args {
    /// Size of the generated CSV in MB (reused from the work dir when it is there).
    #[arg(long, default_value_t = 1024)]
    size_mb: u64,
    /// Where the CSV, the Parquet outputs and the node's data dir go
    /// [default: $TMPDIR/allmende-bench].
    #[arg(long, default_value_os_t = std::env::temp_dir().join("allmende-bench"), hide_default_value = true)]
    work: PathBuf,
    /// How many times the node is started for the start-up and idle RSS figures.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn peak_rss_self_mb() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

fn cpu_secs_self() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

struct Node {
    child: Child,
    url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Starts a node; returns it and the time until `/healthz` answered.
fn start(bin: &Path, dir: &Path, port: u16) -> anyhow::Result<(Node, Duration)> {
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()?;
    let t0 = Instant::now();
    let child = Command::new(bin)
        .args(["run", "--data-dir"])
        .arg(dir)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::null())
        .spawn()?;
    let node = Node { child, url };
    loop {
        if http
            .get(format!("{}/healthz", node.url))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok((node, t0.elapsed()));
        }
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("node did not answer within 20 s");
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn generate_csv(path: &Path, size_mb: u64) -> anyhow::Result<u64> {
    if let Ok(meta) = std::fs::metadata(path) {
        return Ok(meta.len());
    }
    // About 52 bytes a row: rows = size / 52, spread over 250 stations.
    let stations = 250u32;
    let days = ((size_mb << 20) / 52 / 24 / u64::from(stations)).max(1) as u32;
    let spec = allmende_data::sample::Spec {
        district_key: "05515".into(),
        start: chrono::NaiveDate::from_ymd_opt(2015, 1, 1).context("date")?,
        days,
        stations,
        seed: 0,
    };
    let tmp = path.with_extension("partial");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    allmende_data::sample::write_traffic(&spec, &mut out)?;
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, path)?;
    Ok(std::fs::metadata(path)?.len())
}

fn duckdb(csv: &Path, out: &Path, threads: u32) -> anyhow::Result<Option<f64>> {
    let script = format!(
        "import duckdb, time\n\
         con = duckdb.connect()\n\
         con.execute('SET threads TO {threads}')\n\
         con.execute('SET enable_progress_bar = false')\n\
         t = time.perf_counter()\n\
         con.execute(\"COPY (SELECT * FROM read_csv('{}')) TO '{}' (FORMAT parquet)\")\n\
         print('SECONDS', time.perf_counter() - t)\n",
        csv.display(),
        out.display()
    );
    let result = Command::new("python3").args(["-c", &script]).output()?;
    if !result.status.success() {
        let err = String::from_utf8_lossy(&result.stderr);
        if err.contains("No module named 'duckdb'") {
            return Ok(None);
        }
        bail!("duckdb failed: {err}");
    }
    let out = String::from_utf8_lossy(&result.stdout);
    let secs = out
        .lines()
        .find_map(|l| l.strip_prefix("SECONDS "))
        .with_context(|| format!("unexpected output from duckdb: {out}"))?;
    Ok(Some(secs.trim().parse()?))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let bin = bin()?;
    std::fs::create_dir_all(&a.work)?;
    println!(
        "allmende foundation benchmark ({} runs, {} cores)",
        a.runs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Start-up and idle RSS.
    let node_dir = tempfile::tempdir_in(&a.work)?;
    let init = Command::new(&bin)
        .args(["init", "--data-dir"])
        .arg(node_dir.path())
        .args(["--name", "Bench", "--district-key", "05515"])
        .output()?;
    if !init.status.success() {
        bail!("init: {}", String::from_utf8_lossy(&init.stderr));
    }
    let mut startups = Vec::new();
    let mut rss = Vec::new();
    for i in 0..a.runs {
        let (node, took) = start(&bin, node_dir.path(), 17_100 + i as u16)?;
        startups.push(took.as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_secs(1));
        rss.push(rss_kb(node.child.id())? as f64 / 1024.0);
    }
    let (lo, med, hi) = stats(startups);
    println!(
        "start-up to first served request   median {med:7.1} ms   (min {lo:.1}, max {hi:.1})   goal <= 500 ms"
    );
    let (lo, med, hi) = stats(rss);
    println!(
        "idle RSS after start               median {med:7.1} MB   (min {lo:.1}, max {hi:.1})   goal <= 40 MB"
    );

    // Import throughput.
    let csv = a.work.join(format!("traffic-{}mb.csv", a.size_mb));
    print!("generating {} ... ", csv.display());
    std::io::stdout().flush()?;
    let bytes = generate_csv(&csv, a.size_mb)?;
    let mb = bytes as f64 / 1e6;
    println!("{mb:.0} MB");

    let out = a.work.join("allmende-out.parquet");
    let cpu0 = cpu_secs_self();
    let t0 = Instant::now();
    let converted = allmende_data::import::convert(
        allmende_data::import::Format::Csv,
        &csv,
        &out,
        &allmende_data::import::ImportLimits::default(),
        &|_| {},
    )?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs_self() - cpu0;
    println!(
        "allmende CSV->Parquet (in-process)  {:7.1} MB/s wall, {:7.1} MB/s per CPU-second   {} rows, {:.1} s, peak RSS {:.0} MB, Parquet {:.0} MB",
        mb / secs,
        mb / cpu,
        converted.rows,
        secs,
        peak_rss_self_mb(),
        converted.bytes as f64 / 1e6
    );

    // End to end through the API: upload (streamed to disk) + conversion + commit.
    let (node, _) = start(&bin, node_dir.path(), 17_199)?;
    let t0 = Instant::now();
    let upload = Command::new(&bin)
        .args(["--api", &node.url, "--data-dir"])
        .arg(node_dir.path())
        .args(["dataset", "import"])
        .arg(&csv)
        .args(["--slug", "traffic_bench"])
        .stderr(Stdio::null())
        .output()?;
    let secs = t0.elapsed().as_secs_f64();
    if !upload.status.success() {
        bail!(
            "import through the API failed: {}",
            String::from_utf8_lossy(&upload.stdout)
        );
    }
    let node_peak = std::fs::read_to_string(format!("/proc/{}/status", node.child.id()))?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    println!(
        "allmende import via HTTP API        {:7.1} MB/s wall ({secs:.1} s; node peak RSS {node_peak})",
        mb / secs
    );
    drop(node);

    for threads in [1, 2] {
        let out = a.work.join(format!("duckdb-{threads}.parquet"));
        match duckdb(&csv, &out, threads)? {
            Some(secs) => println!(
                "DuckDB COPY read_csv -> parquet     {:7.1} MB/s wall with {threads} thread(s) ({secs:.1} s)",
                mb / secs
            ),
            None => println!("DuckDB: not installed (pip install duckdb), skipped"),
        }
    }
    let _ = std::fs::remove_file(&out);
    Ok(())
}
