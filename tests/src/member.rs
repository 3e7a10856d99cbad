//! Members of a federation for the black-box federation tests: nodes on distinct loopback
//! addresses (each test has its own `127.0.N.0/24`), talking libp2p (QUIC and TCP) to each
//! other, with their names and PeerIds; publishing, searching, and waiting until they are
//! fully connected, agree on their digests, or find a dataset. Every wait is a poll with a
//! deadline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{TestNode, form_federation, poll};

/// Anti-entropy interval of the test nodes (the node's minimum is 100 ms).
pub const SYNC_MS: &str = "300";
/// Deadline for anything that should happen within a few sync rounds.
pub const SOON: Duration = Duration::from_secs(20);

/// A started node with its name and PeerId.
pub struct Member {
    /// The node.
    pub node: TestNode,
    /// Its name (organisation).
    pub name: String,
    /// Its PeerId.
    pub peer: String,
}

impl Member {
    /// Inits and starts a node named `name` on `127.0.{net}.{host}`.
    pub fn start(net: u8, host: u8, name: &str) -> Self {
        let ip = format!("127.0.{net}.{host}");
        let mut node = TestNode::init_at(
            name,
            "05515",
            &ip,
            &[
                "--contact-email",
                "open-data@example.de",
                "--sync-interval-ms",
                SYNC_MS,
            ],
        );
        node.start();
        let peer = node.get("/api/v1/node")["peer_id"]
            .as_str()
            .expect("peer_id")
            .to_owned();
        Self {
            node,
            name: name.to_owned(),
            peer,
        }
    }

    /// Its data dir.
    pub fn dir(&self) -> &Path {
        self.node.dir.path()
    }

    /// Writes its member card ([`TestNode::card`]) and returns the file.
    pub fn card(&self) -> PathBuf {
        self.node.card()
    }

    /// `GET /api/v1/federation`.
    pub fn status(&self) -> Value {
        self.node.get("/api/v1/federation")
    }

    /// The PeerIds it is connected to.
    pub fn connected(&self) -> Vec<String> {
        peers_of(&self.status())
    }

    /// Its catalog digest.
    pub fn digest(&self) -> String {
        self.status()["digest"].as_str().expect("digest").to_owned()
    }

    /// The version of its roster (0 without one).
    pub fn roster_version(&self) -> u64 {
        self.status()["roster"]["version"].as_u64().unwrap_or(0)
    }

    /// `GET /api/v1/catalog` with these parameters.
    pub fn search(&self, query: &[(&str, &str)]) -> Value {
        self.node.get_query("/api/v1/catalog", query)
    }

    /// Slugs of the hits of a full-text search.
    pub fn find(&self, q: &str) -> Vec<String> {
        slugs(&self.search(&[("q", q), ("limit", "100")]))
    }

    /// Imports a small CSV as dataset `slug` with complete DCAT-AP.de metadata and publishes
    /// it with `allmende dataset publish`.
    pub fn publish(&self, slug: &str, title: &str, theme: &str, keywords: &str) {
        let csv = self.dir().join(format!("{slug}.csv"));
        std::fs::write(&csv, "station;fahrzeuge\nA1;12\nB2;7\n").expect("write csv");
        self.node.ok(&[
            "dataset",
            "import",
            csv.to_str().expect("utf-8"),
            "--slug",
            slug,
            "--title",
            title,
            "--description",
            &format!("{title}, erhoben von {}", self.name),
            "--license",
            "dl-by-de/2.0",
            "--theme",
            theme,
            "--keywords",
            keywords,
        ]);
        let out = self.node.ok(&["dataset", "publish", slug]);
        assert!(out.contains("publish: entry seq"), "{out}");
    }
}

/// The PeerIds listed as connected in a federation status.
pub fn peers_of(status: &Value) -> Vec<String> {
    status["connected"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["peer_id"].as_str().map(str::to_owned))
        .collect()
}

/// The slugs of a catalog search's hits, sorted.
pub fn slugs(result: &Value) -> Vec<String> {
    let mut out: Vec<String> = result["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["dataset"]["slug"].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

/// Forms a federation of all `members` purely through the CLI ([`form_federation`]); returns
/// the roster file.
pub fn form(members: &[&Member], id: &str) -> PathBuf {
    let nodes: Vec<&TestNode> = members.iter().map(|m| &m.node).collect();
    form_federation(&nodes, id)
}

/// Waits until every member lists every other one (and only members) as connected.
pub fn wait_fully_connected(members: &[&Member]) {
    for m in members {
        let mut others: Vec<String> = members
            .iter()
            .filter(|o| o.peer != m.peer)
            .map(|o| o.peer.clone())
            .collect();
        others.sort();
        poll(
            &format!("{} connected to all other members", m.name),
            SOON,
            || {
                let mut c = m.connected();
                c.sort();
                (c == others).then_some(())
            },
            || format!("{:?}, want {others:?}", m.connected()),
        );
    }
}

/// Waits until all members show one digest; returns it and how long it took.
pub fn wait_digests_equal(members: &[&Member], timeout: Duration) -> (String, Duration) {
    let start = Instant::now();
    let digest = poll(
        "all digests equal",
        timeout,
        || {
            let d: Vec<String> = members.iter().map(|m| m.digest()).collect();
            d.iter().all(|x| *x == d[0]).then(|| d[0].clone())
        },
        || {
            members
                .iter()
                .map(|m| format!("{}={}", m.name, m.digest()))
                .collect::<Vec<_>>()
                .join(" ")
        },
    );
    (digest, start.elapsed())
}

/// Waits until a full-text search for `q` on `m` finds `slug`.
pub fn wait_found(m: &Member, q: &str, slug: &str) {
    poll(
        &format!("{}: search `{q}` finds `{slug}`", m.name),
        SOON,
        || m.find(q).iter().any(|s| s == slug).then_some(()),
        || format!("{:?}", m.find(q)),
    );
}
