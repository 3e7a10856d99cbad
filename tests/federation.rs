//! Black-box tests of the federation: real `allmende` processes on distinct loopback addresses
//! (each test has its own `127.0.N.0/24`), formed into a federation through the CLI, talking
//! libp2p (QUIC and TCP) to each other. Every wait is a poll with a deadline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use allmende_e2e::{TestNode, poll};
use serde_json::Value;

/// Anti-entropy interval of the test nodes (the node's minimum is 100 ms).
const SYNC_MS: &str = "300";
/// Deadline for anything that should happen within a few sync rounds.
const SOON: Duration = Duration::from_secs(20);

/// A started node with its name and PeerId.
struct Member {
    node: TestNode,
    name: String,
    peer: String,
}

impl Member {
    /// Inits and starts a node named `name` on `127.0.{net}.{host}`.
    fn start(net: u8, host: u8, name: &str) -> Self {
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

    fn dir(&self) -> &Path {
        self.node.dir.path()
    }

    /// Writes this node's member card with `allmende federation card -o` (once libp2p listens,
    /// so the card carries addresses) and returns the file.
    fn card(&self) -> PathBuf {
        poll(
            &format!("{}: card with listen addresses", self.name),
            SOON,
            || {
                let card = self.node.get("/api/v1/federation/card");
                card["addresses"]
                    .as_array()
                    .is_some_and(|a| a.len() >= 2)
                    .then_some(())
            },
            || self.node.get("/api/v1/federation/card").to_string(),
        );
        let path = self.dir().join("card.json");
        self.node
            .ok(&["federation", "card", "-o", path.to_str().expect("utf-8")]);
        path
    }

    fn status(&self) -> Value {
        self.node.get("/api/v1/federation")
    }

    fn connected(&self) -> Vec<String> {
        peers_of(&self.status())
    }

    fn digest(&self) -> String {
        self.status()["digest"].as_str().expect("digest").to_owned()
    }

    fn roster_version(&self) -> u64 {
        self.status()["roster"]["version"].as_u64().unwrap_or(0)
    }

    /// `GET /api/v1/catalog` with these parameters.
    fn search(&self, query: &[(&str, &str)]) -> Value {
        self.node.get_query("/api/v1/catalog", query)
    }

    /// Slugs of the hits of a full-text search.
    fn find(&self, q: &str) -> Vec<String> {
        slugs(&self.search(&[("q", q), ("limit", "100")]))
    }

    /// Imports a small CSV as dataset `slug` with complete DCAT-AP.de metadata and publishes
    /// it with `allmende dataset publish`.
    fn publish(&self, slug: &str, title: &str, theme: &str, keywords: &str) {
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

fn peers_of(status: &Value) -> Vec<String> {
    status["connected"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["peer_id"].as_str().map(str::to_owned))
        .collect()
}

fn slugs(result: &Value) -> Vec<String> {
    let mut out: Vec<String> = result["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["dataset"]["slug"].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

/// Forms a federation of all `members` purely through the CLI: everybody writes a card, the
/// first creates the founding roster from the others' cards, each of the others signs the file
/// in turn, and every member applies it. Returns the roster file.
fn form(members: &[&Member], id: &str) -> PathBuf {
    let cards: Vec<PathBuf> = members.iter().map(|m| m.card()).collect();
    let founder = members[0];
    let roster = founder.dir().join(format!("{id}.roster"));
    let roster_arg = roster.to_str().expect("utf-8").to_owned();
    let mut args = vec!["federation", "create", "--id", id];
    for c in &cards[1..] {
        args.extend(["--card", c.to_str().expect("utf-8")]);
    }
    args.extend(["-o", &roster_arg]);
    let out = founder.node.ok(&args);
    assert!(out.contains("1 signatures"), "{out}");
    for m in &members[1..] {
        m.node.ok(&["federation", "sign", &roster_arg]);
    }
    for m in members {
        let out = m.node.ok(&["federation", "apply", &roster_arg]);
        assert!(out.contains("installed roster version 1"), "{out}");
    }
    roster
}

/// Waits until every member lists every other one (and only members) as connected.
fn wait_fully_connected(members: &[&Member]) {
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
fn wait_digests_equal(members: &[&Member], timeout: Duration) -> (String, Duration) {
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
fn wait_found(m: &Member, q: &str, slug: &str) {
    poll(
        &format!("{}: search `{q}` finds `{slug}`", m.name),
        SOON,
        || m.find(q).iter().any(|s| s == slug).then_some(()),
        || format!("{:?}", m.find(q)),
    );
}

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

/// (b) Four nodes; one is killed with SIGKILL while the others publish and update; after its
/// restart every digest converges within a deadline and its search shows the new entries.
#[test]
fn a_killed_node_catches_up_after_restart() {
    let mut members = vec![
        Member::start(2, 2, "Stadt Münster"),
        Member::start(2, 3, "Kreis Steinfurt"),
        Member::start(2, 4, "Kreis Coesfeld"),
        Member::start(2, 5, "Kreis Borken"),
    ];
    {
        let all: Vec<&Member> = members.iter().collect();
        form(&all, "muensterland");
        wait_fully_connected(&all);
        members[0].publish("radwege", "Radwege im Stadtgebiet", "TRAN", "Rad");
        members[3].publish("schulen", "Schulstandorte", "EDUC", "Schule");
        wait_digests_equal(&all, SOON);
        wait_found(&members[3], "radweg", "radwege");
    }

    let victim = members.pop().expect("four members");
    let Member {
        node: mut victim_node,
        name: victim_name,
        peer: victim_peer,
    } = victim;
    victim_node.stop(libc::SIGKILL, Duration::from_secs(10));
    for m in &members {
        poll(
            &format!("{} notices {victim_name} is gone", m.name),
            SOON,
            || (!m.connected().contains(&victim_peer)).then_some(()),
            || format!("{:?}", m.connected()),
        );
    }

    // While it is down: new datasets on two nodes, and a metadata change on a published one
    // (which re-publishes it as an update).
    members[1].publish(
        "baustellen",
        "Baustellen auf Kreisstraßen",
        "TRAN",
        "Baustelle",
    );
    members[2].publish(
        "hochwasser",
        "Hochwassergefahrenkarten",
        "ENVI",
        "Hochwasser",
    );
    members[0].node.ok(&[
        "dataset",
        "update",
        "radwege",
        "--title",
        "Radwege und Fahrradstraßen im Stadtgebiet",
    ]);
    for i in 0..5 {
        members[1].publish(
            &format!("messstelle_{i}"),
            &format!("Pegelmessstelle {i}"),
            "ENVI",
            "Pegel",
        );
    }
    let up: Vec<&Member> = members.iter().collect();
    let (before, _) = wait_digests_equal(&up, SOON);

    victim_node.start();
    let victim = Member {
        node: victim_node,
        name: victim_name,
        peer: victim_peer,
    };
    let restarted = Instant::now();
    let mut all: Vec<&Member> = members.iter().collect();
    all.push(&victim);
    let (after, took) = wait_digests_equal(&all, SOON);
    eprintln!("restarted node converged {took:?} after its restart");
    assert_eq!(before, after, "nothing changed meanwhile");
    assert!(restarted.elapsed() < SOON);
    // The search index follows the log a commit later than the digest does.
    wait_found(&victim, "fahrradstraße", "radwege");
    wait_found(&victim, "baustelle", "baustellen");
    wait_found(&victim, "hochwasser", "hochwasser");
    wait_found(&victim, "pegelmessstelle", "messstelle_4");
    assert_eq!(victim.find("fahrradstraße"), vec!["radwege"]);
    assert_eq!(victim.search(&[("q", "pegelmessstelle")])["total"], 5);
    assert_eq!(victim.search(&[])["total"], 9);
    wait_fully_connected(&all);
}

/// (c) A majority signs the removal of a member: it is disconnected everywhere and its entries
/// disappear from the others' search, while it keeps trying to reach them.
#[test]
fn a_member_removed_by_majority_is_disconnected_and_hidden() {
    let a = Member::start(3, 2, "Stadt Münster");
    let b = Member::start(3, 3, "Kreis Steinfurt");
    let c = Member::start(3, 4, "Kreis Coesfeld");
    let d = Member::start(3, 5, "Kreis Borken");
    let all = [&a, &b, &c, &d];
    form(&all, "muensterland");
    wait_fully_connected(&all);
    d.publish("windkraft", "Windkraftanlagen im Kreis", "ENER", "Wind");
    a.publish(
        "parkplaetze",
        "Parkplätze in der Altstadt",
        "TRAN",
        "Parken",
    );
    for m in [&a, &b, &c] {
        wait_found(m, "windkraftanlage", "windkraft");
    }
    wait_digests_equal(&all, SOON);

    // a proposes, b signs: 2 of 4 is not yet the majority (3), so nothing changes.
    let file = a.dir().join("remove.roster");
    let file_arg = file.to_str().expect("utf-8");
    let out = a
        .node
        .ok(&["federation", "propose-remove", &d.peer, "-o", file_arg]);
    assert!(out.contains("version 2: 3 members, 1 signatures"), "{out}");
    b.node.ok(&["federation", "sign", file_arg]);
    assert_eq!(a.roster_version(), 1);
    assert!(a.find("windkraftanlage").contains(&"windkraft".to_owned()));
    // The third signature makes it valid; it is installed by the signer and gossiped.
    let out = c.node.ok(&["federation", "sign", file_arg]);
    assert!(out.contains("installed"), "{out}");
    let rest = [&a, &b, &c];
    for m in rest {
        poll(
            &format!("{} installs roster version 2", m.name),
            SOON,
            || (m.roster_version() == 2).then_some(()),
            || m.status()["roster"].to_string(),
        );
    }
    wait_fully_connected(&rest);
    for m in rest {
        poll(
            &format!("{}: the removed member's entries are hidden", m.name),
            SOON,
            || m.find("windkraftanlage").is_empty().then_some(()),
            || format!("{:?}", m.find("windkraftanlage")),
        );
        assert!(!m.connected().contains(&d.peer));
        assert_eq!(
            m.search(&[("publisher", d.peer.as_str())])["total"],
            0,
            "{}",
            m.name
        );
        assert_eq!(m.find("parkplatz"), vec!["parkplaetze"]);
    }
    // Whatever d makes of it (it may have heard of version 2 before it was cut off, and then
    // knows it is no longer a member), for many sync rounds none of the others lets it in, and
    // nothing it publishes reaches them.
    eprintln!(
        "removed member: roster version {}, member {}",
        d.roster_version(),
        d.status()["member"]
    );
    d.publish("solar", "Solarpotenzialkataster", "ENER", "Solar");
    a.publish("baeume", "Baumkataster", "ENVI", "Baum");
    for m in [&b, &c] {
        wait_found(m, "baumkataster", "baeume");
    }
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        for m in rest {
            assert!(
                !m.connected().contains(&d.peer),
                "{} lets the removed member connect",
                m.name
            );
            assert!(m.find("solarpotenzialkataster").is_empty(), "{}", m.name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_digests_equal(&rest, SOON);
}

/// (c, second half) A member added by a signed proposal receives the roster and the whole
/// catalog, and its own entries reach the others.
#[test]
fn a_member_added_by_majority_receives_roster_and_catalog() {
    let a = Member::start(4, 2, "Stadt Münster");
    let b = Member::start(4, 3, "Kreis Steinfurt");
    let c = Member::start(4, 4, "Kreis Coesfeld");
    let all = [&a, &b, &c];
    form(&all, "muensterland");
    wait_fully_connected(&all);
    a.publish("radwege", "Radwege im Stadtgebiet", "TRAN", "Rad");
    b.publish("schulen", "Schulstandorte", "EDUC", "Schule");
    c.publish("kitas", "Kindertagesstätten", "EDUC", "Kita");
    wait_digests_equal(&all, SOON);

    let e = Member::start(4, 5, "Kreis Warendorf");
    let card = e.card();
    let file = a.dir().join("add.roster");
    let file_arg = file.to_str().expect("utf-8");
    a.node.ok(&[
        "federation",
        "propose-add",
        "--card",
        card.to_str().expect("utf-8"),
        "-o",
        file_arg,
    ]);
    let out = b.node.ok(&["federation", "sign", file_arg]);
    assert!(out.contains("installed"), "{out}");
    // The new member installs the signed successor it was handed.
    let applied = e.node.cli(&["federation", "apply", file_arg]);
    assert!(
        applied.status.success(),
        "a new member cannot install the roster that adds it: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let with_e = [&a, &b, &c, &e];
    for m in with_e {
        poll(
            &format!("{} installs roster version 2", m.name),
            SOON,
            || (m.roster_version() == 2).then_some(()),
            || m.status()["roster"].to_string(),
        );
    }
    wait_fully_connected(&with_e);
    wait_digests_equal(&with_e, SOON);
    // The search index follows the log a commit later than the digest does.
    poll(
        "the new member's search shows the whole catalog",
        SOON,
        || (slugs(&e.search(&[])) == ["kitas", "radwege", "schulen"]).then_some(()),
        || e.search(&[]).to_string(),
    );
    e.publish("freibaeder", "Freibäder", "SOCI", "Schwimmen");
    for m in all {
        wait_found(m, "freibad", "freibaeder");
    }
}

/// (d) A node outside the federation's roster cannot connect, although it holds a roster
/// validly signed by all members that lists their addresses and keeps dialing them: the members
/// never show it as connected, and what it publishes never reaches them.
#[test]
fn a_node_outside_the_roster_cannot_connect() {
    let a = Member::start(5, 2, "Stadt Münster");
    let b = Member::start(5, 3, "Kreis Steinfurt");
    let c = Member::start(5, 4, "Kreis Coesfeld");
    let x = Member::start(5, 9, "Unbekannt");
    // First a founding roster with x that a, b and c sign but x does not (yet)...
    let cards: Vec<PathBuf> = [&a, &b, &c, &x].iter().map(|m| m.card()).collect();
    let with_x = a.dir().join("with-x.roster");
    let with_x_arg = with_x.to_str().expect("utf-8");
    let mut args = vec!["federation", "create", "--id", "muensterland"];
    for card in &cards[1..] {
        args.extend(["--card", card.to_str().expect("utf-8")]);
    }
    args.extend(["-o", with_x_arg]);
    a.node.ok(&args);
    b.node.ok(&["federation", "sign", with_x_arg]);
    c.node.ok(&["federation", "sign", with_x_arg]);
    // ...then the federation a, b and c actually found, without x...
    let all = [&a, &b, &c];
    form(&all, "muensterland");
    // ...and finally x signs and installs the first one: a genuine founding roster of the same
    // federation id, naming a, b and c with their addresses, so x dials them.
    x.node.ok(&["federation", "sign", with_x_arg]);
    x.node.ok(&["federation", "apply", with_x_arg]);
    assert_eq!(x.roster_version(), 1);
    wait_fully_connected(&all);

    x.publish(
        "gefaelscht",
        "Gefälschte Haushaltsdaten",
        "GOVE",
        "Haushalt",
    );
    a.publish("haushalt", "Haushaltsplan der Stadt", "GOVE", "Haushalt");
    for m in [&b, &c] {
        wait_found(m, "haushaltsplan", "haushalt");
    }
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        for m in all {
            assert!(
                !m.connected().contains(&x.peer),
                "{} lets the outsider connect",
                m.name
            );
            assert_eq!(m.find("haushalt"), vec!["haushalt"], "{}", m.name);
            let publishers = m.status()["publishers"].to_string();
            assert!(!publishers.contains(&x.peer), "{}: {publishers}", m.name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_digests_equal(&all, SOON);
    // x only ever sees its own entry.
    assert_eq!(x.find("haushalt"), vec!["gefaelscht"]);
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
