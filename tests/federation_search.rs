//! Black-box tests of catalog search across a federation: three real `allmende` processes on
//! their own loopback addresses form a federation through the CLI alone and find each other's
//! datasets (German stemming and compounds, filters, facets, the publisher's organisation),
//! with all digests in agreement.

use allmende_e2e::member::{
    Member, SOON, form, slugs, wait_digests_equal, wait_found, wait_fully_connected,
};
use serde_json::Value;

/// (a) Three nodes form a federation through the CLI alone; a dataset published on one is
/// found by catalog search on the others, with German stemming, filters, facets and the
/// publisher's organisation, and all digests agree.
#[test]
fn three_nodes_form_a_federation_by_cli_and_search_each_others_catalog() {
    let a = Member::start(1, 2, "Stadt Münster");
    let b = Member::start(1, 3, "Kreis Steinfurt");
    let c = Member::start(1, 4, "Kreis Coesfeld");
    let all = [&a, &b, &c];
    form(&all, "muensterland");
    wait_fully_connected(&all);
    let status = b.node.ok(&["federation", "status"]);
    assert!(
        status.contains("roster   `muensterland` version 1"),
        "{status}"
    );
    for m in all {
        assert!(status.contains(&m.peer), "{} missing in {status}", m.name);
    }

    a.publish(
        "verkehrszaehlungen",
        "Verkehrszählungen des Radverkehrs",
        "TRAN",
        "Verkehr,Radverkehr",
    );
    b.publish(
        "luftmessungen",
        "Luftqualität: Messungen an Hauptstraßen",
        "ENVI",
        "Luft,Stickstoffdioxid",
    );
    for m in [&b, &c] {
        // Stemming and compounds: the query's singular meets a part of the title's plural.
        wait_found(m, "zählung", "verkehrszaehlungen");
    }
    wait_found(&c, "messung", "luftmessungen");
    wait_found(&a, "messung", "luftmessungen");

    // The CLI's search over the replicated catalog, on a node that did not publish it.
    let out = c
        .node
        .ok(&["catalog", "search", "zählungen radverkehr", "--json"]);
    let found: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(found["total"], 1, "{found}");
    let hit = &found["hits"][0];
    assert_eq!(hit["dataset"]["slug"], "verkehrszaehlungen");
    assert_eq!(hit["dataset"]["title"], "Verkehrszählungen des Radverkehrs");
    assert_eq!(hit["publisher"], a.peer.as_str());
    assert_eq!(hit["organisation"], "Stadt Münster");
    assert_eq!(hit["seq"], 1);
    // A word in no title, description or keyword finds nothing.
    let none = c.search(&[("q", "Hochwasser")]);
    assert_eq!(none["total"], 0, "{none}");
    let text = c.node.ok(&["catalog", "search", "zählung"]);
    assert!(text.starts_with("1 hits"), "{text}");
    assert!(text.contains("Stadt Münster"), "{text}");

    // Facets over all hits, and filters.
    let everything = c.search(&[]);
    assert_eq!(everything["total"], 2, "{everything}");
    let facets = &everything["facets"];
    assert_eq!(facets["theme"]["TRAN"], 1, "{facets}");
    assert_eq!(facets["theme"]["ENVI"], 1, "{facets}");
    assert_eq!(facets["district"]["05515"], 2, "{facets}");
    assert_eq!(facets["license"]["dl-by-de/2.0"], 2, "{facets}");
    assert_eq!(facets["publisher"][a.peer.as_str()], 1, "{facets}");
    assert_eq!(facets["publisher"][b.peer.as_str()], 1, "{facets}");
    assert_eq!(
        slugs(&c.search(&[("theme", "ENVI")])),
        vec!["luftmessungen"]
    );
    assert_eq!(
        slugs(&c.search(&[("publisher", a.peer.as_str())])),
        vec!["verkehrszaehlungen"]
    );
    let page = c.search(&[("limit", "1"), ("offset", "1")]);
    assert_eq!(page["total"], 2);
    assert_eq!(page["hits"].as_array().map(Vec::len), Some(1));

    let (digest, _) = wait_digests_equal(&all, SOON);
    for m in all {
        let s = m.status();
        assert_eq!(s["digest"], digest.as_str());
        let seqs: Vec<(String, u64)> = s["publishers"]
            .as_array()
            .expect("publishers")
            .iter()
            .map(|p| {
                (
                    p["peer_id"].as_str().unwrap_or("").to_owned(),
                    p["seq"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(seqs.len(), 2, "{}: {seqs:?}", m.name);
        assert!(seqs.contains(&(a.peer.clone(), 1)), "{seqs:?}");
        assert!(seqs.contains(&(b.peer.clone(), 1)), "{seqs:?}");
    }
}

/// German compounds are found by their parts: "zählung" finds "Verkehrszählungen". One node
/// suffices (its own published entries are searchable).
#[test]
fn german_compounds_are_found_by_their_parts() {
    let a = Member::start(6, 2, "Stadt Münster");
    a.publish(
        "verkehrszaehlungen",
        "Verkehrszählungen am Ring",
        "TRAN",
        "Kfz",
    );
    wait_found(&a, "verkehrszählung", "verkehrszaehlungen");
    assert_eq!(a.find("zählung"), vec!["verkehrszaehlungen"]);
}
