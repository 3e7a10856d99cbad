//! `allmende sample …`: write the shipped district data or generated hourly series.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use clap::Subcommand;

use allmende_data::sample::{self, Spec};

/// What to generate for one city.
#[derive(Debug, clap::Args)]
pub struct SeriesArgs {
    /// The city's district key (AGS).
    #[arg(long)]
    pub district_key: String,
    /// First day, YYYY-MM-DD.
    #[arg(long, default_value = "2024-01-01")]
    pub start: NaiveDate,
    /// Number of days.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Number of stations.
    #[arg(long, default_value_t = 4)]
    pub stations: u32,
    /// Extra seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output file; stdout when absent.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// The `sample` subcommands.
#[derive(Debug, Subcommand)]
pub enum SampleCommand {
    /// All German districts, 2018 (Destatis, CC-BY-4.0), as semicolon-separated CSV.
    Districts {
        /// Output file; stdout when absent.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Hourly traffic counts (vehicles, bicycles) per station.
    Traffic(SeriesArgs),
    /// Hourly air-quality readings (NO2, PM10) per station.
    AirQuality(SeriesArgs),
}

fn write_to(
    output: &Option<PathBuf>,
    f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    match output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot write `{}`", path.display()))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            f(&mut out)?;
            out.flush()?;
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            f(&mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}

fn spec(a: &SeriesArgs) -> anyhow::Result<Spec> {
    if a.district_key.len() != 5 || !a.district_key.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!(
            "--district-key must be a 5-digit district key, got `{}`",
            a.district_key
        );
    }
    if a.stations == 0 || a.days == 0 {
        anyhow::bail!("--days and --stations must be at least 1");
    }
    Ok(Spec {
        district_key: a.district_key.clone(),
        start: a.start,
        days: a.days,
        stations: a.stations,
        seed: a.seed,
    })
}

pub(super) fn run(cmd: &SampleCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SampleCommand::Districts { output } => {
            write_to(output, |w| w.write_all(sample::DISTRICTS_CSV.as_bytes()))?;
            eprintln!("{}", sample::DISTRICTS_ATTRIBUTION);
        }
        SampleCommand::Traffic(a) => {
            let s = spec(a)?;
            write_to(&a.output, |mut w| sample::write_traffic(&s, &mut w))?;
        }
        SampleCommand::AirQuality(a) => {
            let s = spec(a)?;
            write_to(&a.output, |mut w| sample::write_air_quality(&s, &mut w))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
