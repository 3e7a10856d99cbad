//! What the scenario binaries share: finding the node binary, the nodes' listen addresses, an
//! HTTP client with the admin token, waiting for a condition, and reading a process's memory
//! and CPU time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

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

/// The `--p2p-listen` value of a node on `ip` with the libp2p transports `p2p` (`quic`, `tcp`,
/// or anything else for both, QUIC first) on these ports (0: ephemeral).
pub fn p2p_listen(ip: &str, p2p: &str, udp: u16, tcp: u16) -> String {
    match p2p {
        "quic" => format!("/ip4/{ip}/udp/{udp}/quic-v1"),
        "tcp" => format!("/ip4/{ip}/tcp/{tcp}"),
        _ => format!("/ip4/{ip}/udp/{udp}/quic-v1,/ip4/{ip}/tcp/{tcp}"),
    }
}

/// A blocking HTTP client builder that sends `token` as `Authorization: Bearer` and gives up
/// after `timeout`.
pub fn client_with_token(
    token: &str,
    timeout: Duration,
) -> anyhow::Result<reqwest::blocking::ClientBuilder> {
    let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?;
    auth.set_sensitive(true);
    Ok(reqwest::blocking::Client::builder()
        .default_headers(
            [(reqwest::header::AUTHORIZATION, auth)]
                .into_iter()
                .collect(),
        )
        .timeout(timeout))
}

/// Calls `check` every `every` until it returns `Some` and returns that; fails naming `what`
/// when `timeout` passes first, or with the first error `check` returns.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(every);
    }
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
