//! `allmende init`: key pair, configuration and an empty store.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use allmende_node::auth::token;
use allmende_node::config::{Config, Overrides};
use allmende_node::identity::{Identity, KEY_FILE};
use allmende_store::Store;

/// Arguments of `allmende init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Settings written to the configuration; `--name` and `--district-key` are required.
    #[command(flatten)]
    pub settings: Overrides,
}

pub(super) fn run(data_dir: &Path, args: &InitArgs) -> anyhow::Result<ExitCode> {
    let s = &args.settings;
    let (Some(name), Some(district_key)) = (s.name.clone(), s.district_key.clone()) else {
        anyhow::bail!(
            "`allmende init` needs --name and --district-key (e.g. --name \"Stadt Münster\" --district-key 05515)"
        );
    };
    if data_dir.join(KEY_FILE).exists() {
        anyhow::bail!(
            "`{}` already holds a node (its key `{KEY_FILE}` is kept and never overwritten)",
            data_dir.display()
        );
    }
    let mut config = Config::new(name, district_key);
    config.apply(s)?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create `{}`", data_dir.display()))?;
    let identity = Identity::create(data_dir)?;
    config.save(data_dir)?;
    Store::open(data_dir, true)?;
    let chosen = std::env::var(token::TOKEN_ENV).ok();
    let admin = token::create(data_dir, chosen.as_deref().filter(|t| !t.trim().is_empty()))?;
    println!(
        "initialised node `{}` in {}",
        config.name,
        data_dir.display()
    );
    println!("  peer id  {}", identity.peer_id());
    println!("  did      {}", identity.did());
    println!("  config   {}", Config::path(data_dir).display());
    if chosen.is_some() {
        println!(
            "  admin token  taken from {} (stored hashed)",
            token::TOKEN_ENV
        );
    } else {
        println!("  admin token  {}", admin.reveal());
        println!(
            "    shown once; the node keeps only its hash. The CLI reads it from {} or {}.",
            data_dir.join(token::TOKEN_FILE).display(),
            token::TOKEN_ENV
        );
    }
    println!(
        "start it with: allmende run --data-dir {}",
        data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
