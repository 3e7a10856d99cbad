//! `allmende fetch <member>.<dataset>`: download the permitted view of a member's dataset
//! through this node (a transfer under an agreement), then save the verified file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use allmende_client::Client;

/// Arguments of `allmende fetch`.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The dataset: `<member>.<dataset>`.
    pub dataset: String,
    /// Where to write the file (default: `<member>.<dataset>.<format>` here).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// File format: parquet or arrow.
    #[arg(long, default_value = "parquet")]
    pub format: String,
    /// Only these columns (comma-separated); default: every column the agreement permits.
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Only rows matching this SQL condition, e.g. "jahr >= 2024 AND station = 'A1'".
    #[arg(long = "where")]
    pub filter: Option<String>,
    /// The agreement to use (hex id); default: the newest for this dataset.
    #[arg(long)]
    pub agreement: Option<String>,
    /// Conclude an agreement first if this node holds none.
    #[arg(long)]
    pub negotiate: bool,
    /// Why you ask (an IRI, e.g. https://w3id.org/dpv#AcademicResearch).
    #[arg(long)]
    pub purpose: Option<String>,
    /// Give up after this many seconds without completing.
    #[arg(long, default_value_t = 3600)]
    pub timeout_secs: u64,
}

/// Starts the transfer, follows it, and downloads the file when it is verified.
pub async fn run(client: Client, args: &FetchArgs) -> anyhow::Result<ExitCode> {
    let format = match args.format.as_str() {
        "parquet" | "arrow" => args.format.clone(),
        other => anyhow::bail!("unknown format `{other}`: use parquet or arrow"),
    };
    let mut body = json!({ "dataset": args.dataset, "format": format });
    if !args.columns.is_empty() {
        body["columns"] = json!(args.columns);
    }
    if let Some(f) = &args.filter {
        body["where"] = json!(f);
    }
    if let Some(a) = &args.agreement {
        body["agreement"] = json!(a);
    }
    if let Some(p) = &args.purpose {
        body["purpose"] = json!(p);
    }
    if args.negotiate {
        body["negotiate"] = json!(true);
    }
    let started = std::time::Instant::now();
    let record = client.post("/api/v1/transfers", &body).await?;
    let id = record["id"]
        .as_str()
        .context("the node's answer has no transfer id")?
        .to_owned();
    eprintln!(
        "transfer {id}: {} from {} under agreement {}",
        args.dataset,
        record["provider"].as_str().unwrap_or("?"),
        record["agreement"].as_str().unwrap_or("?")
    );
    let record = follow(&client, &id, Duration::from_secs(args.timeout_secs)).await?;
    if record["state"] != "complete" {
        eprintln!(
            "transfer {id} failed: {}",
            record["error"].as_str().unwrap_or("unknown error")
        );
        return Ok(ExitCode::FAILURE);
    }
    let output = args.output.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "{}.{}",
            args.dataset,
            if format == "arrow" {
                "arrow"
            } else {
                "parquet"
            }
        ))
    });
    let tmp = output.with_extension("part");
    let mut file = std::fs::File::create(&tmp)
        .with_context(|| format!("cannot create `{}`", tmp.display()))?;
    let bytes = client
        .download(&format!("/api/v1/transfers/{id}/data"), &mut file)
        .await?;
    file.sync_all()?;
    std::fs::rename(&tmp, &output)
        .with_context(|| format!("cannot write `{}`", output.display()))?;
    let secs = started.elapsed().as_secs_f64();
    let rate = if bytes >= 1_000_000 {
        format!(", {:.0} MB/s", bytes as f64 / 1e6 / secs.max(1e-9))
    } else {
        String::new()
    };
    println!(
        "{}: {bytes} bytes, {} rows, columns {}, sha256 {} (verified against the provider's \
         signed header){rate}",
        output.display(),
        record["rows"],
        join(&record["columns"]),
        record["sha256"].as_str().unwrap_or(""),
    );
    Ok(ExitCode::SUCCESS)
}

fn join(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// Polls the transfer until it completes or fails, showing progress on stderr.
async fn follow(client: &Client, id: &str, timeout: Duration) -> anyhow::Result<Value> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let record = client.get(&format!("/api/v1/transfers/{id}")).await?;
        match record["state"].as_str() {
            Some("complete") | Some("failed") => return Ok(record),
            _ => {}
        }
        let attempt = match record["attempts"].as_u64().unwrap_or(0) {
            0 | 1 => String::new(),
            n => format!(" (attempt {n})"),
        };
        let line = match (record["received"].as_u64(), record["size"].as_u64()) {
            (Some(r), Some(s)) => format!("{r} of {s} bytes{attempt}"),
            _ => format!("waiting for the provider{attempt}"),
        };
        if line != last {
            eprintln!("  {line}");
            last = line;
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "transfer {id} did not complete within {timeout:?}; it continues in the node (GET /api/v1/transfers/{id})"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
