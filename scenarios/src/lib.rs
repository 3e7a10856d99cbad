//! What the scenario binaries share: finding the node binary and reading a process's memory.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// The `allmende` binary built beside the running scenario binary.
pub fn bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("exe dir")?.join("allmende");
    if !path.exists() {
        bail!(
            "{} missing: cargo build --release -p allmende",
            path.display()
        );
    }
    Ok(path)
}

/// The resident set size of process `pid`, in KiB (`/proc/PID/status`).
pub fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}
