//! Prometheus metrics (`GET /metrics`, text exposition format): catalog size, connected peers,
//! federated queries and their per-member outcomes and latency, policy decisions audited, and
//! RocksDB figures. Gauges are read when scraped; counters are kept as events happen.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A `status` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Status {
    /// `ok`, `denied`, `timeout`, `error`, …
    pub status: String,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    /// Federated queries asked here, by outcome (`ok` or the error kind).
    pub queries: Family<Status, Counter>,
    /// Members' answers to federated queries asked here, by status.
    pub member_answers: Family<Status, Counter>,
    /// Seconds a federated query took.
    pub query_seconds: Histogram,
    catalog_entries: Gauge,
    peers: Gauge,
    datasets: Gauge,
    decisions: Gauge,
    rocksdb_keys: Gauge,
    rocksdb_sst_bytes: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Figures read at scrape time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    /// Datasets in the replicated catalog index.
    pub catalog_entries: i64,
    /// Connected peers.
    pub peers: i64,
    /// This node's datasets.
    pub datasets: i64,
    /// Decisions in the audit log.
    pub decisions: i64,
    /// RocksDB's estimate of its keys.
    pub rocksdb_keys: i64,
    /// Bytes of RocksDB's SST files.
    pub rocksdb_sst_bytes: i64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("allmende");
        let m = Self {
            queries: Family::default(),
            member_answers: Family::default(),
            query_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            catalog_entries: Gauge::default(),
            peers: Gauge::default(),
            datasets: Gauge::default(),
            decisions: Gauge::default(),
            rocksdb_keys: Gauge::default(),
            rocksdb_sst_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "federated_queries",
            "Federated queries asked here, by outcome",
            m.queries.clone(),
        );
        registry.register(
            "member_answers",
            "Members' answers to federated queries asked here, by status",
            m.member_answers.clone(),
        );
        registry.register(
            "federated_query_seconds",
            "Seconds a federated query took",
            m.query_seconds.clone(),
        );
        registry.register(
            "catalog_entries",
            "Datasets in the replicated catalog",
            m.catalog_entries.clone(),
        );
        registry.register(
            "connected_peers",
            "Connected federation members",
            m.peers.clone(),
        );
        registry.register("datasets", "This node's datasets", m.datasets.clone());
        registry.register(
            "audited_decisions",
            "Policy decisions in the audit log",
            m.decisions.clone(),
        );
        registry.register(
            "rocksdb_estimated_keys",
            "RocksDB's estimate of its keys",
            m.rocksdb_keys.clone(),
        );
        registry.register(
            "rocksdb_sst_bytes",
            "Bytes of RocksDB's SST files",
            m.rocksdb_sst_bytes.clone(),
        );
        Self { registry, ..m }
    }

    /// The text exposition, with the gauges set from `now`.
    pub fn render(&self, now: Snapshot) -> String {
        self.catalog_entries.set(now.catalog_entries);
        self.peers.set(now.peers);
        self.datasets.set(now.datasets);
        self.decisions.set(now.decisions);
        self.rocksdb_keys.set(now.rocksdb_keys);
        self.rocksdb_sst_bytes.set(now.rocksdb_sst_bytes);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let m = Metrics::new();
        m.queries
            .get_or_create(&Status {
                status: "ok".into(),
            })
            .inc();
        m.query_seconds.observe(0.02);
        let text = m.render(Snapshot {
            peers: 3,
            ..Snapshot::default()
        });
        assert!(
            text.contains("allmende_federated_queries_total{status=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.contains("allmende_connected_peers 3"), "{text}");
        assert!(
            text.contains("allmende_federated_query_seconds_count 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
