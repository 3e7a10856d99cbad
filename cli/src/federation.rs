//! `allmende federation …` and `allmende catalog search`.
//!
//! Rosters and proposals are exchanged as files holding the hex of their signed wire form; a
//! member card is a JSON file (`allmende federation card`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use allmende_client::Client;

/// The `federation` subcommands.
#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Print this node's member card (JSON), to hand to a federation's members.
    Card {
        /// Write it to a file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Found a federation: a roster of this node and the members whose cards are given, signed
    /// by this node; every member then signs it (`sign`) and applies it (`apply`).
    Create {
        /// The federation's id, e.g. `muensterland`.
        #[arg(long)]
        id: String,
        /// A member card file (repeat for each member).
        #[arg(long = "card")]
        cards: Vec<PathBuf>,
        /// Signatures needed for later changes (default: a majority).
        #[arg(long)]
        threshold: Option<u32>,
        /// Write the proposal to this file.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Sign a roster proposal file; the file is updated with this node's signature.
    Sign {
        /// The proposal file.
        file: PathBuf,
    },
    /// Install a roster file that carries enough signatures.
    Apply {
        /// The roster file.
        file: PathBuf,
    },
    /// Propose adding members (by card); signed by this node and gossiped to the others.
    ProposeAdd {
        /// A member card file (repeatable).
        #[arg(long = "card", required = true)]
        cards: Vec<PathBuf>,
        /// Also write the proposal to this file.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Propose removing members (by PeerId); signed by this node and gossiped.
    ProposeRemove {
        /// PeerIds to remove.
        #[arg(required = true)]
        peers: Vec<String>,
        /// Also write the proposal to this file.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Leave the federation: propose this node's removal and stop taking part.
    Leave,
    /// Roster, members, connected peers, digest and per-publisher seq.
    Status {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `allmende catalog search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Full-text query (German and English stemming).
    pub q: Option<String>,
    /// EU data-theme code.
    #[arg(long)]
    pub theme: Option<String>,
    /// District key.
    #[arg(long)]
    pub district: Option<String>,
    /// Distribution format, e.g. PARQUET.
    #[arg(long)]
    pub format: Option<String>,
    /// Licence id.
    #[arg(long)]
    pub license: Option<String>,
    /// Publisher PeerId.
    #[arg(long)]
    pub publisher: Option<String>,
    /// Hits to skip.
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Hits per page.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// The `catalog` subcommands.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Search the federation's replicated catalog.
    Search(SearchArgs),
}

fn read_card(path: &PathBuf) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a member card (JSON)", path.display()))
}

fn read_roster(path: &PathBuf) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?
        .trim()
        .to_owned())
}

fn write(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, format!("{text}\n"))
        .with_context(|| format!("cannot write `{}`", path.display()))
}

fn summary(v: &Value) {
    let signers = v["signers"].as_array().map_or(0, Vec::len);
    println!(
        "roster `{}` version {}: {} members, {} signatures (installing it needs {})",
        v["federation"].as_str().unwrap_or(""),
        v["version"],
        v["members"].as_array().map_or(0, Vec::len),
        signers,
        v["required"]
    );
}

pub(super) async fn run(client: Client, cmd: &FederationCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FederationCommand::Card { output } => {
            let card = client.get("/api/v1/federation/card").await?;
            let text = serde_json::to_string_pretty(&card)?;
            match output {
                Some(p) => write(p, &text)?,
                None => println!("{text}"),
            }
        }
        FederationCommand::Create {
            id,
            cards,
            threshold,
            output,
        } => {
            let members = cards
                .iter()
                .map(read_card)
                .collect::<anyhow::Result<Vec<_>>>()?;
            let body = json!({ "federation": id, "members": members, "threshold": threshold });
            let v = client.post("/api/v1/federation", &body).await?;
            write(output, v["roster"].as_str().unwrap_or_default())?;
            summary(&v);
            println!(
                "wrote {}; each member signs it with `allmende federation sign {}`",
                output.display(),
                output.display()
            );
        }
        FederationCommand::Sign { file } => {
            let v = client
                .post(
                    "/api/v1/federation/sign",
                    &json!({ "roster": read_roster(file)? }),
                )
                .await?;
            write(file, v["roster"].as_str().unwrap_or_default())?;
            summary(&v);
            if v["installed_version"] == v["version"] {
                println!(
                    "installed: this node now uses roster version {}",
                    v["version"]
                );
            }
        }
        FederationCommand::Apply { file } => {
            let v = client
                .post(
                    "/api/v1/federation/apply",
                    &json!({ "roster": read_roster(file)? }),
                )
                .await?;
            println!("installed roster version {}", v["roster"]["version"]);
        }
        FederationCommand::ProposeAdd { cards, output } => {
            let add = cards
                .iter()
                .map(read_card)
                .collect::<anyhow::Result<Vec<_>>>()?;
            let v = client
                .post("/api/v1/federation/proposals", &json!({ "add": add }))
                .await?;
            if let Some(p) = output {
                write(p, v["roster"].as_str().unwrap_or_default())?;
            }
            summary(&v);
        }
        FederationCommand::ProposeRemove { peers, output } => {
            let v = client
                .post("/api/v1/federation/proposals", &json!({ "remove": peers }))
                .await?;
            if let Some(p) = output {
                write(p, v["roster"].as_str().unwrap_or_default())?;
            }
            summary(&v);
        }
        FederationCommand::Leave => {
            let v = client.post("/api/v1/federation/leave", &json!({})).await?;
            summary(&v);
            println!(
                "left the federation; the others apply the removal when enough of them sign it"
            );
        }
        FederationCommand::Status { json } => {
            let v = client.get("/api/v1/federation").await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("peer id  {}", v["peer_id"].as_str().unwrap_or(""));
            match v["roster"].as_object() {
                Some(r) => {
                    println!(
                        "roster   `{}` version {} (changes need {} signatures)",
                        r["federation"].as_str().unwrap_or(""),
                        r["version"],
                        r["threshold"]
                    );
                    for m in r["members"].as_array().into_iter().flatten() {
                        println!(
                            "  member {}  {} ({})",
                            m["peer_id"].as_str().unwrap_or(""),
                            m["organisation"].as_str().unwrap_or(""),
                            m["district_key"].as_str().unwrap_or("")
                        );
                    }
                }
                None => println!("roster   none (not in a federation)"),
            }
            for p in v["connected"].as_array().into_iter().flatten() {
                let addresses: Vec<&str> = p["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "  connected {}  {}  last seen {}",
                    p["peer_id"].as_str().unwrap_or(""),
                    addresses.join(" "),
                    p["last_seen"]
                );
            }
            println!("digest   {}", v["digest"].as_str().unwrap_or(""));
            for p in v["publishers"].as_array().into_iter().flatten() {
                let flag = p["flagged"]
                    .as_str()
                    .map(|f| format!("  FLAGGED: {f}"))
                    .unwrap_or_default();
                println!(
                    "  publisher {}  seq {}{flag}",
                    p["peer_id"].as_str().unwrap_or(""),
                    p["seq"]
                );
            }
            let pending = v["pending"].as_array().map_or(0, Vec::len);
            if pending > 0 {
                println!("pending proposals: {pending}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn search(client: Client, cmd: &CatalogCommand) -> anyhow::Result<ExitCode> {
    let CatalogCommand::Search(a) = cmd;
    let mut query = vec![
        ("offset", a.offset.to_string()),
        ("limit", a.limit.to_string()),
    ];
    for (k, v) in [
        ("q", &a.q),
        ("theme", &a.theme),
        ("district", &a.district),
        ("format", &a.format),
        ("license", &a.license),
        ("publisher", &a.publisher),
    ] {
        if let Some(v) = v {
            query.push((k, v.clone()));
        }
    }
    let v = client.get_query("/api/v1/catalog", &query).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} hits", v["total"]);
    for h in v["hits"].as_array().into_iter().flatten() {
        let d = &h["dataset"];
        println!(
            "  {:<30} {:<40} {} (seq {}, issued {})",
            d["slug"].as_str().unwrap_or(""),
            d["title"].as_str().unwrap_or(""),
            h["organisation"].as_str().unwrap_or(""),
            h["seq"],
            h["issued"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}
