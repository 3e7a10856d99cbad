//! `allmende sql "SELECT …"`: local SQL on a running node.

use std::io::Write;
use std::process::ExitCode;

use allmende_client::Client;

/// Arguments of `allmende sql`.
#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// The query, in DataFusion's SQL dialect; tables are the datasets' names.
    pub sql: String,
    /// Output: table (for people), json, csv or arrow.
    #[arg(long, default_value = "table")]
    pub format: String,
}

pub(super) async fn run(client: Client, args: &SqlArgs) -> anyhow::Result<ExitCode> {
    match args.format.as_str() {
        "table" => {
            let body = client.sql(&args.sql, "arrow").await?;
            let reader = arrow::ipc::reader::StreamReader::try_new(&body[..], None)?;
            let batches = reader.collect::<Result<Vec<_>, _>>()?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
            println!("{rows} row{}", if rows == 1 { "" } else { "s" });
        }
        "json" | "csv" | "arrow" => {
            let body = client.sql(&args.sql, &args.format).await?;
            std::io::stdout().lock().write_all(&body)?;
        }
        other => anyhow::bail!("unknown format `{other}`; use table, json, csv or arrow"),
    }
    Ok(ExitCode::SUCCESS)
}
