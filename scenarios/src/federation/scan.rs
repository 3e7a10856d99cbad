//! `--case scan`: scan-heavy federated queries beside DuckDB over the same files, in one run
//! (goal: federated time ≤ 1.5 × DuckDB's).
//!
//! Each of N members (3 by default) imports `--rows` rows of hourly traffic counts (a year of
//! hours at as many stations as that takes) from a Parquet file the harness writes, and
//! publishes it as `traffic_hourly` under the open policy; the asking node holds the German
//! districts (Destatis, from the binary's sample data) as its own table. Then, alternating
//! in rounds, the same SQL runs federated from node 0 (`POST /api/v1/query`, client-side time)
//! and on DuckDB (PyPI, `tests/reference/duckdb_timed.py`, its own time for the query)
//! over the union of the same Parquet files, with 2 threads; every answer is compared.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allmende_data::sample::{DISTRICTS_CSV, TRAFFIC_SCHEMA};
use allmende_scenarios::{client_with_token, cpu_ticks, ticks_per_sec};
use anyhow::{Context, bail, ensure};
use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use reqwest::blocking::multipart::Form;
use serde_json::{Value, json};

use crate::Args;
use crate::cluster::{BENCH_TOKEN, Cluster};
use crate::counts::{rows_equal, statuses};
use crate::events::{Events, ms, pct};

/// The asking node.
const ASKER: usize = 0;
/// The members' district keys: Münster, Mönchengladbach, Würzburg, then others.
const KEYS: [&str; 6] = ["05515", "05116", "09663", "05315", "08221", "14612"];
const OPEN_POLICY: &str = include_str!("../../../data/policies/offer-open.jsonld");
const DAYS: u64 = 365;

/// The researcher's questions: a daily aggregate with a filter, and a join with the asker's
/// own districts table.
const QUERIES: [(&str, &str); 2] = [
    (
        "daily, filtered",
        "SELECT date_trunc('day', timestamp) AS day, sum(vehicles) AS v, count(*) AS n \
         FROM {T} WHERE bicycles >= 20 GROUP BY 1 ORDER BY 1",
    ),
    (
        "join with districts",
        "SELECT d.name, sum(t.vehicles) AS v, avg(t.bicycles) AS b FROM {T} t \
         JOIN districts d ON t.district_key = d.ags GROUP BY d.name ORDER BY d.name",
    ),
];

pub(crate) fn case(a: &Args, events: &Events) -> anyhow::Result<Value> {
    let n = a.nodes;
    ensure!(
        n <= KEYS.len(),
        "--case scan takes at most {} nodes",
        KEYS.len()
    );
    let python = python()?;
    let mut cluster = Cluster::start(a, events)?;
    // Uploads of hundreds of MB and scans of millions of rows take longer than the default.
    cluster.http = client_with_token(BENCH_TOKEN, Duration::from_secs(900))?
        .tcp_nodelay(true)
        .build()?;
    cluster.form(events)?;
    let files = tempfile::Builder::new()
        .prefix("allmende-scan-")
        .tempdir_in(a.work.clone().unwrap_or_else(std::env::temp_dir))?;
    let stations = (a.rows / (DAYS * 24)).max(1);
    let rows = stations * DAYS * 24;
    let mut traffic = Vec::new();
    let t = Instant::now();
    for (i, key) in KEYS.iter().enumerate().take(n) {
        let file = files.path().join(format!("traffic-{key}.parquet"));
        write_traffic(&file, key, stations)?;
        let form = Form::new()
            .file("file", &file)?
            .text("slug", "traffic")
            .text("title", format!("Verkehrszählungen {key}"))
            .text("description", "Stündliche Kfz- und Radzählungen")
            .text("license", "dl-by-de/2.0")
            .text("themes", "TRAN")
            .text("keywords", "Verkehr")
            .text("conforms_to", TRAFFIC_SCHEMA);
        cluster.import_form(i, form)?;
        cluster.put_policy(i, "traffic", OPEN_POLICY)?;
        cluster.publish_new(i, "traffic")?;
        traffic.push(file);
    }
    let districts = files.path().join("districts.parquet");
    write_districts(&districts)?;
    cluster.import_form(
        ASKER,
        Form::new()
            .file("file", &districts)?
            .text("slug", "districts"),
    )?;
    println!(
        "{n} members hold {rows} rows each ({stations} stations × {DAYS} days × 24 hours), \
         written and imported in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    cluster.wait_digests(Duration::from_secs(60))?;
    wait_members(&cluster, n)?;

    let mut duck = Duck::start(&python, &traffic, &districts)?;
    let fed_sql = |sql: &str| sql.replace("{T}", "federation.traffic_hourly");
    let duck_sql = |sql: &str| sql.replace("{T}", "traffic");
    // Warm-up (page cache, kept plans), not measured; checks every answer once.
    for (name, sql) in QUERIES {
        let answer = federated(&cluster, &fed_sql(sql), n)?;
        let (want, _) = duck.run(&duck_sql(sql))?;
        rows_equal(&normalised(&answer["rows"]), &normalised(&want))
            .map_err(|e| anyhow::anyhow!("{name}: federated and DuckDB differ: {e}"))?;
    }
    let tick_ms = 1000.0 / ticks_per_sec();
    let node_ticks = |c: &Cluster| -> anyhow::Result<Vec<u64>> {
        c.nodes.iter().map(|x| cpu_ticks(x.pid())).collect()
    };
    let rounds = a.scan_rounds.max(1);
    let mut summary = json!({"ev": "summary", "case": "scan", "nodes": n, "rows_per_member": rows});
    let mut per_query = Vec::new();
    println!(
        "federated from node {ASKER} vs DuckDB over the same files, {rounds} rounds, alternating:"
    );
    for (name, sql) in QUERIES {
        let (mut fed, mut dk) = (Vec::new(), Vec::new());
        let (mut fed_cpu, mut duck_cpu) = (vec![0u64; n], 0u64);
        for _ in 0..rounds {
            let before = node_ticks(&cluster)?;
            let t = Instant::now();
            let answer = federated(&cluster, &fed_sql(sql), n)?;
            fed.push(ms(t.elapsed()));
            for (c, (a, b)) in fed_cpu
                .iter_mut()
                .zip(node_ticks(&cluster)?.iter().zip(&before))
            {
                *c += a - b;
            }
            let before = cpu_ticks(duck.child.id())?;
            let (want, took) = duck.run(&duck_sql(sql))?;
            duck_cpu += cpu_ticks(duck.child.id())? - before;
            dk.push(took);
            rows_equal(&normalised(&answer["rows"]), &normalised(&want))
                .map_err(|e| anyhow::anyhow!("{name}: federated and DuckDB differ: {e}"))?;
            events.now(json!({"ev": "scan", "q": name, "fed_ms": fed.last(), "duck_ms": took}));
        }
        fed.sort_by(f64::total_cmp);
        dk.sort_by(f64::total_cmp);
        let (f50, d50) = (pct(&fed, 50.0), pct(&dk, 50.0));
        let per = |t: u64| t as f64 * tick_ms / rounds as f64;
        let members: Vec<String> = fed_cpu.iter().map(|t| format!("{:.0}", per(*t))).collect();
        println!(
            "  {name:<20} federated p50 {f50:.0} ms (min {:.0}, max {:.0}); DuckDB p50 {d50:.0} ms \
             (min {:.0}, max {:.0}); ratio {:.2}x (goal <= 1.5x: {}); CPU per query: nodes {} ms \
             (asker first), DuckDB {:.0} ms",
            fed[0],
            fed[fed.len() - 1],
            dk[0],
            dk[dk.len() - 1],
            f50 / d50,
            if f50 <= 1.5 * d50 { "met" } else { "MISSED" },
            members.join(" / "),
            per(duck_cpu),
        );
        per_query.push(json!({"query": name, "fed_p50_ms": f50, "duck_p50_ms": d50,
            "ratio": f50 / d50, "node_cpu_ms": fed_cpu.iter().map(|t| per(*t)).collect::<Vec<_>>(),
            "duck_cpu_ms": per(duck_cpu)}));
    }
    summary["per_query"] = json!(per_query);
    events.now(summary.clone());
    Ok(summary)
}

/// The Python with DuckDB: `ALLMENDE_PYTHON`, or the virtualenv `scripts/test.sh` makes.
fn python() -> anyhow::Result<PathBuf> {
    let python = std::env::var_os("ALLMENDE_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/allmende-venv/bin/python"))
        })
        .context("neither ALLMENDE_PYTHON nor HOME is set")?;
    let ok = Command::new(&python)
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!(
            "{} cannot import duckdb: run `bash scripts/test.sh` once (it makes the virtualenv \
             ~/.cache/allmende-venv from tests/requirements.txt) or set ALLMENDE_PYTHON",
            python.display()
        );
    }
    Ok(python)
}

/// A federated query from the asker that every one of `n` members must answer.
fn federated(cluster: &Cluster, sql: &str, n: usize) -> anyhow::Result<Value> {
    let answer = cluster.post(
        ASKER,
        "/api/v1/query",
        &json!({"sql": sql, "deadline_ms": 600_000}),
    )?;
    let st = statuses(&answer);
    let ok = st.values().filter(|s| s.1 == "ok").count();
    ensure!(
        ok == n,
        "{ok} of {n} members answered ok: {}",
        answer["members"]
    );
    Ok(answer)
}

/// Waits until the asker's federated view lists all `n` members.
fn wait_members(cluster: &Cluster, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sql = "SELECT count(*) AS n FROM federation.traffic_hourly WHERE vehicles < 0";
        match federated(cluster, sql, n) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Timestamps as text without a zone mark: the node writes a timestamp without a zone as
/// `…T00:00:00`, DuckDB's reference with a `Z`.
fn normalised(rows: &Value) -> Value {
    let mut rows = rows.clone();
    if let Some(list) = rows.as_array_mut() {
        for row in list.iter_mut().filter_map(Value::as_object_mut) {
            for v in row.values_mut() {
                if let Value::String(s) = v {
                    *s = s.trim_end_matches('Z').to_owned();
                }
            }
        }
    }
    rows
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x.wrapping_mul(0xc4ce_b9fe_1a85_ec53) ^ (x >> 29)
}

/// Writes a year of hourly counts at `stations` stations of `key`, as the node's own import
/// writes Parquet (Snappy, row groups of 128 Ki rows).
fn write_traffic(path: &Path, key: &str, stations: u64) -> anyhow::Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("district_key", DataType::Utf8, false),
        Field::new("station", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("vehicles", DataType::Int64, false),
        Field::new("bicycles", DataType::Int64, false),
    ]));
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(128 * 1024))
        .build();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path)?, schema.clone(), Some(props))?;
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .context("start")?
        .and_utc()
        .timestamp_micros();
    let names: Vec<String> = (1..=stations).map(|s| format!("{key}-S{s:04}")).collect();
    let seed: u64 = key.parse()?;
    let hours_per_batch = (131_072 / stations).max(1);
    let mut hour = 0;
    while hour < DAYS * 24 {
        let end = (hour + hours_per_batch).min(DAYS * 24);
        let len = ((end - hour) * stations) as usize;
        let (mut st, mut ts, mut v, mut b) = (
            Vec::with_capacity(len),
            Vec::with_capacity(len),
            Vec::with_capacity(len),
            Vec::with_capacity(len),
        );
        for h in hour..end {
            for (s, name) in names.iter().enumerate() {
                let r = mix(seed.wrapping_mul(0x9e37_79b9) ^ (h << 20) ^ s as u64);
                st.push(name.as_str());
                ts.push(start + (h as i64) * 3_600_000_000);
                v.push((r % 1200) as i64);
                b.push(((r >> 20) % 200) as i64);
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![key; len])),
            Arc::new(StringArray::from(st)),
            Arc::new(TimestampMicrosecondArray::from(ts)),
            Arc::new(Int64Array::from(v)),
            Arc::new(Int64Array::from(b)),
        ];
        writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
        hour = end;
    }
    writer.close()?;
    Ok(())
}

/// The districts table (AGS, name, population) from the binary's sample data.
fn write_districts(path: &Path) -> anyhow::Result<()> {
    let (mut ags, mut name, mut population) = (Vec::new(), Vec::new(), Vec::new());
    for line in DISTRICTS_CSV.lines().skip(1) {
        let f: Vec<&str> = line.split(';').collect();
        ensure!(f.len() >= 6, "district line {line}");
        ags.push(f[0].to_owned());
        name.push(f[2].to_owned());
        population.push(f[5].parse::<i64>()?);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("ags", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("population", DataType::Int64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ags)),
        Arc::new(StringArray::from(name)),
        Arc::new(Int64Array::from(population)),
    ];
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path)?, schema.clone(), None)?;
    writer.write(&RecordBatch::try_new(schema, columns)?)?;
    writer.close()?;
    Ok(())
}

/// DuckDB in a Python process of its own, asked one query at a time.
struct Duck {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Duck {
    fn start(python: &Path, traffic: &[PathBuf], districts: &Path) -> anyhow::Result<Self> {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/reference/duckdb_timed.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting DuckDB")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut duck = Self {
            child,
            stdin,
            stdout,
        };
        let tables = json!({"traffic": traffic, "districts": [districts]});
        duck.ask(&json!({"tables": tables, "threads": 2}))?;
        Ok(duck)
    }

    fn ask(&mut self, request: &Value) -> anyhow::Result<Value> {
        writeln!(self.stdin, "{request}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let answer: Value = serde_json::from_str(&line).context("DuckDB's answer")?;
        if let Some(e) = answer["error"].as_str() {
            bail!("DuckDB: {e}");
        }
        Ok(answer)
    }

    /// The rows of `sql` and the time DuckDB took for it, in ms.
    fn run(&mut self, sql: &str) -> anyhow::Result<(Value, f64)> {
        let answer = self.ask(&json!({ "sql": sql }))?;
        let took = answer["ms"].as_f64().context("no time")?;
        Ok((answer["rows"].clone(), took))
    }
}

impl Drop for Duck {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
