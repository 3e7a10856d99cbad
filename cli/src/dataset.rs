//! `allmende dataset …`: import, list, show, schema, validate, update, export and delete.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use allmende_client::Client;

/// Metadata flags shared by `import` and `update`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct MetadataArgs {
    /// `dct:title`.
    #[arg(long)]
    pub title: Option<String>,
    /// `dct:description`.
    #[arg(long)]
    pub description: Option<String>,
    /// DCAT-AP.de licence id, e.g. `cc-by/4.0`, `dl-by-de/2.0`, `cc-zero`.
    #[arg(long)]
    pub license: Option<String>,
    /// EU data-theme codes, comma-separated, e.g. `TRAN` or `ENVI,HEAL`.
    #[arg(long)]
    pub theme: Option<String>,
    /// Keywords, comma-separated.
    #[arg(long)]
    pub keywords: Option<String>,
    /// The SQL table name; derived from the title when absent.
    #[arg(long)]
    pub slug: Option<String>,
    /// Contact e-mail.
    #[arg(long)]
    pub contact_email: Option<String>,
    /// Start of the temporal coverage, YYYY-MM-DD.
    #[arg(long)]
    pub temporal_start: Option<String>,
    /// End of the temporal coverage, YYYY-MM-DD.
    #[arg(long)]
    pub temporal_end: Option<String>,
    /// Spatial coverage: a URI or GeoJSON geometry.
    #[arg(long)]
    pub spatial: Option<String>,
    /// The common schema the data follows (`dct:conformsTo`).
    #[arg(long)]
    pub conforms_to: Option<String>,
}

impl MetadataArgs {
    fn fields(&self) -> Vec<(&'static str, String)> {
        [
            ("title", &self.title),
            ("description", &self.description),
            ("license", &self.license),
            ("themes", &self.theme),
            ("keywords", &self.keywords),
            ("slug", &self.slug),
            ("contact_email", &self.contact_email),
            ("temporal_start", &self.temporal_start),
            ("temporal_end", &self.temporal_end),
            ("spatial", &self.spatial),
            ("conforms_to", &self.conforms_to),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }

    fn json(&self) -> Value {
        let split = |s: &Option<String>| {
            s.as_ref().map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect::<Vec<_>>()
            })
        };
        let mut v = json!({});
        for (k, val) in self.fields() {
            v[k] = json!(val);
        }
        if self.theme.is_some() {
            v["themes"] = json!(split(&self.theme));
        }
        if self.keywords.is_some() {
            v["keywords"] = json!(split(&self.keywords));
        }
        v
    }
}

/// The `dataset` subcommands.
#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Import a CSV, GeoJSON, JSON, NDJSON or Parquet file as a dataset (or a new version).
    Import {
        /// The file.
        file: PathBuf,
        /// Import as a new version of this dataset (id or name).
        #[arg(long)]
        version_of: Option<String>,
        /// The format, when the file name does not tell: csv, geojson, json, ndjson, parquet.
        #[arg(long)]
        format: Option<String>,
        /// Metadata.
        #[command(flatten)]
        metadata: MetadataArgs,
    },
    /// List the node's datasets.
    List,
    /// Show a dataset's metadata.
    Show {
        /// Id or name.
        id: String,
        /// Print DCAT-AP.de JSON-LD.
        #[arg(long)]
        jsonld: bool,
    },
    /// Show a dataset's columns.
    Schema {
        /// Id or name.
        id: String,
    },
    /// Name every mandatory DCAT-AP.de field still missing; exits 1 when any is.
    Validate {
        /// Id or name.
        id: String,
    },
    /// Change a dataset's metadata.
    Update {
        /// Id or name.
        id: String,
        /// Metadata to set.
        #[command(flatten)]
        metadata: MetadataArgs,
    },
    /// Write a dataset's rows to a file or stdout.
    Export {
        /// Id or name.
        id: String,
        /// csv, json, arrow or parquet.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Output file; stdout when absent.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Publish a dataset to the federation (its DCAT-AP.de metadata must be complete).
    Publish {
        /// Id or name.
        id: String,
    },
    /// Withdraw a published dataset from the federation.
    Withdraw {
        /// Id or name.
        id: String,
    },
    /// Delete a dataset and its data.
    Delete {
        /// Id or name.
        id: String,
    },
}

fn print(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn path(id: &str, rest: &str) -> String {
    let id: String = id
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("/api/v1/datasets/{id}{rest}")
}

fn report_missing(v: &Value) {
    if let Some(missing) = v["missing"].as_array().filter(|m| !m.is_empty()) {
        let names: Vec<&str> = missing.iter().filter_map(Value::as_str).collect();
        eprintln!(
            "note: before it can be published, the dataset still needs: {}",
            names.join(", ")
        );
    }
}

pub(super) async fn run(client: Client, cmd: &DatasetCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DatasetCommand::Import {
            file,
            version_of,
            format,
            metadata,
        } => {
            let len = std::fs::metadata(file)
                .with_context(|| format!("cannot read `{}`", file.display()))?
                .len();
            let bar = ProgressBar::new(len).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )?
                .progress_chars("=> "),
            );
            bar.set_message("uploading");
            let progress = {
                let bar = bar.clone();
                move |sent: u64| {
                    bar.set_position(sent);
                    if sent >= len {
                        bar.set_message("converting on the node");
                    }
                }
            };
            let mut fields = metadata.fields();
            if let Some(f) = format {
                fields.push(("format", f.clone()));
            }
            let target = match version_of {
                Some(id) => path(id, "/versions"),
                None => "/api/v1/datasets".to_owned(),
            };
            let result = client.upload(&target, file, fields, progress).await;
            bar.finish_and_clear();
            let v = result?;
            println!(
                "imported `{}` version {}: {} rows, id {}",
                v["slug"].as_str().unwrap_or(""),
                v["version"],
                v["rows"],
                v["id"].as_str().unwrap_or("")
            );
            report_missing(&v);
        }
        DatasetCommand::List => {
            let v = client.get("/api/v1/datasets").await?;
            let empty = Vec::new();
            let list = v["datasets"].as_array().unwrap_or(&empty);
            if list.is_empty() {
                println!("no datasets");
            }
            for d in list {
                println!(
                    "{:<36}  {:<28} v{:<3} {:>10} rows  {}",
                    d["id"].as_str().unwrap_or(""),
                    d["slug"].as_str().unwrap_or(""),
                    d["version"],
                    d["rows"],
                    d["title"].as_str().unwrap_or("")
                );
            }
        }
        DatasetCommand::Show { id, jsonld } => {
            if *jsonld {
                let text = client
                    .get_text(&path(id, ""), "application/ld+json")
                    .await?;
                print(&serde_json::from_str(&text)?)?;
            } else {
                print(&client.get(&path(id, "")).await?)?;
            }
        }
        DatasetCommand::Schema { id } => {
            let v = client.get(&path(id, "/schema")).await?;
            for f in v["fields"].as_array().into_iter().flatten() {
                println!(
                    "{:<32} {:<28} {}",
                    f["name"].as_str().unwrap_or(""),
                    f["data_type"].as_str().unwrap_or(""),
                    f["source_name"]
                        .as_str()
                        .map(|s| format!("(from `{s}`)"))
                        .unwrap_or_default()
                );
            }
        }
        DatasetCommand::Validate { id } => {
            let v = client.get(&path(id, "/validation")).await?;
            let missing: Vec<&str> = v["missing"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if missing.is_empty() {
                println!("valid: every mandatory DCAT-AP.de field is present");
            } else {
                println!("missing mandatory DCAT-AP.de fields:");
                for m in &missing {
                    println!("  - {m}");
                }
                return Ok(ExitCode::FAILURE);
            }
        }
        DatasetCommand::Update { id, metadata } => {
            let v = client.patch(&path(id, ""), &metadata.json()).await?;
            println!("updated `{}`", v["slug"].as_str().unwrap_or(""));
            report_missing(&v);
        }
        DatasetCommand::Export { id, format, output } => {
            let url = format!("{}?format={format}", path(id, "/data"));
            let bytes = match output {
                Some(p) => {
                    let tmp = p.with_extension("partial");
                    let mut file = std::io::BufWriter::new(
                        std::fs::File::create(&tmp)
                            .with_context(|| format!("cannot write `{}`", tmp.display()))?,
                    );
                    let n = client.download(&url, &mut file).await?;
                    file.flush()?;
                    std::fs::rename(&tmp, p)?;
                    n
                }
                None => client.download(&url, &mut std::io::stdout().lock()).await?,
            };
            if output.is_some() {
                eprintln!("wrote {bytes} bytes");
            }
        }
        DatasetCommand::Publish { id } | DatasetCommand::Withdraw { id } => {
            let action = if matches!(cmd, DatasetCommand::Publish { .. }) {
                "publish"
            } else {
                "withdraw"
            };
            let v = client
                .post(&path(id, &format!("/{action}")), &json!({}))
                .await?;
            println!(
                "{action}: entry seq {} ({})",
                v["seq"],
                v["op"].as_str().unwrap_or("")
            );
        }
        DatasetCommand::Delete { id } => {
            client.delete(&path(id, "")).await?;
            println!("deleted `{id}`");
        }
    }
    Ok(ExitCode::SUCCESS)
}
