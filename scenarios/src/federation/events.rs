//! JSONL events on one monotonic clock, and the statistics the cases report.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// JSONL events with one monotonic clock (`t_ns` since the run's start).
pub(crate) struct Events {
    start: Instant,
    file: Mutex<std::io::BufWriter<File>>,
}

impl Events {
    pub(crate) fn new(path: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            start: Instant::now(),
            file: Mutex::new(std::io::BufWriter::new(File::create(path)?)),
        })
    }

    pub(crate) fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_nanos() as u64
    }

    pub(crate) fn at(&self, t: Instant, mut v: Value) {
        v["t_ns"] = json!(self.ns(t));
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(f, "{v}");
    }

    pub(crate) fn now(&self, v: Value) {
        self.at(Instant::now(), v);
    }

    pub(crate) fn flush(&self) {
        let _ = self.file.lock().unwrap_or_else(|p| p.into_inner()).flush();
    }
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The harness's random numbers (xorshift64*), seeded from `--seed`.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
