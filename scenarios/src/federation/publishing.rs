//! Publishing on the nodes: small datasets with complete metadata, created or updated, and the
//! seqs the harness expects to see.

use anyhow::ensure;
use reqwest::blocking::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::cluster::{Cluster, check};

impl Cluster {
    /// Uploads a small CSV as a new dataset on node `i` with complete metadata (not published).
    pub(crate) fn upload(&mut self, i: usize) -> anyhow::Result<String> {
        self.counter += 1;
        let slug = format!("ds_{i:02}_{:04}", self.counter);
        let csv = format!("station;fahrzeuge\nA{0};{0}\nB{0};{1}\n", self.counter, i);
        let form = csv_form(&slug, csv)
            .text(
                "title",
                format!("Verkehrszählung {} von Kommune {i:02}", self.counter),
            )
            .text("description", "Stündliche Zählungen an Messstellen")
            .text("license", "dl-by-de/2.0")
            .text("themes", "TRAN")
            .text("keywords", "Verkehr,Zählung");
        self.import_form(i, form)?;
        Ok(slug)
    }

    /// Publishes (create) `slug` on node `i`, or re-publishes it after a metadata change
    /// (update) when `update`; returns the new seq. Only the publishing request is timed by the
    /// caller.
    pub(crate) fn publish(&mut self, i: usize, slug: &str, update: bool) -> anyhow::Result<u64> {
        if update {
            let r = self
                .http
                .patch(format!("{}/api/v1/datasets/{slug}", self.nodes[i].url))
                .json(
                    &json!({"title": format!("Verkehrszählung {slug}, geändert {}", self.counter)}),
                )
                .send()?;
            check(r)?;
            self.seq[i] += 1;
        } else {
            self.publish_new(i, slug)?;
            self.published[i].push(slug.to_owned());
        }
        Ok(self.seq[i])
    }

    /// Publishes the not yet published dataset `slug` on node `i`
    /// (`POST /api/v1/datasets/{slug}/publish`) and checks that its entry has the next seq.
    pub(crate) fn publish_new(&mut self, i: usize, slug: &str) -> anyhow::Result<()> {
        let v = self.post(i, &format!("/api/v1/datasets/{slug}/publish"), &json!({}))?;
        ensure!(
            v["seq"].as_u64() == Some(self.seq[i] + 1),
            "unexpected seq: {v}"
        );
        self.seq[i] += 1;
        Ok(())
    }

    /// Publishes one new dataset on every node in `nodes`.
    pub(crate) fn publish_on(&mut self, nodes: &[usize]) -> anyhow::Result<()> {
        for &i in nodes {
            let slug = self.upload(i)?;
            self.publish(i, &slug, false)?;
        }
        Ok(())
    }
}

/// A dataset upload form (`POST /api/v1/datasets`): `csv` as the file `<slug>.csv`, and the
/// `slug`; add the metadata fields with `.text`.
pub(crate) fn csv_form(slug: &str, csv: String) -> Form {
    Form::new()
        .part(
            "file",
            Part::bytes(csv.into_bytes()).file_name(format!("{slug}.csv")),
        )
        .text("slug", slug.to_owned())
}

/// The seq of `publisher` in a status document.
pub(crate) fn seq_of(status: &Value, publisher: &str) -> u64 {
    status["publishers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["peer_id"] == publisher)
        .and_then(|p| p["seq"].as_u64())
        .unwrap_or(0)
}
