//! `allmende policy …`, `allmende agreement …` and `allmende audit …`.
//!
//! `policy check` and `policy evaluate` run locally on files and need no node; their output is
//! stable JSON (see policy/README.md). The rest talk to the node's API, except
//! `audit verify --offline`, which reads the data dir of a stopped (or running) node read-only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use allmende_client::Client;

/// The `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Sign a JSON-LD policy with the node's key and attach it to a dataset.
    Attach {
        /// Dataset id or name.
        dataset: String,
        /// The JSON-LD policy file.
        file: PathBuf,
    },
    /// Show a dataset's signed policy.
    Show {
        /// Dataset id or name.
        dataset: String,
    },
    /// Parse a policy and check it against the profile (no node needed); exits 1 if invalid.
    Check {
        /// The JSON-LD policy file.
        file: PathBuf,
    },
    /// Evaluate a request against a policy (no node needed) and print
    /// `{"decision", "rules", "obligations"}`.
    Evaluate {
        /// The JSON-LD policy file (one policy or an array).
        #[arg(long)]
        policy: PathBuf,
        /// The request file (JSON).
        #[arg(long)]
        request: PathBuf,
        /// The state file (JSON: use counts and first-use times).
        #[arg(long)]
        state: Option<PathBuf>,
    },
}

/// The `agreement` subcommands.
#[derive(Debug, Subcommand)]
pub enum AgreementCommand {
    /// Agreements this node is party to.
    List,
    /// Negotiate an agreement for a member's dataset: fetch its signed offer, sign a request,
    /// receive the countersigned agreement.
    Negotiate {
        /// The provider's PeerId.
        #[arg(long)]
        provider: String,
        /// The dataset id at the provider.
        #[arg(long)]
        dataset: String,
    },
    /// Revoke an agreement (signed statement, gossiped to the federation).
    Revoke {
        /// The agreement id (hex).
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// The `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audited decisions (JSON lines), oldest first.
    List {
        /// The first index.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// How many (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Recompute the audit log and check every signed checkpoint; exits 1 on tampering.
    Verify {
        /// Read the data dir directly (read-only) instead of asking the running node.
        #[arg(long)]
        offline: bool,
    },
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))
}

fn print(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Runs `policy check` and `policy evaluate`, which need no node.
pub(super) fn run_local(cmd: &PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { file } => match allmende_policy::cli_json::check(&read(file)?) {
            Ok(summary) => {
                print(&summary.to_json())?;
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                print(&json!({ "valid": false, "error": e.to_string() }))?;
                Ok(ExitCode::FAILURE)
            }
        },
        PolicyCommand::Evaluate {
            policy,
            request,
            state,
        } => {
            let state = state.as_deref().map(read).transpose()?;
            let out = allmende_policy::cli_json::evaluate(
                &read(policy)?,
                &read(request)?,
                state.as_deref(),
            )?;
            print(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Attach { .. } | PolicyCommand::Show { .. } => {
            anyhow::bail!("this command needs the node")
        }
    }
}

pub(super) async fn run(client: Client, cmd: &PolicyCommand) -> anyhow::Result<ExitCode> {
    let path = |id: &str| format!("/api/v1/datasets/{id}/policy");
    match cmd {
        PolicyCommand::Attach { dataset, file } => {
            let v = client.put_text(&path(dataset), read(file)?).await?;
            println!(
                "attached policy version {} (id {})",
                v["version"],
                v["id"].as_str().unwrap_or("")
            );
        }
        PolicyCommand::Show { dataset } => print(&client.get(&path(dataset)).await?)?,
        PolicyCommand::Check { .. } | PolicyCommand::Evaluate { .. } => return run_local(cmd),
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn agreement(client: Client, cmd: &AgreementCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AgreementCommand::List => {
            let v = client.get("/api/v1/agreements").await?;
            for a in v["agreements"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:<8} dataset {}  with {}  {}",
                    a["id"].as_str().unwrap_or(""),
                    a["role"].as_str().unwrap_or(""),
                    a["dataset"].as_str().unwrap_or(""),
                    a["counterpart"].as_str().unwrap_or(""),
                    a["concluded"].as_str().unwrap_or("")
                );
            }
        }
        AgreementCommand::Negotiate { provider, dataset } => {
            let v = client
                .post(
                    "/api/v1/agreements",
                    &json!({ "provider": provider, "dataset": dataset }),
                )
                .await?;
            println!("agreement {} concluded", v["id"].as_str().unwrap_or(""));
        }
        AgreementCommand::Revoke { id, reason } => {
            client
                .post(
                    &format!("/api/v1/agreements/{id}/revoke"),
                    &json!({ "reason": reason }),
                )
                .await?;
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report(v: &Value) -> ExitCode {
    if v["intact"] == true {
        println!(
            "audit log intact: {} entries, {} checkpoints verified",
            v["entries"], v["checkpoints"]
        );
        ExitCode::SUCCESS
    } else {
        println!("TAMPERING DETECTED in the audit log:");
        for t in v["tampering"].as_array().into_iter().flatten() {
            println!("  - {}", t.as_str().unwrap_or(""));
        }
        ExitCode::FAILURE
    }
}

pub(super) async fn audit(
    client: Client,
    data_dir: &Path,
    cmd: &AuditCommand,
) -> anyhow::Result<ExitCode> {
    let offline = match cmd {
        AuditCommand::List { from, limit } => {
            let v = client
                .get_query(
                    "/api/v1/audit/entries",
                    &[("from", from.to_string()), ("limit", limit.to_string())],
                )
                .await?;
            for e in v["entries"].as_array().into_iter().flatten() {
                println!("{e}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        AuditCommand::Verify { offline } => offline,
    };
    if !*offline {
        return Ok(report(&client.get("/api/v1/audit/verify").await?));
    }
    let identity = allmende_node::identity::Identity::load(data_dir)?;
    let store = Arc::new(allmende_store::Store::open_read_only(data_dir)?);
    let r = allmende_node::policies::verify_offline(store, &identity.peer_id())?;
    Ok(report(&json!({
        "intact": r.is_intact(),
        "entries": r.entries,
        "checkpoints": r.checkpoints,
        "tampering": r.tampering.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>(),
    })))
}
