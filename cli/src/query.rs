//! `allmende query "SQL"` (federated SQL) and `allmende receipt verify FILE` (offline).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use allmende_client::Client;

/// Arguments of `allmende query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The query: `<member>.<dataset>` or `federation.<kind>` as its table.
    pub sql: String,
    /// Output: table (for people) or json.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Per-provider deadline in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub deadline_ms: u64,
    /// Fail unless every member answers.
    #[arg(long)]
    pub require_all: bool,
    /// Why you ask (an IRI, e.g. https://w3id.org/dpv#AcademicResearch).
    #[arg(long)]
    pub purpose: Option<String>,
    /// Write the signed receipt (hex) to this file.
    #[arg(long)]
    pub receipt: Option<PathBuf>,
}

/// The `receipt` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Check a receipt's signatures and consistency offline; exits 1 if it does not verify.
    Verify {
        /// The receipt file (hex, as written by `allmende query --receipt`).
        file: PathBuf,
    },
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn print_table(columns: &[String], rows: &[Value]) {
    if rows.is_empty() {
        println!("(no rows)");
        return;
    }
    let cols: Vec<&String> = columns.iter().collect();
    let widths: Vec<usize> = cols
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(&r[c.as_str()]).chars().count())
                .max()
                .unwrap_or(0)
                .max(c.chars().count())
        })
        .collect();
    let line = |vals: Vec<String>| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        println!("| {} |", parts.join(" | "));
    };
    line(cols.iter().map(|c| (*c).clone()).collect());
    println!(
        "|{}|",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    for r in rows {
        line(cols.iter().map(|c| cell(&r[c.as_str()])).collect());
    }
}

pub(super) async fn run(client: Client, a: &QueryArgs) -> anyhow::Result<ExitCode> {
    let body = json!({
        "sql": a.sql,
        "format": "json",
        "deadline_ms": a.deadline_ms,
        "require_all": a.require_all,
        "purpose": a.purpose,
    });
    let v = client.post("/api/v1/query", &body).await?;
    if let Some(path) = &a.receipt {
        std::fs::write(
            path,
            format!("{}\n", v["receipt"].as_str().unwrap_or_default()),
        )
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    match a.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&v)?),
        "table" => {
            let rows = v["rows"].as_array().cloned().unwrap_or_default();
            let columns: Vec<String> = v["columns"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect();
            print_table(&columns, &rows);
            println!(
                "{} row{}",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            );
            for m in v["members"].as_array().into_iter().flatten() {
                let reason = m["reason"]
                    .as_str()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                println!(
                    "  {:<20} {:<32} {:<8} {:>6} rows {:>5} ms{reason}",
                    m["member"].as_str().unwrap_or(""),
                    m["table"].as_str().unwrap_or(""),
                    m["status"].as_str().unwrap_or(""),
                    m["rows"],
                    m["latency_ms"]
                );
            }
        }
        other => anyhow::bail!("unknown format `{other}`; use table or json"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn receipt(cmd: &ReceiptCommand) -> anyhow::Result<ExitCode> {
    let ReceiptCommand::Verify { file } = cmd;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read `{}`", file.display()))?;
    let bytes = hex::decode(text.trim())
        .with_context(|| format!("`{}` is not a hex receipt", file.display()))?;
    match allmende_protocol::query::verify_receipt(&bytes) {
        Ok(r) => {
            let p = r.payload();
            println!("receipt valid: signed by {} at {}", r.signer(), p.issued);
            println!("query: {}", p.sql);
            for l in &p.providers {
                println!(
                    "  {:<20} {:<8} {:>6} rows  {}",
                    l.member,
                    l.status,
                    l.rows,
                    if l.answer.is_some() {
                        "signed answer verified"
                    } else {
                        "no answer"
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("receipt INVALID: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
