//! The private network namespace (`unshare -n`) and nftables rules inside it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;

use anyhow::{Context, bail, ensure};

use crate::procs::{STOP, child_command, register, unregister};

/// Set in the re-executed harness that runs inside `unshare -n`.
const NETNS_ENV: &str = "ALLMENDE_FEDSIM_NETNS";

pub(crate) fn nft(script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .context("nft (apt-get install nftables)")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(script.as_bytes())?;
    let status = child.wait()?;
    ensure!(status.success(), "nft failed on:\n{script}");
    Ok(())
}

pub(crate) fn in_netns_or_reexec() -> anyhow::Result<Option<ExitCode>> {
    if std::env::var_os(NETNS_ENV).is_some() {
        let status = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()?;
        ensure!(status.success(), "cannot bring lo up in the namespace");
        if Command::new("nft").arg("--version").output().is_err() {
            bail!("`nft` is missing: apt-get install nftables");
        }
        return Ok(None);
    }
    if Command::new("nft").arg("--version").output().is_err() {
        println!("`nft` missing; installing nftables with apt-get");
        let ok = Command::new("apt-get")
            .args(["install", "-y", "nftables"])
            .status()?
            .success();
        ensure!(ok, "apt-get install nftables failed");
    }
    println!("re-executing inside a private network namespace (unshare -n)");
    let exe = std::env::current_exe()?;
    let mut child = child_command(Path::new("unshare"))
        .arg("-n")
        .arg("--")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(NETNS_ENV, "1")
        .spawn()
        .context("unshare -n (needs root or user namespaces)")?;
    register(child.id());
    let status = child.wait()?;
    unregister(child.id());
    if STOP.load(Ordering::SeqCst) {
        return Ok(Some(ExitCode::from(130)));
    }
    Ok(Some(ExitCode::from(status.code().unwrap_or(1) as u8)))
}

/// The TCP listen port in a member card's addresses.
pub(crate) fn tcp_port(card: &serde_json::Value) -> anyhow::Result<u16> {
    card["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .find_map(|a| a.split("/tcp/").nth(1)?.split('/').next()?.parse().ok())
        .context("no TCP address in the card")
}
