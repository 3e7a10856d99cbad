//! What the scenario binaries share: finding the node binary and reading a process's memory
//! and CPU time.

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

/// utime + stime of process `pid`, in clock ticks (`/proc/PID/stat`).
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.len() < 13 {
        bail!("short /proc/{pid}/stat");
    }
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// Clock ticks per second, for [`cpu_ticks`].
pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}
