//! The common-schema dataset every member publishes for federated queries, the union of all
//! members' data that the local reference runs over, and comparing answers.
//!
//! Each member *i* publishes `counts` (conforming to `urn:allmende:schema:counts_hourly:1`, so
//! `federation.counts_hourly` reads all of them): 3 stations × 8 hours, columns `station`,
//! `hour`, `ts` (the hour's time: 6 hours apart over two days), `vehicles`, `bikes`, values
//! derived from *i*, under the open policy of
//! `data/policies/offer-open.jsonld`, or, for the one restricted member, a policy that leaves
//! `bikes` out (`allowedColumns`).

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use crate::cluster::{Cluster, check};
use crate::publishing::csv_form;

pub(crate) const KIND: &str = "counts_hourly";
const SCHEMA: &str = "urn:allmende:schema:counts_hourly:1";
const SLUG: &str = "counts";
/// The local dataset with the union of every member's rows and a `member` column.
pub(crate) const UNION: &str = "ref_union";
const OPEN_POLICY: &str = include_str!("../../../data/policies/offer-open.jsonld");
/// Every column but `bikes`.
const NO_BIKES_POLICY: &str = r#"{
  "@context": ["http://www.w3.org/ns/odrl.jsonld", {"allm": "urn:allmende:odrl:"}],
  "@type": "Offer",
  "uid": "urn:allmende:policy:counts-no-bikes",
  "permission": [{
    "action": "use",
    "constraint": [{
      "leftOperand": "allm:allowedColumns",
      "operator": "isPartOf",
      "rightOperand": ["station", "hour", "ts", "vehicles"]
    }]
  }]
}"#;

/// The local table of the asking node that queries join with: each station's district.
pub(crate) const STATIONS_TABLE: &str = "ref_stations";

/// Small aggregates, a filtered projection, a grouping by an expression and a join with the
/// asker's own table, over every member, with a local twin each.
pub(crate) const QUERIES: [(&str, &str); 5] = [
    (
        "count-sum by member",
        "SELECT _member, COUNT(*) AS n, SUM(vehicles) AS v FROM federation.counts_hourly \
         GROUP BY _member ORDER BY _member",
    ),
    (
        "sum-max-avg by station",
        "SELECT station, SUM(vehicles) AS v, MAX(vehicles) AS hi, AVG(vehicles) AS mean \
         FROM federation.counts_hourly GROUP BY station ORDER BY station",
    ),
    (
        "filtered rows",
        "SELECT _member, station, hour, vehicles FROM federation.counts_hourly \
         WHERE vehicles > 470 ORDER BY _member, station, hour",
    ),
    (
        "date_trunc by day",
        "SELECT date_trunc('day', ts) AS day, SUM(vehicles) AS v, COUNT(*) AS n \
         FROM federation.counts_hourly GROUP BY 1 ORDER BY 1",
    ),
    (
        "join with a local table",
        "SELECT s.district, SUM(c.vehicles) AS v FROM federation.counts_hourly c \
         JOIN ref_stations s ON c.station = s.station GROUP BY s.district ORDER BY s.district",
    ),
];

/// Reads `bikes`, which the restricted member's policy leaves out.
pub(crate) const BIKES_QUERY: &str = "SELECT _member, SUM(bikes) AS b FROM \
    federation.counts_hourly GROUP BY _member ORDER BY _member";

const STATIONS: [&str; 3] = ["Nord", "Mitte", "Sued"];

fn value(i: usize, s: usize, h: usize, salt: u64) -> u64 {
    let mut x =
        (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (s as u64 * 31 + h as u64) ^ salt;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// Member *i*'s rows (without header).
fn rows(i: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (s, station) in STATIONS.iter().enumerate() {
        for h in 0..8 {
            out.push(format!(
                "{station},{h},2024-01-{:02}T{:02}:00:00Z,{},{}",
                1 + h * 6 / 24,
                h * 6 % 24,
                value(i, s, h, 1) % 500,
                value(i, s, h, 2) % 80
            ));
        }
    }
    out
}

/// The union of `members` (member name, node index) with a leading `member` column.
pub(crate) fn union_csv(members: &[(String, usize)]) -> String {
    let mut text = String::from("member,station,hour,ts,vehicles,bikes\n");
    for (name, i) in members {
        for r in rows(*i) {
            text.push_str(&format!("{name},{r}\n"));
        }
    }
    text
}

/// The local twin of a federated query: over [`UNION`], without the members in `exclude`.
pub(crate) fn local_sql(sql: &str, exclude: &[String]) -> String {
    let from = if exclude.is_empty() {
        UNION.to_owned()
    } else {
        let list: Vec<String> = exclude.iter().map(|m| format!("'{m}'")).collect();
        format!(
            "(SELECT * FROM {UNION} WHERE member NOT IN ({})) u",
            list.join(", ")
        )
    };
    sql.replace(&format!("federation.{KIND}"), &from)
        .replace("_member", "member")
}

/// Compares row sets: equal strings and integers, floats within 1e-9 (relative); `_member`
/// and `member` are the same column.
pub(crate) fn rows_equal(got: &Value, want: &Value) -> Result<(), String> {
    let (g, w) = (
        got.as_array().ok_or("no rows")?,
        want.as_array().ok_or("no reference rows")?,
    );
    if g.len() != w.len() {
        return Err(format!("{} rows, the reference has {}", g.len(), w.len()));
    }
    let norm = |row: &Value| -> BTreeMap<String, Value> {
        row.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.trim_start_matches('_').to_owned(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (k, (a, b)) in g.iter().zip(w).enumerate() {
        let (a, b) = (norm(a), norm(b));
        if a.keys().ne(b.keys()) {
            return Err(format!("row {k}: columns {a:?} vs {b:?}"));
        }
        for (col, va) in &a {
            let vb = &b[col];
            let same = match (va.as_f64(), vb.as_f64()) {
                (Some(x), Some(y)) if va.is_f64() || vb.is_f64() => {
                    (x - y).abs() <= 1e-9 * y.abs().max(1.0)
                }
                _ => va == vb,
            };
            if !same {
                return Err(format!("row {k}, column {col}: {va} vs {vb}"));
            }
        }
    }
    Ok(())
}

/// Each member's status in an answer: member name → (PeerId, status).
pub(crate) fn statuses(answer: &Value) -> BTreeMap<String, (String, String)> {
    answer["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["member"].as_str().unwrap_or("").to_owned(),
                (
                    m["peer"].as_str().unwrap_or("").to_owned(),
                    m["status"].as_str().unwrap_or("").to_owned(),
                ),
            )
        })
        .collect()
}

impl Cluster {
    /// Uploads member *i*'s `counts` with the common schema, attaches its policy (the open one,
    /// or with `restricted` the one without `bikes`) and publishes it.
    pub(crate) fn publish_counts(&mut self, i: usize, restricted: bool) -> anyhow::Result<()> {
        let csv = format!("station,hour,ts,vehicles,bikes\n{}\n", rows(i).join("\n"));
        let form = csv_form(SLUG, csv)
            .text("title", format!("Verkehrsmengen Kommune {i:02}"))
            .text(
                "description",
                "Stündliche Kfz- und Radzählungen an drei Messstellen",
            )
            .text("license", "dl-by-de/2.0")
            .text("themes", "TRAN")
            .text("keywords", "Verkehr")
            .text("conforms_to", SCHEMA);
        self.import_form(i, form)?;
        let policy = if restricted {
            NO_BIKES_POLICY
        } else {
            OPEN_POLICY
        };
        self.put_policy(i, SLUG, policy)?;
        self.publish_new(i, SLUG)
    }

    /// Attaches the JSON-LD `policy` to dataset `slug` of node `i`.
    pub(crate) fn put_policy(&self, i: usize, slug: &str, policy: &str) -> anyhow::Result<()> {
        check(
            self.http
                .put(format!(
                    "{}/api/v1/datasets/{slug}/policy",
                    self.nodes[i].url
                ))
                .header(reqwest::header::CONTENT_TYPE, "application/ld+json")
                .body(policy.to_owned())
                .send()?,
        )?;
        Ok(())
    }

    /// Uploads `csv` as the local (unpublished) dataset `slug` on node `i`.
    pub(crate) fn upload_local(&self, i: usize, slug: &str, csv: String) -> anyhow::Result<()> {
        self.import_form(i, csv_form(slug, csv))?;
        Ok(())
    }

    /// Local SQL on node `i` (`POST /api/v1/sql`): the rows.
    pub(crate) fn sql(&self, i: usize, sql: &str) -> anyhow::Result<Value> {
        self.post(i, "/api/v1/sql", &json!({ "sql": sql }))
    }

    /// A federated query from node `i` (`POST /api/v1/query`) with a per-provider deadline.
    pub(crate) fn query(&self, i: usize, sql: &str, deadline_ms: u64) -> anyhow::Result<Value> {
        self.post(
            i,
            "/api/v1/query",
            &json!({ "sql": sql, "deadline_ms": deadline_ms }),
        )
    }

    /// Asks from node `i` until every one of `expect` members is listed in the answer; returns
    /// node index → member name.
    pub(crate) fn member_names(
        &self,
        i: usize,
        expect: &[usize],
    ) -> anyhow::Result<BTreeMap<usize, String>> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let answer = self.query(i, QUERIES[0].1, 3000)?;
            let st = statuses(&answer);
            let mut names = BTreeMap::new();
            for &j in expect {
                if let Some((name, _)) = st.iter().find(|(_, (p, _))| *p == self.nodes[j].peer) {
                    names.insert(j, name.clone());
                }
            }
            if names.len() == expect.len() {
                return Ok(names);
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "node {i} lists {} of {} members in a federated answer: {answer}",
                names.len(),
                expect.len()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// The union on node `at` over `names`, uploaded as [`UNION`].
pub(crate) fn upload_union(
    cluster: &Cluster,
    at: usize,
    names: &BTreeMap<usize, String>,
) -> anyhow::Result<()> {
    let members: Vec<(String, usize)> = names.iter().map(|(i, n)| (n.clone(), *i)).collect();
    cluster
        .upload_local(at, UNION, union_csv(&members))
        .context("uploading the reference union")?;
    cluster
        .upload_local(
            at,
            STATIONS_TABLE,
            "station,district\nNord,Nordviertel\nMitte,Innenstadt\nSued,Innenstadt\n".into(),
        )
        .context("uploading the stations table")
}
